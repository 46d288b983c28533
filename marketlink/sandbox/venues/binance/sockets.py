"""One server-side WebSocket of the Binance front-end, delivering frames under the armed faults.

Engine listeners run synchronously, so nothing that produces a message may await: producers
``push`` encoded frames into the socket's outbox and one writer task per socket sends them in
order, in batches, as fast as the peer reads. That writer is also the single place where stream
faults act on a frame (sent twice, swapped with the next one, held back while the socket is
stalled), and ``tick`` is the single place for time: Binance's server pings and the pong
deadline, the 24-hour lifetime, and closing the socket when a ``drop_streams`` fault names its
kind. A peer that cannot keep up (outbox beyond ``max_outbox``) is dropped, as a venue drops a
slow consumer, rather than growing memory without bound.

Closing never blocks the caller: the close handshake runs in its own task, because a peer that
never answers the close frame must not stall the front-end's tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import WSCloseCode, WSMsgType, web

from marketlink.sandbox.faults import Faults, StreamKind

log = logging.getLogger(__name__)

# A frame and the kind of message it is, for the faults; ``ANY`` marks a frame the faults already
# acted on (a reordered frame released late), which they must not touch again.
Frame = tuple[bytes, StreamKind]
_STALLABLE = (StreamKind.MARKET, StreamKind.USER, StreamKind.API)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Server ping cadence and the deadline for the matching pong, in sandbox ms."""

    interval_ms: int
    timeout_ms: int
    lifetime_ms: int


