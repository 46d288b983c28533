"""User data delivery: account events rendered once and fanned out to every place that wants them.

Binance delivers an account's events two ways today, and clients of both eras must work:

* WebSocket API subscriptions (``userDataStream.subscribe.signature``): each event wrapped as
  ``{"subscriptionId":N,"event":{...}}``; when the subscription ends, ``eventStreamTerminated``.
* Legacy listen keys (``POST /api/v3/userDataStream``, then ``/ws/<listenKey>``): events raw, or
  ``{"stream":"<listenKey>","data":...}`` on a combined connection. A key lives 60 minutes past
  its last keep-alive; when it lapses ``listenKeyExpired`` is sent and nothing more follows on
  that key (BSD ``user-data-stream.md``); closing it with ``DELETE`` closes its streams quietly.

A fault (``expire_listen_keys``) ends every key and every subscription at the next tick.
"""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from marketlink.sandbox.exchange import AccountEvent, BalanceDelta, Exchange, OrderEvent, PrivateEvent
from marketlink.sandbox.faults import Faults, StreamKind
from marketlink.sandbox.venues.binance import errors, messages, views
from marketlink.sandbox.venues.binance.sockets import Socket

log = logging.getLogger(__name__)

_KEY_ALPHABET = string.ascii_letters + string.digits


@dataclass(slots=True)
class ListenKey:
    key: str
    account: str
    expires_ms: int


class ListenKeys:
    """The registry: one active key per account, as Binance hands back the active one."""

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self._keys: dict[str, ListenKey] = {}
        self._by_account: dict[str, str] = {}

    def create(self, account: str, api_key: str, now_ms: int) -> str:
        """The account's active key (extended), else a new one. ``api_key`` only authorises."""
        current = self._by_account.get(account)
        if current is not None and self._keys[current].expires_ms > now_ms:
            self._keys[current].expires_ms = now_ms + self.ttl_ms
            return current
        if current is not None:
            self._forget(current)
        key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(60))
        self._keys[key] = ListenKey(key, account, now_ms + self.ttl_ms)
        self._by_account[account] = key
        return key

    def _active(self, key: str, account: str | None, now_ms: int | None) -> ListenKey:
        lk = self._keys.get(key)
        if lk is None or (account is not None and lk.account != account):
            raise errors.invalid_listen_key()
        if now_ms is not None and lk.expires_ms <= now_ms:
            raise errors.invalid_listen_key()
        return lk

    def keepalive(self, key: str, account: str, now_ms: int) -> None:
        self._active(key, account, now_ms).expires_ms = now_ms + self.ttl_ms

    def close(self, key: str, account: str) -> ListenKey:
        lk = self._active(key, account, None)
        self._forget(key)
        return lk

    def lookup(self, key: str, now_ms: int) -> ListenKey | None:
        lk = self._keys.get(key)
        return lk if lk is not None and lk.expires_ms > now_ms else None

    def due(self, now_ms: int) -> list[ListenKey]:
        """Keys that lapsed by ``now_ms``, removed from the registry."""
        out = [lk for lk in self._keys.values() if lk.expires_ms <= now_ms]
        for lk in out:
            self._forget(lk.key)
        return out

    def expire_all(self) -> list[ListenKey]:
        out = list(self._keys.values())
        for lk in out:
            self._forget(lk.key)
        return out

    def _forget(self, key: str) -> None:
        lk = self._keys.pop(key)
        if self._by_account.get(lk.account) == key:
            del self._by_account[lk.account]


@dataclass(eq=False)
class Sink:
    """One destination of an account's events on one socket."""

    socket: Socket
    account: str
    subscription_id: int | None = None  # WS-API subscription
    listen_key: str | None = None  # legacy stream
    combined: bool = False
    active: bool = True
    _stream_json: bytes = field(default=b"", repr=False)

    def wrap(self, payload: bytes) -> bytes:
        if self.subscription_id is not None:
            return messages.wrap_subscription(self.subscription_id, payload)
        if self.combined:
            return messages.wrap_combined(self._stream_json, payload)
        return payload

    def deliver(self, payload: bytes) -> None:
        if self.active:
            self.socket.push(self.wrap(payload), StreamKind.USER)


