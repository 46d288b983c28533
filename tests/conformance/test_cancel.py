"""Cancelling: confirmed by the cancel's answer or only later by the venue's report, refused for
an order the venue does not know, and cancel_all reporting one result per order."""

from __future__ import annotations

from harness import INSTANCE, OTHER_INSTANCE, PAIR, D, Lab, World, own_ids, saved_order

from marketlink.core.enums import OrderType, Side
from marketlink.core.events import OrderCancelled, OrderLost, TerminalOrderEvent
from marketlink.core.orders import OrderState
from marketlink.engine.orders import CancelOutcome
from marketlink.sandbox.exchange import OrderStatus
from marketlink.sandbox.faults import StreamKind


async def test_cancel_confirmed_by_the_cancels_answer(world: World) -> None:
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("48000"))
    await world.created(cid)
    if world.venue.cancel_answer_confirms:
        # Nothing comes by the private stream: the answer alone must end the order.
        world.sb.faults.stall_streams(world.now_ms() + 5_000, StreamKind.USER)
    world.conn.cancel(PAIR, cid)
    cancelled = await world.ended(cid)
    assert isinstance(cancelled, OrderCancelled) and cancelled.executed_base == 0
    assert world.rec.kinds(cid) == ["OrderCreated", "OrderCancelled"]
    assert world.venue_order(cid).status is OrderStatus.CANCELED
    assert cid not in world.conn.in_flight_orders()


async def test_cancel_confirmed_only_by_the_venues_later_report(lab: Lab) -> None:
    world = await lab.world(request_timeout=0.3)
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("48000"))
    await world.created(cid)
    # The venue cancels at once, but its answer comes after we stopped waiting for it.
    world.sb.faults.delay_responses(1.0, 1, path_prefix=world.venue.order_path)
    [result] = await world.conn.cancel_all(5.0)
    assert result.client_order_id == cid
    assert result.outcome is CancelOutcome.CANCELLED and result.state is OrderState.CANCELED
    assert world.rec.kinds(cid) == ["OrderCreated", "OrderCancelled"]
    assert world.venue_order(cid).status is OrderStatus.CANCELED
    assert world.sb.faults.fired.get("rest_delay") == 1


async def test_cancel_of_an_order_the_venue_does_not_know_fails_and_never_cancels_it(lab: Lab) -> None:
    cid = own_ids(lab.venue).new(Side.BUY, PAIR)
    phantom = saved_order(cid, "0.01", "45000", exchange_order_id="987654321")
    world = await lab.world(restore=[phantom], client_id_instance=INSTANCE)
    [result] = await world.conn.cancel_all(5.0)
    assert result.client_order_id == cid and result.outcome is CancelOutcome.FAILED
    assert result.reason is not None and "not found" in result.reason
    # The answers "not found" add up until the order is reported lost; it never ends cancelled.
    await world.rec.until(lambda: bool(world.rec.of(OrderLost, cid)))
    lost: OrderLost = world.rec.of(OrderLost, cid)[0]
    assert lost.not_found_count == world.conn.ctx.tracker.lost_after
    assert not world.rec.of(TerminalOrderEvent, cid)
    # Lost is not ended: the order may still hold funds and fill, so it stays in flight.
    assert world.conn.in_flight_orders()[cid].state is OrderState.LOST
    assert world.venue_orders(cid) == []


async def test_cancel_all_reports_each_order_with_the_one_failure(lab: Lab) -> None:
    phantom_id = own_ids(lab.venue).new(Side.SELL, PAIR)
    phantom = saved_order(phantom_id, "0.01", "90000", side=Side.SELL, exchange_order_id="987654321")
    world = await lab.world(restore=[phantom], client_id_instance=INSTANCE)
    # Another bot on the same account, running this software under another instance id: its
    # order is at the venue, and neither the open-orders diff nor cancel_all may touch it.
    foreign_id = own_ids(lab.venue, OTHER_INSTANCE).new(Side.SELL, PAIR)
    world.place_for_us("SELL", "0.01", "95000", foreign_id)
    live = [world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D(p)) for p in ("48000", "48500", "49000")]
    for cid in live:
        await world.created(cid)
    await world.conn.reconciler.run_once(full=True)  # the diff lists the foreign order: not adopted
    assert world.conn.reconciler.counters.foreign >= 1
    assert foreign_id not in world.conn.in_flight_orders()
    results = {r.client_order_id: r for r in await world.conn.cancel_all(5.0)}
    assert set(results) == {*live, phantom_id}
    assert all(results[cid].outcome is CancelOutcome.CANCELLED for cid in live)
    assert results[phantom_id].outcome is CancelOutcome.FAILED and not results[phantom_id].success
    for cid in live:
        assert world.rec.kinds(cid) == ["OrderCreated", "OrderCancelled"]
    assert not world.rec.of(TerminalOrderEvent, phantom_id)
    open_orders = world.sb.exchange.open_orders("demo", world.symbol)
    assert [(o.client_order_id, o.status) for o in open_orders] == [(foreign_id, OrderStatus.NEW)]
    assert world.rec.kinds(foreign_id) == [] and foreign_id not in world.conn.in_flight_orders()
    await world.rec.until(lambda: world.balances_match() and world.conn.available_balance("USDT")
                          == world.conn.total_balance("USDT"))


async def test_a_cancel_that_meets_a_fill_ends_already_done_not_failed(world: World) -> None:
    # The market maker's everyday race: the order fills at the venue while the cancel is on its
    # way, and the fill's report has not reached us yet (the private stream holds it), so the
    # venue answers the cancel "not found". One status query settles it as filled.
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("50000"))
    await world.created(cid)
    world.sb.faults.stall_streams(world.now_ms() + 60_000, StreamKind.USER)
    world.taker("SELL", "0.01", "50000")
    [result] = await world.conn.cancel_all(5.0)
    assert result.client_order_id == cid
    assert result.outcome is CancelOutcome.ALREADY_DONE and result.success
    assert result.state is OrderState.FILLED
    counters = world.conn.orders.counters
    assert counters.cancel_races == 1 and counters.cancel_failures == 0
    done = await world.ended(cid)  # the fills come by the trade history, not the held stream
    assert done.executed_base == D("0.01")
    assert world.rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderCompleted"]
    assert not world.rec.of(OrderLost, cid)
