"""MarketData against a loopback WebSocket venue, a scripted snapshot endpoint and a virtual clock.

The venue here is small and honest: an aiohttp WebSocket server on 127.0.0.1 that acknowledges
subscriptions and sends whatever frames a test pushes, a codec that maps a tiny JSON dialect to
core values, and an HTTP fake whose snapshot answers the test scripts (a payload, an error, or a
future it settles later). Waiting is event-based: a "marker" frame pushed after a burst tells
the test when the consumer has handled everything before it, and state changes are awaited on
the event bus. Time only moves when a test advances the virtual clock.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal as D
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from marketlink.core.book import OrderBook
from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError, UnknownSymbol
from marketlink.core.events import BookResynced, Event
from marketlink.core.fees import TradeFeeSchema
from marketlink.core.market import BookTicker, DepthSnapshot, DepthUpdate, MarketMessage, PublicTrade
from marketlink.core.pairs import SymbolMap
from marketlink.core.rules import TradingRule
from marketlink.core.tracker import OrderTracker
from marketlink.engine.balances import Balances
from marketlink.engine.book_sync import Phase
from marketlink.engine.bus import EventBus
from marketlink.engine.context import ConnectorConfig, ConnectorContext, Markets
from marketlink.engine.market_data import MarketData
from marketlink.engine.status import StatusBoard
from marketlink.engine.supervisor import Supervisor
from marketlink.net import jsoncodec
from marketlink.net.clock import VirtualClock
from marketlink.net.errors import MalformedMessage, Rejected, ServerError, VenueError
from marketlink.net.http import RestRequest
from marketlink.net.throttler import Throttler
from marketlink.net.timesync import TimeSync
from marketlink.net.ws import Stale
from marketlink.venues.base import ClientIdRules, Endpoints, HeartbeatSpec, Venue, VenueSpec

BTC, ETH = "BTC-USDT", "ETH-USDT"
WAIT = 5.0  # bound on every wait; a healthy test never comes near it


# -- the venue: codec, snapshot endpoint, stream server ----------------------------------------


class FakeCodec:
    """Frames: {"k": "depth"|"book"|"trade"|"ticker", "s": SYMBOL, ...}; {"marker": n} is a
    barrier the test awaits; {"result": null, "id": n} an acknowledgement; {"error": ..., "id": n}
    a refusal. It matches answers to requests by id (``parse_market_ack``); last prices come from
    "/prices" as {SYMBOL: "price"}."""

    def __init__(self) -> None:
        self.markers: dict[int, asyncio.Event] = {}

    def classify_error(self, status: int, headers: Mapping[str, str], payload: Any) -> VenueError | None:
        return None

    def usage_from_headers(self, headers: Mapping[str, str]) -> Mapping[str, int]:
        return {}

    def decode_market(self, raw: bytes | str) -> Any:
        return jsoncodec.decode(raw)

    def depth_snapshot_request(self, symbol: str, depth: int) -> RestRequest:
        return RestRequest("GET", "/depth", {"symbol": symbol, "limit": depth})

    def parse_depth_snapshot(self, payload: Any, pair: str) -> DepthSnapshot:
        if not isinstance(payload, dict) or "id" not in payload:
            raise MalformedMessage("depth: missing id")
        return DepthSnapshot(pair, payload["id"], payload["b"], payload["a"])

    def market_stream_url(self, endpoints: Endpoints) -> str:
        return endpoints.ws_market + "/ws"

    def market_subscribe(self, symbols: Sequence[str], request_id: int) -> Any:
        return {"method": "SUBSCRIBE", "params": list(symbols), "id": request_id}

    def parse_market_ack(self, m: Any, request_id: int) -> bool | VenueError | None:
        if not isinstance(m, dict) or m.get("id") != request_id:
            return None
        if "error" in m:
            return Rejected(m["error"], code=2)
        return True if "result" in m else None

    def last_prices_request(self) -> RestRequest:
        return RestRequest("GET", "/prices", {})

    def parse_last_prices(self, payload: Any, symbols: Mapping[str, str]) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise MalformedMessage("prices: expected an object")
        return {symbols[k]: D(v) if isinstance(v, str) else v for k, v in payload.items() if k in symbols}

    def market_message_key(self, m: Any) -> str | None:
        return f"{m['s'].lower()}@{m['k']}" if "s" in m and "k" in m else None

    def parse_market_message(self, m: Any, symbols: Mapping[str, str]) -> MarketMessage | None:
        if "marker" in m:
            self.markers.setdefault(m["marker"], asyncio.Event()).set()
            return None
        if "result" in m:
            return None
        if "error" in m:
            raise Rejected(m["error"], code=2)
        kind, pair = m.get("k"), symbols.get(m.get("s", ""), "XRP-USDT")
        try:
            if kind == "depth":
                return DepthUpdate(pair, m["U"], m["u"], m["b"], m["a"])
            if kind == "book":
                return DepthUpdate(pair, m["u"], m["u"], m["b"], m["a"], is_snapshot=True)
            if kind == "trade":
                return PublicTrade(pair, str(m["t"]), D(m["p"]), D(m["q"]), Side(m["side"]), m["T"])
            if kind == "ticker":
                return BookTicker(pair, D(m["b"]), D(m["B"]), D(m["a"]), D(m["A"]), m.get("u"))
        except KeyError as exc:
            raise MalformedMessage(f"{kind}: missing {exc}") from None
        raise MalformedMessage(f"unknown kind {kind!r}")


class OrderCodec(FakeCodec):
    """A codec that cannot tell which request an answer is for (as Binance's today): the engine
    takes the first acknowledgement or error frame after its request as the answer."""

    parse_market_ack = None  # type: ignore[assignment]


class SnapshotHttp:
    """``request`` answers /depth from a per-symbol script; with nothing scripted it holds the
    request on a future the test settles (``pending``). Tracks how many are in flight at once."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.script: dict[str, list[Any]] = {}
        self.pending: dict[str, list[asyncio.Future[Any]]] = {}
        self.requested: asyncio.Queue[str] = asyncio.Queue()
        self.requests: list[RestRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.prices: list[Any] = []  # answers to the last-prices request, in order
        self.prices_pending: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()

    async def _prices(self) -> Any:
        """The scripted answer, or one the test settles (``prices_pending``) when none is."""
        self.log.append("prices")
        if self.prices:
            answer = self.prices.pop(0)
        else:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.prices_pending.put_nowait(fut)
            answer = await fut
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def next_prices_request(self) -> asyncio.Future[Any]:
        return await asyncio.wait_for(self.prices_pending.get(), WAIT)

    def answer(self, symbol: str, *answers: Any) -> None:
        """Answer held requests of ``symbol`` first, in order; script the rest for later ones."""
        for answer in answers:
            if self.pending.get(symbol):
                self.settle(symbol, answer)
            else:
                self.script.setdefault(symbol, []).append(answer)

    async def next_request(self) -> str:
        return await asyncio.wait_for(self.requested.get(), WAIT)

    def settle(self, symbol: str, answer: Any) -> None:
        fut = self.pending[symbol].pop(0)
        if isinstance(answer, BaseException):
            fut.set_exception(answer)
        else:
            fut.set_result(answer)

    async def request(self, req: RestRequest, *, on_send: Callable[[], None] | None = None) -> Any:
        if on_send is not None:
            on_send()  # the fake has no rate limits to wait behind
        if req.path == "/prices":
            return await self._prices()
        assert req.params is not None
        symbol = str(req.params["symbol"])
        self.requests.append(req)
        self.log.append(f"snapshot {symbol}")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.requested.put_nowait(symbol)
            script = self.script.get(symbol)
            if script:
                answer = script.pop(0)
            else:
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self.pending.setdefault(symbol, []).append(fut)
                answer = await fut
            if isinstance(answer, BaseException):
                raise answer
            return answer
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        return None


class StreamServer:
    """The venue's market WebSocket: records subscriptions, acknowledges them, pushes frames.

    ``answers`` scripts the answers to the next SUBSCRIBE requests, in order: "refuse" (an error
    frame with the request's id), "refuse-anonymous" (one without an id), "silent" (no answer),
    or a list of frames sent before the acknowledgement; once it is empty, every request is
    acknowledged at once."""

    def __init__(self, log: list[str], codec: FakeCodec) -> None:
        self.log = log
        self.codec = codec
        self.sockets: list[web.WebSocketResponse] = []
        self.by_symbol: dict[str, web.WebSocketResponse] = {}
        self.frames: list[Any] = []
        self.subscribed: asyncio.Queue[list[str]] = asyncio.Queue()
        self.answers: list[str | list[dict[str, Any]]] = []
        self._markers = 0

    async def _answer(self, ws: web.WebSocketResponse, request_id: Any) -> None:
        how = self.answers.pop(0) if self.answers else []
        if how == "refuse":
            await ws.send_json({"error": "Invalid request: too many streams", "id": request_id})
        elif how == "refuse-anonymous":
            await ws.send_json({"error": "Invalid request: request ID must be an unsigned integer"})
        elif isinstance(how, list):
            for frame in how:
                await ws.send_json(frame)
            await ws.send_json({"result": None, "id": request_id})

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.frames.append(frame)
            if frame.get("method") == "SUBSCRIBE":
                for symbol in frame["params"]:
                    self.by_symbol[symbol] = ws
                self.log.append(f"subscribe {','.join(frame['params'])}")
                await self._answer(ws, frame["id"])
                self.subscribed.put_nowait(frame["params"])
        return ws

    async def next_subscription(self) -> list[str]:
        return await asyncio.wait_for(self.subscribed.get(), WAIT)

    async def push(self, symbol: str, *frames: dict[str, Any]) -> None:
        ws = self.by_symbol[symbol]
        for frame in frames:
            await ws.send_json({"s": symbol, **frame})

    async def barrier(self, symbol: str) -> None:
        """Return once the consumer has handled every frame pushed to ``symbol``'s socket so far."""
        self._markers += 1
        event = self.codec.markers.setdefault(self._markers, asyncio.Event())
        await self.by_symbol[symbol].send_json({"marker": self._markers})
        await asyncio.wait_for(event.wait(), WAIT)

    async def drop(self, symbol: str) -> None:
        await self.by_symbol.pop(symbol).close()


def depth(first: int, final: int, bids: Any = (), asks: Any = ()) -> dict[str, Any]:
    return {"k": "depth", "U": first, "u": final, "b": [list(b) for b in bids], "a": [list(a) for a in asks]}


def snap(update_id: int, bids: Any = (("100.00", "1"),), asks: Any = (("101.00", "1"),)) -> dict[str, Any]:
    return {"id": update_id, "b": [list(b) for b in bids], "a": [list(a) for a in asks]}


# -- the harness ------------------------------------------------------------------------------------


@dataclass
class Harness:
    md: MarketData
    ctx: ConnectorContext
    http: SnapshotHttp
    server: StreamServer
    clock: VirtualClock
    log: list[str]
    events: list[Event] = field(default_factory=list)
    _changes: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    def resynced(self, pair: str | None = None) -> list[BookResynced]:
        return [e for e in self.events if isinstance(e, BookResynced) and pair in (None, e.trading_pair)]

    def status(self) -> tuple[bool, str]:
        part = self.ctx.status.snapshot()["order_books"]
        return part.ready, part.detail

    async def until(self, pred: Callable[[], bool]) -> None:
        """Wait (event-driven, bounded) until ``pred()`` holds; re-checked after every event."""
        async with asyncio.timeout(WAIT):
            while not pred():
                await self._changes.get()

    async def detail_contains(self, text: str) -> None:
        await self.until(lambda: text in self.status()[1])


def make_spec(**kw: Any) -> VenueSpec:
    base: dict[str, Any] = dict(
        name="fake",
        domains={},
        rate_limits=(),
        client_ids=ClientIdRules(max_length=36, alphabet="abc"),
        fees=TradeFeeSchema(maker_percent=D("0.001"), taker_percent=D("0.001")),
        sequence_rule="binance_spot",
        snapshot_depth=1000,
        market_heartbeat=HeartbeatSpec("server", 1_000.0),
        user_heartbeat=HeartbeatSpec("server", 1_000.0),
    )
    base.update(kw)
    return VenueSpec(**base)


def market_context(
    codec: Any,
    port: int,
    clock: VirtualClock,
    http: Any,
    pairs: Sequence[str],
    config: ConnectorConfig,
    spec: VenueSpec | None = None,
) -> ConnectorContext:
    """A connector context for market data alone: the fake venue on 127.0.0.1:``port``, a
    virtual clock, ``http`` answering snapshots, no keys, a 0.01 tick and 0.001 step per pair."""
    bus: EventBus[Event] = EventBus(name="test")
    return ConnectorContext(
        venue=Venue(spec=spec or make_spec(), codec=codec, make_auth=None),  # type: ignore[arg-type]
        endpoints=Endpoints(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", ""),
        config=config,
        clock=clock,
        bus=bus,
        status=StatusBoard("fake", ("order_books",), bus.publish, clock.time),
        supervisor=Supervisor(clock),
        throttler=Throttler((), clock=clock),
        time_sync=TimeSync(),
        http=http,
        auth=None,
        markets=Markets(
            SymbolMap("fake", [(p.replace("-", ""), p) for p in pairs]),
            {p: TradingRule(p, D("0.01"), D("0.001")) for p in pairs},
        ),
        trading_pairs=tuple(pairs),
        tracker=OrderTracker(),
        balances=Balances(bus.publish),
        now=clock.time,
    )


class MarketDataLab:
    """Starts fake venues and market data on them; stops all of them after the test. The parts
    are classes so that other test files bring their own server, HTTP fake or harness."""

    def __init__(self) -> None:
        self.runners: list[web.AppRunner] = []
        self.harnesses: list[Harness] = []

    async def start(
        self,
        pairs: Sequence[str] = (BTC,),
        *,
        spec: VenueSpec | None = None,
        config: ConnectorConfig | None = None,
        codec: FakeCodec | None = None,
        answers: Sequence[str | list[dict[str, Any]]] = (),
        server_cls: type[StreamServer] | None = None,
        make_http: Callable[[list[str], VirtualClock], SnapshotHttp] | None = None,
        harness_cls: type[Harness] | None = None,
        **md_kw: Any,
    ) -> Harness:
        log: list[str] = []
        codec = codec or FakeCodec()
        server = (server_cls or StreamServer)(log, codec)
        server.answers = list(answers)
        app = web.Application()
        app.router.add_get("/ws", server.handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        port = runner.addresses[0][1]
        clock = VirtualClock(1_000.0)
        http = make_http(log, clock) if make_http is not None else SnapshotHttp(log)
        ctx = market_context(
            codec, port, clock, http, pairs, config or ConnectorConfig(book_stale_after=1_000.0), spec
        )
        md = MarketData(ctx, **md_kw)
        h = (harness_cls or Harness)(md, ctx, http, server, clock, log)
        ctx.bus.subscribe_callback(h.events.append)
        ctx.bus.subscribe_callback(h._changes.put_nowait)
        self.harnesses.append(h)
        await md.start()
        return h

    async def close(self) -> None:
        for h in self.harnesses:
            await h.md.stop()
            await h.ctx.supervisor.stop()
        for runner in self.runners:
            await runner.cleanup()


@pytest.fixture
async def venue() -> AsyncIterator[Callable[..., Any]]:
    """``await venue(pairs, spec=..., config=..., **md_kw)`` -> a started Harness."""
    lab = MarketDataLab()
    yield lab.start
    await lab.close()


async def synced(h: Harness, pair: str = BTC, snapshot: dict[str, Any] | None = None) -> None:
    """Answer the pair's first snapshot request and wait until its book is in sync."""
    symbol = pair.replace("-", "")
    h.http.answer(symbol, snapshot or snap(100))
    await h.until(lambda: h.md.sync(pair).in_sync)


# -- start and first sync --------------------------------------------------------------------------


async def test_subscribes_first_then_fetches_snapshots_and_reports_ready(venue: Any) -> None:
    h = await venue((BTC, ETH), spec=make_spec(max_streams_per_connection=3))  # one pair per connection
    waiting = "waiting for the first snapshot"
    assert h.status() == (False, f"BTC-USDT: {waiting}; ETH-USDT: {waiting}")
    assert isinstance(h.md.book(BTC), OrderBook) and h.ctx.books[BTC] is h.md.book(BTC)
    assert sorted([await h.server.next_subscription(), await h.server.next_subscription()]) == [
        ["BTCUSDT"], ["ETHUSDT"]
    ]
    h.http.answer("BTCUSDT", snap(100))
    h.http.answer("ETHUSDT", snap(7, [("10.00", "2")], [("11.00", "3")]))
    await h.until(lambda: h.status()[0])
    assert h.status() == (True, "2 books in sync")
    for symbol in ("BTCUSDT", "ETHUSDT"):  # each snapshot was asked for after its subscription
        assert h.log.index(f"subscribe {symbol}") < h.log.index(f"snapshot {symbol}")
    assert {r.params["limit"] for r in h.http.requests} == {1000}  # type: ignore[index]
    assert h.md.book(ETH).to_dict() == {"bids": {D("10"): D("2")}, "asks": {D("11"): D("3")}}
    assert h.md.in_sync and h.resynced() == []  # the first sync is no recovery
    assert len(h.server.sockets) == 2 and h.md.stats.snapshots == 2


async def test_diffs_buffered_before_the_snapshot_are_replayed(venue: Any) -> None:
    h = await venue()
    await h.server.next_subscription()
    assert await h.http.next_request() == "BTCUSDT"  # held
    await h.server.push("BTCUSDT", depth(99, 101, [("100.00", "2")]), depth(102, 103, [("99.00", "5")]))
    await h.server.barrier("BTCUSDT")
    assert h.md.stats.buffered == 2 and not h.md.book(BTC).in_sync
    h.http.settle("BTCUSDT", snap(100))
    await h.until(lambda: h.md.in_sync)
    book = h.md.book(BTC)
    assert book.update_id == 103
    assert book.to_dict()["bids"] == {D("100"): D("2"), D("99"): D("5")}


async def test_live_diffs_trades_and_tickers(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.server.push(
        "BTCUSDT",
        depth(101, 101, [("100.50", "1")]),
        depth(101, 101, [("100.50", "9")]),  # a duplicate: dropped
        {"k": "trade", "t": 7, "p": "100.75", "q": "0.5", "side": "SELL", "T": 2.0},
        {"k": "trade", "t": 6, "p": "99.00", "q": "0.5", "side": "BUY", "T": 1.0},  # older: kept out
        {"k": "ticker", "u": 9, "b": "100.50", "B": "1", "a": "101.00", "A": "1"},
        {"k": "ticker", "u": 8, "b": "1.00", "B": "1", "a": "2.00", "A": "1"},  # older: no rollback
    )
    await h.server.barrier("BTCUSDT")
    book = h.md.book(BTC)
    assert (book.best_bid(), book.best_ask(), book.update_id) == (D("100.5"), D("101"), 101)
    assert book.to_dict()["bids"][D("100.5")] == D("1")
    assert book.last_trade is not None and book.last_trade.trade_id == "7"
    assert book.last_trade.side is Side.SELL
    assert h.ctx.last_prices[BTC] == D("100.75")
    assert h.ctx.tickers[BTC].bid == D("100.5") and h.ctx.tickers[BTC].update_id == 9
    s = h.md.stats
    assert (s.diffs_applied, s.stale_drops, s.trades, s.tickers) == (1, 1, 2, 2)
    assert s.unchecked_diffs == 2  # this test venue's codec vouches for nothing: the book checks


# -- losing sync and getting it back ---------------------------------------------------------------


async def test_gap_resyncs_at_once_and_announces_one_recovery(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.http.next_request()
    await h.server.push("BTCUSDT", depth(101, 103, [("99.00", "1")]), depth(105, 106, [("98.00", "1")]))
    await h.detail_contains("BTC-USDT: gap: diff U=105 does not continue last u=103")
    assert not h.md.book(BTC).in_sync and h.status()[1].endswith("(expected U=104)")
    assert await h.http.next_request() == "BTCUSDT"  # at once: no clock moved
    assert h.clock.time() == 1_000.0
    await h.server.push("BTCUSDT", depth(107, 107, [("97.00", "1")]))
    await h.server.barrier("BTCUSDT")
    h.http.settle("BTCUSDT", snap(105, [("100.00", "1"), ("99.00", "1")]))
    await h.until(lambda: h.md.in_sync)
    assert h.md.book(BTC).update_id == 107
    assert set(h.md.book(BTC).to_dict()["bids"]) == {D("100"), D("99"), D("98"), D("97")}
    [event] = h.resynced()
    assert event.trading_pair == BTC and event.update_id == 107 and event.reason.startswith("gap: diff U=105")
    assert h.md.stats.resyncs == {BTC: 1} and h.status() == (True, "1 books in sync")


async def test_crossed_book_resyncs(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.server.push("BTCUSDT", depth(101, 101, [("102.00", "1")]))
    await h.detail_contains("crossed after diff u=101")
    h.http.answer("BTCUSDT", snap(101))
    await h.until(lambda: h.md.in_sync)
    assert len(h.resynced()) == 1


async def test_snapshot_older_than_the_buffer_is_refetched_after_a_backoff(venue: Any) -> None:
    h = await venue(retry_base=0.5, retry_max=0.5)
    await h.server.next_subscription()
    await h.http.next_request()
    await h.server.push("BTCUSDT", depth(111, 112, [("99.00", "1")]))
    await h.server.barrier("BTCUSDT")
    h.http.settle("BTCUSDT", snap(100))  # older than U=111
    await h.detail_contains("snapshot 100 does not reach the buffered diffs (first U=111, u=112)")
    assert "(attempt 1; next in" in h.status()[1] and h.md.stats.snapshot_failures == 1
    h.http.answer("BTCUSDT", snap(110))
    h.clock.advance(0.5)
    await h.until(lambda: h.md.in_sync)
    assert h.md.book(BTC).update_id == 112 and h.md.stats.snapshots == 2
    assert h.resynced() == []


async def test_snapshot_attempts_are_bounded_then_status_says_why_and_retries_later(venue: Any) -> None:
    h = await venue(config=ConnectorConfig(book_stale_after=30.0), snapshot_attempts=2, retry_max=1.0)
    h.http.answer("BTCUSDT", ServerError("busy", status=503), ServerError("busy", status=503))
    await h.detail_contains("attempt 1; next in")
    h.clock.advance(1.0)
    await h.detail_contains("gave up after 2 attempts; next round in 30s")
    assert "snapshot request failed" in h.status()[1] and h.md.stats.snapshots == 2
    h.http.answer("BTCUSDT", snap(100))
    h.clock.advance(30.0)
    await h.until(lambda: h.md.in_sync)
    assert h.md.stats.snapshots == 3


async def test_malformed_snapshot_is_counted_and_retried(venue: Any) -> None:
    h = await venue(retry_max=0.5)
    h.http.answer("BTCUSDT", {"nonsense": True}, snap(100))
    await h.detail_contains("malformed snapshot")
    h.clock.advance(0.5)
    await h.until(lambda: h.md.in_sync)
    assert h.md.stats.malformed == 1


async def test_snapshots_are_fetched_concurrently_within_the_bound(venue: Any) -> None:
    pairs = ("A-USDT", "B-USDT", "C-USDT", "D-USDT", "E-USDT")
    h = await venue(pairs, config=ConnectorConfig(snapshot_concurrency=2, book_stale_after=1_000.0))
    first = {await h.http.next_request(), await h.http.next_request()}
    assert h.http.in_flight == 2 and h.http.requested.empty()
    for symbol in first:
        h.http.settle(symbol, snap(1))
    for _ in range(3):
        symbol = await h.http.next_request()
        h.http.settle(symbol, snap(1))
    await h.until(lambda: h.md.in_sync)
    assert h.http.max_in_flight == 2 and h.clock.time() == 1_000.0  # no sleeping between them
    assert len(h.server.sockets) == 1 and h.server.frames[0]["params"] == [p.replace("-", "") for p in pairs]


async def test_reconnect_puts_books_out_of_sync_and_resyncs_from_the_new_stream(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.server.next_subscription()
    await h.server.drop("BTCUSDT")
    await h.detail_contains("BTC-USDT: stream disconnected")
    assert not h.md.book(BTC).in_sync
    h.clock.advance(1.0)  # the reconnect back-off
    assert await h.server.next_subscription() == ["BTCUSDT"]  # re-subscribed on the new socket
    assert await h.http.next_request() == "BTCUSDT"
    await h.server.push("BTCUSDT", depth(151, 152, [("99.00", "4")]))
    await h.server.barrier("BTCUSDT")
    h.http.settle("BTCUSDT", snap(150))
    await h.until(lambda: h.md.in_sync)
    assert h.md.book(BTC).update_id == 152
    [event] = h.resynced()
    assert event.reason.startswith("stream disconnected")
    assert h.md.stats.connects == 2 and h.md.stats.resyncs == {BTC: 1}


def trade(t: int, price: str, at: float) -> dict[str, Any]:
    return {"k": "trade", "t": t, "p": price, "q": "0.5", "side": "BUY", "T": at}


def ticker(u: int, bid: str, ask: str) -> dict[str, Any]:
    return {"k": "ticker", "u": u, "b": bid, "B": "1", "a": ask, "A": "1"}


async def refreshed(h: Harness) -> None:
    """Return once the last-price job of the (first) market stream has finished."""
    task = h.ctx.supervisor.records["market_data.last_prices-0"].task
    assert task is not None
    await asyncio.wait_for(asyncio.shield(task), WAIT)


async def reconnected(h: Harness) -> None:
    """Drop the market connection and wait until the new one is subscribed (and acknowledged)."""
    await h.server.drop("BTCUSDT")
    await h.detail_contains("BTC-USDT: stream disconnected")
    h.clock.advance(30.0)  # the reconnect back-off, which grows while connections carry no data
    assert await h.server.next_subscription() == ["BTCUSDT"]


async def test_a_drop_voids_tickers_and_last_prices_and_the_reconnect_refreshes_the_price(venue: Any) -> None:
    """Audit E, finding 2: after an outage, ticker() and last_trade_price() never serve
    pre-outage values. The ticker stays unknown until the venue sends one; the last price comes
    back from one REST request for the reconnected stream's pairs."""
    h = await venue((BTC, ETH))
    await synced(h, BTC)
    await synced(h, ETH)
    await h.server.push("BTCUSDT", trade(7, "100.75", 2.0), ticker(9, "100.50", "101.00"))
    await h.server.push("ETHUSDT", trade(3, "10.25", 2.0))
    await h.server.barrier("BTCUSDT")
    assert h.ctx.last_prices == {BTC: D("100.75"), ETH: D("10.25")} and set(h.ctx.tickers) == {BTC}
    await h.server.drop("BTCUSDT")
    await h.detail_contains("BTC-USDT: stream disconnected")
    assert h.ctx.tickers == {} and h.ctx.last_prices == {}  # unknown, not stale
    assert h.md.book(BTC).last_trade is not None  # the last trade streamed stays, with its id
    h.clock.advance(1.0)
    await h.server.next_subscription()
    answer = await h.http.next_prices_request()  # once live again: one request for all pairs
    answer.set_result({"BTCUSDT": "103.10", "ETHUSDT": "0", "XRPUSDT": "1.0"})  # ETH: never traded
    await refreshed(h)
    assert h.ctx.last_prices == {BTC: D("103.10")} and h.ctx.tickers == {}
    await h.server.push("BTCUSDT", ticker(12, "103.00", "103.20"), trade(8, "103.20", 3.0))
    await h.server.barrier("BTCUSDT")
    assert h.ctx.tickers[BTC].update_id == 12 and h.ctx.last_prices[BTC] == D("103.20")
    assert h.log.count("prices") == 1 and h.md.stats.price_refreshes == 1


async def test_a_trade_streamed_before_the_price_answer_wins(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.server.push("BTCUSDT", trade(7, "100.75", 2.0))
    await h.server.barrier("BTCUSDT")
    await reconnected(h)
    answer = await h.http.next_prices_request()
    await h.server.push("BTCUSDT", trade(8, "101.50", 3.0))  # newer than any REST answer
    await h.server.barrier("BTCUSDT")
    answer.set_result({"BTCUSDT": "101.00"})
    await refreshed(h)
    assert h.ctx.last_prices == {BTC: D("101.50")}


async def test_a_failed_or_bad_price_refresh_leaves_the_price_unknown(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.server.push("BTCUSDT", trade(7, "100.75", 2.0))
    await h.server.barrier("BTCUSDT")
    h.http.prices = [ServerError("busy"), ["not", "an", "object"], {"BTCUSDT": D("-1")}]
    for n in range(1, 4):
        await reconnected(h)
        await synced(h)  # the ack was handled: the refresh job runs (or ran)
        await refreshed(h)
        assert BTC not in h.ctx.last_prices and h.md.stats.price_refreshes == n
    s = h.md.stats
    assert (s.price_refresh_failures, s.malformed) == (2, 2)


async def test_a_price_answer_after_the_next_drop_is_discarded(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await reconnected(h)
    stale_answer = await h.http.next_prices_request()
    await reconnected(h)  # dropped again while the first refresh waits
    stale_answer.set_result({"BTCUSDT": "99.00"})
    fresh = await h.http.next_prices_request()  # the same job serves the newest connection
    assert BTC not in h.ctx.last_prices
    fresh.set_result({"BTCUSDT": "98.00"})
    await refreshed(h)
    assert h.ctx.last_prices == {BTC: D("98.00")} and h.md.stats.price_refreshes == 2


async def test_stale_depth_stream_resyncs_the_pair(venue: Any) -> None:
    h = await venue(config=ConnectorConfig(book_stale_after=5.0))
    await synced(h)
    await h.http.next_request()
    h.clock.advance(5.0)
    await h.detail_contains("BTC-USDT: stale: no depth update for 5.0s; resyncing")
    h.http.answer("BTCUSDT", snap(100))
    await h.until(lambda: h.md.in_sync)
    [event] = h.resynced()
    assert event.reason.startswith("stale")
    # Each depth message restarts the watch: 3 s, a message, 3 s more: still in sync.
    h.clock.advance(3.0)
    await h.server.push("BTCUSDT", depth(101, 101))
    await h.server.barrier("BTCUSDT")
    h.clock.advance(3.0)  # no barrier here: its frame would keep the connection alive (not stale)
    assert h.md.in_sync and len(h.resynced()) == 1
    h.clock.advance(2.0)  # 5 s since that message, and since any frame on the connection
    await h.detail_contains("stale: no depth update for 5.0s")


async def test_bad_messages_are_dropped_counted_and_resync_their_book(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.server.push(
        "BTCUSDT",
        depth(101, 101, [("99.00", "1")]),  # teaches which stream carries BTC-USDT's depth
        {"k": "trade", "t": 1, "p": "0", "q": "1", "side": "BUY", "T": 1.0},  # zero price: dropped
        {"k": "depth", "u": 102},  # no U: malformed
    )
    await h.detail_contains("malformed depth message")
    s = h.md.stats
    assert s.malformed == 2 and s.trades == 0 and h.ctx.last_prices == {}
    h.http.answer("BTCUSDT", snap(102))
    await h.until(lambda: h.md.in_sync)
    await h.server.push("BTCUSDT", depth(103, 103, [("1.001", "1")]))  # finer than the tick
    await h.detail_contains("bad diff u=103")
    assert h.md.stats.malformed == 3 and len(h.resynced()) == 1
    h.http.answer("BTCUSDT", snap(103))
    await h.until(lambda: h.md.in_sync)
    assert len(h.resynced()) == 2


async def test_foreign_pairs_and_stray_answers_are_ignored_once_live(venue: Any) -> None:
    """After our subscription was acknowledged, answers to no request of ours (another id) and
    frames for pairs not followed here change nothing: they are counted and dropped."""
    h = await venue()
    await synced(h)
    await h.server.push("BTCUSDT", {"k": "nonsense"})  # unknown kind, key btcusdt@nonsense: no pair
    ws = h.server.by_symbol["BTCUSDT"]
    for frame in (
        {"s": "XRPUSDT", **depth(1, 1)},
        {"s": "XRPUSDT", "k": "trade", "t": 1, "p": "1", "q": "1", "side": "BUY", "T": 1.0},
        {"s": "XRPUSDT", "k": "ticker", "b": "1", "B": "1", "a": "2", "A": "1"},
        {"result": None, "id": 77},
        {"error": "Invalid request: unknown property", "id": 78},
    ):
        await ws.send_json(frame)
    await h.server.barrier("BTCUSDT")
    s = h.md.stats
    assert (s.malformed, s.rejected, s.refusals) == (1, 1, 0) and s.ignored >= 4  # acks, XRP frames
    assert h.md.in_sync and h.ctx.tickers == {} and h.resynced() == []


def resubscribe_delay(detail: str) -> float:
    """The back-off the status announces ("...; resubscribing in 1.93s (refusal 2 in a row)"),
    rounded to 10 ms: advance the clock 10 ms more to reach it."""
    return float(detail.split("resubscribing in ")[1].split("s ", 1)[0])


async def test_a_refused_subscription_keeps_books_out_of_sync_and_is_retried_with_backoff(
    venue: Any,
) -> None:
    """Audit E, finding 1: an error frame answering our SUBSCRIBE is a refusal. No snapshot is
    fetched (nothing would ever update the book), the status names the venue's error, and the
    request is sent again, with a fresh id, after 1 s, 2 s, 4 s... (less up to 25% jitter), capped."""
    h = await venue(answers=["refuse", "refuse", "refuse", "refuse"], resubscribe_max=3.0,
                    rng=random.Random(3))
    ids = []
    for n, (low, high) in enumerate([(0.75, 1.0), (1.5, 2.0), (2.25, 3.0), (2.25, 3.0)], start=1):
        await h.server.next_subscription()
        ids.append(h.server.frames[-1]["id"])
        await h.detail_contains(f"(refusal {n} in a row)")
        ready, detail = h.status()
        assert not ready and detail.startswith(
            "BTC-USDT: subscription refused: Rejected [2]: Invalid request: too many streams; "
            "resubscribing in "
        )
        delay = resubscribe_delay(detail)
        assert low - 0.005 <= delay <= high
        assert h.md.sync(BTC).phase is Phase.WAITING and not h.md.in_sync
        assert h.http.requests == [] and h.md.stats.refusals == n  # no snapshot for a refused stream
        assert len(h.server.frames) == n  # one request per refusal: no loop
        await h.clock.wait_for_sleepers(3)  # the watchdog, the heartbeat and the resubscription
        assert h.clock.next_deadline == pytest.approx(h.clock.time() + delay, abs=0.005)
        h.clock.advance(delay + 0.01)
    assert await h.server.next_subscription() == ["BTCUSDT"]  # the fifth: acknowledged
    ids.append(h.server.frames[-1]["id"])
    assert len(set(ids)) == 5 and ids == sorted(ids)
    await synced(h)
    assert h.status() == (True, "1 books in sync")
    s = h.md.stats
    assert (s.refusals, s.rejected, s.resubscribes) == (4, 4, 4) and len(h.server.sockets) == 1
    assert h.md._streams[0].refusals == 0  # an acknowledgement resets the back-off


async def test_an_answer_to_another_request_does_not_make_the_stream_live(venue: Any) -> None:
    """Only the acknowledgement of OUR request id counts: an ack or an error for another id
    (and data) coming first leaves the book waiting, with no snapshot asked for."""
    stray = [{"result": None, "id": 999}, {"error": "Invalid request: unknown property", "id": 998},
             {"s": "BTCUSDT", **depth(99, 101, [("100.00", "2")])}]
    h = await venue(answers=[stray])
    assert await h.http.next_request() == "BTCUSDT"  # asked for only after our own ack
    assert h.log.index("subscribe BTCUSDT") < h.log.index("snapshot BTCUSDT")
    assert h.md.stats.buffered == 1 and h.md.stats.refusals == 0  # the diff was kept for the bridge
    h.http.settle("BTCUSDT", snap(100))
    await h.until(lambda: h.md.in_sync)
    assert h.md.book(BTC).update_id == 101


async def test_a_subscription_left_unanswered_is_sent_again(venue: Any) -> None:
    h = await venue(config=ConnectorConfig(book_stale_after=5.0), answers=["silent"], rng=random.Random(1))
    await h.server.next_subscription()
    first = h.server.frames[-1]["id"]
    h.clock.advance(5.0)
    await h.detail_contains(f"no answer to subscription request {first} for 5.0s; resubscribing in")
    assert h.http.requests == [] and h.md.stats.refusals == 1 and h.md.stats.rejected == 0
    h.clock.advance(resubscribe_delay(h.status()[1]) + 0.01)
    await h.server.next_subscription()
    assert h.server.frames[-1]["id"] > first
    await synced(h)


async def test_without_ids_the_first_answer_after_our_request_decides(venue: Any) -> None:
    """A codec that cannot read an answer's id (Binance's): the first error frame after our
    request is its refusal (even one without an id), the first acknowledgement its success."""
    h = await venue(codec=OrderCodec(), answers=["refuse-anonymous"], rng=random.Random(2))
    await h.server.next_subscription()
    await h.detail_contains("subscription refused: Rejected [2]: Invalid request: request ID must be")
    assert h.http.requests == [] and not h.md.in_sync
    h.clock.advance(resubscribe_delay(h.status()[1]) + 0.01)
    await h.server.next_subscription()
    await synced(h)
    ws = h.server.by_symbol["BTCUSDT"]
    await ws.send_json({"error": "Invalid request: unknown property", "id": 5})  # live: not a refusal
    await h.server.barrier("BTCUSDT")
    assert h.md.in_sync and (h.md.stats.rejected, h.md.stats.refusals) == (2, 1)


async def test_resubscribe_settings_are_checked(venue: Any) -> None:
    h = await venue()
    with pytest.raises(ConfigError):
        MarketData(h.ctx, resubscribe_base=2.0, resubscribe_max=1.0)
    with pytest.raises(ConfigError):
        MarketData(h.ctx, resubscribe_base=0.0)


async def test_pushed_snapshot_replaces_the_book_directly(venue: Any) -> None:
    h = await venue(spec=make_spec(sequence_rule="bybit"))
    await h.http.next_request()  # the REST snapshot is asked for too, and held
    await h.server.push("BTCUSDT", {"k": "book", "u": 5, "b": [["10.00", "1"]], "a": [["11.00", "1"]]})
    await h.until(lambda: h.md.in_sync)
    h.http.settle("BTCUSDT", snap(1))  # answers after the push: outdated, ignored
    await h.server.push("BTCUSDT", depth(6, 6, [("10.50", "2")]))
    await h.server.barrier("BTCUSDT")
    book = h.md.book(BTC)
    assert book.update_id == 6 and book.best_bid() == D("10.5") and book.best_ask() == D("11")
    assert h.md.stats.snapshots == 1


async def test_unexpected_close_and_stale_events(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.server.push("BTCUSDT", depth(101, 101))
    await h.server.barrier("BTCUSDT")
    stream = h.md._streams[0]
    h.md._on_event(stream, Stale("btcusdt@depth", 31.0))
    assert "stale: stream btcusdt@depth silent for 31.0s" in h.status()[1]
    h.md._on_event(stream, Stale("unknown@depth", 31.0))  # not ours: nothing to do
    await stream.ws.stop()  # the stream ends while market data still runs
    await h.detail_contains("market stream closed")
    assert h.md.sync(BTC).phase is Phase.WAITING


async def test_lifecycle(venue: Any) -> None:
    h = await venue()
    with pytest.raises(UnknownSymbol):
        h.md.book("DOGE-USDT")
    with pytest.raises(UnknownSymbol):
        h.md.sync("DOGE-USDT")
    with pytest.raises(RuntimeError):
        await h.md.start()
    await h.md.stop()
    await h.md.stop()  # idempotent
    assert all(r.task is None for n, r in h.ctx.supervisor.records.items() if n.startswith("market_data"))
    with pytest.raises(ConfigError):
        MarketData(h.ctx, snapshot_attempts=0)


async def test_stop_leaves_books_out_of_sync(venue: Any) -> None:
    h = await venue()
    await synced(h)
    await h.md.stop()
    assert not h.md.book(BTC).in_sync and h.md.book(BTC).out_of_sync_reason == "market data stopped"


async def test_a_resync_while_a_snapshot_is_in_flight_discards_that_snapshot(venue: Any) -> None:
    h = await venue()
    await h.http.next_request()  # held
    await h.server.push("BTCUSDT", depth(101, 101, [("99.00", "1")]), {"k": "depth", "u": 102})  # 2nd: bad
    await h.detail_contains("malformed depth message")
    h.http.settle("BTCUSDT", snap(100))  # asked for before the loss: outdated
    assert await h.http.next_request() == "BTCUSDT"  # asked for again at once, by the same job
    h.http.settle("BTCUSDT", snap(102))
    await h.until(lambda: h.md.in_sync)
    assert h.md.book(BTC).update_id == 102 and h.md.stats.snapshots == 2 and h.resynced() == []


async def test_wait_book_returns_once_the_book_is_in_sync_at_the_id(venue: Any) -> None:
    h = await venue()
    first = asyncio.ensure_future(h.md.wait_book(BTC))
    later = asyncio.ensure_future(h.md.wait_book(BTC, 102))
    gone = asyncio.ensure_future(h.md.wait_book(BTC, 500))
    await synced(h)
    assert await asyncio.wait_for(first, WAIT) is h.md.book(BTC)
    assert not later.done() and len(h.md._waiters[BTC]) == 2
    gone.cancel()  # a waiter that gives up leaves nothing behind
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert len(h.md._waiters[BTC]) == 1
    await h.server.push("BTCUSDT", depth(101, 102, [("99.00", "1")]))
    assert (await asyncio.wait_for(later, WAIT)).update_id == 102
    assert h.md._waiters[BTC] == []
    assert await h.md.wait_book(BTC, 50) is h.md.book(BTC)  # already there: at once
