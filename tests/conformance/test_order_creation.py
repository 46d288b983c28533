"""Creating orders: what reaches the venue, what the connector reports, and how every way a
placement can end (acknowledged, refused by the venue, refused locally, answer lost) settles."""

from __future__ import annotations

import pytest
from harness import PAIR, D, Lab, World

from marketlink.core.budget import OrderCandidate
from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.events import OrderCreated, OrderFailed, OrderUnknown
from marketlink.core.orders import OrderState
from marketlink.sandbox.faults import StreamKind
from marketlink.strategy.api import StrategyContext


async def test_limit_buy_and_sell_reach_the_venue_as_asked_and_are_created(world: World) -> None:
    buy = world.conn.buy(PAIR, D("0.0123"), OrderType.LIMIT, D("50000.019"))
    sell = world.conn.sell(PAIR, D("0.02"), OrderType.LIMIT, D("70000.004"))
    expected = ((buy, Side.BUY, "0.0123", "50000.01"), (sell, Side.SELL, "0.02", "70000.01"))
    for cid, side, qty, price in expected:
        created = await world.created(cid)
        venue = world.venue_order(cid)
        # Exactly what the venue holds: prices on the tick toward the passive side.
        assert (venue.side, venue.order_type, venue.time_in_force) == (side, OrderType.LIMIT, TimeInForce.GTC)
        assert (venue.orig_qty, venue.price) == (D(qty), D(price))
        assert venue.client_order_id == cid and venue.is_working
        assert created.exchange_order_id == str(venue.order_id)
        assert (created.side, created.amount, created.price) == (side, D(qty), D(price))
        order = world.conn.in_flight_orders()[cid]
        assert order.state is OrderState.OPEN and order.exchange_order_id == str(venue.order_id)
        assert world.rec.kinds(cid) == ["OrderCreated"]
    # The venue locked the funds, and the connector's balances say the same.
    await world.rec.until(world.balances_match)
    assert world.conn.available_balance("USDT") < world.conn.total_balance("USDT")


async def test_an_order_the_venue_refuses_fails_with_the_venues_reason(world: World) -> None:
    intent = world.venue.venue_rejects(world.sb, PAIR)
    cid = world.place(intent)
    failed = await world.ended(cid)
    assert isinstance(failed, OrderFailed) and failed.reason is not None
    assert world.venue.rejection_reason in failed.reason  # the venue's words reach the strategy
    assert failed.executed_base == 0 and failed.missing_base == 0
    assert world.rec.kinds(cid) == ["OrderFailed"]
    assert cid not in world.conn.in_flight_orders()
    assert world.venue_orders(cid) == []
    assert world.conn.orders.counters.placed == 1 and world.conn.orders.counters.rejected == 1
    await world.rec.until(world.balances_match)  # nothing stays reserved for it


@pytest.mark.parametrize(
    ("amount", "price", "rule"),
    [
        ("0.00001", "50000", "min_notional"),  # 0.5 USDT
        ("0.000001", "50000", "amount_positive"),  # nothing left after rounding to the step
        ("100000", "50000", "max_order_size"),
    ],
)
async def test_an_order_a_trading_rule_forbids_is_never_sent(
    world: World, amount: str, price: str, rule: str
) -> None:
    cid = world.conn.buy(PAIR, D(amount), OrderType.LIMIT, D(price))
    failed = await world.ended(cid)
    assert isinstance(failed, OrderFailed)
    assert failed.reason is not None and failed.reason.startswith(f"rule {rule}:")
    assert world.rec.kinds(cid) == ["OrderFailed"]
    assert world.conn.orders.counters.placed == 0 and world.conn.orders.counters.refused_locally == 1
    assert world.venue_orders(cid) == []


@pytest.mark.parametrize("fault", ["delayed_answer", "lost_answer"])
async def test_a_placement_without_answer_that_the_venue_executed_settles_open(
    lab: Lab, fault: str
) -> None:
    world = await lab.world(request_timeout=0.3)
    rec = world.rec
    # Hold the private stream back, so only the reconciler's query can tell what happened.
    world.sb.faults.stall_streams(world.now_ms() + 3_000, StreamKind.USER)
    if fault == "delayed_answer":
        world.sb.faults.delay_responses(1.0, 1, path_prefix=world.venue.order_path)  # past our timeout
    else:
        world.sb.faults.lose_order_responses(1)  # the connection is cut after the order is made
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("49000"))
    created = await world.created(cid)
    assert rec.kinds(cid) == ["OrderUnknown", "OrderCreated"]
    unknown: OrderUnknown = rec.of(OrderUnknown, cid)[0]
    assert unknown.reason is not None
    venue = world.venue_order(cid)  # exactly one order...
    assert world.placements_received(cid) == 1  # ... from one request: the placement was not sent again
    assert created.exchange_order_id == str(venue.order_id)
    assert world.conn.in_flight_orders()[cid].state is OrderState.OPEN
    assert world.conn.orders.counters.placed == 1 and world.conn.orders.counters.unknown == 1
    assert world.conn.reconciler.counters.queries >= 1


