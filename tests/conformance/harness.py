"""The conformance harness: the real connector against the sandbox over 127.0.0.1, for any venue.

The scenarios are written once; what differs per venue is bundled in a ``VenueHarness``: the
sandbox front-end, the venue adapter and its local endpoints, symbol naming, where orders and book
snapshots are requested (for REST faults), how to read a placement's client id off a request, how
to make the venue refuse an order that our own rules let through (and what it then says), how to
take a market out of trading or make its listing unreadable, and its rate limits as data
(``RateLimitPlan``). A new venue adds one entry to ``HARNESSES`` and runs every scenario unchanged.
Nothing in a scenario names a venue's paths or symbols.

The sandbox's front-end is wrapped in a ``RecordingFrontend`` that logs every HTTP request the
server receives, so a scenario can count what reached the venue (one placement, never two).

Market flow is off unless a scenario needs a moving book: the only trades are the ones a test
makes, with a second account (``taker``) trading against our orders directly on the sandbox's
exchange. Every wait is for an event the connector publishes (``Recorder.until``), bounded by a
timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from aiohttp.typedefs import Handler

from marketlink.core.book import OrderBook
from marketlink.core.client_ids import ClientOrderIdFactory
from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType, Side
from marketlink.core.events import Event, OrderCreated, OrderEvent, TerminalOrderEvent
from marketlink.core.orders import InFlightOrder, OrderState
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.sandbox.config import AccountConfig, SandboxConfig
from marketlink.sandbox.context import Frontend
from marketlink.sandbox.exchange import OrderView
from marketlink.sandbox.server import FrontendFactory, Sandbox
from marketlink.sandbox.venues.binance import BinanceSpotFrontend
from marketlink.venues.base import Endpoints, Venue
from marketlink.venues.binance import SPEC as BINANCE_SPEC
from marketlink.venues.binance import BinanceAuth, BinanceSpotCodec
from marketlink.venues.binance import local_endpoints as binance_endpoints

D = Decimal
WAIT = 10.0  # a bound on every wait; a healthy scenario takes a fraction of a second
MAX_TICKS = 200  # a bound on stepping the market flow while waiting for it to move a book
PAIR = "BTC-USDT"
DEMO = "demo"
TAKER = "taker"
TAKER_BALANCES: Mapping[str, Decimal] = {"BTC": D("50"), "ETH": D("500"), "USDT": D("5000000")}

#: Connector timings that let each scenario finish in well under a second: short request and
#: settling times, fast polling while the private stream is down, slow while it is live (so a
#: scenario sees exactly the traffic it provokes).
FAST = ConnectorConfig(
    seed=3,
    request_timeout=1.0,
    settle_unknown_after=0.1,
    reconcile_fast=0.2,
    reconcile_slow=30.0,
    open_orders_diff_every=60.0,
)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order as a strategy asks for it."""

    side: Side
    amount: Decimal
    order_type: OrderType
    price: Decimal | None


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One HTTP request as the sandbox's server received it, before faults or the venue saw it."""

    method: str
    path: str
    query: str  # the raw query string
    body: bytes


class Corruption(enum.StrEnum):
    """Ways a venue's market listing can be unreadable; the connector must skip such a market."""

    NO_FILTERS = "no_filters"  # the market's trading rules are missing
    BAD_TICK_SIZE = "bad_tick_size"  # a rule that is not a number
    NO_STATUS = "no_status"  # nothing says whether it trades


