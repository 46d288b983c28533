"""Fills: by the private stream, again (duplicates), by REST while the stream is down or silent,
and for an order the venue could not find for a while."""

from __future__ import annotations

from harness import INSTANCE, PAIR, D, Lab, World, own_ids, saved_order

from marketlink.core.enums import OrderType, Side
from marketlink.core.events import OrderCompleted, OrderFilled, OrderLost
from marketlink.core.orders import OrderState
from marketlink.sandbox.faults import StreamKind


def _venue_fills(world: World, exchange_order_id: str) -> list[tuple[str, D, D, tuple[tuple[str, D], ...]]]:
    trades = world.sb.exchange.my_trades("demo", world.symbol, order_id=int(exchange_order_id))
    return [(str(t.trade_id), t.price, t.qty, ((t.commission_asset, t.commission),)) for t in trades]


def _our_fills(world: World, cid: str) -> list[tuple[str, D, D, tuple[tuple[str, D], ...]]]:
    fills: list[OrderFilled] = world.rec.of(OrderFilled, cid)
    return [(f.trade_id, f.price, f.amount, tuple((x.token, x.amount) for x in f.fee_amounts)) for f in fills]


async def test_partial_then_full_fill_by_the_stream_with_the_fees_of_each_fill(world: World) -> None:
    rec = world.rec
    cid = world.conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    created = await world.created(cid)
    world.taker("SELL", "0.005", "50000")
    await rec.until(lambda: world.conn.in_flight_orders()[cid].state is OrderState.PARTIALLY_FILLED)
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled"]
    world.taker("SELL", "0.015", "49000")  # trades at the resting order's price
    done = await world.ended(cid)
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderFilled", "OrderCompleted"]
    assert created.exchange_order_id is not None
    assert _our_fills(world, cid) == _venue_fills(world, created.exchange_order_id)
    assert isinstance(done, OrderCompleted)
    assert done.executed_base == D("0.02") and done.executed_quote == D("1000") and done.missing_base == 0
    assert world.conn.reconciler.counters.fill_fetches == 0  # all of it came by the stream
    await rec.until(world.balances_match)


async def test_the_same_fills_arriving_again_are_counted_once(world: World) -> None:
    rec = world.rec
    cid = world.conn.buy(PAIR, D("0.03"), OrderType.LIMIT, D("50000"))
    created = await world.created(cid)
    world.sb.faults.duplicate_messages(20, StreamKind.USER)  # every private message twice
    world.taker("SELL", "0.01", "50000")
    world.taker("SELL", "0.02", "50000")
    await world.ended(cid)
    await rec.until(world.balances_match)
    assert world.sb.faults.fired.get("duplicate", 0) >= 4
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderFilled", "OrderCompleted"]
    assert created.exchange_order_id is not None
    assert _our_fills(world, cid) == _venue_fills(world, created.exchange_order_id)
    assert world.conn.ctx.tracker.counters.duplicate_fill >= 2


async def test_fills_are_recovered_by_rest_while_the_user_stream_is_down(world: World) -> None:
    rec = world.rec
    cid = world.conn.buy(PAIR, D("0.03"), OrderType.LIMIT, D("50000"))
    created = await world.created(cid)
    # The stream goes quiet and then drops: the fills below never come through it (the stalled
    # socket dies holding them, and a new subscription does not replay the past). The stall also
    # holds the next subscription's events for a moment, so the stream stays down a while.
    world.sb.faults.stall_streams(world.now_ms() + 1_500, StreamKind.USER)
    world.taker("SELL", "0.01", "50000")
    world.taker("SELL", "0.02", "50000")
    world.sb.faults.drop_streams(StreamKind.USER)
    done = await world.ended(cid)
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderFilled", "OrderCompleted"]
    assert world.conn.reconciler.counters.fill_fetches >= 1
    assert created.exchange_order_id is not None
    assert _our_fills(world, cid) == _venue_fills(world, created.exchange_order_id)
    assert done.executed_base == D("0.03") and done.missing_base == 0
    # The stream comes back, resubscribed, and the connector is ready once it has reconciled.
    await rec.until(lambda: world.conn.user_stream.counters.connections >= 2 and world.conn.ready)


async def test_order_status_is_polled_while_the_stream_is_silent(lab: Lab) -> None:
    world = await lab.world(user_stream_silence=0.3)
    rec = world.rec
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("50000"))
    created = await world.created(cid)
    queries = world.conn.reconciler.counters.queries
    # The socket stays up but says nothing (the venue holds its messages) for longer than the test.
    stalled_until = world.now_ms() + 8_000
    world.sb.faults.stall_streams(stalled_until, StreamKind.USER)
    world.taker("SELL", "0.01", "50000")
    await world.ended(cid)
    assert world.now_ms() < stalled_until  # the stream never told
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderCompleted"]
    assert world.conn.reconciler.counters.queries > queries
    assert world.conn.user_stream.counters.connections == 1 and world.conn.user_stream.connected
    assert not world.conn.user_stream.healthy
    assert created.exchange_order_id is not None
    assert _our_fills(world, cid) == _venue_fills(world, created.exchange_order_id)


async def test_a_lost_order_that_turns_up_filled_gets_its_fills(lab: Lab) -> None:
    # An order the venue does not find (its records lag behind, say), found later, filled.
    cid = own_ids(lab.venue).new(Side.BUY, PAIR)
    world = await lab.world(
        restore=[saved_order(cid, "0.01", "50000")], client_id_instance=INSTANCE, user_stream_silence=0.2,
    )
    rec = world.rec
    await rec.until(lambda: bool(rec.of(OrderLost, cid)))
    lost: OrderLost = rec.of(OrderLost, cid)[0]
    assert lost.not_found_count == world.conn.ctx.tracker.lost_after
    assert cid in world.conn.ctx.tracker.lost
    # The venue turns it up, and it fills, all while the private stream says nothing.
    world.sb.faults.stall_streams(world.now_ms() + 8_000, StreamKind.USER)
    venue_order = world.place_for_us("BUY", "0.01", "50000", cid)
    world.taker("SELL", "0.01", "50000")
    done = await world.ended(cid)
    assert isinstance(done, OrderCompleted) and done.executed_base == D("0.01") and done.missing_base == 0
    assert rec.kinds(cid) == ["OrderLost", "OrderFilled", "OrderCompleted"]
    assert _our_fills(world, cid) == _venue_fills(world, str(venue_order.order_id))
    assert cid not in world.conn.ctx.tracker.lost