async def test_a_placement_without_answer_that_never_reached_the_venue_settles_failed(lab: Lab) -> None:
    # A short receive window: once it has passed, the lost request can no longer be executed, so
    # "not found" answers count from then on.
    world = await lab.world(request_timeout=0.3, recv_window_ms=500)
    rec = world.rec
    world.sb.faults.timeout_requests(1, path_prefix=world.venue.order_path)  # held, never executed
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("49000"))
    failed = await world.ended(cid)
    assert isinstance(failed, OrderFailed) and failed.reason
    assert rec.kinds(cid) == ["OrderUnknown", "OrderFailed"]
    assert world.venue_orders(cid) == []
    assert world.conn.orders.counters.placed == 1  # never sent again, by the connector...
    assert world.placements_received(cid) == 1  # ... nor by its HTTP client
    counters = world.conn.reconciler.counters
    assert counters.not_found == counters.not_found_too_early + world.conn.ctx.tracker.lost_after
    assert world.sb.faults.fired.get("rest_timeout") == 1
    assert not rec.of(OrderCreated, cid)
    await rec.until(world.balances_match)


async def _hold_usdt(world: World, amount: str) -> None:
    """Bring our USDT at the venue to exactly ``amount`` and wait for the connector to know."""
    held = world.sb.ground_truth().balances["demo"]["USDT"].free
    world.deposit("USDT", str(D(amount) - held))
    await world.rec.until(world.balances_match)


async def test_a_market_order_larger_than_the_book_is_costed_at_its_deepest_level(world: World) -> None:
    """The venue fills what the book holds and expires the rest, so such an order is sent
    (judged at the farthest level it reaches), and a caller's price cheaper than that level
    does not make an order the venue will refuse look affordable."""
    conn, rec = world.conn, world.rec
    await _hold_usdt(world, "10000")
    world.maker("SELL", "0.01", "50000")
    await world.book_caught_up()
    swept = conn.buy(PAIR, D("0.03"), OrderType.MARKET)  # no price: the book's own reach
    await world.ended(swept)
    assert world.placements_received(swept) == 1
    assert world.venue_order(swept).executed_qty == D("0.01")
    await rec.until(world.balances_match)
    # The bid side, for a sell: 0.01 at 40000 in the book, 0.05 asked.
    world.maker("BUY", "0.01", "40000")
    await world.book_caught_up()
    sold = conn.sell(PAIR, D("0.05"), OrderType.MARKET)
    await world.ended(sold)
    assert world.placements_received(sold) == 1
    await rec.until(world.balances_match)
    # 0.02 in the book (50000, 70000), 0.021 asked at a reference of 50000: 1470 at worst.
    await _hold_usdt(world, "1150")
    world.maker("SELL", "0.01", "50000")
    world.maker("SELL", "0.01", "70000")
    await world.book_caught_up()
    dear = conn.buy(PAIR, D("0.021"), OrderType.MARKET, D("50000"))
    failed = await world.ended(dear)
    assert isinstance(failed, OrderFailed) and failed.reason is not None
    assert failed.reason.startswith("budget: insufficient USDT") and "1470" in failed.reason
    assert world.placements_received(dear) == 0


async def test_a_strategy_sizes_against_what_its_orders_in_flight_leave(world: World) -> None:
    """An order sent and not yet locked at the venue still takes its share: the candidate is
    shrunk to what is left rather than handed back whole and refused by the connector."""
    conn = world.conn
    await _hold_usdt(world, "1000")
    strategies = StrategyContext({"venue": conn}, conn.ctx.clock)
    first = strategies.buy("venue", PAIR, D("0.012"), OrderType.LIMIT, D("50000"))  # 600, in flight
    assert conn.spendable_balance("USDT") == D("400") < conn.available_balance("USDT")
    [sized] = strategies.shrink_to_budget(
        "venue", [OrderCandidate(PAIR, Side.BUY, OrderType.LIMIT, D("0.012"), D("50000"))]
    )
    assert (sized.amount, sized.price) == (D("0.008"), D("50000"))
    second = strategies.buy("venue", PAIR, sized.amount, OrderType.LIMIT, sized.price)
    await world.created(first)
    await world.created(second)
    await world.rec.until(world.balances_match)
    assert conn.available_balance("USDT") == conn.spendable_balance("USDT") == 0
