"""Market data: books in sync with the venue's from the start, following the market flow with its
trades and tickers, resynced after a dropped stream, and what a strategy reads off them.

These scenarios run the sandbox's market flow without its timer (``autotick=False``): the market
moves only when a scenario steps it, so every book state is known. A book is awaited at the
venue's update id (``World.book_caught_up``), a recovery through its ``BookResynced`` event.
"""

from __future__ import annotations

import pytest
from harness import PAIR, D, Lab

from marketlink.core.enums import Side
from marketlink.core.errors import UnknownSymbol
from marketlink.core.events import BookResynced
from marketlink.sandbox.faults import StreamKind
from marketlink.sandbox.markets_default import DEFAULT_PAIRS


async def test_every_pair_becomes_ready_with_the_venues_book(lab: Lab) -> None:
    sb = await lab.sandbox(DEFAULT_PAIRS, flow=True, autotick=False)
    world = await lab.world(sb, DEFAULT_PAIRS, snapshot_concurrency=2)  # fewer at once than pairs
    n = len(DEFAULT_PAIRS)
    assert world.conn.ready and n > 2
    assert world.conn.status()["order_books"].detail == f"{n} books in sync"
    await world.assert_books_are_the_venues()
    stats = world.conn.market_data.stats
    assert stats.snapshots == n and stats.snapshot_failures == 0 and stats.malformed == 0


async def test_books_trades_and_tickers_follow_the_market_flow(lab: Lab) -> None:
    pairs = (PAIR, "ETH-USDT")
    sb = await lab.sandbox(pairs, flow=True, autotick=False)
    world = await lab.world(sb, pairs)
    conn = world.conn
    for _ in range(30):
        await sb.tick()
    await world.assert_books_are_the_venues()
    # Trades and tickers were sent before the last depth change on the same socket: all handled.
    for pair in pairs:
        truth = sb.exchange.depth(lab.venue.symbol(pair), 1)
        top = (truth.bids[0][0], truth.asks[0][0])
        assert (conn.best_bid(pair), conn.best_ask(pair)) == top
        ticker = conn.ticker(pair)
        assert ticker is not None and (ticker.bid, ticker.ask) == top
        trades = sb.exchange.recent_trades(lab.venue.symbol(pair))
        if trades:
            assert conn.last_trade_price(pair) == trades[-1].price
    stats = conn.market_data.stats
    assert stats.diffs_applied > 0 and stats.trades > 0
    assert stats.resyncs == {p: 0 for p in pairs}


async def test_a_dropped_market_stream_reconnects_and_resyncs_every_book(lab: Lab) -> None:
    pairs = (PAIR, "ETH-USDT", "ETH-BTC")
    sb = await lab.sandbox(pairs, flow=True, autotick=False)
    world = await lab.world(sb, pairs)
    rec = world.rec
    sb.faults.drop_streams(StreamKind.MARKET)
    await sb.tick()  # the front-end closes its market sockets on its tick
    await rec.until(lambda: len(rec.of(BookResynced)) == len(pairs))
    resynced: list[BookResynced] = rec.of(BookResynced)
    assert sorted(e.trading_pair for e in resynced) == sorted(pairs)
    assert all(e.reason.startswith("stream disconnected") for e in resynced)
    assert world.conn.market_data.stats.connects == 2
    for _ in range(10):
        await sb.tick()
    await world.assert_books_are_the_venues()
    assert world.conn.ready


async def test_a_strategys_book_queries_answer_from_the_venues_book(lab: Lab) -> None:
    sb = await lab.sandbox(flow=True, autotick=False)
    world = await lab.world(sb)
    conn = world.conn
    await world.book_caught_up()
    truth = sb.exchange.depth(world.symbol, 5)
    (bid, bid_qty), (ask, ask_qty) = truth.bids[0], truth.asks[0]
    assert (conn.best_bid(PAIR), conn.best_ask(PAIR)) == (bid, ask)
    mid = conn.mid_price(PAIR)
    assert mid is not None and bid < mid < ask
    assert conn.book_rows(PAIR, Side.BUY, 3) == [(p, q) for p, q in truth.bids[:3]]
    assert conn.book_rows(PAIR, Side.SELL, 3) == [(p, q) for p, q in truth.asks[:3]]
    # A volume reaching into the second level: priced there, averaged over both.
    (ask2, ask2_qty), (bid2, _) = truth.asks[1], truth.bids[1]
    volume = ask_qty + ask2_qty
    vwap, filled = conn.vwap_for_volume(PAIR, True, volume)
    assert filled == volume and vwap is not None
    assert abs(vwap * volume - (ask * ask_qty + ask2 * ask2_qty)) < D("1e-18")  # (to its precision)
    assert conn.price_for_volume(PAIR, True, volume) == ask2
    assert conn.price_for_volume(PAIR, False, bid_qty) == bid
    assert conn.price_for_volume(PAIR, False, bid_qty + D("0.00001")) == bid2
    with pytest.raises(UnknownSymbol):
        conn.book("DOGE-USDT")  # not one of the connector's pairs
