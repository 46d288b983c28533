"""Edges of a connector's life: shutting down, an IP ban nobody was trading through, orders
handed over from a journal, and an order we declared failed that the venue holds after all."""

from __future__ import annotations

import asyncio

import pytest
from harness import INSTANCE, PAIR, WAIT, D, Lab, World

from marketlink.core.enums import OrderType
from marketlink.core.events import ConnectorStatusChanged, OrderFailed, OrderFilled, TerminalOrderEvent
from marketlink.core.orders import InFlightOrder, OrderState
from marketlink.engine.orders import TRADING_PART, CancelOutcome, ConnectorStopped
from marketlink.net.errors import IpBanned
from marketlink.net.http import ClientClosed
from marketlink.sandbox.exchange import OrderStatus
from marketlink.sandbox.faults import StreamKind


async def test_a_stopped_connector_refuses_orders_and_sends_nothing(world: World) -> None:
    conn = world.conn
    resting = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await world.created(resting)
    await conn.stop()
    with pytest.raises(ConnectorStopped):
        conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    with pytest.raises(ConnectorStopped):
        conn.cancel(PAIR, resting)
    with pytest.raises(ConnectorStopped):
        await conn.cancel_all(1.0)
    with pytest.raises(ClientClosed):  # nor does the HTTP client open a new session
        await conn.ctx.http.request(conn.ctx.codec.server_time_request())
    assert conn.ctx.http._session is None
    mine = [o for o in world.sb.exchange.open_orders("demo", world.symbol)]
    assert [o.client_order_id for o in mine] == [resting]  # only the order placed while running


async def test_orders_are_refused_from_the_moment_stop_begins(world: World) -> None:
    conn = world.conn
    stopping = asyncio.ensure_future(conn.stop(cancel_orders=True))
    await asyncio.sleep(0)  # stop() has begun: it is cancelling, nothing is closed yet
    with pytest.raises(ConnectorStopped):
        conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await stopping
    assert world.sb.exchange.open_orders("demo", world.symbol) == []


async def test_a_ban_earned_by_reads_stops_trading_in_the_status_and_its_end_is_reported(lab: Lab) -> None:
    plan = lab.venue.rate_limits  # its burst request is a read
    if plan.ban_after is None:
        pytest.skip(f"{lab.venue.name} does not ban an IP for its rate limits")
    sb = await lab.sandbox(options=plan.sandbox_options(ban=True))
    world = await lab.world(sb, adopt_published_limits=False)
    conn = world.conn
    burst = (plan.request(conn) for _ in range(plan.burst))
    outcomes = await asyncio.gather(*burst, return_exceptions=True)
    assert any(isinstance(r, IpBanned) for r in outcomes)
    # No order was placed: the ban alone must show.
    assert not conn.status()[TRADING_PART].ready and not conn.ready
    await world.rec.until(lambda: conn.status()[TRADING_PART].ready, timeout=WAIT)
    changes = [e for e in world.rec.of(ConnectorStatusChanged) if not e.ready]
    assert any(part == TRADING_PART for e in changes for part, _ in e.not_ready)
    await world.rec.until(lambda: conn.ready)


async def _restart_with_an_open_buy(lab: Lab, **overrides: object) -> tuple[World, str]:
    sb = await lab.sandbox()
    before = await lab.world(sb, client_id_instance=INSTANCE)
    cid = before.conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    await before.created(cid)
    saved = [o.to_dict() for o in before.conn.in_flight_orders().values()]  # the journal's part
    await before.conn.stop()
    after = await lab.world(sb, restore=[InFlightOrder.from_dict(d) for d in saved], **overrides)
    return after, cid


async def test_a_restored_order_frees_its_funds_locally_when_it_ends(lab: Lab) -> None:
    world, cid = await _restart_with_an_open_buy(
        lab, client_id_instance=INSTANCE, balance_snapshot_every=3600.0
    )
    await world.rec.until(world.balances_match)
    locked = world.conn.balances()["USDT"]
    assert locked.total - locked.available == D("1000")  # 0.02 at 50000, held by the venue
    # Nothing comes by the private stream: only our own accounting can free the funds.
    world.sb.faults.stall_streams(world.now_ms() + 60_000, StreamKind.USER)
    world.conn.cancel(PAIR, cid)
    await world.ended(cid)
    assert world.balances_match()
    freed = world.conn.balances()["USDT"]
    assert freed.available == freed.total


async def test_restored_orders_of_an_earlier_instance_id_are_still_ours_to_cancel(lab: Lab) -> None:
    world, cid = await _restart_with_an_open_buy(lab)  # started without the saved instance id
    assert not world.conn.client_ids.owns(cid)
    [result] = await world.conn.cancel_all(WAIT)
    assert result.client_order_id == cid and result.outcome is CancelOutcome.CANCELLED
    assert world.venue_order(cid).status is OrderStatus.CANCELED


async def test_an_order_declared_failed_that_the_venue_holds_is_cancelled_and_its_fill_counted_once(
    lab: Lab,
) -> None:
    world = await lab.world(request_timeout=0.3, recv_window_ms=500)
    conn, rec = world.conn, world.rec
    world.sb.faults.timeout_requests(1, path_prefix=world.venue.order_path)
    cid = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("49000"))
    await rec.until(lambda: bool(rec.of(OrderFailed, cid)))
    assert rec.kinds(cid) == ["OrderUnknown", "OrderFailed"]
    # It reaches the venue after all (a backend that answered "status unknown" and executed),
    # and part of it trades; nothing of it comes by the private stream.
    world.sb.faults.stall_streams(world.now_ms() + 60_000, StreamKind.USER)
    world.place_for_us("BUY", "0.01", "49000", cid)
    world.taker("SELL", "0.004", "49000")
    await conn.reconciler.run_once(full=True)  # the open-orders diff finds it
    assert conn.reconciler.counters.resurfaced == 1
    cancelling = conn.orders._cancelling.get(cid)
    if cancelling is not None:
        await asyncio.wait_for(cancelling, WAIT)
    assert world.venue_order(cid).status is OrderStatus.CANCELED
    [fill] = rec.of(OrderFilled, cid)  # recovered from the trade history
    assert fill.amount == D("0.004") and fill.late
    [terminal] = rec.of(TerminalOrderEvent, cid)  # still exactly one ending
    assert isinstance(terminal, OrderFailed)
    order = conn.ctx.tracker.get(cid)
    assert order is not None and order.state is OrderState.FAILED
    # Later passes find nothing open, adopt nothing, and never credit the fill again.
    for _ in range(2):
        await conn.reconciler.run_once(full=True)
    assert len(rec.of(OrderFilled, cid)) == 1
    assert conn.reconciler.counters.adopted == 0 and conn.reconciler.counters.resurfaced == 1


async def test_stop_twice_is_harmless_even_when_asked_to_cancel(world: World) -> None:
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await world.created(cid)
    [result] = await world.conn.stop(cancel_orders=True)
    assert result.client_order_id == cid and result.success
    assert await world.conn.stop(cancel_orders=True) == []
