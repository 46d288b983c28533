"""Q12, data integrity: with the market moving, the live book equals the venue's after every
change, and the prices a strategy and a status view read follow it."""

from __future__ import annotations

import asyncio

from harness import PAIR, WAIT, World
from qa_support import QALab

from marketlink.cli.live import ticker_line
from marketlink.core.enums import Side
from marketlink.core.events import BookResynced

CHANGES = 12  # book changes followed
MAX_TICKS = 200  # bound on market-flow steps while waiting for one change


async def _next_change(world: World) -> None:
    before = world.sb.exchange.depth(world.symbol, None).last_update_id
    for _ in range(MAX_TICKS):
        await world.sb.tick()
        if world.sb.exchange.depth(world.symbol, None).last_update_id != before:
            return
    raise AssertionError(f"the market did not change in {MAX_TICKS} steps")


async def test_q12_the_live_book_and_prices_equal_the_venues_after_every_change(lab: QALab) -> None:
    sb = await lab.sandbox(flow=True, autotick=False)
    world = await lab.world(sb)
    conn = world.conn
    seen: set[int] = set()
    traded: set[int] = set()
    earlier = sb.exchange.recent_trades(world.symbol, 1)
    before_start = earlier[-1].trade_id if earlier else -1
    for _ in range(CHANGES):
        await _next_change(world)
        await world.book_caught_up()
        truth = sb.exchange.depth(world.symbol, None)
        book = conn.book(PAIR)
        assert book.in_sync and book.update_id == truth.last_update_id
        assert book.to_dict() == {"bids": dict(truth.bids), "asks": dict(truth.asks)}
        top = sb.exchange.book_ticker(world.symbol)
        assert (conn.best_bid(PAIR), conn.best_ask(PAIR)) == (top.bid_price, top.ask_price)
        assert top.bid_price is not None and top.ask_price is not None
        assert conn.mid_price(PAIR) == (top.bid_price + top.ask_price) / 2
        assert conn.book_rows(PAIR, Side.BUY, 5) == list(truth.bids[:5])
        seen.add(truth.last_update_id)
        # The ticker view (and the last price a strategy may quote from) follows the venue's
        # latest trade, which comes on its own stream.
        trades = sb.exchange.recent_trades(world.symbol, 1)
        if trades and trades[-1].trade_id > before_start:  # (older ones predate our stream)
            venue_last = trades[-1]
            last = await asyncio.wait_for(conn.market_data.wait_trade(PAIR, str(venue_last.trade_id)), WAIT)
            traded.add(venue_last.trade_id)
            assert last.price == venue_last.price and conn.last_trade_price(PAIR) == venue_last.price
            assert conn.ctx.last_prices[PAIR] == venue_last.price
            assert ticker_line(PAIR, conn.best_bid(PAIR), conn.best_ask(PAIR), conn.last_trade_price(PAIR)) \
                == ticker_line(PAIR, top.bid_price, top.ask_price, venue_last.price)
    assert len(seen) == CHANGES  # it changed every time the venue's did
    assert len(traded) >= 2  # and the flow traded along the way, more than once
    assert conn.ready and not world.rec.of(BookResynced)  # followed by diffs, never lost