class UserStreams:
    """Renders each private event once and hands it to the account's sinks."""

    def __init__(
        self,
        exchange: Exchange,
        faults: Faults,
        formats: Callable[[str], views.Formats],
        ttl_ms: int,
    ) -> None:
        self._exchange = exchange
        self._faults = faults
        self._formats = formats
        self.listen_keys = ListenKeys(ttl_ms)
        self._sinks: dict[str, list[Sink]] = {}
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._generation = faults.listen_key_generation
        self.render_errors = 0

    # -- sinks --------------------------------------------------------------------------------

    def attach_listen_key(self, socket: Socket, lk: ListenKey, *, combined: bool) -> Sink:
        sink = Sink(socket, lk.account, listen_key=lk.key, combined=combined,
                    _stream_json=views.encode(lk.key))
        self._add(sink)
        return sink

    def subscribe(self, socket: Socket, account: str, subscription_id: int) -> Sink:
        sink = Sink(socket, account, subscription_id=subscription_id)
        self._add(sink)
        return sink

    def _add(self, sink: Sink) -> None:
        sinks = self._sinks.setdefault(sink.account, [])
        sinks.append(sink)
        if sink.account not in self._unsubscribe:
            account = sink.account
            self._unsubscribe[account] = self._exchange.subscribe_account(
                account, lambda ev: self._on_event(account, ev)
            )

    def detach(self, sink: Sink) -> None:
        sink.active = False
        sinks = self._sinks.get(sink.account)
        if sinks is None or sink not in sinks:
            return
        sinks.remove(sink)
        if not sinks:
            del self._sinks[sink.account]
            self._unsubscribe.pop(sink.account)()

    def terminate(self, sink: Sink, now_ms: int) -> None:
        """End a WS-API subscription with ``eventStreamTerminated`` (then nothing more)."""
        if sink.active:
            sink.deliver(views.encode(messages.StreamTerminated("eventStreamTerminated", now_ms)))
        self.detach(sink)

    # -- events -------------------------------------------------------------------------------

    def _on_event(self, account: str, ev: PrivateEvent) -> None:
        sinks = self._sinks.get(account)
        if not sinks:
            return
        try:
            payload = self.render(ev)
        except Exception:  # a rendering bug must not break the engine's delivery loop
            self.render_errors += 1
            log.exception("binance: cannot render %r", ev)
            return
        for sink in tuple(sinks):
            sink.deliver(payload)

    def render(self, ev: PrivateEvent) -> bytes:
        if isinstance(ev, OrderEvent):
            return views.encode(messages.execution_report(ev, self._formats(ev.symbol)))
        if isinstance(ev, AccountEvent):
            return views.encode(messages.account_position(ev))
        assert isinstance(ev, BalanceDelta)
        return views.encode(messages.balance_update(ev))

    # -- lifetime -----------------------------------------------------------------------------

    def close_listen_key(self, key: str, account: str) -> None:
        """``DELETE /api/v3/userDataStream``: the key is gone and its streams close, no event."""
        self.listen_keys.close(key, account)
        for sinks in list(self._sinks.values()):
            for sink in list(sinks):
                if sink.listen_key == key:
                    self.detach(sink)
                    sink.socket.close(reason="listenKey closed")

    def on_tick(self, now_ms: int) -> None:
        expired = self.listen_keys.due(now_ms)
        if self._faults.listen_key_generation != self._generation:
            self._generation = self._faults.listen_key_generation
            expired += self.listen_keys.expire_all()
            for sinks in list(self._sinks.values()):
                for sink in list(sinks):
                    if sink.subscription_id is not None:
                        self.terminate(sink, now_ms)
        for lk in expired:
            payload = views.encode(messages.ListenKeyExpired("listenKeyExpired", now_ms, lk.key))
            for sink in list(self._sinks.get(lk.account, ())):
                if sink.listen_key == lk.key:
                    sink.deliver(payload)
                    self.detach(sink)
