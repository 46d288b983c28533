"""Binance's market streams: ``/ws/<stream>``, ``/stream?streams=a/b`` and live SUBSCRIBE frames.

Streams (BSD ``web-socket-streams.md``): ``<sym>@trade`` and ``<sym>@aggTrade`` as trades happen,
``<sym>@bookTicker`` on every change of the best bid or ask, ``<sym>@depth@100ms`` (every tick)
and ``<sym>@depth`` (every ``slow_depth_ms``, the diffs of the period merged) as ``depthUpdate``
whose ``U``/``u`` continue exactly (``U`` = previous ``u`` + 1), and partial books
``<sym>@depth5|10|20[@100ms]``. Each payload is encoded once per event and pushed to every
subscriber, wrapped ``{"stream":..,"data":..}`` for combined connections.

A depth-skip fault drops one diff from both diff cadences while the book's ids keep advancing, so
a client sees ``U > last u + 1`` and must resync. A path may also name a legacy listen key
(``/ws/<listenKey>``), which attaches that account's user data to the same socket.

A raw path whose name is neither a stream nor shaped like a listen key opens a connection with no
streams: ccxt pro connects to ``/ws/0``, ``/ws/1`` ... (its own connection numbers) and then
subscribes with SUBSCRIBE frames, which works against Binance, so Binance accepts such paths.

Connection attempts are limited per IP (``stream_connection_attempts`` per
``stream_connection_window_ms``, Binance's 300 per 5 minutes): a client that reconnects in a
storm is refused at the handshake, so a conformance test can catch the storm. Binance documents
the limit but not its refusal; the sandbox answers as it does for REST limits (HTTP 429, code
-1003, ``Retry-After`` in seconds until the window ends), counting in fixed windows as Binance
counts its intervals. A ``refuse_subscriptions`` fault answers SUBSCRIBE frames with an error for
their id instead of subscribing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import WSCloseCode, WSMsgType, web

from marketlink.net import jsoncodec
from marketlink.sandbox.exchange import BookTop, DepthDiff, Exchange, PublicEvent, TradeEvent, money
from marketlink.sandbox.exchange.events import Level
from marketlink.sandbox.faults import Faults, StreamKind
from marketlink.sandbox.venues.binance import messages, views
from marketlink.sandbox.venues.binance.config import BinanceSpotConfig
from marketlink.sandbox.venues.binance.errors import BinanceError
from marketlink.sandbox.venues.binance.sockets import Heartbeat, Socket, new_websocket
from marketlink.sandbox.venues.binance.userdata import ListenKey, Sink, UserStreams

log = logging.getLogger(__name__)

_NAME = re.compile(r"^([A-Za-z0-9]{1,20})@(trade|aggTrade|bookTicker|depth(?:5|10|20)?(?:@100ms|@1000ms)?)$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_LISTEN_KEY_SHAPE = re.compile(r"^[A-Za-z0-9]{60}$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_INT64 = 2**63


@dataclass(frozen=True, slots=True)
class StreamName:
    name: str  # canonical: lowercase symbol, the kind as Binance spells it
    symbol: str  # upper case, the engine's symbol
    kind: str


def parse_stream(raw: str) -> StreamName | None:
    m = _NAME.match(raw)
    if m is None:
        return None
    sym, kind = m.group(1), m.group(2)
    return StreamName(f"{sym.lower()}@{kind}", sym.upper(), kind)


@dataclass
class _Plan:
    """Which stream names of one symbol have subscribers, by how they are produced."""

    fast: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)
    partial: list[tuple[str, int, bool]] = field(default_factory=list)  # name, levels, every tick
    trade: list[str] = field(default_factory=list)
    agg: list[str] = field(default_factory=list)
    book: list[str] = field(default_factory=list)

    @property
    def depth(self) -> bool:
        return bool(self.fast or self.slow)


def _plan(names: list[str]) -> _Plan:
    plan = _Plan()
    for name in names:
        kind = name.split("@", 1)[1]
        if kind == "depth@100ms":
            plan.fast.append(name)
        elif kind in ("depth", "depth@1000ms"):
            plan.slow.append(name)
        elif kind.startswith("depth"):
            levels, _, speed = kind[5:].partition("@")
            plan.partial.append((name, int(levels), speed == "100ms"))
        elif kind == "trade":
            plan.trade.append(name)
        elif kind == "aggTrade":
            plan.agg.append(name)
        else:
            plan.book.append(name)
    return plan


class _SlowDiff:
    """The diffs of one ``@depth`` period merged: latest quantity per level, ids spanned."""

    __slots__ = ("asks", "bids", "first", "last")

    def __init__(self) -> None:
        self.first = 0
        self.last = 0
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def add(self, diff: DepthDiff) -> None:
        if not self.first:
            self.first = diff.first_update_id
        self.last = diff.last_update_id
        self.bids.update(diff.bids)
        self.asks.update(diff.asks)

    def reset(self) -> None:
        self.first = self.last = 0
        self.bids, self.asks = {}, {}


@dataclass(slots=True)
class _Agg:
    agg_id: int
    taker: int
    price: Decimal
    qty: Decimal
    first: int
    last: int
    time: int
    buyer_is_maker: bool


@dataclass(eq=False)
class StreamConn:
    socket: Socket
    combined: bool
    streams: dict[str, StreamName] = field(default_factory=dict)  # in subscription order
    sinks: list[Sink] = field(default_factory=list)
    window_start: int = 0
    incoming: int = 0


class MarketStreams:
    def __init__(
        self,
        exchange: Exchange,
        faults: Faults,
        now_ms: Callable[[], int],
        config: BinanceSpotConfig,
        formats: Callable[[str], views.Formats],
        user_streams: UserStreams,
    ) -> None:
        self._exchange = exchange
        self._faults = faults
        self._now = now_ms
        self._config = config
        self._formats = formats
        self._users = user_streams
        self._heartbeat = Heartbeat(
            config.stream_ping_interval_ms, config.stream_pong_timeout_ms, config.connection_lifetime_ms
        )
        self._symbols = list(exchange.symbols)
        self._subs: dict[str, dict[StreamConn, None]] = {}
        self._json_names: dict[str, bytes] = {}
        self._plans: dict[str, _Plan] = {}
        self._slow = {s: _SlowDiff() for s in self._symbols}
        self._next_slow = 0
        self._aggs: dict[str, _Agg] = {}
        self._agg_ids = dict.fromkeys(self._symbols, 0)
        self._agg_flush_scheduled = False
        self.conns: dict[StreamConn, None] = {}
        self.depth_skipped = 0
        self.control_errors = 0
        self._attempts: dict[str, int] = {}  # ip -> connection attempts in the current window
        self._attempts_window = -1  # start (ms) of the window ``_attempts`` counts
        self.refused_connections = 0
        for symbol in self._symbols:
            exchange.subscribe_symbol(symbol, self._on_public)

    def install(self, app: web.Application) -> None:
        app.router.add_get("/ws", self._handle_raw)
        app.router.add_get("/ws/{tail:.*}", self._handle_raw)
        app.router.add_get("/stream", self._handle_combined)

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(self, conn: StreamConn, names: list[StreamName]) -> None:
        for n in names:
            if n.name in conn.streams:
                continue
            conn.streams[n.name] = n
            self._subs.setdefault(n.name, {})[conn] = None
            self._json_names.setdefault(n.name, views.encode(n.name))
            self._plans.pop(n.symbol, None)

    def unsubscribe(self, conn: StreamConn, names: list[StreamName]) -> None:
        for n in names:
            if n.name in conn.streams:
                del conn.streams[n.name]
                subs = self._subs[n.name]
                subs.pop(conn, None)
                if not subs:
                    del self._subs[n.name]
                self._plans.pop(n.symbol, None)

    def _plan(self, symbol: str) -> _Plan:
        plan = self._plans.get(symbol)
        if plan is None:
            prefix = symbol.lower() + "@"
            plan = self._plans[symbol] = _plan([name for name in self._subs if name.startswith(prefix)])
        return plan

    def publish(self, name: str, payload: bytes) -> None:
        subs = self._subs.get(name)
        if not subs:
            return
        wrapped: bytes | None = None
        for conn in subs:
            if conn.combined:
                if wrapped is None:
                    wrapped = messages.wrap_combined(self._json_names[name], payload)
                conn.socket.push(wrapped, StreamKind.MARKET)
            else:
                conn.socket.push(payload, StreamKind.MARKET)

    # -- producing ----------------------------------------------------------------------------

    def publish_tick(self, now_ms: int) -> None:
        """Depth diffs and partial books for one tick (the server ticks every 100 ms)."""
        slow_due = now_ms >= self._next_slow
        if slow_due:
            self._next_slow = now_ms + self._config.slow_depth_ms
        for symbol in self._symbols:
            diff = self._exchange.drain_depth_changes(symbol)
            plan = self._plan(symbol)
            slow = self._slow[symbol]
            if diff is not None and plan.depth:
                if self._faults.take_depth_skip(symbol):
                    self.depth_skipped += 1
                    slow.reset()  # the merged @depth message shows the gap too
                else:
                    if plan.fast:
                        payload = self._depth_update(diff.first_update_id, diff.last_update_id,
                                                     diff.bids, diff.asks, symbol, now_ms)
                        for name in plan.fast:
                            self.publish(name, payload)
                    if plan.slow:
                        slow.add(diff)
            if slow_due and slow.first:
                if plan.slow:
                    payload = self._depth_update(
                        slow.first, slow.last, sorted(slow.bids.items(), reverse=True),
                        sorted(slow.asks.items()), symbol, now_ms,
                    )
                    for name in plan.slow:
                        self.publish(name, payload)
                slow.reset()
            if plan.partial:
                self._publish_partial(symbol, plan, slow_due)

    def _depth_update(
        self, first: int, last: int, bids: Iterable[Level], asks: Iterable[Level], symbol: str, now_ms: int
    ) -> bytes:
        f = self._formats(symbol)
        return views.encode(
            messages.DepthUpdate("depthUpdate", now_ms, symbol, first, last, f.levels(bids), f.levels(asks))
        )

    def _publish_partial(self, symbol: str, plan: _Plan, slow_due: bool) -> None:
        books: dict[int, bytes] = {}
        for name, levels, fast in plan.partial:
            if not (fast or slow_due):
                continue
            payload = books.get(levels)
            if payload is None:
                payload = books[levels] = views.encode(
                    views.depth(self._exchange.depth(symbol, levels), self._formats(symbol))
                )
            self.publish(name, payload)

    def _on_public(self, ev: PublicEvent) -> None:
        try:
            if isinstance(ev, TradeEvent):
                self._on_trade(ev)
            elif isinstance(ev, BookTop):
                plan = self._plan(ev.symbol)
                if plan.book:
                    payload = views.encode(messages.book_ticker_msg(ev, self._formats(ev.symbol)))
                    for name in plan.book:
                        self.publish(name, payload)
        except Exception:  # never break the engine's delivery loop
            log.exception("binance: cannot publish %r", ev)

    def _on_trade(self, t: TradeEvent) -> None:
        plan = self._plan(t.symbol)
        if plan.trade:
            payload = views.encode(messages.trade_msg(t, self._formats(t.symbol)))
            for name in plan.trade:
                self.publish(name, payload)
        if not plan.agg:
            return
        taker = t.seller_order_id if t.buyer_is_maker else t.buyer_order_id
        agg = self._aggs.get(t.symbol)
        if agg is not None and agg.taker == taker and agg.price == t.price and agg.time == t.time:
            agg.qty = money.add(agg.qty, t.qty)
            agg.last = t.trade_id
            return
        if agg is not None:
            self._publish_agg(t.symbol, agg)
        self._agg_ids[t.symbol] += 1
        self._aggs[t.symbol] = _Agg(self._agg_ids[t.symbol], taker, t.price, t.qty, t.trade_id, t.trade_id,
                                    t.time, t.buyer_is_maker)
        if not self._agg_flush_scheduled:
            try:
                asyncio.get_running_loop().call_soon(self.flush_aggs)
                self._agg_flush_scheduled = True
            except RuntimeError:  # pragma: no cover - no loop: publish at the next tick
                pass

    def flush_aggs(self) -> None:
        """Aggregate trades end with the engine operation that made them (the same taker order)."""
        self._agg_flush_scheduled = False
        aggs, self._aggs = self._aggs, {}
        for symbol, agg in aggs.items():
            self._publish_agg(symbol, agg)

    def _publish_agg(self, symbol: str, agg: _Agg) -> None:
        f = self._formats(symbol)
        payload = views.encode(messages.AggTradeMsg(
            "aggTrade", agg.time, symbol, agg.agg_id, f.price(agg.price), f.amount(agg.qty), agg.first,
            agg.last, agg.time, agg.buyer_is_maker, True,
        ))
        for name in self._plan(symbol).agg:
            self.publish(name, payload)

    # -- connections --------------------------------------------------------------------------

    async def _handle_raw(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        return await self._serve(request, [n for n in tail.split("/") if n], combined=False)

    async def _handle_combined(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("streams", "")
        return await self._serve(request, [n for n in raw.split("/") if n], combined=True)

    def _admit_connection(self, ip: str, now_ms: int) -> BinanceError | None:
        """Count one connection attempt from ``ip``; the refusal once it is past the limit."""
        limit = self._config.stream_connection_attempts
        if not limit:
            return None
        window = self._config.stream_connection_window_ms
        start = now_ms - now_ms % window
        if start != self._attempts_window:  # a new window: every IP starts again (and memory is freed)
            self._attempts_window = start
            self._attempts.clear()
        count = self._attempts[ip] = self._attempts.get(ip, 0) + 1
        if count <= limit:
            return None
        self.refused_connections += 1
        per = _per(window)
        return BinanceError(
            -1003, f"Too many connection attempts; current limit is {limit} connection attempts per {per}.",
            status=429, retry_after_s=max(1, math.ceil((start + window - now_ms) / 1000)),
        )

    async def _serve(self, request: web.Request, names: list[str], *, combined: bool) -> web.StreamResponse:
        now = self._now()
        refused = self._admit_connection(request.remote or "unknown", now)
        if refused is not None:
            return web.json_response(refused.body(), status=refused.status,
                                     headers={"Retry-After": str(refused.retry_after_s)})
        streams: list[StreamName] = []
        keys: list[ListenKey] = []
        for raw in names:
            parsed = parse_stream(raw)
            if parsed is not None:
                streams.append(parsed)
                continue
            lk = self._users.listen_keys.lookup(raw, now)
            if lk is None and not combined and "@" not in raw and not _LISTEN_KEY_SHAPE.match(raw):
                continue  # a client's own connection label (ccxt pro's /ws/<n>): no stream
            if lk is None:
                body = (
                    {"code": 2, "msg": "Invalid request: invalid stream"} if "@" in raw
                    else {"code": -1125, "msg": "This listenKey does not exist."}
                )
                return web.json_response(body, status=400)
            keys.append(lk)
        if len(streams) + len(keys) > self._config.max_streams_per_connection:
            return web.json_response({"code": 2, "msg": "Invalid request: too many streams"}, status=400)
        ws = new_websocket()
        await ws.prepare(request)
        kinds = ([StreamKind.MARKET] if streams or not keys else []) + ([StreamKind.USER] if keys else [])
        socket = Socket(request, ws, kinds=kinds, faults=self._faults, now_ms=self._now,
                        heartbeat=self._heartbeat, max_outbox=self._config.max_outbox)
        conn = StreamConn(socket, combined)
        self.conns[conn] = None
        socket.start()
        self.subscribe(conn, streams)
        for lk in keys:
            conn.sinks.append(self._users.attach_listen_key(socket, lk, combined=combined))
        try:
            async for msg in ws:
                if not self._count_incoming(conn):
                    break
                if msg.type is WSMsgType.TEXT:
                    self._control(conn, msg.data)
                elif msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    socket.on_pong(msg.data)
        finally:
            self.unsubscribe(conn, list(conn.streams.values()))
            for sink in conn.sinks:
                self._users.detach(sink)
            self.conns.pop(conn, None)
            await socket.finish()
        return ws

    def _count_incoming(self, conn: StreamConn) -> bool:
        """Binance's limit of incoming messages per second; over it, the connection closes."""
        limit = self._config.stream_max_incoming_per_s
        if not limit:
            return True
        now = self._now()
        second = now - now % 1000
        if second != conn.window_start:
            conn.window_start, conn.incoming = second, 0
        conn.incoming += 1
        if conn.incoming > limit:
            conn.socket.close(WSCloseCode.POLICY_VIOLATION, "too many incoming messages")
            return False
        return True

    def _control(self, conn: StreamConn, text: str) -> None:
        try:
            reply = self.control(conn, text)
        except Exception:  # a bug must not end the connection
            self.control_errors += 1
            log.exception("binance streams: cannot handle %r", text[:200])
            return
        conn.socket.push(views.encode(reply), StreamKind.MARKET)

    def control(self, conn: StreamConn, text: str) -> dict[str, object]:
        """One live-subscription request; returns Binance's answer (``result`` or an error)."""
        try:
            req = jsoncodec.decode(text)
        except jsoncodec.JsonDecodeError as exc:
            return {"code": 3, "msg": f"Invalid JSON: {exc}"}
        if not isinstance(req, dict):
            return {"code": 3, "msg": "Invalid JSON: expected an object"}
        rid = req.get("id")
        if not _valid_id(rid):
            return {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}
        method = req.get("method")
        if method is None:
            return {"code": 2, "msg": "Invalid request: missing field `method`", "id": rid}
        if method not in _METHODS:
            return {"code": 2, "msg": f"Invalid request: unknown variant `{method}`, expected one of "
                    + ", ".join(f"`{m}`" for m in _METHODS), "id": rid}
        params = req.get("params", [])
        if not isinstance(params, list):
            return {"code": 2, "msg": "Invalid request: params must be an array", "id": rid}
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            names = [n for n in (parse_stream(p) if isinstance(p, str) else None for p in params) if n]
            if len(names) != len(params):
                return {"code": 2, "msg": "Invalid request: invalid stream", "id": rid}
            if method == "SUBSCRIBE":
                refusal = self._faults.take_subscription_refusal()
                if refusal is not None:
                    return {"code": 2, "msg": refusal, "id": rid}
                total = len(conn.streams) + sum(1 for n in names if n.name not in conn.streams)
                if total > self._config.max_streams_per_connection:
                    return {"code": 2, "msg": "Invalid request: too many streams", "id": rid}
                conn.socket.add_kind(StreamKind.MARKET)
                self.subscribe(conn, names)
            else:
                self.unsubscribe(conn, names)
            return {"result": None, "id": rid}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(conn.streams), "id": rid}
        if not params or not isinstance(params[0], str):
            return {"code": 2, "msg": "Invalid request: property name must be a string", "id": rid}
        if params[0] != "combined":
            return {"code": 0, "msg": "Unknown property", "id": rid}
        if method == "GET_PROPERTY":
            return {"result": conn.combined, "id": rid}
        if len(params) != 2 or not isinstance(params[1], bool):
            return {"code": 1, "msg": "Invalid value type: expected Boolean", "id": rid}
        conn.combined = params[1]
        return {"result": None, "id": rid}

    # -- time and shutdown --------------------------------------------------------------------

    async def tick_sockets(self, now_ms: int) -> None:
        for conn in list(self.conns):
            await conn.socket.tick(now_ms)

    async def close(self) -> None:
        """Announce the shutdown as Binance does (``serverShutdown``), then close every socket."""
        notice = views.encode(messages.StreamTerminated("serverShutdown", self._now()))
        for conn in list(self.conns):
            frame = messages.wrap_combined(b'"!serverShutdown"', notice) if conn.combined else notice
            conn.socket.push(frame, StreamKind.MARKET)
            conn.socket.close(WSCloseCode.GOING_AWAY, "server shutdown")
        await asyncio.gather(*(c.socket.finish() for c in list(self.conns)), return_exceptions=True)


def _per(window_ms: int) -> str:
    """A window as Binance words its limits: "minute", "5 minutes", "10 seconds"."""
    unit, size = ("minute", 60_000) if window_ms % 60_000 == 0 else ("second", 1_000)
    n = window_ms / size
    return unit if n == 1 else f"{n:g} {unit}s"


def _valid_id(rid: object) -> bool:
    if rid is None:
        return True
    if isinstance(rid, bool):
        return False
    if isinstance(rid, int):
        return -_INT64 <= rid < _INT64
    return isinstance(rid, str) and bool(_REQUEST_ID.match(rid))
