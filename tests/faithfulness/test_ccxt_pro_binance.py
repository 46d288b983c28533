"""ccxt pro's ``watch_order_book`` against the sandbox: it must hold exactly the exchange's book.

ccxt pro follows Binance's recipe on its own: it opens ``/ws/<n>``, sends SUBSCRIBE for
``<symbol>@depth@100ms``, buffers diffs, fetches ``/api/v3/depth?limit=1000`` and splices the two
by ``lastUpdateId``/``U``/``u``. After every step we wait (bounded) until ccxt's book reaches the
exchange's update id, then require every level, price and size to match the exchange's full book.
Book changes come from the market flow and from our own orders sent through ccxt's REST side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.pro as ccxt_pro
import pytest
import pytest_asyncio
from ccxt.base import errors as ccxt_errors
from faithfulness_support import (
    WAIT,
    assert_no_internal_errors,
    ccxt_config,
    levels,
    offline_session,
    point_ccxt_at,
)

from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox

pytestmark = pytest.mark.asyncio(loop_scope="module")

D = Decimal
MAX_WATCHES = 200  # a bound on the updates awaited to reach one update id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pro(sandbox: Sandbox, session: aiohttp.ClientSession) -> AsyncIterator[Any]:
    client = ccxt_pro.binance(ccxt_config(sandbox, session))
    point_ccxt_at(client, sandbox)
    await asyncio.wait_for(client.load_markets(), WAIT)
    yield client
    await client.close()


def symbol_of(market: str) -> str:
    return market.replace("/", "")


async def book_at(pro: Any, market: str, update_id: int) -> Any:
    """ccxt's book once it has applied every diff up to ``update_id``."""
    for _ in range(MAX_WATCHES):
        book = await asyncio.wait_for(pro.watch_order_book(market), WAIT)
        if book["nonce"] >= update_id:
            assert book["nonce"] == update_id, "ccxt's book ran past the exchange"
            return book
    raise AssertionError(f"ccxt's {market} book did not reach update {update_id}")


def assert_same_book(book: Any, sb: Sandbox, symbol: str) -> None:
    truth = sb.exchange.depth(symbol, None)
    assert book["nonce"] == truth.last_update_id
    assert levels(book["bids"]) == list(truth.bids)
    assert levels(book["asks"]) == list(truth.asks)


async def test_book_follows_flow_and_own_orders_exactly(pro: Any, sandbox: Sandbox) -> None:
    market, symbol = "BTC/USDT", "BTCUSDT"
    tick = sandbox.exchange.market(symbol).tick_size
    await book_at(pro, market, sandbox.exchange.depth(symbol, 1).last_update_id)
    resting: list[str] = []
    for step in range(30):
        top = sandbox.exchange.book_ticker(symbol)
        assert top.bid_price is not None and top.ask_price is not None
        if step % 3 == 0:  # a new level inside the spread, or one more order on the best bid
            price = top.bid_price + tick if top.ask_price - top.bid_price > tick else top.bid_price
            placing = pro.create_order(market, "limit", "buy", "0.00050", str(price))
            order = await asyncio.wait_for(placing, WAIT)
            resting.append(order["id"])
        elif step % 3 == 1 and resting:
            await cancel_if_open(pro, sandbox, market, resting.pop(0))
        else:  # takes liquidity off the ask side
            await asyncio.wait_for(pro.create_order(market, "market", "buy", "0.00040"), WAIT)
        await sandbox.tick()
        book = await book_at(pro, market, sandbox.exchange.depth(symbol, 1).last_update_id)
        assert_same_book(book, sandbox, symbol)
    for order_id in resting:
        await cancel_if_open(pro, sandbox, market, order_id)


async def cancel_if_open(pro: Any, sb: Sandbox, market: str, order_id: str) -> None:
    """The flow's takers may have filled it meanwhile; Binance would answer -2011 then."""
    view = sb.exchange.get_order(sb.demo_credentials.account, symbol_of(market), order_id=int(order_id))
    if view.status.is_open:
        cancelled = await asyncio.wait_for(pro.cancel_order(order_id, market), WAIT)
        assert cancelled["status"] == "canceled"