@dataclass(frozen=True, slots=True)
class RateLimitPlan:
    """How the rate-limit scenarios push one venue past its request weight, as data.

    ``burst`` requests made by ``request`` (the venue charges ``weight`` for each) go out at once
    against a venue that allows ``limit`` weight per ``window`` seconds on ``pool``. However the
    burst falls on the venue's fixed windows, one window gets half of it at least, more than
    ``limit``: two at least are refused. A window that refuses nothing holds at most
    ``limit // weight`` of them, and what is left of it is less than two more requests need (the
    back-off scenario sends two right after the refusals; they must wait for the next window).
    ``__post_init__`` checks these numbers, so a new venue's entry cannot quietly weaken a scenario.
    """

    pool: str
    window: float
    request: Callable[[SpotConnector], Awaitable[object]]  # a read: it places no order
    weight: int
    limit: int
    #: (weight per window, (refusals tolerated, ban ms) or None for "never ban") -> front-end options
    options: Callable[[int, tuple[int, int] | None], Mapping[str, object]]
    #: Refusals the venue tolerates before it bans the IP in the ban scenario; None: it never bans.
    ban_after: int | None
    #: n -> front-end options whose account order count allows n new orders a day, weight ample
    order_count: Callable[[int], Mapping[str, object]]
    ban_ms: int = 1_500
    burst: int = 16

    def __post_init__(self) -> None:
        fit = self.limit // self.weight
        assert self.burst // 2 - fit >= 2, "a burst must overflow the busier of its two windows twice"
        assert self.limit - fit * self.weight < 2 * self.weight <= self.limit, (
            "two more requests must not fit in a full window, and must fit in an empty one"
        )

    def sandbox_options(self, *, ban: bool) -> Mapping[str, object]:
        """The front-end options of a sandbox that refuses past ``limit`` and bans or not."""
        if ban and self.ban_after is not None:
            return self.options(self.limit, (self.ban_after, self.ban_ms))
        return self.options(self.limit, None)


@dataclass(frozen=True, slots=True)
class VenueHarness:
    """What the conformance suite needs to know of one venue (see the module docstring)."""

    name: str  # the front-end's name, also its key in SandboxConfig.venue_options
    frontend: FrontendFactory
    make_venue: Callable[[int | None], Venue]  # receive window (ms) or the venue's default
    endpoints: Callable[[str], Endpoints]  # base URL of a running sandbox -> endpoints
    symbol: Callable[[str], str]  # BASE-QUOTE -> the venue's symbol
    order_path: str  # REST path prefix of order placement (and whatever shares it)
    ping_path: str
    book_snapshot_path: str  # REST path prefix of the order book snapshot
    # The client order id of a placement request, None for any other request.
    placement_client_id: Callable[[ReceivedRequest], str | None]
    rate_limits: RateLimitPlan
    # An order our rules let through and the venue refuses (a price outside its price filter)...
    venue_rejects: Callable[[Sandbox, str], OrderIntent]
    # ... and a fragment of the venue's answer to it, which the order's failure reason must carry.
    rejection_reason: str
    # Take a market out of trading in the venue's market listing.
    halt_market: Callable[[Sandbox, str], None]
    # Make a market's entry in the venue's market listing unreadable in the given way.
    corrupt_market: Callable[[Sandbox, str, Corruption], None]
    # Whether the answer to a cancel states the order cancelled (else only a later report does).
    cancel_answer_confirms: bool = True


class RecordingFrontend:
    """A venue front-end that also logs every HTTP request the server receives, whatever then
    happens to it (a fault may hold, cut or delay it). The suite counts requests here rather than
    in the connector, since a re-sent placement would be counted once by the connector's own
    counters (its client retries below them). Harness-only: the sandbox needs no such log."""

    def __init__(self, inner: Frontend) -> None:
        self.inner = inner
        self.name = inner.name
        self.received: list[ReceivedRequest] = []

    def install(self, app: web.Application) -> None:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            body = await request.read() if request.can_read_body else b""  # cached for the handler
            self.received.append(ReceivedRequest(request.method, request.path, request.query_string, body))
            return await handler(request)

        app.middlewares.append(record)
        self.inner.install(app)

    async def on_tick(self, now_ms: int) -> None:
        await self.inner.on_tick(now_ms)

    async def close(self) -> None:
        await self.inner.close()


def recording(sb: Sandbox) -> RecordingFrontend:
    """The harness's wrapper of the sandbox's (one) front-end."""
    [frontend] = sb.frontends
    assert isinstance(frontend, RecordingFrontend)
    return frontend


# -- Binance Spot ---------------------------------------------------------------------------------


def _binance_venue(recv_window_ms: int | None) -> Venue:
    window = BINANCE_SPEC.recv_window_ms if recv_window_ms is None else recv_window_ms
    spec = dataclasses.replace(BINANCE_SPEC, recv_window_ms=window)
    return Venue(spec=spec, codec=BinanceSpotCodec(), make_auth=lambda c: BinanceAuth(c, window))


def _binance_symbol(pair: str) -> str:
    return pair.replace("-", "")


def _binance_frontend(sb: Sandbox) -> BinanceSpotFrontend:
    frontend = recording(sb).inner
    assert isinstance(frontend, BinanceSpotFrontend)
    return frontend


