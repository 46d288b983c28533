"""Q8, long refresh: quotes live a long (virtual) time; a network outage in the middle (streams
dropped and held, REST timing out) while the quotes fill; afterwards the orders are tracked again,
the outage's fills are recorded, and the refresh still cancels what did not fill."""

from __future__ import annotations

from harness import DEMO, D
from qa_support import QALab, inner_quote, journal_fills, pmm, seed_book, venue_fills

from marketlink.core.events import ConnectorStatusChanged, OrderCancelled, OrderCompleted, OrderFilled
from marketlink.core.orders import OrderState
from marketlink.journal import Journal
from marketlink.sandbox.faults import StreamKind
from marketlink.strategy.pure_market_making import PureMarketMaking

HOUR = 3600.0


async def test_q08_orders_outlive_an_outage_and_its_fills_are_recorded(lab: QALab, journal: Journal) -> None:
    sb = await lab.sandbox()
    # Slow polling while the stream is live, fast while it is down: only the outage makes it poll.
    bot = await lab.bot(sb, journal, "slow", reconcile_fast=0.2, request_timeout=0.5)
    world, conn = bot.world, bot.conn
    await seed_book(world)
    strategy = PureMarketMaking(pmm(order_levels=2, order_level_spread=D("0.1"), order_refresh_time=HOUR))
    await bot.run(strategy)
    await bot.until(lambda: bot.settled(quotes=4))
    first = {o.client_order_id for o in bot.ctx.open_orders()}
    # Half the refresh time passes: nothing is touched.
    await bot.advance(HOUR / 2)
    assert {o.client_order_id for o in bot.ctx.open_orders()} == first
    assert not world.rec.of(OrderCancelled)
    assert conn.ready and conn.user_stream.counters.connections == 1  # the connection was kept

    # The outage: every stream held, then cut; the next REST requests hang past our timeout.
    rec = world.rec
    sb.faults.stall_streams(world.now_ms() + 1_500, StreamKind.ANY)
    sb.faults.timeout_requests(2)
    bid = inner_quote(bot.ctx.open_orders(), "BUY")
    ask = inner_quote(bot.ctx.open_orders(), "SELL")
    assert bid.price is not None and ask.price is not None
    world.taker("SELL", str(bid.amount), str(bid.price))  # fills while we cannot hear of it
    world.taker("BUY", "0.004", str(ask.price))  # a partial fill too
    sb.faults.drop_streams(StreamKind.ANY)
    await rec.until(lambda: any(isinstance(e, ConnectorStatusChanged) and not e.ready for e in rec.events))

    # Afterwards: both fills arrive (by the reconnect's reconcile or by polling), and the
    # connector is ready again with every open order tracked as the venue has it.
    await rec.until(lambda: bool(rec.of(OrderCompleted, bid.client_order_id)))
    await rec.until(lambda: bool(rec.of(OrderFilled, ask.client_order_id)))
    await rec.until(lambda: conn.ready)
    venue_open = {o.client_order_id: o for o in sb.exchange.open_orders(DEMO, world.symbol)}
    tracked = {o.client_order_id: o for o in bot.live()}
    assert set(tracked) == set(venue_open) == first - {bid.client_order_id}
    for cid, order in tracked.items():
        assert order.executed_base == venue_open[cid].executed_qty
    assert tracked[ask.client_order_id].state is OrderState.PARTIALLY_FILLED
    assert conn.user_stream.counters.connections >= 2
    assert sb.faults.fired.get("rest_timeout") == 2  # the REST side of the outage did happen
    await bot.recorder.drain()
    stored = journal_fills(journal.fills(bot.bot_id))
    assert len(stored) == len(set(stored)) == 2
    assert set(stored) == venue_fills(sb, world.symbol)

    # The refresh time comes: the quotes that did not fill are cancelled (no tolerance: the
    # ladder changed with the fill) and a new ladder is placed.
    await bot.until(lambda: bot.settled(quotes=3))
    await bot.advance(HOUR / 2)
    await bot.until(lambda: bot.settled(quotes=0))
    cancelled = {e.client_order_id for e in rec.of(OrderCancelled)}
    assert cancelled == first - {bid.client_order_id}
    await bot.advance(1.0)
    await bot.until(lambda: bot.settled(quotes=4))
    assert not {o.client_order_id for o in bot.ctx.open_orders()} & first
    await bot.stop()
    assert sb.exchange.open_orders(DEMO, world.symbol) == []
    await rec.until(world.balances_match)
