"""Q7, fast refresh: market making with a very short refresh and no tolerance, cancelling and
re-creating on every cycle, with fills during the churn, against small new-order limits."""

from __future__ import annotations

from decimal import Decimal

from harness import DEMO, PAIR, D
from qa_support import Bot, QALab, extras, inner_quote, journal_fills, pmm, seed_book, venue_fills

from marketlink.core.enums import OrderType
from marketlink.core.events import (
    ConnectorStatusChanged,
    OrderCreated,
    OrderFailed,
    OrderLost,
    RateLimitNear,
    TerminalOrderEvent,
)
from marketlink.journal import Journal
from marketlink.strategy.pure_market_making import PureMarketMaking

CYCLES = 8  # each: a fill, a refresh that cancels the ladder, a new ladder of four orders
#: The connector's new-order limit, and the venue's. The connector counts in sliding windows,
#: the venue in fixed ones a request's latency later: twice ours is the most one of the venue's
#: windows can then see, so the venue never has to refuse and a refusal would be a throttler bug.
OUR_ORDERS_PER_SECOND = 5
VENUE_ORDERS_PER_SECOND = 2 * OUR_ORDERS_PER_SECOND


def _never_down_after_start(bot: Bot) -> bool:
    changes = bot.world.rec.of(ConnectorStatusChanged)
    ready_at = next(i for i, c in enumerate(changes) if c.ready)
    return all(c.ready for c in changes[ready_at:])


async def _small_order_limits(lab: QALab, journal: Journal) -> Bot:
    venue, options = extras(lab.venue).order_limit(lab.venue, OUR_ORDERS_PER_SECOND, VENUE_ORDERS_PER_SECOND)
    lab.venue = venue  # this lab's connectors get the small limit too
    sb = await lab.sandbox(options=options)
    return await lab.bot(sb, journal, "fast")


async def test_q07_fast_refresh_churns_cleanly_and_records_every_fill(lab: QALab, journal: Journal) -> None:
    bot = await _small_order_limits(lab, journal)
    world, conn = bot.world, bot.conn
    await seed_book(world)
    strategy = PureMarketMaking(pmm(
        order_levels=2, order_level_spread=D("0.1"), order_refresh_time=1.0,
        order_refresh_tolerance_pct=D("0"),
    ))
    await bot.run(strategy, tick=1.0)
    await bot.until(lambda: bot.settled(quotes=4))
    for cycle in range(CYCLES):
        # Someone takes our inner quote (bid and ask in turn): a fill in the middle of the churn.
        side = "BUY" if cycle % 2 == 0 else "SELL"
        target = inner_quote(bot.ctx.open_orders(), side)
        assert target.price is not None
        world.taker("SELL" if side == "BUY" else "BUY", str(target.amount), str(target.price))
        await bot.until(lambda: bot.settled(quotes=3))
        # Refresh time: with a quote gone the ladder differs from the proposal (no tolerance),
        # so all of it is cancelled; the next tick places a fresh one.
        await bot.advance(1.0)
        await bot.until(lambda: bot.settled(quotes=0))
        await bot.advance(1.0)
        await bot.until(lambda: bot.settled(quotes=4))
    assert strategy.cycles == CYCLES + 1
    await bot.stop()

    rec = world.rec
    created = rec.of(OrderCreated)
    assert len(created) == 4 * (CYCLES + 1)
    # No stuck or lost order: every one ended exactly once, the venue holds none, nor does the tracker.
    for event in created:
        assert len(rec.of(TerminalOrderEvent, event.client_order_id)) == 1
    assert not rec.of(OrderLost) and not rec.of(OrderFailed)
    assert world.sb.exchange.open_orders(DEMO, world.symbol) == []
    assert bot.live() == [] and bot.runner is not None and bot.runner.left_open == ()
    # Balances: ours equal the venue's.
    await rec.until(world.balances_match)
    # Every fill of the churn is recorded, once, exactly as the venue's trade history has it.
    stored = journal_fills(journal.fills(bot.bot_id))
    assert len(stored) == len(set(stored)) == CYCLES
    assert set(stored) == venue_fills(world.sb, world.symbol)
    # The limit: a warning as it neared, the venue never had to refuse, the connection stayed up.
    near = rec.of(RateLimitNear)
    assert near and {e.pool for e in near} == {extras(lab.venue).order_pool}
    assert conn.ctx.http.stats.errors.get("RateLimited", 0) == 0
    assert conn.user_stream.counters.connections == 1 and _never_down_after_start(bot)


async def test_q07_at_the_order_limit_new_orders_wait_while_the_connection_stays_up(
    lab: QALab, journal: Journal,
) -> None:
    bot = await _small_order_limits(lab, journal)
    world, conn = bot.world, bot.conn
    burst = 2 * OUR_ORDERS_PER_SECOND
    prices = [Decimal(40000 + i) for i in range(burst)]
    ids = [conn.buy(PAIR, D("0.001"), OrderType.LIMIT, p) for p in prices]
    # More than a second's worth at once: the throttler holds the rest instead of sending them.
    await world.rec.until(lambda: conn.ctx.throttler.waiting > 0)
    assert len(world.rec.of(OrderCreated)) < burst
    near: list[RateLimitNear] = world.rec.of(RateLimitNear)
    assert near and near[0].pool == extras(lab.venue).order_pool
    assert near[0].fraction >= conn.config.near_limit
    await world.rec.until(lambda: len(world.rec.of(OrderCreated)) == burst)
    assert all(len(world.venue_orders(cid)) == 1 for cid in ids)
    assert not world.rec.of(OrderFailed)
    assert conn.ctx.http.stats.errors.get("RateLimited", 0) == 0  # paused here, not refused there
    assert conn.ready and conn.user_stream.connected and conn.user_stream.counters.connections == 1
    assert _never_down_after_start(bot)