async def test_a_sequence_gap_is_caught_and_the_resync_is_exact(pro: Any, sandbox: Sandbox) -> None:
    """A diff the sandbox leaves out (fault) breaks ``U == last u + 1``: ccxt raises its gap
    error, and the next watch rebuilds the book from a fresh snapshot."""
    market, symbol = "ETH/USDT", "ETHUSDT"
    await book_at(pro, market, sandbox.exchange.depth(symbol, 1).last_update_id)
    streams = sandbox.frontends[0].streams  # the Binance front-end's market streams
    skipped = streams.depth_skipped
    sandbox.faults.skip_update_ids(symbol)
    for _ in range(50):  # until the flow changes this book: that diff is the one left out
        await sandbox.tick()
        if streams.depth_skipped > skipped:
            break
    assert streams.depth_skipped == skipped + 1
    after_gap = sandbox.exchange.depth(symbol, 1).last_update_id
    for _ in range(50):  # until a diff past the gap goes out
        await sandbox.tick()
        if sandbox.exchange.depth(symbol, 1).last_update_id > after_gap:
            break
    seen_gap = False
    try:
        await book_at(pro, market, sandbox.exchange.depth(symbol, 1).last_update_id)
    except ccxt_errors.ChecksumError:
        seen_gap = True
    assert seen_gap
    for _ in range(5):
        await sandbox.tick()
        book = await book_at(pro, market, sandbox.exchange.depth(symbol, 1).last_update_id)
        assert_same_book(book, sandbox, symbol)


async def test_several_books_on_one_connection(pro: Any, sandbox: Sandbox) -> None:
    markets = ["SOL/USDT", "BNB/USDT", "ETH/BTC"]

    def behind() -> list[str]:
        return [
            m for m in markets
            if m not in pro.orderbooks
            or pro.orderbooks[m]["nonce"] != sandbox.exchange.depth(symbol_of(m), 1).last_update_id
        ]

    await asyncio.wait_for(pro.watch_order_book_for_symbols(markets), WAIT)
    first = {m: sandbox.exchange.depth(symbol_of(m), 1).last_update_id for m in markets}
    for _ in range(10):
        await sandbox.tick()
        for _ in range(MAX_WATCHES):
            if not behind():
                break
            await asyncio.wait_for(pro.watch_order_book_for_symbols(markets), WAIT)
        assert not behind()
        for market in markets:
            assert_same_book(pro.orderbooks[market], sandbox, symbol_of(market))
    assert all(pro.orderbooks[m]["nonce"] > first[m] for m in markets)  # every book moved meanwhile
    assert len({c.url for c in pro.clients.values()}) == 3  # BTC, ETH, and these three together


async def test_book_stays_exact_while_the_timer_runs() -> None:
    """The sandbox ticking on its own timer: whenever ccxt's update id equals the exchange's
    (checked without yielding), the books must be equal."""
    async with Sandbox(SandboxConfig(tick_seconds=0.02, flow_rate=5.0), autotick=True) as sb:
        http = offline_session()
        client = ccxt_pro.binance(ccxt_config(sb, http))
        point_ccxt_at(client, sb)
        try:
            await asyncio.wait_for(client.load_markets(), WAIT)
            matched: set[int] = set()
            for _ in range(2_000):
                book = await asyncio.wait_for(client.watch_order_book("BTC/USDT"), WAIT)
                if book["nonce"] == sb.exchange.depth("BTCUSDT", 1).last_update_id:
                    assert_same_book(book, sb, "BTCUSDT")
                    matched.add(book["nonce"])
                    if len(matched) >= 15:
                        break
            assert len(matched) >= 15
            assert sb.counters["ticks"] > 15
            assert_no_internal_errors(sb)
        finally:
            await client.close()
            await http.close()
