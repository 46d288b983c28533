"""Binance's official Python SDK (``binance-sdk-spot``) against the sandbox: REST and the
WebSocket API's user-data subscription, with only ``base_path`` and ``stream_url`` changed.

The SDK validates every answer against Binance's published schemas (pydantic models generated
from the OpenAPI spec). A field with the wrong type makes it log "did not match the declared
types" and fall back, and a field Binance does not document lands in ``additional_properties``;
both count as failures here, on top of comparing every value with the sandbox's exchange.

The SDK's REST client is synchronous (``requests``), so REST calls run in a worker thread while
the sandbox serves on the test's event loop. Amounts and prices are passed as ``Decimal``; the
SDK writes them with ``str``, so no float reaches the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from binance_common.errors import BadRequestError
from binance_sdk_spot.rest_api.models import (
    NewOrderNewOrderRespTypeEnum,
    NewOrderSideEnum,
    NewOrderTimeInForceEnum,
    NewOrderTypeEnum,
)
from binance_sdk_spot.spot import ConfigurationRestAPI, ConfigurationWebSocketAPI, Spot
from binance_sdk_spot.websocket_api.models import (
    ExecutionReport,
    OrderPlaceSideEnum,
    OrderPlaceTimeInForceEnum,
    OrderPlaceTypeEnum,
    OutboundAccountPosition,
)
from faithfulness_support import WAIT, dec, levels, offline_session
from pydantic import BaseModel

from marketlink.sandbox.exchange import OrderStatus
from marketlink.sandbox.server import Sandbox

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # the SDK's own call into aiohttp; nothing the sandbox does
    pytest.mark.filterwarnings("ignore:parameter 'timeout' of type 'float' is deprecated:DeprecationWarning"),
]

D = Decimal
SYMBOL = "BTCUSDT"
T = TypeVar("T")


def rest_config(sb: Sandbox, *, secret: str | None = None) -> ConfigurationRestAPI:
    creds = sb.demo_credentials
    return ConfigurationRestAPI(
        api_key=creds.api_key,
        api_secret=creds.api_secret if secret is None else secret,
        base_path=sb.base_url,
        timeout=5_000,
        retries=0,  # a refusal must surface, not be retried after a back-off sleep
    )


async def rest(fn: Callable[[], Any]) -> Any:
    """One SDK REST call (blocking) in a thread; its ``data()``."""
    response = await asyncio.wait_for(asyncio.to_thread(fn), WAIT)
    return response.data()


def undocumented(obj: object, path: str = "$") -> list[str]:
    """Fields the SDK's models do not know (they land in ``additional_properties``)."""
    found: list[str] = []
    if isinstance(obj, BaseModel):
        extra = getattr(obj, "additional_properties", None)
        if extra:
            found.append(f"{path}: {sorted(extra)}")
        for name in type(obj).model_fields:
            if name != "additional_properties":
                found += undocumented(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            found += undocumented(item, f"{path}[{i}]")
    return found


@pytest.fixture(autouse=True)
def sdk_accepts_every_answer(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The SDK logs (and does not raise) when an answer does not fit Binance's schema."""
    with caplog.at_level(logging.WARNING):
        yield
    complaints = [
        r.getMessage() for r in caplog.records
        if r.levelno >= logging.WARNING and ("binance_common" in r.pathname or "binance_sdk" in r.pathname)
    ]
    assert not complaints, complaints


@pytest.fixture(scope="module")
def spot(sandbox: Sandbox) -> Spot:
    creds = sandbox.demo_credentials
    client = Spot(
        config_rest_api=rest_config(sandbox),
        config_ws_api=ConfigurationWebSocketAPI(
            api_key=creds.api_key, api_secret=creds.api_secret, stream_url=f"{sandbox.ws_url}/ws-api/v3",
            timeout=5_000,
        ),
    )
    assert client.rest_api.configuration.base_path == sandbox.base_url
    return client


# -- REST ---------------------------------------------------------------------------------------------


async def test_rest_market_data_is_the_exchanges(spot: Spot, sandbox: Sandbox) -> None:
    api = spot.rest_api
    before = sandbox.context.clock.now_ms()
    server_time = (await rest(api.time)).server_time
    assert before <= server_time <= sandbox.context.clock.now_ms()

    info = await rest(api.exchange_info)
    assert not undocumented(info)
    by_symbol = {s.symbol: s for s in info.symbols}
    assert set(by_symbol) == set(sandbox.exchange.symbols)
    for symbol, s in by_symbol.items():
        spec = sandbox.exchange.market(symbol)
        assert (s.status, s.base_asset, s.quote_asset) == ("TRADING", spec.base, spec.quote)
        filters = {f.actual_instance.filter_type: f.actual_instance for f in s.filters}
        assert dec(filters["PRICE_FILTER"].tick_size) == spec.tick_size
        assert dec(filters["LOT_SIZE"].step_size) == spec.step_size
        assert dec(filters["LOT_SIZE"].min_qty) == spec.min_qty

    depth = await rest(lambda: api.depth(symbol=SYMBOL, limit=50))
    truth = sandbox.exchange.depth(SYMBOL, 50)
    assert depth.last_update_id == truth.last_update_id
    assert (levels(depth.bids), levels(depth.asks)) == (list(truth.bids), list(truth.asks))

    top = await rest(lambda: api.ticker_book_ticker(symbol=SYMBOL))
    book = sandbox.exchange.book_ticker(SYMBOL)
    inner = top.actual_instance
    assert (dec(inner.bid_price), dec(inner.bid_qty), dec(inner.ask_price), dec(inner.ask_qty)) == (
        book.bid_price, book.bid_qty, book.ask_price, book.ask_qty,
    )


async def test_rest_account_is_the_ledger(spot: Spot, sandbox: Sandbox) -> None:
    account = await rest(spot.rest_api.get_account)
    assert not undocumented(account)
    got = {b.asset: (dec(b.free), dec(b.locked)) for b in account.balances}
    want = {b.asset: (b.free, b.locked) for b in sandbox.exchange.balances(sandbox.demo_credentials.account)}
    assert got == want
    assert account.can_trade is True and account.account_type == "SPOT"


async def test_rest_limit_order_lifecycle(spot: Spot, sandbox: Sandbox) -> None:
    api, owner = spot.rest_api, sandbox.demo_credentials.account
    bid = sandbox.exchange.book_ticker(SYMBOL).bid_price
    assert bid is not None
    price = (bid * D("0.95")).quantize(D("0.01"))
    placed = await rest(lambda: api.new_order(
        symbol=SYMBOL, side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.LIMIT,
        time_in_force=NewOrderTimeInForceEnum.GTC, quantity=D("0.00250"), price=price,
        new_client_order_id="sdk-rest-1",
    ))
    assert not undocumented(placed)
    assert (placed.status, placed.client_order_id, dec(placed.price), dec(placed.orig_qty)) == (
        "NEW", "sdk-rest-1", price, D("0.0025"),
    )
    assert placed.fills == []
    view = sandbox.exchange.get_order(owner, SYMBOL, order_id=placed.order_id)
    assert (view.status, view.client_order_id, view.price) == (OrderStatus.NEW, "sdk-rest-1", price)

    queried = await rest(lambda: api.get_order(symbol=SYMBOL, orig_client_order_id="sdk-rest-1"))
    assert (queried.order_id, queried.status, queried.is_working) == (placed.order_id, "NEW", True)
    open_orders = await rest(lambda: api.get_open_orders(symbol=SYMBOL))
    assert not undocumented(open_orders)
    assert placed.order_id in {o.order_id for o in open_orders}

    cancelled = await rest(lambda: api.delete_order(symbol=SYMBOL, order_id=placed.order_id))
    assert not undocumented(cancelled)
    assert (cancelled.status, cancelled.orig_client_order_id) == ("CANCELED", "sdk-rest-1")
    assert sandbox.exchange.get_order(owner, SYMBOL, order_id=placed.order_id).status is OrderStatus.CANCELED


async def test_rest_market_order_fills_are_my_trades(spot: Spot, sandbox: Sandbox) -> None:
    api, owner = spot.rest_api, sandbox.demo_credentials.account
    await sandbox.tick()
    placed = await rest(lambda: api.new_order(
        symbol=SYMBOL, side=NewOrderSideEnum.SELL, type=NewOrderTypeEnum.MARKET, quantity=D("0.00300"),
        new_order_resp_type=NewOrderNewOrderRespTypeEnum.FULL,
    ))
    assert not undocumented(placed)
    assert (placed.status, dec(placed.executed_qty)) == ("FILLED", D("0.003"))
    truth = sandbox.exchange.my_trades(owner, SYMBOL, order_id=placed.order_id)
    fills = [
        (f.trade_id, dec(f.price), dec(f.qty), dec(f.commission), f.commission_asset) for f in placed.fills
    ]
    assert fills == [(t.trade_id, t.price, t.qty, t.commission, t.commission_asset) for t in truth]
    mine = await rest(lambda: api.my_trades(symbol=SYMBOL, order_id=placed.order_id))
    assert not undocumented(mine)
    assert [(t.id, dec(t.quote_qty), t.is_buyer, t.is_maker) for t in mine] == [
        (t.trade_id, t.quote_qty, False, False) for t in truth
    ]


async def test_rest_bad_secret_is_refused_as_binance_does(sandbox: Sandbox) -> None:
    api = Spot(config_rest_api=rest_config(sandbox, secret="0" * 64)).rest_api
    with pytest.raises(BadRequestError) as refused:
        await rest(api.get_account)
    assert refused.value.status_code == -1022
    assert "Signature for this request is not valid." in str(refused.value)


# -- WebSocket API: user data ---------------------------------------------------------------------------


@dataclass
class UserStream:
    """The SDK's user-data subscription, its events queued in arrival order."""

    api: Any
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def on_message(self, message: Any) -> None:
        self.events.put_nowait(message.actual_instance)

    async def until(self, kind: type[T], match: Callable[[T], bool]) -> T:
        async with asyncio.timeout(WAIT):
            while True:
                event = await self.events.get()
                if isinstance(event, kind) and match(event):
                    return event


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def user_stream(spot: Spot, sandbox: Sandbox) -> AsyncIterator[UserStream]:
    api = spot.websocket_api
    api.session = offline_session()  # the SDK connects with this session (no host names resolved)
    await asyncio.wait_for(api.create_connection(), WAIT)
    try:
        subscribed = await asyncio.wait_for(api.user_data_stream_subscribe_signature(), WAIT)
        assert subscribed.response.data().result.subscription_id == 0
        stream = UserStream(api)
        subscribed.stream.on("message", stream.on_message)
        yield stream
    finally:
        await api.close_connection(close_session=True)


async def test_ws_order_place_and_cancel_send_execution_reports(
    user_stream: UserStream, sandbox: Sandbox
) -> None:
    api, owner = user_stream.api, sandbox.demo_credentials.account
    bid = sandbox.exchange.book_ticker(SYMBOL).bid_price
    assert bid is not None
    price = (bid * D("0.9")).quantize(D("0.01"))
    placed = (await asyncio.wait_for(api.order_place(
        symbol=SYMBOL, side=OrderPlaceSideEnum.BUY, type=OrderPlaceTypeEnum.LIMIT,
        time_in_force=OrderPlaceTimeInForceEnum.GTC, quantity=D("0.00400"), price=price,
        new_client_order_id="sdk-ws-1",
    ), WAIT)).data()
    assert not undocumented(placed)
    order_id = placed.result.order_id
    assert (placed.status, placed.result.status) == (200, "NEW")

    new = await user_stream.until(ExecutionReport, lambda e: e.i == order_id)
    assert not undocumented(new)
    assert (new.s, new.c, new.S, new.o, new.f, new.x, new.X) == (
        SYMBOL, "sdk-ws-1", "BUY", "LIMIT", "GTC", "NEW", "NEW",
    )
    assert (dec(new.p), dec(new.q), dec(new.z), new.w) == (price, D("0.004"), 0, True)
    position = await user_stream.until(OutboundAccountPosition, lambda e: True)
    ledger = {b.asset: (b.free, b.locked) for b in sandbox.exchange.balances(owner)}
    assert {b.a: (dec(b.f), dec(b.l)) for b in position.B} == {"USDT": ledger["USDT"]}

    cancelled = (await asyncio.wait_for(api.order_cancel(symbol=SYMBOL, order_id=order_id), WAIT)).data()
    assert cancelled.result.status == "CANCELED"
    report = await user_stream.until(ExecutionReport, lambda e: e.i == order_id)
    assert (report.x, report.X, report.C) == ("CANCELED", "CANCELED", "sdk-ws-1")
    assert sandbox.exchange.get_order(owner, SYMBOL, order_id=order_id).status is OrderStatus.CANCELED


async def test_ws_reports_fills_of_an_order_placed_over_rest(
    user_stream: UserStream, spot: Spot, sandbox: Sandbox
) -> None:
    owner = sandbox.demo_credentials.account
    await sandbox.tick()
    placed = await rest(lambda: spot.rest_api.new_order(
        symbol=SYMBOL, side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.MARKET, quantity=D("0.00350"),
    ))
    truth = sandbox.exchange.my_trades(owner, SYMBOL, order_id=placed.order_id)
    assert truth
    reports = [
        await user_stream.until(ExecutionReport, lambda e: e.i == placed.order_id and e.x == "TRADE")
        for _ in truth
    ]
    assert [(r.t, dec(r.L), dec(r.l), dec(r.n), r.N, r.m) for r in reports] == [
        (t.trade_id, t.price, t.qty, t.commission, t.commission_asset, False) for t in truth
    ]
    assert [r.X for r in reports] == ["PARTIALLY_FILLED"] * (len(truth) - 1) + ["FILLED"]
    last = reports[-1]
    view = sandbox.exchange.get_order(owner, SYMBOL, order_id=placed.order_id)
    assert (dec(last.z), dec(last.Z)) == (view.executed_qty, view.cum_quote_qty)
    assert view.executed_qty == D("0.0035")
