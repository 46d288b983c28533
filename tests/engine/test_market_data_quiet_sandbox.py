"""Quiet books against the sandbox's Binance front-end, the connector on a virtual clock.

Two pairs share one market connection. ETH-USDT keeps it alive with real diffs; BTC-USDT is
quiet. Once with nothing happening on BTC (its book must stay in sync, verified by one small
snapshot), once with the venue changing BTC's book while the diff that says so is withheld by a
sandbox fault (``skip_update_ids``: the diff never reaches us). Silence then hides a change, and
the verification must find the venue past our book and resync it to the venue's levels. The
sandbox ticks by hand; the connector's time moves only when the test advances it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D

import pytest
from sandbox_setup import WAIT, SandboxSetup, public_connector

from marketlink.core.events import BookResynced, ConnectorStatusChanged
from marketlink.sandbox.config import AccountConfig, SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.sandbox.venues.binance import BinanceSpotFrontend

BTC, ETH = "BTC-USDT", "ETH-USDT"
MAKER = "maker"


class Setup(SandboxSetup):

    async def rest(self, symbol: str, side: str, price: str) -> int:
        """The other account rests an order; the sandbox publishes the change; returns its id."""
        self.sb.exchange.place_order(MAKER, symbol, side, "LIMIT", quantity="1", price=price,
                                     time_in_force="GTC", now_ms=self.sb.context.clock.now_ms())
        await self.sb.tick()
        return self.sb.exchange.depth(symbol, None).last_update_id

    async def eth_traffic(self, price: str) -> None:
        """A real diff on the shared connection (ETH), seen by our book before returning."""
        update_id = await self.rest("ETHUSDT", "BUY", price)
        await asyncio.wait_for(self.conn.market_data.wait_book(ETH, update_id), WAIT)

    def resynced(self) -> list[BookResynced]:
        return [e for e in self.events if isinstance(e, BookResynced)]

    def ready_flips(self) -> list[bool]:
        flips = [e.ready for e in self.events if isinstance(e, ConnectorStatusChanged)]
        return flips[flips.index(True):]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    config = SandboxConfig(
        markets=(BTC, ETH), flow=False, seed=11, shutdown_timeout=0.25,
        accounts=(AccountConfig(MAKER, balances={"BTC": D("50"), "ETH": D("500"), "USDT": D("5000000")}),),
    )
    sb = Sandbox(config, [BinanceSpotFrontend], autotick=False)
    await sb.start()
    conn, clock = public_connector(sb, (BTC, ETH), book_stale_after=5.0)
    s = Setup(sb, conn, clock)
    try:
        await conn.start(timeout=WAIT)
        assert conn.market_data.stats.snapshots == 2
        yield s
    finally:
        await conn.stop()
        await sb.stop()


async def test_a_quiet_book_next_to_a_busy_one_stays_in_sync(setup: Setup) -> None:
    s = setup
    md = s.conn.market_data
    before = md.book(BTC).update_id
    for step in range(10):  # 20 s: ETH moves every 2 s, BTC never
        s.clock.advance(2.0)
        await s.eth_traffic(f"{1000 + step}")
    # At 6 s, then 10 s after that answer came (by 8 s): never one per book_stale_after.
    assert md.stats.verifications == 2 and md.stats.verified_current >= 1
    assert md.stats.snapshots == 2 and md.stats.resyncs == {BTC: 0, ETH: 0}
    assert md.book(BTC).in_sync and md.book(BTC).update_id == before
    assert s.resynced() == [] and s.ready_flips() == [True]


async def test_a_change_hidden_by_a_withheld_diff_is_found_and_resynced(setup: Setup) -> None:
    s = setup
    md = s.conn.market_data
    before = md.book(BTC).update_id
    s.sb.faults.skip_update_ids("BTCUSDT", 1)
    venue_id = await s.rest("BTCUSDT", "BUY", "10")  # a new bid the stream never tells us of
    assert venue_id > before and s.sb.faults.fired["depth_skip"] == 1
    for step in range(3):
        s.clock.advance(2.0)
        await s.eth_traffic(f"{1000 + step}")
    await s.until(lambda: bool(s.resynced()))  # at 6 s: the verification found the venue ahead
    [event] = s.resynced()
    assert event.trading_pair == BTC and event.update_id == venue_id
    assert f"moved to update {venue_id} (book at {before})" in event.reason
    assert md.stats.verified_behind == 1 and md.stats.resyncs == {BTC: 1, ETH: 0}
    venue = s.sb.exchange.depth("BTCUSDT", None)
    book = md.book(BTC).to_dict()
    assert book["bids"] == {D(str(p)): D(str(q)) for p, q in venue.bids} and D("10") in book["bids"]
    assert book["asks"] == {D(str(p)): D(str(q)) for p, q in venue.asks}