def _binance_placement_cid(request: ReceivedRequest) -> str | None:
    """Binance takes a new order's parameters in the query string or the form body."""
    if request.method != "POST" or request.path != "/api/v3/order":
        return None
    params = parse_qs(request.query) | parse_qs(request.body.decode("utf-8", "replace"))
    [cid] = params.get("newClientOrderId", [None])
    return cid


def _binance_limits(weight_per_second: int, ban: tuple[int, int] | None) -> Mapping[str, object]:
    limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1,
         "limit": weight_per_second},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
    ]
    violations, ban_ms = ban if ban is not None else (1_000_000, 60_000)
    return {"rate_limits": limits, "violations_before_ban": violations, "ban_ms": ban_ms}


def _binance_order_count(orders_per_day: int) -> Mapping[str, object]:
    limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": orders_per_day},
    ]
    return {"rate_limits": limits, "violations_before_ban": 1_000_000, "ban_ms": 60_000}


async def _binance_account(conn: SpotConnector) -> None:
    await conn.refresh_balances()  # GET /api/v3/account, weight 20


def _binance_rejects(sb: Sandbox, pair: str) -> OrderIntent:
    """A sell above PRICE_FILTER's maxPrice: our trading rules carry no price bounds, Binance
    answers -1013 "Filter failure: PRICE_FILTER"."""
    spec = sb.exchange.market(_binance_symbol(pair))
    assert spec.max_price > 0, "the sandbox market needs a maximum price"
    return OrderIntent(Side.SELL, D("0.001"), OrderType.LIMIT, spec.max_price * 2)


def _binance_halt(sb: Sandbox, pair: str) -> None:
    info = _binance_frontend(sb).ops._symbol_info[_binance_symbol(pair)]  # exchangeInfo reads it
    info["status"] = "BREAK"


def _binance_corrupt(sb: Sandbox, pair: str, how: Corruption) -> None:
    info = _binance_frontend(sb).ops._symbol_info[_binance_symbol(pair)]  # exchangeInfo reads it
    if how is Corruption.NO_FILTERS:
        info["filters"] = []
    elif how is Corruption.BAD_TICK_SIZE:
        [price_filter] = [f for f in info["filters"] if f["filterType"] == "PRICE_FILTER"]
        price_filter["tickSize"] = "0.0I"
    else:
        del info["status"]


BINANCE = VenueHarness(
    name="binance",
    frontend=BinanceSpotFrontend,
    make_venue=_binance_venue,
    endpoints=binance_endpoints,
    symbol=_binance_symbol,
    order_path="/api/v3/order",
    ping_path="/api/v3/ping",
    book_snapshot_path="/api/v3/depth",
    placement_client_id=_binance_placement_cid,
    rate_limits=RateLimitPlan(
        pool="REQUEST_WEIGHT", window=1.0, request=_binance_account, weight=20, limit=130,
        options=_binance_limits, ban_after=1, order_count=_binance_order_count,
    ),
    venue_rejects=_binance_rejects,
    rejection_reason="Filter failure: PRICE_FILTER",
    halt_market=_binance_halt,
    corrupt_market=_binance_corrupt,
)

HARNESSES: tuple[VenueHarness, ...] = (BINANCE,)


# -- orders saved by an earlier run --------------------------------------------------------------

#: The client-id instance of "our bot" across restarts (ConnectorConfig.client_id_instance).
INSTANCE = "7e57ab5d"
#: The instance of another bot trading on the same account with the same software.
OTHER_INSTANCE = "0b0e1d2c"


def own_ids(venue: VenueHarness, instance: str = INSTANCE) -> ClientOrderIdFactory:
    """Issues client ids a connector configured with ``instance`` recognises as its own."""
    rules = venue.make_venue(None).spec.client_ids
    return ClientOrderIdFactory(rules.default_prefix, rules.max_length, instance_id=instance)


def saved_order(
    cid: str, amount: str, price: str, *, side: Side = Side.BUY, pair: str = PAIR,
    exchange_order_id: str | None = None,
) -> InFlightOrder:
    """An open order as a journal would give it back after a restart."""
    return InFlightOrder(
        client_order_id=cid, trading_pair=pair, order_type=OrderType.LIMIT, side=side,
        amount=D(amount), price=D(price), creation_timestamp=time.time(),
        exchange_order_id=exchange_order_id, state=OrderState.OPEN,
    )


# -- observing the connector ----------------------------------------------------------------------


