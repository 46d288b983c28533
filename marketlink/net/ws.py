"""The WebSocket client: one supervised connection that keeps itself alive and says what happened.

Venue streams fail in quiet ways: the socket drops, the server stops pinging, or one channel
goes silent while the others flow (a "connected" feed that is stale). This client owns all of it
so no venue and no engine part writes it again: connect (the URL may be a coroutine, e.g. a fresh
listen key), let the venue log in (``on_connect``), re-send every remembered subscription, keep
the venue's heartbeat, reconnect with exponential back-off and jitter, and watch each
subscription for silence.

A reconnect loop is also a way to get banned: a venue that accepts the socket and closes it at
once (an overloaded or policing venue, Binance's 1008 "too many requests") would be redialled as
fast as the back-off starts over. So the back-off starts over only after a connection *stayed up*
``healthy_after`` seconds: no frame proves health (a subscription ack is a frame), and a close
with code 1008 (policy) or 1013 (try again later) never counts as healthy however long it lasted.

The consumer reads one ordered stream, :meth:`WsClient.items`, of :class:`WsMessage` and
connection events. One stream rather than two, because order is the point: every message after
a ``Connected`` belongs to the new connection, so the engine resyncs books and reconciles orders
at exactly the right place. Events are never dropped; data messages beyond ``max_queue`` are
dropped, counted, and force a reconnect, because after a lost message the only safe state is a
resync, and a reconnect is the signal the engine already resyncs on. The messages of that
connection still waiting in the queue go too (the resync replaces what they would have told):
kept, they would fill the queue of the next connection before the consumer even reaches its
``Connected``, and it would overflow again at once.

Timing runs on the injected :class:`~marketlink.net.clock.Clock` (heartbeat, pings, staleness,
back-off), so tests drive it with a virtual clock.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import msgspec
from yarl import URL

from marketlink.core.errors import ConfigError
from marketlink.net import jsoncodec
from marketlink.net.clock import Clock, SystemClock
from marketlink.net.errors import ConnectionFailed, RequestTimeout

__all__ = [
    "POLICY_CLOSES",
    "Closed",
    "Connected",
    "Disconnected",
    "Heartbeat",
    "Reconnecting",
    "Stale",
    "WsClient",
    "WsEvent",
    "WsItem",
    "WsMessage",
    "WsSession",
    "WsStats",
    "backoff_delay",
]

log = logging.getLogger(__name__)

_Socket = aiohttp.ClientWebSocketResponse[bool]
_DATA = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
#: Text frames as their bytes, where aiohttp offers it (``decode_text``, aiohttp 3.13+): our
#: decoders take bytes and msgspec checks the UTF-8 while it parses, so decoding each frame to
#: ``str`` first would only cost a copy (and the depth codec would encode it back to bytes).
_RAW_TEXT: Final[dict[str, Any]] = (
    {"decode_text": False} if "decode_text" in inspect.signature(aiohttp.ClientSession.ws_connect).parameters
    else {}
)
_DrainReason = tuple[str, int | None]
#: Close codes that say "you, stop": policy violation (Binance: too many requests) and try again
#: later (overload, maintenance). A connection ended so never resets the back-off.
POLICY_CLOSES = frozenset({aiohttp.WSCloseCode.POLICY_VIOLATION, aiohttp.WSCloseCode.TRY_AGAIN_LATER})


# -- what the consumer sees -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """Logged in and subscribed. ``attempt`` counts connections: 1 first, 2 after one reconnect..."""

    url: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection that had been ``Connected`` ended; ``code`` is the close code if one came."""

    reason: str
    code: int | None


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The next connection attempt starts after ``delay`` s; ``attempt`` counts failures in a row."""

    delay: float
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Stale:
    """Subscription ``key`` had no message for ``silent_for`` s (once per silence; the engine decides)."""

    key: str
    silent_for: float


@dataclass(frozen=True, slots=True)
class Closed:
    """The client stopped; the last item of the stream."""


WsEvent = Connected | Disconnected | Reconnecting | Stale | Closed


class WsMessage(msgspec.Struct, frozen=True, gc=False):
    """One decoded message; ``key`` is its subscription (from ``key_of``), ``received_at`` clock time.

    A msgspec Struct rather than a frozen dataclass: one is built per frame, and this costs
    60 ns against 410 (a depth stream makes thousands a second). ``gc=False`` is safe: it only
    ever holds the decoded payload, which never points back at it."""

    data: Any
    key: str | None
    received_at: float


WsItem = WsMessage | WsEvent


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """How a venue checks liveness, and how long a silent socket is trusted.

    Server-ping venues (Binance) send ping frames we answer with pongs; client-ping venues (Bybit)
    expect a ping *message* every ``interval`` s, built by ``message``. Either way, any traffic
    (data, pings, pongs) proves the socket alive, and none for ``timeout`` s forces a reconnect.
    ``is_pong`` recognises the venue's pong messages so they are not handed to the consumer.
    """

    timeout: float
    interval: float | None = None
    message: Callable[[], Any] | None = None
    is_pong: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"heartbeat timeout must be positive, got {self.timeout}")
        if (self.interval is None) != (self.message is None):
            raise ConfigError("a client heartbeat needs both an interval and a message builder")
        if self.interval is not None and not 0 < self.interval < self.timeout:
            raise ConfigError(f"ping interval {self.interval} must be in (0, timeout={self.timeout})")

    @classmethod
    def server_pings(cls, timeout: float) -> Heartbeat:
        """The server pings; reconnect when nothing at all arrived for ``timeout`` s."""
        return cls(timeout)

    @classmethod
    def client_pings(
        cls,
        interval: float,
        message: Callable[[], Any],
        *,
        timeout: float | None = None,
        is_pong: Callable[[Any], bool] | None = None,
    ) -> Heartbeat:
        """We ping every ``interval`` s; with no traffic for ``timeout`` (default 2 intervals), reconnect."""
        return cls(2 * interval if timeout is None else timeout, interval, message, is_pong)


def backoff_delay(failures: int, *, base: float, cap: float, jitter: float, rng: random.Random) -> float:
    """Delay before the next attempt after ``failures`` failures in a row (>= 1).

    Exponential ``base * 2**(failures-1)`` capped at ``cap``, then reduced by a random fraction of
    up to ``jitter``, so many clients dropped at once do not reconnect in lockstep.
    """
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 60))
    return ceiling * (1.0 - jitter * rng.random())


@dataclass(slots=True)
class WsStats:
    connects: int = 0
    messages: int = 0
    malformed: int = 0
    overflow: int = 0  # messages lost to an overflow: refused frames and queued ones dropped
    pings_sent: int = 0
    pings_answered: int = 0
    stale: int = 0


# -- the session handed to on_connect -----------------------------------------------------------


class WsSession:
    """The fresh socket, given to ``on_connect`` before subscriptions and the reader start.

    Lets a venue log in and wait for the acknowledgement. Messages it reads are consumed here and
    are not delivered to :meth:`WsClient.items`.
    """

    def __init__(self, client: WsClient, socket: _Socket, url: str) -> None:
        self._client = client
        self._socket = socket
        self.url = url

    async def send(self, payload: Any) -> None:
        await self._client._send_on(self._socket, payload)

    async def receive(self, timeout: float | None = None) -> Any:
        """The next decoded data message. Raises RequestTimeout, or ConnectionFailed if it closes."""
        limit = self._client._connect_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    msg = await self._socket.receive()
                    if msg.type in _DATA:
                        decoded = self._client._decode_frame(msg.data)
                        if decoded is not _DROPPED and not self._client._is_pong(decoded):
                            return decoded
                    elif msg.type is aiohttp.WSMsgType.PING:
                        await self._client._answer_ping(self._socket, msg.data)
                    elif msg.type is not aiohttp.WSMsgType.PONG:
                        raise ConnectionFailed(f"socket closed during login ({msg.type.name})")
        except TimeoutError:
            raise RequestTimeout(f"no message within {limit}s during login") from None


_DROPPED: Any = object()


# -- the client -------------------------------------------------------------------------------


class WsClient:
    """A self-healing WebSocket connection; see the module docstring for the contract.

    ``key_of`` maps a decoded message to its subscription key (``None`` for acks and the like);
    with ``stale_after`` set, a subscription silent that long yields one :class:`Stale` event.
    ``rng`` makes the back-off jitter reproducible. ``healthy_after`` is how long a connection
    must stay up for the back-off to start over (see the module docstring): a venue that drops
    every connection sooner sees the back-off grow to ``backoff_max``. Single use: ``start()``,
    then ``stop()``.
    """

    def __init__(
        self,
        url: str | Callable[[], Awaitable[str]],
        *,
        heartbeat: Heartbeat,
        on_connect: Callable[[WsSession], Awaitable[None]] | None = None,
        stale_after: float | None = None,
        key_of: Callable[[Any], str | None] | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        healthy_after: float = 30.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
        decode: Callable[[bytes | str], Any] = jsoncodec.decode,
        max_queue: int = 10_000,
        connect_timeout: float = 10.0,
        close_timeout: float = 2.0,
        name: str = "ws",
    ) -> None:
        if stale_after is not None and not (math.isfinite(stale_after) and stale_after > 0):
            raise ConfigError(f"stale_after must be positive, got {stale_after}")
        if stale_after is not None and key_of is None:
            raise ConfigError("stale_after needs key_of to know which subscription a message belongs to")
        if not 0 < backoff_base <= backoff_max or not 0 <= jitter < 1:
            raise ConfigError("need 0 < backoff_base <= backoff_max and 0 <= jitter < 1")
        if not (math.isfinite(healthy_after) and healthy_after > 0):
            raise ConfigError(f"healthy_after must be a positive number of seconds, got {healthy_after}")
        if max_queue < 1 or connect_timeout <= 0 or close_timeout <= 0:
            raise ConfigError("max_queue, connect_timeout and close_timeout must be positive")
        self._url = url
        self._heartbeat = heartbeat
        self._on_connect = on_connect
        self._stale_after = stale_after
        self._key_of = key_of
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._healthy_after = healthy_after
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._session = session
        self._owns_session = session is None
        self._decode = decode
        self._max_queue = max_queue
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._name = name
        self.stats = WsStats()

        self._queue: asyncio.Queue[WsItem] = asyncio.Queue()
        self._subs: dict[str, Any] = {}
        self._sub_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._socket: _Socket | None = None  # set only while connected, logged in and subscribed
        self._drain: asyncio.Future[_DrainReason] | None = None
        self._stopped = False
        self._failures = 0
        self._connections = 0
        self._last_rx = 0.0
        self._last_seen: dict[str, float] = {}
        self._flagged: set[str] = set()
        self._queued_data = 0  # WsMessage items in the queue (events are not counted)
        self._overflowed = False

    # -- public API ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._socket is not None

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return tuple(self._subs)

    @property
    def last_received_at(self) -> float | None:
        """Clock time of the last frame of any kind (data, ping, pong) on the current connection,
        or of its opening; ``None`` while not connected.

        The engine's liveness signal: a venue that has nothing to say (a quiet book, an idle
        account) still pings, so silence on one subscription proves nothing while this moves."""
        return self._last_rx if self._socket is not None else None

    async def start(self) -> None:
        """Start connecting in the background; progress arrives as events on :meth:`items`."""
        if self._stopped:
            raise ConfigError(f"{self._name}: a stopped WsClient cannot be restarted")
        if self._task is not None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._supervise(), name=f"{self._name}-supervisor")

    async def stop(self) -> None:
        """Close the socket, end every task of this client, and put :class:`Closed` on the stream."""
        if self._stopped:
            return
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
        self._emit(Closed())

    async def items(self) -> AsyncIterator[WsItem]:
        """Messages and events in arrival order, ending after :class:`Closed`. One consumer only."""
        while True:
            item = await self._queue.get()
            if isinstance(item, WsMessage):
                self._queued_data -= 1
            yield item
            if isinstance(item, Closed):
                return

    async def send(self, payload: Any) -> None:
        """Send now (str as text, bytes as binary, anything else as JSON); ConnectionFailed if down."""
        socket = self._socket
        if socket is None:
            raise ConnectionFailed(f"{self._name}: not connected")
        await self._send_on(socket, payload)

    async def subscribe(self, key: str, payload: Any) -> None:
        """Remember ``payload`` under ``key``, send it if connected, and re-send it after every reconnect.

        A failed send is not an error here: the socket is going down and the reconnect re-sends.
        """
        async with self._sub_lock:
            self._subs[key] = payload
            self._last_seen[key] = self._clock.time()
            self._flagged.discard(key)
            await self._send_quietly(payload)

    async def unsubscribe(self, key: str, payload: Any = None) -> None:
        """Forget ``key``; if connected and ``payload`` is given, send it (the venue's unsubscribe)."""
        async with self._sub_lock:
            self._subs.pop(key, None)
            self._last_seen.pop(key, None)
            self._flagged.discard(key)
            if payload is not None:
                await self._send_quietly(payload)

    def reconnect(self, reason: str = "requested") -> None:
        """Drop the current connection and reconnect (e.g. the engine's answer to a Stale event)."""
        if self._drain is not None:
            _settle(self._drain, reason, None)

    # -- supervision --------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            await self._reconnect_forever()
        except Exception:  # a bug here must end the stream visibly, not leave the consumer waiting
            log.exception("%s: supervisor crashed", self._name)
            self._emit(Closed())

    async def _reconnect_forever(self) -> None:
        while True:
            reason, healthy = await self._connect_once()
            if healthy:
                self._failures = 0
            self._failures += 1
            delay = backoff_delay(
                self._failures, base=self._backoff_base, cap=self._backoff_max, jitter=self._jitter,
                rng=self._rng,
            )
            self._emit(Reconnecting(delay, self._failures, reason))
            await self._clock.sleep(delay)

    async def _connect_once(self) -> tuple[str, bool]:
        """One connection from dial to drop: returns why it ended and whether it had been healthy."""
        assert self._session is not None
        socket: _Socket | None = None
        connected_at: float | None = None
        code: int | None = None
        self._overflowed = False
        try:
            url = self._url if isinstance(self._url, str) else await self._url()
            async with asyncio.timeout(self._connect_timeout):
                socket = await self._session.ws_connect(
                    url, autoping=False, autoclose=True, heartbeat=None,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self._close_timeout),
                    **_RAW_TEXT,
                )
                if self._on_connect is not None:
                    await self._on_connect(WsSession(self, socket, url))
            await self._resubscribe(socket)
            connected_at = self._clock.time()
            self._connections += 1
            self.stats.connects += 1
            self._emit(Connected(url, self._connections))
            reason, code = await self._serve(socket)
        except asyncio.CancelledError:
            if connected_at is not None:
                self._emit(Disconnected("stopped", 1000))
            raise
        except aiohttp.ClientResponseError as exc:  # e.g. handshake refused; its text holds the URL
            reason = f"{type(exc).__name__}: HTTP {exc.status}"
        except (aiohttp.ClientError, OSError, TimeoutError, ConnectionFailed) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # on_connect or the URL coroutine failed (bad key, venue down...)
            log.warning("%s: connection setup failed", self._name, exc_info=True)
            reason = f"setup failed: {type(exc).__name__}: {exc}"
        finally:
            self._socket = None
            if socket is not None:
                await self._close(socket)
        if connected_at is None:
            return reason, False
        self._emit(Disconnected(reason, code))
        lived = self._clock.time() - connected_at
        return reason, lived >= self._healthy_after and not self._overflowed and code not in POLICY_CLOSES

    async def _resubscribe(self, socket: _Socket) -> None:
        # Under the lock, so a subscribe() racing the reconnect is sent exactly once: either here
        # or by subscribe() itself once the socket is published.
        async with self._sub_lock:
            now = self._clock.time()
            self._last_rx = now
            self._flagged.clear()
            for key, payload in self._subs.items():
                self._last_seen[key] = now
                await self._send_on(socket, payload)
            self._socket = socket

    async def _serve(self, socket: _Socket) -> _DrainReason:
        drain: asyncio.Future[_DrainReason] = asyncio.get_running_loop().create_future()
        self._drain = drain
        reader = asyncio.create_task(self._read(socket, drain), name=f"{self._name}-reader")
        watchdog = asyncio.create_task(self._watch(socket, drain), name=f"{self._name}-watchdog")
        try:
            return await drain
        finally:
            self._drain = None
            reader.cancel()
            watchdog.cancel()
            await asyncio.gather(reader, watchdog, return_exceptions=True)

    async def _close(self, socket: _Socket) -> None:
        if socket.closed:
            return
        try:
            async with asyncio.timeout(self._close_timeout):
                await socket.close()
        except (TimeoutError, aiohttp.ClientError, OSError):
            log.debug("%s: close handshake did not complete", self._name)

    # -- reading ------------------------------------------------------------------------------

    async def _read(self, socket: _Socket, drain: asyncio.Future[_DrainReason]) -> None:
        try:
            while True:
                msg = await socket.receive()
                now = self._clock.time()
                kind = msg.type
                if kind in _DATA:
                    self._last_rx = now
                    self._on_frame(msg.data, now, drain)
                elif kind is aiohttp.WSMsgType.PING:
                    self._last_rx = now
                    await self._answer_ping(socket, msg.data)
                elif kind is aiohttp.WSMsgType.PONG:
                    self._last_rx = now
                elif kind is aiohttp.WSMsgType.ERROR:
                    _settle(drain, f"socket error: {msg.data!r}", socket.close_code)
                    return
                else:  # CLOSE, CLOSING, CLOSED
                    _settle(drain, "closed by server", socket.close_code)
                    return
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError) as exc:  # e.g. a pong written to a closing socket
            _settle(drain, f"socket failed: {type(exc).__name__}: {exc}", None)
        except Exception as exc:
            log.exception("%s: reader failed", self._name)
            _settle(drain, f"reader failed: {type(exc).__name__}: {exc}", None)

    def _on_frame(self, data: bytes | str, now: float, drain: asyncio.Future[_DrainReason]) -> None:
        decoded = self._decode_frame(data)
        if decoded is _DROPPED or self._is_pong(decoded):
            return
        key = self._message_key(decoded)
        if key is not None and key in self._last_seen:
            self._last_seen[key] = now
            self._flagged.discard(key)
        if self._overflowed:  # the connection is being abandoned: nothing more of it is wanted
            self.stats.overflow += 1
            return
        if self._queued_data >= self._max_queue:
            self._overflowed = True
            dropped = self._drop_queued_data()
            self.stats.overflow += 1 + dropped
            log.warning("%s: receive queue full (%d): %d queued messages dropped, reconnecting",
                        self._name, self._max_queue, dropped)
            _settle(drain, "receive queue overflow", None)
            return
        self.stats.messages += 1
        self._queued_data += 1
        self._queue.put_nowait(WsMessage(decoded, key, now))

    def _drop_queued_data(self) -> int:
        """Empty the queue of data messages, keeping the events in their order; how many went."""
        kept: list[WsItem] = []
        dropped = 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, WsMessage):
                dropped += 1
            else:
                kept.append(item)
        for item in kept:
            self._queue.put_nowait(item)
        self._queued_data = 0
        return dropped

    def _decode_frame(self, data: bytes | str) -> Any:
        try:
            return self._decode(data)
        except Exception as exc:
            self.stats.malformed += 1
            if self.stats.malformed == 1 or self.stats.malformed % 100 == 0:
                log.warning("%s: dropped undecodable frame #%d (%d bytes): %s", self._name,
                            self.stats.malformed, len(data), exc)
            return _DROPPED

    def _is_pong(self, decoded: Any) -> bool:
        check = self._heartbeat.is_pong
        if check is None:
            return False
        try:
            return check(decoded)
        except Exception:  # a pong test that trips on an odd message must not lose the message
            return False

    def _message_key(self, decoded: Any) -> str | None:
        if self._key_of is None:
            return None
        try:
            return self._key_of(decoded)
        except Exception:
            log.debug("%s: key_of failed on a message", self._name, exc_info=True)
            return None

    async def _answer_ping(self, socket: _Socket, data: bytes) -> None:
        # Binance requires the pong to echo the ping's payload.
        await socket.pong(data)
        self.stats.pings_answered += 1

    # -- heartbeat and staleness --------------------------------------------------------------

    async def _watch(self, socket: _Socket, drain: asyncio.Future[_DrainReason]) -> None:
        """Sleeps until the next thing is due (ping, heartbeat deadline, staleness), never polls."""
        hb = self._heartbeat
        next_ping = math.inf if hb.interval is None else self._clock.time() + hb.interval
        try:
            while True:
                now = self._clock.time()
                dead_at = self._last_rx + hb.timeout
                if now >= dead_at:
                    _settle(drain, f"heartbeat timeout: no traffic for {now - self._last_rx:.3f}s", None)
                    return
                if now >= next_ping:
                    assert hb.message is not None and hb.interval is not None
                    await self._send_on(socket, hb.message())
                    self.stats.pings_sent += 1
                    next_ping = now + hb.interval
                wake_at = min(dead_at, next_ping, self._check_stale(now))
                await self._clock.sleep(wake_at - now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _settle(drain, f"heartbeat failed: {type(exc).__name__}: {exc}", None)

    def _check_stale(self, now: float) -> float:
        """Emit Stale for newly silent subscriptions; return when the next one could go stale."""
        if self._stale_after is None:
            return math.inf
        next_due = math.inf
        for key, seen in self._last_seen.items():
            if key in self._flagged:
                continue
            due = seen + self._stale_after
            if now >= due:
                self._flagged.add(key)
                self.stats.stale += 1
                self._emit(Stale(key, now - seen))
            else:
                next_due = min(next_due, due)
        return next_due

    # -- sending ------------------------------------------------------------------------------

    async def _send_on(self, socket: _Socket, payload: Any) -> None:
        try:
            async with self._send_lock:
                if isinstance(payload, str):
                    await socket.send_str(payload)
                elif isinstance(payload, bytes):
                    await socket.send_bytes(payload)
                else:
                    await socket.send_str(jsoncodec.encode(payload).decode())
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"{self._name}: send failed: {type(exc).__name__}") from exc

    async def _send_quietly(self, payload: Any) -> None:
        socket = self._socket
        if socket is None:
            return
        try:
            await self._send_on(socket, payload)
        except ConnectionFailed:
            log.info("%s: send failed; it will be re-sent after the reconnect", self._name)

    def _emit(self, event: WsEvent) -> None:
        if isinstance(event, Connected):
            log.info("%s: connected to %s (connection %d)", self._name, _where(event.url), event.attempt)
        elif isinstance(event, Disconnected | Reconnecting | Stale):
            log.info("%s: %s", self._name, event)
        self._queue.put_nowait(event)


def _settle(drain: asyncio.Future[_DrainReason], reason: str, code: int | None) -> None:
    if not drain.done():
        drain.set_result((reason, code))


def _where(url: str) -> str:
    # The path or query may carry a listen key: logs name the host only.
    parsed = URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"
