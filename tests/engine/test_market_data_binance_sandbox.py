"""Market data against the sandbox's Binance front-end with the real Binance codec (audit E,
findings 1 and 2), the connector on a virtual clock, the sandbox ticked by hand.

* A SUBSCRIBE the venue refuses (a sandbox fault) keeps the book out of sync and the connector
  not ready, with the venue's words in the status, and is sent again after a back-off; once the
  venue accepts it the book resyncs to the venue's, changes made meanwhile included. The Binance
  codec does not tell which request an answer is for, so this is the engine's "first answer
  after our request" path.
* A dropped market connection voids the ticker and the last trade price; after the reconnect
  the last price is the venue's (one REST request), although no trade streamed since.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D

import pytest
from sandbox_setup import WAIT, SandboxSetup, public_connector

from marketlink.core.events import BookResynced
from marketlink.sandbox.config import AccountConfig, SandboxConfig
from marketlink.sandbox.faults import StreamKind
from marketlink.sandbox.server import Sandbox
from marketlink.sandbox.venues.binance import BinanceSpotFrontend

BTC, SYMBOL = "BTC-USDT", "BTCUSDT"
MAKER, TAKER = "maker", "taker"
FUNDS = {"BTC": D("50"), "USDT": D("5000000")}


class Setup(SandboxSetup):

    def detail(self) -> str:
        return self.conn.status()["order_books"].detail

    async def detail_contains(self, text: str) -> None:
        await self.until(lambda: text in self.detail())

    async def order(self, account: str, side: str, price: str, tif: str = "GTC") -> None:
        self.sb.exchange.place_order(account, SYMBOL, side, "LIMIT", quantity="1", price=price,
                                     time_in_force=tif, now_ms=self.sb.context.clock.now_ms())
        await self.sb.tick()

    async def trade(self, price: str) -> str:
        """The maker rests a sell at ``price``, the taker lifts it; returns the trade's id."""
        await self.order(MAKER, "SELL", price)
        await self.order(TAKER, "BUY", price, tif="IOC")
        return str(self.sb.exchange.recent_trades(SYMBOL)[-1].trade_id)

    async def drop_market_stream(self) -> None:
        self.sb.faults.drop_streams(StreamKind.MARKET)
        await self.sb.tick()
        await self.detail_contains("stream disconnected")

    def assert_book_is_the_venues(self) -> None:
        venue = self.sb.exchange.depth(SYMBOL, None)
        book = self.conn.market_data.book(BTC)
        assert book.in_sync and book.update_id == venue.last_update_id
        assert book.to_dict() == {
            "bids": {D(str(p)): D(str(q)) for p, q in venue.bids},
            "asks": {D(str(p)): D(str(q)) for p, q in venue.asks},
        }
        # The sandbox writes depth frames as Binance does: every diff took the vouched path.
        assert self.conn.market_data.stats.unchecked_diffs == 0


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    config = SandboxConfig(
        markets=(BTC,), flow=False, seed=5, shutdown_timeout=0.25,
        accounts=(AccountConfig(MAKER, balances=FUNDS), AccountConfig(TAKER, balances=FUNDS)),
    )
    sb = Sandbox(config, [BinanceSpotFrontend], autotick=False)
    await sb.start()
    conn, clock = public_connector(sb, (BTC,), book_stale_after=1_000.0)
    s = Setup(sb, conn, clock)
    try:
        await conn.start(timeout=WAIT)
        yield s
    finally:
        await conn.stop()
        await sb.stop()


def resubscribe_delay(detail: str) -> float:
    return float(detail.split("resubscribing in ")[1].split("s ", 1)[0]) + 0.01  # shown to 10 ms


async def test_a_refused_subscription_is_not_ready_then_retried_until_accepted(setup: Setup) -> None:
    s = setup
    md = s.conn.market_data
    snapshots = md.stats.snapshots
    s.sb.faults.refuse_subscriptions(2)
    await s.drop_market_stream()
    s.clock.advance(1.0)  # the reconnect back-off; the client re-sends our SUBSCRIBE: refused
    await s.detail_contains("subscription refused: binance Rejected [2]: Invalid request: too many streams; "
                            "resubscribing in")
    assert not s.conn.ready and not md.book(BTC).in_sync
    await s.order(MAKER, "BUY", "90")  # the venue moves while we are not subscribed
    s.clock.advance(resubscribe_delay(s.detail()))
    await s.detail_contains("(refusal 2 in a row)")
    assert not s.conn.ready and md.stats.snapshots == snapshots  # no snapshot for a refused stream
    s.clock.advance(resubscribe_delay(s.detail()))
    await s.until(lambda: s.conn.ready)
    s.assert_book_is_the_venues()
    assert s.sb.faults.fired["refused_subscription"] == 2
    assert (md.stats.refusals, md.stats.resubscribes, md.stats.snapshots) == (2, 2, snapshots + 1)
    [event] = [e for e in s.events if isinstance(e, BookResynced)]
    assert event.reason.startswith("stream disconnected")


async def test_after_a_drop_the_ticker_and_last_price_are_unknown_then_current(setup: Setup) -> None:
    s = setup
    md = s.conn.market_data
    first = await s.trade("100")
    await asyncio.wait_for(md.wait_trade(BTC, first), WAIT)
    ticker = s.conn.ticker(BTC)
    assert s.conn.last_trade_price(BTC) == D("100") and ticker is not None
    await s.drop_market_stream()
    assert s.conn.ticker(BTC) is None and s.conn.last_trade_price(BTC) is None
    await s.trade("101")  # while we are away: never streamed to us
    s.clock.advance(1.0)
    await s.until(lambda: s.conn.ready)
    task = s.conn.ctx.supervisor.records["market_data.last_prices-0"].task
    assert task is not None
    await asyncio.wait_for(asyncio.shield(task), WAIT)
    assert s.conn.last_trade_price(BTC) == D("101") and md.stats.price_refreshes == 1
    last = md.book(BTC).last_trade
    assert last is not None and str(last.trade_id) == first  # the last *streamed* trade
    assert s.conn.ticker(BTC) is None  # the venue sends one when the top changes
    s.assert_book_is_the_venues()
    await s.order(MAKER, "SELL", "105")
    await s.order(MAKER, "BUY", "99")
    top = s.sb.exchange.depth(SYMBOL, 1)
    # The venue pushed the ticker before the diff that carries this change, on the same socket.
    await asyncio.wait_for(md.wait_book(BTC, top.last_update_id), WAIT)
    fresh = s.conn.ticker(BTC)
    assert fresh is not None and (fresh.bid, fresh.ask) == (top.bids[0][0], top.asks[0][0])
