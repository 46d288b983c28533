"""Q4 strategy compatibility, Q5 live status, Q6 submit and cancel."""

from __future__ import annotations

from decimal import Decimal

from harness import DEMO, PAIR, D
from qa_support import QALab, inner_quote, pmm, seed_book

from marketlink.core.enums import OrderType
from marketlink.core.events import OrderCancelled, OrderCompleted, OrderCreated, OrderFailed, OrderFilled
from marketlink.journal import Journal
from marketlink.strategy import REGISTRY, parse_config
from marketlink.strategy.pure_market_making import PureMarketMaking

#: The parameters of each built-in strategy for one short run on ``bot`` BTC-USDT. A strategy
#: added to the registry without a row here fails the test below: every one must be tried.
BUILT_IN = {
    "pure_market_making": "{bid_spread: 0.2, ask_spread: 0.2, order_amount: 0.01, order_refresh_time: 60}",
    "periodic_taker": "{side: BUY, order_amount: 0.01, interval: 5, max_orders: 2}",
}


def _yaml(venue: str, strategy: str, params: str) -> str:
    return (f"strategy: {strategy}\nconnectors: {{bot: {{venue: {venue}, trading_pairs: [{PAIR}]}}}}\n"
            f"parameters: {{connector: bot, trading_pair: {PAIR}, {params[1:]}\n")


async def test_q04_every_built_in_strategy_trades_as_maker_or_taker(lab: QALab, journal: Journal) -> None:
    assert set(REGISTRY.names()) == set(BUILT_IN)
    sb = await lab.sandbox()
    for name, params in BUILT_IN.items():
        bot = await lab.bot(sb, journal, name)
        await seed_book(bot.world)
        strategy = parse_config(_yaml(lab.venue.name, name, params)).create_strategy()
        await bot.run(strategy)
        rec = bot.world.rec
        if name == "pure_market_making":  # a maker: both quotes rest, one is taken
            await bot.until(lambda b=bot: b.settled(quotes=2))  # type: ignore[misc]
            bid = inner_quote(bot.ctx.open_orders(), "BUY")
            bot.world.taker("SELL", str(bid.amount), str(bid.price))
            await rec.until(lambda r=rec, c=bid.client_order_id: bool(r.of(OrderCompleted, c)))  # type: ignore[misc]
            assert {e.order_type for e in rec.of(OrderCreated)} <= {OrderType.LIMIT_MAKER, OrderType.LIMIT}
        else:  # a taker: market orders at each interval, up to its maximum
            await rec.until(lambda r=rec: len(r.of(OrderCompleted)) == 1)  # type: ignore[misc]
            await bot.advance(5.0)
            await rec.until(lambda r=rec: len(r.of(OrderCompleted)) == 2)  # type: ignore[misc]
            assert {e.order_type for e in rec.of(OrderCreated)} == {OrderType.MARKET}
        fills: list[OrderFilled] = rec.of(OrderFilled)
        assert fills and all(f.is_taker is (name == "periodic_taker") for f in fills)
        assert bot.runner is not None and bot.runner.errors == 0
        await bot.stop()
        await rec.until(bot.world.balances_match)
    assert sb.exchange.open_orders(DEMO, lab.venue.symbol(PAIR)) == []


async def test_q05_status_follows_the_book_balances_and_the_strategys_orders(
    lab: QALab, journal: Journal,
) -> None:
    sb = await lab.sandbox()
    bot = await lab.bot(sb, journal, "status")
    world, conn = bot.world, bot.conn
    await seed_book(world)
    for bid, ask in (("49500", "51000"), ("49800", "50800"), ("49900", "50100")):
        world.maker("BUY", "0.5", bid)
        world.maker("SELL", "0.5", ask)
        await world.book_caught_up()
        venue = sb.exchange.book_ticker(world.symbol)
        assert (conn.best_bid(PAIR), conn.best_ask(PAIR)) == (venue.bid_price, venue.ask_price)
        assert conn.mid_price(PAIR) == (Decimal(bid) + Decimal(ask)) / 2
    usdt = conn.available_balance("USDT")
    strategy = PureMarketMaking(pmm(order_levels=3, order_level_spread=D("0.5"), bid_spread=D("1"),
                                    ask_spread=D("1")))
    runner = await bot.run(strategy)
    await bot.until(lambda: bot.settled(quotes=6))
    status = runner.status()
    assert len(status.open_orders) == 6 and status.strategy_status["quotes"] == "6"
    locked = sum(((o.price or D(0)) * o.amount for o in status.open_orders if str(o.side) == "BUY"), D(0))
    await world.rec.until(lambda: conn.available_balance("USDT") == usdt - locked)
    assert runner.status().balances["bot"]["USDT"] == (conn.total_balance("USDT"), usdt - locked)
    await bot.stop()
    await world.rec.until(lambda: conn.available_balance("USDT") == usdt)
    assert runner.status().open_orders == () and runner.status().balances["bot"]["USDT"][1] == usdt


async def test_q06_orders_carry_the_prefix_match_the_venue_and_foreign_ones_are_left_alone(
    lab: QALab, journal: Journal,
) -> None:
    sb = await lab.sandbox()
    bot = await lab.bot(sb, journal, "orders", prefix="qa6")
    world, conn = bot.world, bot.conn
    await seed_book(world)
    # An order of the same account placed by hand, and one by the connector outside the strategy.
    manual = world.place_for_us("BUY", "0.01", "40000", "by-hand-1")
    outside = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("41000"))
    await world.created(outside)
    runner = await bot.run(PureMarketMaking(pmm(order_levels=2, order_level_spread=D("0.2"))))
    await bot.until(lambda: bot.settled(quotes=4))
    # A rule-breaking order through the strategy's context is refused locally, the rule named.
    tiny = bot.ctx.buy("bot", PAIR, D("0.00001"), OrderType.LIMIT, D("45000"))
    failed = await world.ended(tiny)
    assert isinstance(failed, OrderFailed) and (failed.reason or "").startswith("rule min_notional:")
    assert world.venue_orders(tiny) == [] and conn.orders.counters.refused_locally == 1
    for order in bot.ctx.open_orders():
        assert order.client_order_id.startswith("qa6")
        venue = world.venue_order(order.client_order_id)
        assert (venue.side, venue.price, venue.orig_qty) == (order.side, order.price, order.amount)
        assert venue.order_type.value == order.order_type.value and venue.is_working
        assert order.exchange_order_id == str(venue.order_id)
    assert not world.rec.of(OrderFailed) or [e.client_order_id for e in world.rec.of(OrderFailed)] == [tiny]
    ladder = {o.client_order_id for o in bot.ctx.open_orders()}
    await bot.stop()
    assert runner.left_open == ()
    assert {e.client_order_id for e in world.rec.of(OrderCancelled)} == ladder
    # The hand-made order and the one placed outside the strategy are still there.
    still_open = {o.client_order_id for o in sb.exchange.open_orders(DEMO, world.symbol)}
    assert still_open == {manual.client_order_id, outside}
    assert conn.in_flight_orders()[outside].state.value == "OPEN"
    assert manual.client_order_id not in conn.in_flight_orders()
    # A connector-wide cancel-all cancels its own order, never the hand-made one.
    results = await conn.cancel_all(5.0)
    assert [r.client_order_id for r in results] == [outside]
    left = [o.client_order_id for o in sb.exchange.open_orders(DEMO, world.symbol)]
    assert left == [manual.client_order_id]
