"""ccxt's ``binance`` (async), unchanged but for its URLs and spot-only options, against the sandbox.

Each test drives a ccxt call and checks what ccxt made of the answer against the sandbox's own
exchange state: if a shape, a field name, a status word or an error code were off, ccxt would
parse a wrong value or raise the wrong exception, and the comparison would fail. Amounts and
prices go to ccxt as strings, so no float ever touches an order we place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import pytest
import pytest_asyncio
from ccxt.base import errors as ccxt_errors
from faithfulness_support import WAIT, ccxt_config, dec, levels, point_ccxt_at

from marketlink.sandbox.exchange import OrderStatus
from marketlink.sandbox.server import Sandbox

pytestmark = pytest.mark.asyncio(loop_scope="module")

D = Decimal
SYMBOL, MARKET = "BTCUSDT", "BTC/USDT"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ex(sandbox: Sandbox, session: aiohttp.ClientSession) -> AsyncIterator[Any]:
    client = ccxt_async.binance(ccxt_config(sandbox, session))
    point_ccxt_at(client, sandbox)
    await asyncio.wait_for(client.load_markets(), WAIT)
    yield client
    await client.close()


async def call(make: Callable[[], Awaitable[Any]]) -> Any:
    return await asyncio.wait_for(make(), WAIT)


def account(sb: Sandbox) -> str:
    return sb.demo_credentials.account


def ledger(sb: Sandbox, asset: str) -> tuple[Decimal, Decimal]:
    b = sb.exchange.balance(account(sb), asset)
    return b.free, b.locked


def resting_bid(sb: Sandbox) -> Decimal:
    """A price a tenth under the best bid, on the tick: a buy there rests without trading."""
    top = sb.exchange.book_ticker(SYMBOL)
    assert top.bid_price is not None
    tick = sb.exchange.market(SYMBOL).tick_size
    return (top.bid_price * D("0.9")).quantize(tick)


# -- market data ------------------------------------------------------------------------------------


async def test_load_markets_reads_every_filter(ex: Any, sandbox: Sandbox) -> None:
    assert sorted(ex.symbols) == sorted(f"{s.spec.base}/{s.spec.quote}" for s in sandbox.markets)
    for setup in sandbox.markets:
        spec = setup.spec
        m = ex.market(f"{spec.base}/{spec.quote}")
        assert (m["id"], m["base"], m["quote"], m["type"], m["active"]) == (
            spec.symbol, spec.base, spec.quote, "spot", True,
        )
        assert dec(m["precision"]["amount"]) == spec.step_size
        assert dec(m["precision"]["price"]) == spec.tick_size
        assert dec(m["limits"]["amount"]["min"]) == spec.min_qty
        assert dec(m["limits"]["price"]["min"]) == spec.min_price
        assert dec(m["limits"]["cost"]["min"]) == spec.min_notional
        if spec.max_qty:
            assert dec(m["limits"]["amount"]["max"]) == spec.max_qty
        assert (dec(m["maker"]), dec(m["taker"])) == (spec.maker_fee, spec.taker_fee)


async def test_fetch_order_book_is_the_exchange_book(ex: Any, sandbox: Sandbox) -> None:
    for setup in sandbox.markets:
        spec = setup.spec
        book = await call(lambda s=spec: ex.fetch_order_book(f"{s.base}/{s.quote}", 100))
        truth = sandbox.exchange.depth(spec.symbol, 100)
        assert truth.bids and truth.asks  # the flow's first step filled every book
        assert book["nonce"] == truth.last_update_id
        assert levels(book["bids"]) == list(truth.bids)
        assert levels(book["asks"]) == list(truth.asks)


async def test_fetch_ticker_matches_book_and_24h_stats(ex: Any, sandbox: Sandbox) -> None:
    await sandbox.tick()  # trades of a second flow step give the 24h window some content
    t = await call(lambda: ex.fetch_ticker(MARKET))
    top = sandbox.exchange.book_ticker(SYMBOL)
    stats = sandbox.exchange.ticker_24h(SYMBOL, sandbox.context.clock.now_ms())
    assert stats.count > 0
    assert (dec(t["bid"]), dec(t["bidVolume"]), dec(t["ask"]), dec(t["askVolume"])) == (
        top.bid_price, top.bid_qty, top.ask_price, top.ask_qty,
    )
    assert dec(t["last"]) == sandbox.exchange.last_price(SYMBOL) == stats.last_price
    assert (dec(t["open"]), dec(t["high"]), dec(t["low"])) == (
        stats.open_price, stats.high_price, stats.low_price,
    )
    assert (dec(t["baseVolume"]), dec(t["quoteVolume"])) == (stats.volume, stats.quote_volume)


# -- account and orders -------------------------------------------------------------------------------


async def test_fetch_balance_is_the_ledger(ex: Any, sandbox: Sandbox) -> None:
    balance = await call(ex.fetch_balance)
    truth = sandbox.exchange.balances(account(sandbox))
    assert truth
    for b in truth:
        got = balance[b.asset]
        assert (dec(got["free"]), dec(got["used"]), dec(got["total"])) == (b.free, b.locked, b.total), b.asset


async def test_limit_order_rests_is_found_and_cancelled(ex: Any, sandbox: Sandbox) -> None:
    price = resting_bid(sandbox)
    free0, locked0 = ledger(sandbox, "USDT")
    # ccxt cuts the amount to LOT_SIZE's step (0.00001) from exchangeInfo before sending it.
    order = await call(lambda: ex.create_order(MARKET, "limit", "buy", "0.00123456", str(price)))
    qty = D("0.00123")
    assert (order["status"], order["type"], order["side"]) == ("open", "limit", "buy")
    assert (dec(order["amount"]), dec(order["price"]), dec(order["filled"])) == (qty, price, 0)
    view = sandbox.exchange.get_order(account(sandbox), SYMBOL, order_id=int(order["id"]))
    assert (view.status, view.orig_qty, view.price, view.client_order_id) == (
        OrderStatus.NEW, qty, price, order["clientOrderId"],
    )
    assert ledger(sandbox, "USDT") == (free0 - price * qty, locked0 + price * qty)

    fetched = await call(lambda: ex.fetch_order(order["id"], MARKET))
    assert (fetched["status"], fetched["clientOrderId"], dec(fetched["remaining"])) == (
        "open", order["clientOrderId"], qty,
    )
    open_orders = await call(lambda: ex.fetch_open_orders(MARKET))
    assert {o["id"] for o in open_orders} == {
        str(v.order_id) for v in sandbox.exchange.open_orders(account(sandbox), SYMBOL)
    }
    assert order["id"] in {o["id"] for o in open_orders}
    balance = await call(ex.fetch_balance)
    assert (dec(balance["USDT"]["free"]), dec(balance["USDT"]["used"])) == ledger(sandbox, "USDT")

    cancelled = await call(lambda: ex.cancel_order(order["id"], MARKET))
    assert (cancelled["id"], cancelled["status"]) == (order["id"], "canceled")
    view = sandbox.exchange.get_order(account(sandbox), SYMBOL, order_id=int(order["id"]))
    assert view.status is OrderStatus.CANCELED
    assert ledger(sandbox, "USDT") == (free0, locked0)
    assert (await call(lambda: ex.fetch_order(order["id"], MARKET)))["status"] == "canceled"
    assert order["id"] not in {o["id"] for o in await call(lambda: ex.fetch_open_orders(MARKET))}


@pytest.mark.parametrize(("side", "amount"), [("buy", "0.00200"), ("sell", "0.00150")])
async def test_market_order_fills_and_my_trades_agree(
    ex: Any, sandbox: Sandbox, side: str, amount: str
) -> None:
    await sandbox.tick()  # a fresh flow step: liquidity on both sides
    order = await call(lambda: ex.create_order(MARKET, "market", side, amount))
    assert (order["status"], order["type"], order["side"]) == ("closed", "market", side)
    view = sandbox.exchange.get_order(account(sandbox), SYMBOL, order_id=int(order["id"]))
    assert view.status is OrderStatus.FILLED
    assert dec(order["filled"]) == view.executed_qty == D(amount)
    assert dec(order["cost"]) == view.cum_quote_qty

    truth = sandbox.exchange.my_trades(account(sandbox), SYMBOL, order_id=view.order_id)
    trades = [t for t in await call(lambda: ex.fetch_my_trades(MARKET)) if t["order"] == order["id"]]
    assert len(trades) == len(truth) >= 1
    for got, want in zip(sorted(trades, key=lambda t: int(t["id"])), truth, strict=True):
        assert got["id"] == str(want.trade_id)
        assert (got["side"], got["takerOrMaker"]) == (side, "taker")
        assert (dec(got["price"]), dec(got["amount"])) == (want.price, want.qty)
        assert dec(got["cost"]) == want.quote_qty
        assert (dec(got["fee"]["cost"]), got["fee"]["currency"]) == (want.commission, want.commission_asset)
        assert got["timestamp"] == want.time
    assert sum(dec(t["amount"]) for t in trades) == D(amount)
    fee_asset = "BTC" if side == "buy" else "USDT"  # Binance charges the asset received
    assert {t["fee"]["currency"] for t in trades} == {fee_asset}


# -- errors: the exceptions ccxt raises for the real venue ----------------------------------------------


@pytest.fixture
async def bad_secret(sandbox: Sandbox, session: aiohttp.ClientSession) -> AsyncIterator[Any]:
    client = ccxt_async.binance(ccxt_config(sandbox, session, secret="0" * 64))
    point_ccxt_at(client, sandbox)
    yield client
    await client.close()


async def test_bad_secret_is_authentication_error(bad_secret: Any) -> None:
    with pytest.raises(ccxt_errors.AuthenticationError, match='"code":-1022'):
        await call(bad_secret.fetch_balance)


async def test_unknown_api_key_is_authentication_error(
    sandbox: Sandbox, session: aiohttp.ClientSession
) -> None:
    config = ccxt_config(sandbox, session)
    config["apiKey"] = "notAKeyTheSandboxKnows"
    client = ccxt_async.binance(config)
    point_ccxt_at(client, sandbox)
    try:
        with pytest.raises(ccxt_errors.AuthenticationError, match='"code":-2015'):
            await call(client.fetch_balance)
    finally:
        await client.close()


async def test_venue_refusals_map_to_ccxt_exceptions(ex: Any, sandbox: Sandbox) -> None:
    price = resting_bid(sandbox)
    ask = sandbox.exchange.book_ticker(SYMBOL).ask_price
    assert ask is not None
    with pytest.raises(ccxt_errors.InsufficientFunds):  # 1,000,000 USDT cannot buy 100 BTC
        await call(lambda: ex.create_order(MARKET, "limit", "buy", "100", str(price)))
    with pytest.raises(ccxt_errors.OrderNotFound, match="-2011"):
        await call(lambda: ex.cancel_order("987654321", MARKET))
    with pytest.raises(ccxt_errors.OrderNotFound, match="-2013"):
        await call(lambda: ex.fetch_order("987654321", MARKET))
    with pytest.raises(ccxt_errors.OrderImmediatelyFillable):  # post-only (LIMIT_MAKER) at the ask
        await call(lambda: ex.create_order(MARKET, "limit", "buy", "0.001", str(ask), {"postOnly": True}))
    with pytest.raises(ccxt_errors.BadRequest, match="Filter failure: NOTIONAL"):
        await call(lambda: ex.create_order(MARKET, "limit", "buy", "0.00001", str(price)))
    assert not sandbox.exchange.open_orders(account(sandbox), SYMBOL)


async def test_clock_skew_is_invalid_nonce(ex: Any, sandbox: Sandbox) -> None:
    sandbox.faults.shift_clock(-30_000)  # the server now runs 30 s behind ccxt's timestamps
    try:
        with pytest.raises(ccxt_errors.InvalidNonce, match="-1021"):
            await call(ex.fetch_balance)
    finally:
        sandbox.faults.shift_clock(30_000)
    assert (await call(ex.fetch_balance))["info"]["accountType"] == "SPOT"


async def test_a_url_left_at_binance_fails_at_once(sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
    """The offline guard itself: a host name is refused on lookup, nothing waits for a timeout."""
    client = ccxt_async.binance(ccxt_config(sandbox, session))
    try:
        assert client.urls["api"]["public"].startswith("https://api.binance.com")
        with pytest.raises(ccxt_errors.NetworkError, match=r"api\.binance\.com") as raised:
            await call(client.fetch_time)
        assert "refused to resolve 'api.binance.com'" in repr(raised.value.__cause__)
    finally:
        await client.close()