class Recorder:
    """Every event the connector publishes, and a way to wait for a condition on them."""

    def __init__(self, connector: SpotConnector) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        connector.bus.subscribe_callback(self._on)

    def _on(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        """Return once ``condition()`` holds, re-checked on every event (and ``timeout`` at most)."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: type[Any], cid: str | None = None) -> list[Any]:
        return [
            e for e in self.events
            if isinstance(e, kind) and (cid is None or getattr(e, "client_order_id", None) == cid)
        ]

    def kinds(self, cid: str) -> list[str]:
        return [
            type(e).__name__ for e in self.events if isinstance(e, OrderEvent) and e.client_order_id == cid
        ]


# -- one scenario's world ----------------------------------------------------------------------


class World:
    """One sandbox, one started connector on it, and what a scenario does to both."""

    def __init__(self, venue: VenueHarness, sandbox: Sandbox, connector: SpotConnector) -> None:
        self.venue = venue
        self.sb = sandbox
        self.conn = connector
        self.rec = Recorder(connector)
        self.pair = connector.trading_pairs[0]
        self.symbol = venue.symbol(self.pair)

    def now_ms(self) -> int:
        return self.sb.context.clock.now_ms()

    async def venue_clock_past(self, ms: int) -> None:
        """Return once the venue's clock reads later than ``ms``: what the venue does next is
        stamped after what it did by then (its stamps are whole milliseconds)."""
        async with asyncio.timeout(WAIT):
            while self.now_ms() <= ms:
                await asyncio.sleep(0.001)  # a clock, not an event: polled, and bounded above

    # -- the other side of the market ---------------------------------------------------------

    def taker(self, side: str, qty: str, price: str) -> None:
        """The other account takes liquidity at ``price`` (an IOC limit: it never rests)."""
        self.sb.exchange.place_order(
            TAKER, self.symbol, side, "LIMIT", quantity=qty, price=price, time_in_force="IOC",
            now_ms=self.now_ms(),
        )

    def maker(self, side: str, qty: str, price: str) -> None:
        """The other account rests a GTC limit order at ``price``."""
        self.sb.exchange.place_order(
            TAKER, self.symbol, side, "LIMIT", quantity=qty, price=price, time_in_force="GTC",
            now_ms=self.now_ms(),
        )

    def place_for_us(self, side: str, qty: str, price: str, client_order_id: str) -> OrderView:
        """An order of our account that reaches the venue by another way than this connector."""
        result = self.sb.exchange.place_order(
            DEMO, self.symbol, side, "LIMIT", quantity=qty, price=price, time_in_force="GTC",
            client_order_id=client_order_id, now_ms=self.now_ms(),
        )
        return result.order

    def deposit(self, asset: str, amount: str) -> None:
        self.sb.exchange.deposit(DEMO, asset, D(amount), now_ms=self.now_ms())

    # -- the venue's view ---------------------------------------------------------------------

    def venue_orders(self, cid: str) -> list[OrderView]:
        """Every order of ours the venue holds under ``cid`` (more than one would be a duplicate)."""
        return [o for o in self.sb.exchange.all_orders(DEMO, self.symbol) if o.client_order_id == cid]

    def venue_order(self, cid: str) -> OrderView:
        [order] = self.venue_orders(cid)
        return order

    def balances_match(self, assets: Sequence[str] = ("BTC", "USDT")) -> bool:
        truth = self.sb.ground_truth().balances[DEMO]
        ours = self.conn.balances()
        return all(
            a in ours and ours[a].total == truth[a].total and ours[a].available == truth[a].free
            for a in assets if a in truth
        )

    # -- waiting on the connector -------------------------------------------------------------

    async def created(self, cid: str) -> OrderCreated:
        await self.rec.until(lambda: bool(self.rec.of(OrderCreated, cid)))
        created: OrderCreated = self.rec.of(OrderCreated, cid)[0]
        return created

    async def ended(self, cid: str) -> TerminalOrderEvent:
        await self.rec.until(lambda: bool(self.rec.of(TerminalOrderEvent, cid)))
        [terminal] = self.rec.of(TerminalOrderEvent, cid)  # exactly one ending, ever
        assert isinstance(terminal, TerminalOrderEvent)
        return terminal

    def placements_received(self, cid: str) -> int:
        """How many placement requests for ``cid`` reached the venue (HTTP attempts, not orders)."""
        return sum(self.venue.placement_client_id(r) == cid for r in recording(self.sb).received)

    async def book_caught_up(self, pair: str | None = None) -> OrderBook:
        """Return our book of ``pair`` (default: the world's pair) once it shows the venue's
        latest change (its update id)."""
        pair = pair or self.pair
        update_id = self.sb.exchange.depth(self.venue.symbol(pair), None).last_update_id
        return await asyncio.wait_for(self.conn.market_data.wait_book(pair, update_id), WAIT)

    async def assert_books_are_the_venues(self) -> None:
        """Every book of ours, once caught up, holds exactly the venue's levels at its update id."""
        for pair in self.conn.trading_pairs:
            truth = self.sb.exchange.depth(self.venue.symbol(pair), None)
            book = await self.book_caught_up(pair)
            assert book.update_id == truth.last_update_id, pair
            assert book.to_dict() == {"bids": dict(truth.bids), "asks": dict(truth.asks)}, pair

    async def tick_until_book_moves(self, pair: str | None = None) -> None:
        """Step the market flow (a sandbox without its timer) until the venue changes the book of
        ``pair``; bounded by ``MAX_TICKS``."""
        symbol = self.venue.symbol(pair or self.pair)
        before = self.sb.exchange.depth(symbol, None).last_update_id
        for _ in range(MAX_TICKS):
            await self.sb.tick()
            if self.sb.exchange.depth(symbol, None).last_update_id != before:
                return
        raise AssertionError(f"{symbol}'s book did not move in {MAX_TICKS} ticks")

    def place(self, intent: OrderIntent) -> str:
        if intent.side is Side.BUY:
            return self.conn.buy(self.pair, intent.amount, intent.order_type, intent.price)
        return self.conn.sell(self.pair, intent.amount, intent.order_type, intent.price)


class Lab:
    """Starts sandboxes and connectors for one venue and stops all of them after the test."""

    def __init__(self, venue: VenueHarness) -> None:
        self.venue = venue
        self._sandboxes: list[Sandbox] = []
        self._connectors: list[SpotConnector] = []

    async def sandbox(
        self,
        markets: tuple[str, ...] = (PAIR,),
        *,
        flow: bool = False,
        autotick: bool = True,
        options: Mapping[str, object] | None = None,
        seed: int = 11,
    ) -> Sandbox:
        config = SandboxConfig(
            markets=markets, flow=flow, seed=seed,
            accounts=(AccountConfig(TAKER, balances=TAKER_BALANCES),),
            venue_options={self.venue.name: dict(options or {})},
            fault_hang_seconds=1.5,  # a held request outlives the client's timeout, not the test
            shutdown_timeout=0.25,
        )
        make = self.venue.frontend
        sb = Sandbox(config, [lambda ctx: RecordingFrontend(make(ctx))], autotick=autotick)
        await sb.start()
        self._sandboxes.append(sb)
        return sb

    def connector(
        self,
        sb: Sandbox,
        pairs: Sequence[str] = (PAIR,),
        *,
        config: ConnectorConfig = FAST,
        recv_window_ms: int | None = None,
        keys: bool = True,
        **overrides: Any,
    ) -> SpotConnector:
        creds = sb.demo_credentials
        conn = SpotConnector(
            self.venue.make_venue(recv_window_ms), pairs,
            Credentials(creds.api_key, creds.api_secret) if keys else None,
            endpoints=self.venue.endpoints(sb.base_url),
            config=dataclasses.replace(config, **overrides),
        )
        self._connectors.append(conn)
        return conn

    async def world(
        self,
        sb: Sandbox | None = None,
        pairs: Sequence[str] = (PAIR,),
        *,
        restore: Sequence[InFlightOrder] = (),
        recv_window_ms: int | None = None,
        keys: bool = True,
        **overrides: Any,
    ) -> World:
        """A started connector (events recorded from before its start) on ``sb`` or a new sandbox."""
        sandbox = sb if sb is not None else await self.sandbox(tuple(pairs))
        conn = self.connector(sandbox, pairs, recv_window_ms=recv_window_ms, keys=keys, **overrides)
        world = World(self.venue, sandbox, conn)
        await conn.start(restore, timeout=WAIT)
        return world

    async def close(self) -> None:
        for conn in reversed(self._connectors):
            await conn.stop()
        for sb in reversed(self._sandboxes):
            await sb.stop()