class Socket:
    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        kinds: Iterable[StreamKind],
        faults: Faults,
        now_ms: Callable[[], int],
        heartbeat: Heartbeat,
        max_outbox: int,
    ) -> None:
        self.request = request
        self.ws = ws
        self._faults = faults
        self._now = now_ms
        self._heartbeat = heartbeat
        self._max_outbox = max_outbox
        self.opened_ms = now_ms()
        self._baseline: dict[StreamKind, int] = {}
        for kind in kinds:
            self.add_kind(kind)
        self._outbox: list[Frame] = []
        self._deferred: list[Frame] | None = None
        self._held: bytes | None = None  # a frame a reorder fault holds back for one frame
        self._held_ticks = 0
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._last_ping_ms = self.opened_ms
        self._ping_payload: bytes | None = None
        self._ping_sent_ms = 0
        self.closed = False  # no more frames accepted
        self._aborted = False  # and none sent either
        self.close_reason = ""
        self.frames_sent = 0

    @property
    def kinds(self) -> tuple[StreamKind, ...]:
        return tuple(self._baseline)

    def add_kind(self, kind: StreamKind) -> None:
        """From now on a ``drop_streams`` of ``kind`` closes this socket too."""
        if kind not in self._baseline:
            self._baseline[kind] = self._faults.drop_generation(kind)

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._run())

    # -- producing ----------------------------------------------------------------------------

    def push(self, frame: bytes, kind: StreamKind) -> None:
        if self.closed:
            return
        if self._deferred is not None and kind is StreamKind.USER:
            self._deferred.append((frame, kind))
            return
        if len(self._outbox) >= self._max_outbox:
            self.abort("slow consumer")
            return
        self._outbox.append((frame, kind))
        self._wake.set()

    def defer_events(self) -> None:
        """Hold user events back until ``release_events``: a WS-API answer goes out before the
        events its own request caused, as Binance's do."""
        self._deferred = []

    def release_events(self) -> None:
        deferred, self._deferred = self._deferred or [], None
        for frame, kind in deferred:
            self.push(frame, kind)

    # -- consuming ----------------------------------------------------------------------------

    def stalled(self, now_ms: int) -> bool:
        """Every kind this socket carries is stalled: it sends nothing, not even pings."""
        return all(self._faults.stalled(kind, now_ms) for kind in self._baseline)

    def _take_sendable(self) -> list[Frame]:
        """The queued frames a stall does not hold. A stall holds the frames of its kind only, so
        a WS-API socket whose user data is stalled still answers requests; held frames keep
        their order and go out when the stall ends."""
        outbox = self._outbox
        now = self._now()
        faults = self._faults
        if self.closed or not any(faults.stalled(k, now) for k in _STALLABLE):
            self._outbox = []
            return outbox
        held = {k for k in _STALLABLE if faults.stalled(k, now)}
        self._outbox = [f for f in outbox if f[1] in held]
        return [f for f in outbox if f[1] not in held]

    async def _run(self) -> None:
        """Send queued frames in order; on a graceful close, flush what is queued (a stall no
        longer holds it) and stop."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._aborted:
                    return
                batch = self._take_sendable() if self._outbox else []
                if batch:
                    for frame in self._faulted(batch):
                        await self.ws.send_frame(frame, WSMsgType.TEXT)
                        self.frames_sent += 1
                if self.closed:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send
            log.debug("binance socket writer stopped: %r", exc)
            self.abort(f"send failed: {exc!r}")

    def _faulted(self, batch: list[Frame]) -> list[bytes]:
        """The frames to send for ``batch``, each duplicate and reorder fault consumed by the
        message it hits (the faults count messages, not sockets)."""
        out: list[bytes] = []
        faults = self._faults
        for frame, kind in batch:
            if self._held is None and kind is not StreamKind.ANY and faults.take_reorder(kind):
                self._held, self._held_ticks = frame, 0  # goes out right after the next frame
                continue
            out.append(frame)
            if kind is not StreamKind.ANY and faults.take_duplicate(kind):
                out.append(frame)
            if self._held is not None:
                out.append(self._held)
                self._held = None
        return out

    # -- time -----------------------------------------------------------------------------------

    async def tick(self, now_ms: int) -> None:
        if self.closed:
            return
        for kind, baseline in self._baseline.items():
            if self._faults.drop_generation(kind) > baseline:
                self.abort(f"{kind.value} streams dropped by fault")
                return
        if now_ms - self.opened_ms >= self._heartbeat.lifetime_ms:
            self.close(WSCloseCode.OK, "connection lifetime reached")
            return
        if self.stalled(now_ms):
            return
        if self._held is not None:
            self._held_ticks += 1
            if self._held_ticks > 1:  # nothing followed it for a whole tick: send it anyway
                held, self._held = self._held, None
                self._outbox.append((held, StreamKind.ANY))
        if self._outbox:
            self._wake.set()  # a stall may just have ended
        hb = self._heartbeat
        if self._ping_payload is not None and now_ms - self._ping_sent_ms >= hb.timeout_ms:
            self.abort("no pong")
            return
        if now_ms - self._last_ping_ms >= hb.interval_ms:
            self._last_ping_ms = now_ms
            payload = str(now_ms).encode()
            if self._ping_payload is None:
                self._ping_payload, self._ping_sent_ms = payload, now_ms
            try:
                await self.ws.ping(payload)
            except Exception as exc:
                self.abort(f"ping failed: {exc!r}")

    def on_pong(self, payload: bytes) -> None:
        """Only a pong echoing an outstanding ping counts (BSD: unsolicited pongs do not keep
        the connection alive); any newer ping's echo also proves the peer is alive."""
        if self._ping_payload is not None and payload.isdigit() and int(payload) >= int(self._ping_payload):
            self._ping_payload = None

    # -- closing ------------------------------------------------------------------------------

    def close(self, code: int = WSCloseCode.OK, reason: str = "") -> None:
        """Send what is queued, then a close frame (in the background)."""
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        self._wake.set()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    def abort(self, reason: str) -> None:
        """Drop the connection without a close frame, as a network failure would."""
        if self._aborted:
            return
        self.closed, self._aborted, self.close_reason = True, True, reason
        self._outbox.clear()
        self._wake.set()
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        else:  # pragma: no cover - aiohttp keeps the transport while the handler runs
            loop = asyncio.get_running_loop()
            self._closer = loop.create_task(self._close(WSCloseCode.ABNORMAL_CLOSURE, reason))

    async def _close(self, code: int, reason: str) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        try:
            await self.ws.close(code=code, message=reason.encode()[:120])
        except Exception as exc:  # pragma: no cover - the peer is already gone
            log.debug("binance socket close failed: %r", exc)

    async def finish(self) -> None:
        """The handler is done with this socket: let a graceful close flush and finish, then stop
        the writer."""
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)
        self.closed = self._aborted = True
        self._wake.set()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)


def new_websocket() -> web.WebSocketResponse:
    """Binance answers pings itself and offers no compression; ``timeout`` bounds a close
    handshake with a silent peer."""
    return web.WebSocketResponse(autoping=False, compress=False, timeout=2.0, max_msg_size=1 << 20)
