"""The codec, auth and spec speaking to the sandbox's Binance front-end over loopback.

The fixtures pin the codec to Binance's documented shapes; this pins it to the bytes a server that
checks signatures, parameters and timing really accepts: every request here goes through the
real HTTP client, throttler and signer. The sandbox binds 127.0.0.1 on a free port; waits are
bounded by timeouts on awaited messages, never by sleeps.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType, Side
from marketlink.core.market import BalanceUpdate, DepthUpdate, PublicTrade
from marketlink.core.orders import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from marketlink.net import jsoncodec
from marketlink.net.errors import OrderNotFound, Rejected
from marketlink.net.http import HttpClient
from marketlink.net.throttler import Throttler
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.venues.binance import SPEC, VENUE, local_endpoints

KEY, SECRET = "ml-test-key-0001", "ml-test-secret-0001"
WAIT = 10.0  # upper bound on any awaited message; a healthy run takes milliseconds
ids = (f"ml-sbx-{n}" for n in itertools.count())


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    # The first flow step fills the books; without the timer nothing moves unless a test ticks.
    async with Sandbox(SandboxConfig(api_key=KEY, api_secret=SECRET), autotick=False) as sb:
        yield sb


@pytest.fixture
async def http(sandbox: Sandbox) -> AsyncIterator[HttpClient]:
    auth = VENUE.make_auth(Credentials(KEY, SECRET))
    async with HttpClient(
        local_endpoints(sandbox.base_url).rest,
        throttler=Throttler(SPEC.rate_limits),
        venue=VENUE.codec,
        auth=auth,
    ) as client:
        yield client


def new_order(order_type: OrderType, side: Side, amount: str, price: str | None) -> InFlightOrder:
    return InFlightOrder(
        next(ids), "BTC-USDT", order_type, side, Decimal(amount), price and Decimal(price), 0.0
    )


async def receive(ws: aiohttp.ClientWebSocketResponse) -> Any:
    return jsoncodec.decode(await ws.receive_str(timeout=WAIT))


async def test_rest_round_trip(sandbox: Sandbox, http: HttpClient) -> None:
    codec = VENUE.codec
    assert isinstance(codec.parse_server_time(await http.request(codec.server_time_request())), int)
    info = codec.parse_markets(await http.request(codec.markets_request()))
    assert info.symbols["BTCUSDT"] == "BTC-USDT" and not info.skipped
    symbols = info.symbols
    book = codec.parse_depth_snapshot(
        await http.request(codec.depth_snapshot_request("BTCUSDT", 100)), "BTC-USDT"
    )
    best_bid = Decimal(book.bids[0][0])
    rule = info.rules["BTC-USDT"]

    # a resting limit buy well below the book: acknowledged, listed, queried, cancelled
    price = rule.quantize_price(best_bid * Decimal("0.9"), Side.BUY)
    amount = rule.quantize_amount(Decimal("0.01"))
    resting = new_order(OrderType.LIMIT, Side.BUY, str(amount), str(price))
    placed = codec.parse_place_order(
        await http.request(codec.place_order_request(resting, "BTCUSDT")), resting
    )
    assert placed.update.new_state is OrderState.OPEN and placed.trades == ()
    assert placed.update.client_order_id == resting.client_order_id
    status = codec.parse_order_status(
        await http.request(codec.order_status_request("BTCUSDT", resting.client_order_id)), symbols
    )
    assert (status.state, status.amount, status.price) == (OrderState.OPEN, amount, price)
    listing = codec.parse_open_orders(await http.request(codec.open_orders_request("BTCUSDT")), symbols)
    assert [o.client_order_id for o in listing] == [resting.client_order_id]
    canceled = codec.parse_cancel_order(
        await http.request(codec.cancel_order_request("BTCUSDT", resting.client_order_id)), resting
    )
    assert (canceled.new_state, canceled.client_order_id) == (OrderState.CANCELED, resting.client_order_id)
    with pytest.raises(OrderNotFound):
        await http.request(codec.order_status_request("BTCUSDT", "ml-never-placed"))

    # a maker-only order that would take is the venue's refusal, not ours
    taking = new_order(OrderType.LIMIT_MAKER, Side.BUY, str(amount), book.asks[0][0])
    with pytest.raises(Rejected) as refused:
        await http.request(codec.place_order_request(taking, "BTCUSDT"))
    assert refused.value.code == -2010

    # a market buy fills at once; its FULL answer and myTrades agree fill by fill
    small = rule.quantize_amount(min(Decimal(book.asks[0][1]), Decimal("0.001")))  # within the best ask
    market = new_order(OrderType.MARKET, Side.BUY, str(small), None)
    filled = codec.parse_place_order(await http.request(codec.place_order_request(market, "BTCUSDT")), market)
    assert filled.update.new_state is OrderState.FILLED and filled.trades
    assert sum(t.amount for t in filled.trades) == small == filled.update.cumulative_filled
    assert all(
        t.fee.flat_fees[0].token == "BTC" for t in filled.trades if t.fee.flat_fees
    )  # a buy pays in base
    assert filled.update.exchange_order_id is not None
    trades = codec.parse_trades(
        await http.request(codec.order_trades_request("BTCUSDT", filled.update.exchange_order_id)), symbols
    )
    assert {(t.trade_id, t.price, t.amount, t.fee) for t in trades} == {
        (t.trade_id, t.price, t.amount, t.fee) for t in filled.trades
    }

    balances = codec.parse_balances(await http.request(codec.balances_request()))
    assert balances.complete and {b.asset for b in balances.balances} >= {"BTC", "USDT"}


async def test_user_stream_subscription_and_events(sandbox: Sandbox, http: HttpClient) -> None:
    codec = VENUE.codec
    auth = VENUE.make_auth(Credentials(KEY, SECRET))
    symbols = {"BTCUSDT": "BTC-USDT"}
    endpoints = local_endpoints(sandbox.base_url)
    async with aiohttp.ClientSession() as session, session.ws_connect(codec.user_stream_url(endpoints)) as ws:
        server_ms = codec.parse_server_time(await http.request(codec.server_time_request()))
        await ws.send_str(jsoncodec.encode(codec.user_stream_subscribe(auth, server_ms, 41)).decode())
        answer = None
        for _ in range(10):
            answer = codec.parse_user_stream_ack(await receive(ws), 41)
            if answer is not None:
                break
        assert answer is True

        book = codec.parse_depth_snapshot(
            await http.request(codec.depth_snapshot_request("BTCUSDT", 5)), "BTC-USDT"
        )
        small = min(Decimal(book.asks[0][1]), Decimal("0.001"))  # within the best ask
        order = new_order(OrderType.MARKET, Side.BUY, str(small), None)
        await http.request(codec.place_order_request(order, "BTCUSDT"))
        seen: list[OrderUpdate | TradeUpdate | BalanceUpdate] = []
        for _ in range(50):
            seen += codec.parse_user_message(await receive(ws), symbols)
            if any(isinstance(u, OrderUpdate) and u.new_state is OrderState.FILLED for u in seen):
                break
        ours = [u for u in seen if not isinstance(u, BalanceUpdate)]
        assert all(u.client_order_id == order.client_order_id for u in ours)
        fills = [u for u in ours if isinstance(u, TradeUpdate)]
        assert sum(f.amount for f in fills) == small
        assert all(f.is_taker and f.price >= Decimal(book.asks[0][0]) for f in fills)


async def test_market_stream_subscription(sandbox: Sandbox, http: HttpClient) -> None:
    codec = VENUE.codec
    symbols = {"BTCUSDT": "BTC-USDT"}
    endpoints = local_endpoints(sandbox.base_url)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(codec.market_stream_url(endpoints)) as ws,
    ):
        await ws.send_str(jsoncodec.encode(codec.market_subscribe(["BTCUSDT"], 5)).decode())
        assert codec.parse_market_message(await receive(ws), symbols) is None  # the acknowledgement
        order = new_order(OrderType.MARKET, Side.SELL, "0.01", None)
        await http.request(codec.place_order_request(order, "BTCUSDT"))  # makes a trade and a diff
        await sandbox.tick()  # publishes the batched diffs
        kinds: dict[type, str | None] = {}
        for _ in range(50):
            message = await receive(ws)
            parsed = codec.parse_market_message(message, symbols)
            kinds[type(parsed)] = codec.market_message_key(message)
            if DepthUpdate in kinds and PublicTrade in kinds:
                break
        assert kinds[DepthUpdate] == "btcusdt@depth@100ms" and kinds[PublicTrade] == "btcusdt@trade"
