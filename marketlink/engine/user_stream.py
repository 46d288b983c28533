"""The private stream: our orders, fills and balances as the venue pushes them.

One ``WsClient`` connection whose login step (``on_connect``) sends the venue's signed subscribe
frame (Binance: ``userDataStream.subscribe.signature`` on the WebSocket API) and waits for its
answer, so every connection, the first and each one after a reconnect, is subscribed before it
counts as connected. Messages go through the codec to the sink (the order manager) in arrival
order.

What a reconnect means: private events may have been missed while the socket was down, so
``on_reconnected`` (the reconciler's trigger) runs before the stream reports itself ready again,
and the connector is not ``ready`` until that reconcile has run. A message that ends the
subscription (``eventStreamTerminated``) forces a reconnect, and with it a resubscribe.

``healthy`` is what the reconciler reads to choose its pace: connected, and some traffic within
``user_stream_silence`` seconds. Any frame counts (a private message, the subscription itself,
a server ping or a pong), not only private data: an account whose orders rest unfilled has
nothing to report, and polling it fast for that would spend the request weight snapshots and
orders need. Fast polling is kept for what it is for: a stream that is down, or whose socket
has gone entirely quiet (a stuck venue still holding the TCP connection).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from marketlink.core.market import BalanceUpdate
from marketlink.core.orders import OrderUpdate, TradeUpdate
from marketlink.engine.context import ConnectorContext
from marketlink.net.errors import (
    ClockSkew,
    ConnectionFailed,
    MalformedMessage,
    RateLimited,
    RequestTimeout,
    Transient,
    VenueError,
)
from marketlink.net.ws import (
    Closed,
    Connected,
    Disconnected,
    Heartbeat,
    Reconnecting,
    WsClient,
    WsMessage,
    WsSession,
)

__all__ = ["STATUS_PART", "UserStream", "UserStreamCounters"]

log = logging.getLogger(__name__)

STATUS_PART = "user_stream"
UserItem = OrderUpdate | TradeUpdate | BalanceUpdate
#: Messages read while waiting for the subscription's answer before giving up on this socket.
_MAX_LOGIN_MESSAGES = 50
#: Server-time round trips after a refused timestamp (the estimator keeps the fastest).
_RESYNC_SAMPLES = 3


@dataclass(slots=True)
class UserStreamCounters:
    messages: int = 0
    malformed: int = 0  # undecodable by the codec: dropped, counted
    sink_errors: int = 0  # the order manager raised on an item (a bug): logged, counted
    connections: int = 0
    ended_by_venue: int = 0  # subscription ended by a venue message (reconnected)


class UserStream:
    """The venue's private stream; ``start`` returns once subscribed (see the module docstring)."""

    def __init__(
        self,
        ctx: ConnectorContext,
        sink: Callable[[Sequence[UserItem]], None],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._ctx = ctx
        self._sink = sink
        self._rng = rng if rng is not None else random.Random()
        self.on_reconnected: Callable[[], None] | None = None
        self.on_health_change: Callable[[], None] | None = None
        self.last_message_at: float | None = None  # connector clock time of the last private message
        # (or of the subscription); ``last_traffic_at`` adds pings and pongs
        self.counters = UserStreamCounters()
        self._ws: WsClient | None = None
        self._connected = False
        self._first: asyncio.Future[None] | None = None
        self._ids = itertools.count(1)
        self._last_problem = "not started"

    # -- state ----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def healthy(self) -> bool:
        """Subscribed and heard from lately (any frame): the reconciler may poll slowly."""
        silent_at = self.silent_at
        return silent_at is not None and self._ctx.clock.time() < silent_at

    @property
    def last_traffic_at(self) -> float | None:
        """Connector clock time of the last frame of any kind on the private connection (data,
        ping or pong), or of the subscription; ``None`` while down."""
        if not self._connected or self.last_message_at is None:
            return None
        ws = self._ws
        rx = ws.last_received_at if ws is not None else None
        return self.last_message_at if rx is None else max(rx, self.last_message_at)

    @property
    def silent_at(self) -> float | None:
        """When the stream will count as silent if nothing arrives (``None`` while down)."""
        last = self.last_traffic_at
        return None if last is None else last + self._ctx.config.user_stream_silence

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, timeout: float | None = None) -> None:
        """Connect and subscribe; return once subscribed. A refusal the venue states (bad key,
        no permission) raises it; transport trouble is retried until ``timeout`` seconds (default
        three request timeouts), then ``RequestTimeout`` names the last problem."""
        if self._ws is not None:
            raise RuntimeError("a user stream starts once")
        ctx = self._ctx
        spec = ctx.spec.user_heartbeat
        # A client-ping venue needs its ping frame from the codec; until one has it, every venue
        # we speak pings us (Binance), and any traffic counts as alive either way.
        heartbeat = Heartbeat.server_pings(spec.timeout)
        self._ws = WsClient(
            ctx.codec.user_stream_url(ctx.endpoints),
            heartbeat=heartbeat,
            on_connect=self._login,
            rng=self._rng,
            clock=ctx.clock,
            connect_timeout=ctx.config.request_timeout,
            healthy_after=ctx.config.stream_healthy_after,
            name=f"{ctx.venue.name}-user",
        )
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        ctx.status.fail(STATUS_PART, "connecting")
        await self._ws.start()
        ctx.supervisor.spawn(STATUS_PART, self._consume)
        limit = 3 * ctx.config.request_timeout if timeout is None else timeout
        timer = asyncio.ensure_future(ctx.clock.sleep(limit))
        try:
            await asyncio.wait({self._first, timer}, return_when=asyncio.FIRST_COMPLETED)
            if not self._first.done():
                raise RequestTimeout(f"user stream not subscribed within {limit}s ({self._last_problem})")
            self._first.result()  # raises the venue's refusal
        except BaseException:
            await self.stop()
            raise
        finally:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)

    async def stop(self) -> None:
        await self._ctx.supervisor.cancel(STATUS_PART)
        if self._ws is not None:
            await self._ws.stop()
        if self._first is not None and not self._first.done():
            self._first.cancel()
        self._set_connected(False)

    # -- login ----------------------------------------------------------------------------------

    async def _login(self, session: WsSession) -> None:
        """Subscribe on a fresh socket and wait for the venue's answer to exactly our request."""
        ctx = self._ctx
        request_id = next(self._ids)
        try:
            await session.send(
                ctx.codec.user_stream_subscribe(ctx.auth, ctx.time_sync.server_time_ms(), request_id)
            )
            for _ in range(_MAX_LOGIN_MESSAGES):
                message = await session.receive(ctx.config.request_timeout)
                answer = ctx.codec.parse_user_stream_ack(message, request_id)
                if answer is True:
                    return
                if isinstance(answer, VenueError):
                    raise answer
                if answer is None:  # not the answer: a private event may already flow
                    self._on_message(message, ctx.clock.time())
                    continue
                raise MalformedMessage(f"subscription answer neither true nor an error: {answer!r}")
            raise RequestTimeout(f"no answer to the subscription among {_MAX_LOGIN_MESSAGES} messages")
        except ClockSkew as exc:
            self._last_problem = f"{type(exc).__name__}: {exc}"
            await self._resync_time()
            raise
        except VenueError as exc:
            self._last_problem = f"{type(exc).__name__}: {exc}"
            first = self._first
            # A refusal that a retry cannot fix ends start(); transport trouble is retried.
            if first is not None and not first.done() and not isinstance(exc, Transient | RateLimited):
                first.set_exception(exc)
            raise

    async def _resync_time(self) -> None:
        """Fresh server-time samples, so the next subscription signs with a corrected clock.

        Each is timed by the HTTP client around its actual send: a wait in the throttler (a
        back-off, a full pool) before it would otherwise count as network delay and move the
        offset by half of it. The refusal says the samples so far are wrong: these replace them
        (see the connector's _resync_time), else faster old round trips would outvote them."""
        ctx = self._ctx
        try:
            ctx.time_sync.replace(await ctx.time_samples(_RESYNC_SAMPLES))
        except Exception:  # the clock-skew refusal is the error worth reporting, not this one
            log.warning("%s: time resync after a refused subscription failed", ctx.venue.name, exc_info=True)

    # -- the stream -----------------------------------------------------------------------------

    async def _consume(self) -> None:
        ws = self._ws
        assert ws is not None
        async for item in ws.items():
            if isinstance(item, WsMessage):
                self._on_message(item.data, item.received_at)
            elif isinstance(item, Connected):
                self._on_connected(item)
            elif isinstance(item, Disconnected):
                self._last_problem = f"disconnected: {item.reason}"
                self._set_connected(False)
                self._ctx.status.fail(STATUS_PART, self._last_problem)
            elif isinstance(item, Reconnecting):
                self._last_problem = f"reconnecting in {item.delay:.1f}s ({item.reason})"
                self._ctx.status.fail(STATUS_PART, f"{self._last_problem}, attempt {item.attempt}")
            elif isinstance(item, Closed):
                return

    def _on_connected(self, event: Connected) -> None:
        ctx = self._ctx
        self.counters.connections += 1
        self.last_message_at = ctx.clock.time()
        if event.attempt > 1 and self.on_reconnected is not None:
            # First, so that readiness waits for the reconcile: no moment reports ready between.
            try:
                self.on_reconnected()
            except Exception:
                log.exception("%s: on_reconnected failed", ctx.venue.name)
        self._set_connected(True)
        ctx.status.ok(STATUS_PART, f"subscribed (connection {event.attempt})")
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    def _on_message(self, data: Any, received_at: float) -> None:
        ctx = self._ctx
        self.last_message_at = received_at
        self.counters.messages += 1
        try:
            items = ctx.codec.parse_user_message(data, ctx.markets.symbols)
        except ConnectionFailed as exc:  # the venue ended our subscription: a new one is needed
            self.counters.ended_by_venue += 1
            log.info("%s: %s: reconnecting to resubscribe", ctx.venue.name, exc)
            if self._ws is not None:
                self._ws.reconnect(str(exc))
            return
        except Exception as exc:  # MalformedMessage, or a codec bug: drop and count, never crash
            n = self.counters.malformed = self.counters.malformed + 1
            if n == 1 or n % 100 == 0:
                log.warning("%s: dropped private message #%d: %s", ctx.venue.name, n, exc)
            return
        if not items:
            return
        try:
            self._sink(items)
        except Exception:
            self.counters.sink_errors += 1
            log.exception("%s: applying private events failed", ctx.venue.name)

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if self.on_health_change is not None:
            self.on_health_change()
