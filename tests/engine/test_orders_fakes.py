"""Honest fakes for the order-path tests: a codec that passes core values through, an HTTP client
whose ``request`` is an async function the test scripts, and a connector context around them.

The codec is a pass-through on purpose: the engine's job is to react to core values and typed
errors, so a test scripts exactly those (a ``PlaceResult``, a ``VenueOrder``, ``OrderNotFound``)
and nothing venue-specific can hide a bug. Requests carry the client or exchange id in their
params so a test can assert what was (and was not) sent.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketlink.core.client_ids import ALNUM_DASH_UNDERSCORE, ClientOrderIdFactory
from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.events import Event
from marketlink.core.fees import FeeKind, TradeFee, TradeFeeSchema
from marketlink.core.market import Balance, BalanceUpdate, VenueOrder
from marketlink.core.orders import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from marketlink.core.pairs import SymbolMap
from marketlink.core.rules import TradingRule
from marketlink.core.tracker import OrderTracker
from marketlink.engine.balances import Balances
from marketlink.engine.bus import EventBus
from marketlink.engine.context import ConnectorConfig, ConnectorContext, Markets
from marketlink.engine.status import StatusBoard
from marketlink.engine.supervisor import Supervisor
from marketlink.net.clock import VirtualClock
from marketlink.net.errors import AuthError, ClockSkew, ConnectionFailed, MalformedMessage, VenueError
from marketlink.net.http import RestRequest, TimedAnswer
from marketlink.net.throttler import Throttler
from marketlink.net.timesync import TimeSync, monotonic_ms
from marketlink.venues.base import ClientIdRules, Endpoints, HeartbeatSpec, PlaceResult, Venue, VenueSpec

D = Decimal
PAIR = "BTC-USDT"
SYMBOL = "BTCUSDT"
START = 1_000.0  # the virtual clock's start; also the venue time (ctx.now is the clock)

PLACE, CANCEL, STATUS, OPEN, TRADES, ACCOUNT, TIME = (
    "/place", "/cancel", "/status", "/open", "/trades", "/account", "/time",
)


class FakeCodec:
    """Requests name their target; parsers return the scripted core value as it came."""

    def classify_error(self, status: int, headers: Mapping[str, str], payload: Any) -> VenueError | None:
        return None

    def usage_from_headers(self, headers: Mapping[str, str]) -> Mapping[str, int]:
        return {}

    def server_time_request(self) -> RestRequest:
        return RestRequest("GET", TIME)

    def parse_server_time(self, payload: Any) -> int:
        return int(payload)

    def place_order_request(self, order: InFlightOrder, symbol: str) -> RestRequest:
        return RestRequest(
            "POST", PLACE, {"symbol": symbol, "cid": order.client_order_id, "qty": order.amount,
                            "price": order.price}, is_order=True,
        )

    def parse_place_order(self, payload: Any, order: InFlightOrder) -> PlaceResult:
        if not isinstance(payload, PlaceResult):
            raise MalformedMessage("not a placement answer")
        return payload

    def cancel_order_request(self, symbol: str, client_order_id: str) -> RestRequest:
        return RestRequest("DELETE", CANCEL, {"symbol": symbol, "cid": client_order_id})

    def parse_cancel_order(self, payload: Any, order: InFlightOrder) -> OrderUpdate:
        assert isinstance(payload, OrderUpdate)
        return payload

    def order_status_request(self, symbol: str, client_order_id: str) -> RestRequest:
        return RestRequest("GET", STATUS, {"symbol": symbol, "cid": client_order_id})

    def parse_order_status(self, payload: Any, symbols: Mapping[str, str]) -> VenueOrder:
        assert isinstance(payload, VenueOrder)
        return payload

    def open_orders_request(self, symbol: str | None) -> RestRequest:
        return RestRequest("GET", OPEN, {"symbol": symbol})

    def parse_open_orders(self, payload: Any, symbols: Mapping[str, str]) -> list[VenueOrder]:
        return list(payload)

    #: Pages of the trade history: a page this long has a successor (trade ids count up from 1).
    trades_page_size = 3

    def order_trades_request(
        self, symbol: str, exchange_order_id: str, from_trade_id: str | None = None
    ) -> RestRequest:
        return RestRequest("GET", TRADES, {"symbol": symbol, "xid": exchange_order_id, "from": from_trade_id})

    def parse_trades(self, payload: Any, symbols: Mapping[str, str]) -> list[TradeUpdate]:
        return list(payload)

    def next_trades_from(self, page: Sequence[TradeUpdate]) -> str | None:
        if len(page) < self.trades_page_size:
            return None
        return page[-1].trade_id + "+"

    def balances_request(self) -> RestRequest:
        return RestRequest("GET", ACCOUNT)

    def parse_balances(self, payload: Any) -> BalanceUpdate:
        assert isinstance(payload, BalanceUpdate)
        return payload

    # -- private stream: JSON frames a loopback server sends ------------------------------------

    def user_stream_url(self, endpoints: Endpoints) -> str:
        return endpoints.ws_user

    def user_stream_subscribe(self, auth: Any, timestamp_ms: int, request_id: int) -> Any:
        return {"op": "subscribe", "id": request_id, "key": auth}

    def parse_user_stream_ack(self, message: Any, request_id: int) -> bool | VenueError | None:
        if message.get("id") != request_id:
            return None
        if message.get("error") == "auth":
            return AuthError("bad key", code=401)
        if message.get("error") == "skew":
            return ClockSkew("timestamp outside recvWindow", code=-1021)
        return True

    def parse_user_message(
        self, message: Any, symbols: Mapping[str, str]
    ) -> list[OrderUpdate | TradeUpdate | BalanceUpdate]:
        if "id" in message:  # an answer to some request: nothing to track
            return []
        kind = message.get("e")
        if kind == "end":
            raise ConnectionFailed("subscription ended")
        if kind == "order":
            return [OrderUpdate(symbols[message["s"]], message["T"], OrderState(message["X"]),
                                message["c"], message.get("i"), D(message["z"]))]
        if kind == "fill":
            return [TradeUpdate(
                message["t"], message["c"], message.get("i"), symbols[message["s"]], message["T"],
                D(message["p"]), D(message["q"]), fee_usdt(message.get("n", "0")), is_taker=False,
            )]
        if kind == "balance":
            return [BalanceUpdate(tuple(Balance(a, D(t), D(f)) for a, t, f in message["B"]), message["T"])]
        raise MalformedMessage(f"unknown event {kind!r}")


def fee_usdt(amount: str) -> TradeFee:
    return TradeFee.reported("USDT", D(amount), FeeKind.DEDUCTED_FROM_RETURNS)


Handler = Callable[[RestRequest], Any]


class FakeHttp:
    """``request`` calls the handler scripted for the path; a handler may return a value, an
    exception (raised), or an awaitable (awaited, e.g. a future the test settles later)."""

    def __init__(self) -> None:
        self.requests: list[RestRequest] = []
        self.routes: dict[str, Handler] = {}
        self.stamp_ms: Callable[[], float] = monotonic_ms

    def on(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def answer(self, path: str, *values: Any) -> None:
        """Answer ``path`` with ``values`` in turn (the last one repeats)."""
        queue = list(values)

        def handler(_req: RestRequest) -> Any:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.routes[path] = handler

    def hold(self, path: str) -> list[asyncio.Future[Any]]:
        """Every request to ``path`` waits on a fresh future, appended to the returned list."""
        held: list[asyncio.Future[Any]] = []

        def handler(_req: RestRequest) -> Any:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            held.append(fut)
            return fut

        self.routes[path] = handler
        return held

    async def request(self, req: RestRequest, *, on_send: Callable[[], None] | None = None) -> Any:
        if on_send is not None:
            on_send()  # the fake has no rate limits to wait behind
        self.requests.append(req)
        handler = self.routes.get(req.path)
        if handler is None:
            raise AssertionError(f"unexpected request {req.method} {req.path}")
        result = handler(req)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, BaseException):
            raise result
        return result

    async def timed_request(self, req: RestRequest) -> TimedAnswer:
        """``request``, stamped on ``stamp_ms`` as the real client stamps its send and receipt."""
        sent = self.stamp_ms()
        payload = await self.request(req)
        return TimedAnswer(payload, sent, self.stamp_ms())

    def sent(self, path: str) -> list[RestRequest]:
        return [r for r in self.requests if r.path == path]

    async def close(self) -> None:
        return None


def rule(**kw: Any) -> TradingRule:
    base: dict[str, Any] = dict(
        trading_pair=PAIR, tick_size=D("0.01"), step_size=D("0.001"), min_order_size=D("0.001"),
        min_notional=D("10"),
    )
    base.update(kw)
    return TradingRule(**base)


def spec(**kw: Any) -> VenueSpec:
    base: dict[str, Any] = dict(
        name="fake",
        domains={"local": Endpoints("http://127.0.0.1:1", "ws://127.0.0.1:1", "ws://127.0.0.1:1/user")},
        rate_limits=(),
        client_ids=ClientIdRules(max_length=36, alphabet=ALNUM_DASH_UNDERSCORE),
        fees=TradeFeeSchema(maker_percent=D("0.001"), taker_percent=D("0.001"),
                            buy_percent_fee_deducted_from_returns=True),
        sequence_rule="binance_spot",
        snapshot_depth=100,
        market_heartbeat=HeartbeatSpec("server", 60.0),
        user_heartbeat=HeartbeatSpec("server", 60.0),
        order_types=frozenset({OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.MARKET}),
        time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC}),
        recv_window_ms=5_000,
    )
    base.update(kw)
    return VenueSpec(**base)


@dataclass
class Harness:
    ctx: ConnectorContext
    http: FakeHttp
    clock: VirtualClock
    ids: ClientOrderIdFactory
    events: list[Event] = field(default_factory=list)

    def of(self, kind: type[Any], cid: str | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (cid is None or e.client_order_id == cid)]

    def kinds(self, cid: str | None = None) -> list[str]:
        return [type(e).__name__ for e in self.events
                if cid is None or getattr(e, "client_order_id", None) == cid]


def make_harness(
    *,
    config: ConnectorConfig | None = None,
    venue_spec: VenueSpec | None = None,
    rules: Sequence[TradingRule] | None = None,
    balances: Mapping[str, str] | None = None,
    ws_user: str = "ws://127.0.0.1:1/user",
    auth: Any = "key",
) -> Harness:
    clock = VirtualClock(START)
    http = FakeHttp()
    the_spec = venue_spec or spec()
    endpoints = Endpoints("http://127.0.0.1:1", "ws://127.0.0.1:1", ws_user)
    venue = Venue(spec=the_spec, codec=FakeCodec(), make_auth=lambda c: c)  # type: ignore[arg-type]
    bus: EventBus[Event] = EventBus(name="test")
    events: list[Event] = []
    bus.subscribe_callback(events.append)
    rules = list(rules) if rules is not None else [rule()]
    pairs = tuple(r.trading_pair for r in rules)
    symbols = SymbolMap("fake", [(p.replace("-", ""), p) for p in pairs])
    cfg = config or ConnectorConfig(client_id_prefix="t")
    ctx = ConnectorContext(
        venue=venue,
        endpoints=endpoints,
        config=cfg,
        clock=clock,
        bus=bus,
        status=StatusBoard("fake", (), bus.publish, clock.time),
        supervisor=Supervisor(clock),
        throttler=Throttler((), clock=clock),
        time_sync=TimeSync(),
        http=http,  # type: ignore[arg-type]
        auth=auth,
        markets=Markets(symbols, {r.trading_pair: r for r in rules}),
        trading_pairs=pairs,
        tracker=OrderTracker(lost_after=cfg.lost_after),
        balances=Balances(bus.publish),
        now=clock.time,
    )
    ids = ClientOrderIdFactory("t", the_spec.client_ids.max_length, the_spec.client_ids.alphabet,
                               instance_id="abcd0001", clock=lambda: 1_800_000_000.0)
    start = {"BTC": "10", "USDT": "100000", "ETH": "0"} if balances is None else balances
    ctx.balances.apply(BalanceUpdate(tuple(Balance(a, D(v), D(v)) for a, v in start.items()), 0.0, True))
    h = Harness(ctx, http, clock, ids, events)
    events.clear()
    return h


def placed(order_or_cid: InFlightOrder | str, harness: Harness, state: OrderState = OrderState.OPEN,
           xid: str = "x1", filled: str = "0", trades: Sequence[TradeUpdate] = ()) -> PlaceResult:
    cid = order_or_cid if isinstance(order_or_cid, str) else order_or_cid.client_order_id
    update = OrderUpdate(PAIR, harness.clock.time(), state, cid, xid, D(filled))
    return PlaceResult(update, tuple(trades))


def venue_order(cid: str, *, state: OrderState = OrderState.OPEN, xid: str = "x1", amount: str = "1",
                price: str = "100", executed: str = "0", side: Side = Side.BUY, ts: float = START,
                pair: str = PAIR) -> VenueOrder:
    return VenueOrder(pair, cid, xid, side, OrderType.LIMIT, D(amount), D(price), D(executed), state, ts,
                      TimeInForce.GTC)


def trade(tid: str, amount: str, *, cid: str | None = None, xid: str | None = "x1", price: str = "100",
          fee: str = "0.1", ts: float = START) -> TradeUpdate:
    return TradeUpdate(tid, cid, xid, PAIR, ts, D(price), D(amount), fee_usdt(fee), is_taker=False)


async def settle() -> None:
    """Let every ready task run until none is (a bounded number of loop turns, no time passing)."""
    for _ in range(50):
        await asyncio.sleep(0)

