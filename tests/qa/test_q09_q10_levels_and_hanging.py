"""Q9 multiple order levels, Q10 hanging orders."""

from __future__ import annotations

from decimal import Decimal

from harness import DEMO, D
from qa_support import Bot, QALab, inner_quote, journal_fills, pmm, seed_book, venue_fills

from marketlink.core.enums import Side
from marketlink.core.events import OrderCancelled, OrderCompleted, OrderCreated, OrderFailed
from marketlink.core.orders import InFlightOrder
from marketlink.journal import Journal
from marketlink.strategy.pure_market_making import PureMarketMaking

LEFT_USDT = D("1200")  # what the bot may spend on bids: two full levels and part of a third


def _ids(orders: list[InFlightOrder]) -> set[str]:
    return {o.client_order_id for o in orders}


async def test_q09_levels_go_and_come_together_shrunk_to_the_balance(lab: QALab, journal: Journal) -> None:
    sb = await lab.sandbox()
    bot = await lab.bot(sb, journal, "levels")
    world, conn = bot.world, bot.conn
    await seed_book(world)
    await world.rec.until(world.balances_match)
    world.deposit("USDT", str(-(conn.available_balance("USDT") - LEFT_USDT)))  # a withdrawal
    await world.rec.until(lambda: conn.available_balance("USDT") == LEFT_USDT)
    strategy = PureMarketMaking(pmm(order_levels=3, order_level_spread=D("0.5"), order_refresh_time=5.0,
                                    order_refresh_tolerance_pct=D("-1")))
    await bot.run(strategy)
    await bot.until(lambda: bot.settled(quotes=6))
    bids = sorted((o for o in bot.ctx.open_orders() if o.side is Side.BUY), key=lambda o: -(o.price or 0))
    asks = [o for o in bot.ctx.open_orders() if o.side is Side.SELL]
    assert [o.amount for o in asks] == [D("0.01")] * 3  # plenty of BTC: full size
    assert [o.amount for o in bids[:2]] == [D("0.01")] * 2
    assert D(0) < bids[2].amount < D("0.01")  # the outermost bid is what the balance still allows
    locked = sum(((o.price or D(0)) * o.amount for o in bids), Decimal(0))
    assert locked <= LEFT_USDT
    await world.rec.until(lambda: conn.available_balance("USDT") == LEFT_USDT - locked)
    first = _ids(bot.ctx.open_orders())
    # The refresh cancels all six together, and places six again.
    await bot.advance(5.0)
    await bot.until(lambda: bot.settled(quotes=0))
    assert {e.client_order_id for e in world.rec.of(OrderCancelled)} == first
    await world.rec.until(lambda: conn.available_balance("USDT") == LEFT_USDT)
    await bot.advance(1.0)
    await bot.until(lambda: bot.settled(quotes=6))
    assert not _ids(bot.ctx.open_orders()) & first
    assert not world.rec.of(OrderFailed)
    await bot.stop()
    assert sb.exchange.open_orders(DEMO, world.symbol) == []
    await world.rec.until(world.balances_match)


async def _hanging_bot(lab: QALab, journal: Journal, cancel_pct: str) -> tuple[Bot, PureMarketMaking]:
    sb = await lab.sandbox()
    bot = await lab.bot(sb, journal, "hanging")
    await seed_book(bot.world)
    strategy = PureMarketMaking(pmm(order_refresh_time=5.0, order_refresh_tolerance_pct=D("-1"),
                                    hanging_orders_enabled=True, hanging_orders_cancel_pct=D(cancel_pct)))
    await bot.run(strategy)
    await bot.until(lambda: bot.settled(quotes=2))
    return bot, strategy


async def _fill_bid(bot: Bot) -> tuple[str, str]:
    """Someone takes our whole bid; returns (bid id, the ask that now hangs)."""
    bid = inner_quote(bot.ctx.open_orders(), "BUY")
    ask = inner_quote(bot.ctx.open_orders(), "SELL")
    bot.world.taker("SELL", str(bid.amount), str(bid.price))
    await bot.until(lambda: bot.strategy is not None and bot.strategy.status(bot.ctx)["hanging"] == "1")
    assert bot.world.rec.of(OrderCompleted, bid.client_order_id)
    await bot.world.book_caught_up()  # the next tick sees the book without our bid
    return bid.client_order_id, ask.client_order_id


async def test_q10_hanging_orders_outlive_refreshes_fill_and_are_cancelled_at_stop(
    lab: QALab, journal: Journal,
) -> None:
    bot, strategy = await _hanging_bot(lab, journal, "10")
    world, rec = bot.world, bot.world.rec
    _bid, hanging = await _fill_bid(bot)
    await bot.advance(1.0)  # a new pair beside the hanging ask
    await bot.until(lambda: bot.settled(quotes=3))
    pair2 = _ids(bot.ctx.open_orders()) - {hanging}
    await bot.advance(5.0)  # refresh: the new pair goes, the hanging ask stays
    await bot.until(lambda: bot.settled(quotes=1))
    assert _ids(bot.ctx.open_orders()) == {hanging}
    assert {e.client_order_id for e in rec.of(OrderCancelled)} == pair2
    assert strategy.status(bot.ctx)["hanging"] == "1"
    # The hanging ask fills: recorded like any fill.
    order = bot.conn.in_flight_orders()[hanging]
    world.taker("BUY", str(order.amount), str(order.price))
    await bot.until(lambda: strategy.status(bot.ctx)["hanging"] == "0")
    assert rec.of(OrderCompleted, hanging)
    # A second hanging ask, cancelled when the strategy stops.
    await bot.advance(1.0)
    await bot.until(lambda: bot.settled(quotes=2))
    _bid2, hanging2 = await _fill_bid(bot)
    await bot.stop()
    assert rec.of(OrderCancelled, hanging2)
    assert world.sb.exchange.open_orders(DEMO, world.symbol) == []
    created = [e.client_order_id for e in rec.of(OrderCreated)]
    assert len(created) == len(set(created)) == 6  # three pairs, nothing re-placed or duplicated
    stored = journal_fills(journal.fills(bot.bot_id))
    assert hanging in {f[0] for f in stored}
    assert len(stored) == len(set(stored)) and set(stored) == venue_fills(world.sb, world.symbol)


async def test_q10_a_hanging_order_the_price_moved_away_from_is_cancelled(
    lab: QALab, journal: Journal,
) -> None:
    # Our bid gone, the best bid is the other account's 49000: the mid drops by about 1 %, more
    # than the 0.5 % a hanging order may be from it.
    bot, strategy = await _hanging_bot(lab, journal, "0.5")
    _bid, hanging = await _fill_bid(bot)
    await bot.advance(1.0)
    await bot.until(lambda: bool(bot.world.rec.of(OrderCancelled, hanging)))
    await bot.until(lambda: strategy.status(bot.ctx)["hanging"] == "0")
    await bot.stop()
