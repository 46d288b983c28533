"""Trouble and recovery: a dropped private stream, a book gap, a clock the venue refuses, rate
limits and a ban, and a restart with orders that were open before it."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from harness import INSTANCE, PAIR, WAIT, D, Lab, World, recording

from marketlink.core.enums import OrderType
from marketlink.core.events import BookResynced, ConnectorStatusChanged, OrderFailed
from marketlink.core.orders import InFlightOrder, OrderState
from marketlink.engine.orders import TRADING_PART, CancelOutcome
from marketlink.net.errors import IpBanned, RateLimited
from marketlink.sandbox.faults import StreamKind


async def test_dropped_stream_reconnects_resubscribes_and_reconciles_the_gap(lab: Lab) -> None:
    # Slow polling even while the stream is down: only the reconnect's reconcile can find the fills.
    world = await lab.world(reconcile_fast=30.0)
    rec = world.rec
    cid = world.conn.buy(PAIR, D("0.03"), OrderType.LIMIT, D("50000"))
    await world.created(cid)
    # The fills happen while the socket holds its messages; the socket then dies with them.
    world.sb.faults.stall_streams(world.now_ms() + 2_000, StreamKind.USER)
    world.taker("SELL", "0.01", "50000")
    world.taker("SELL", "0.02", "50000")
    world.sb.faults.drop_streams(StreamKind.USER)
    await rec.until(lambda: any(
        isinstance(e, ConnectorStatusChanged) and "user_stream" in dict(e.not_ready) for e in rec.events
    ))
    done = await world.ended(cid)
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderFilled", "OrderCompleted"]
    assert done.executed_base == D("0.03") and done.missing_base == 0
    await rec.until(lambda: world.conn.ready)
    assert world.conn.user_stream.counters.connections == 2  # resubscribed on a new socket
    assert world.conn.reconciler.counters.fill_fetches >= 1
    assert world.conn.status()["reconcile"].ready
    # The new subscription delivers: the next order is created and cancelled through it.
    nxt = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("40000"))
    await world.created(nxt)
    world.conn.cancel(PAIR, nxt)
    await world.ended(nxt)
    await rec.until(world.balances_match)


async def test_book_gap_is_resynced_to_the_venues_book(lab: Lab) -> None:
    other = "ETH-USDT"
    sb = await lab.sandbox((PAIR, other), flow=True, autotick=False)
    world = await lab.world(sb, (PAIR, other))
    await world.tick_until_book_moves()
    await world.book_caught_up()
    sb.faults.skip_update_ids(world.symbol, 1)
    await world.tick_until_book_moves()  # this change is never sent
    await world.tick_until_book_moves()  # the next one shows the gap
    await world.rec.until(lambda: bool(world.rec.of(BookResynced)))
    [event] = world.rec.of(BookResynced)
    assert event.trading_pair == PAIR and event.reason.startswith("gap")
    await world.assert_books_are_the_venues()
    # Only the book with the gap was fetched again.
    assert world.conn.market_data.stats.resyncs == {PAIR: 1, other: 0}
    assert world.conn.ready


async def test_clock_skew_rejection_resyncs_time_and_then_succeeds(world: World) -> None:
    http = world.conn.ctx.http
    offset = world.conn.ctx.time_sync.offset_ms
    # The venue's clock jumps ahead: our timestamps look older than the receive window allows.
    world.sb.faults.shift_clock(30_000)
    await world.conn.refresh_balances()  # refused once, time resynced, sent again: answered
    assert http.stats.errors["ClockSkew"] == 1
    assert abs(world.conn.ctx.time_sync.offset_ms - offset - 30_000) < 1_000
    # An order refused for its timestamp is not executed and never sent again (it fails); the
    # clock is resynced, so the next order goes through.
    world.sb.faults.shift_clock(30_000)
    refused = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    failed = await world.ended(refused)
    assert isinstance(failed, OrderFailed) and world.venue_orders(refused) == []
    assert http.stats.errors["ClockSkew"] == 2
    accepted = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await world.created(accepted)
    assert len(world.venue_orders(accepted)) == 1


async def _burst(world: World) -> list[BaseException | None]:
    """The plan's burst: its many heavy requests at once (see harness.RateLimitPlan)."""
    plan = world.venue.rate_limits
    requests = (plan.request(world.conn) for _ in range(plan.burst))
    results = await asyncio.gather(*requests, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


async def test_the_limits_the_venue_publishes_are_counted_and_keep_a_burst_within_them(lab: Lab) -> None:
    plan = lab.venue.rate_limits
    sb = await lab.sandbox(options=plan.sandbox_options(ban=False))
    world = await lab.world(sb)
    throttler = world.conn.ctx.throttler
    assert (plan.window, plan.limit) in throttler.windows(plan.pool)  # a window the spec lacks, now counted
    outcomes = await _burst(world)
    # The connector's sliding window against the venue's fixed ones, a latency later, can still
    # be refused now and then; without the published limit most of this burst was (see below).
    assert sum(r is not None for r in outcomes) <= 1
    assert world.conn.ctx.http.stats.errors.get("IpBanned", 0) == 0


async def test_rate_limit_answer_backs_off_until_the_venue_admits_again(lab: Lab) -> None:
    plan = lab.venue.rate_limits
    sb = await lab.sandbox(options=plan.sandbox_options(ban=False))  # refusals, but no ban
    # As if other processes shared this IP's weight: the connector keeps the spec's limits
    # rather than the small ones the venue publishes, so the venue has to push back.
    world = await lab.world(sb, adopt_published_limits=False)
    http = world.conn.ctx.http
    first = await _burst(world)
    refused = [r for r in first if r is not None]
    assert len(refused) >= 2 and all(isinstance(r, RateLimited) and r.retry_after for r in refused)
    assert http.stats.errors["RateLimited"] == len(refused)
    # Sent at once right after, these wait out the back-off (past the refusing window) and are
    # both admitted: the refusing window has no room left for them.
    await asyncio.gather(plan.request(world.conn), plan.request(world.conn))
    assert http.stats.errors["RateLimited"] == len(refused) and http.stats.errors["IpBanned"] == 0


async def test_ban_refuses_orders_while_market_data_goes_on(lab: Lab) -> None:
    plan = lab.venue.rate_limits
    if plan.ban_after is None:
        pytest.skip(f"{lab.venue.name} does not ban an IP for its rate limits")
    sb = await lab.sandbox(options=plan.sandbox_options(ban=True))  # banned for a moment
    world = await lab.world(sb, adopt_published_limits=False)  # (as above)
    conn = world.conn
    outcomes = await _burst(world)
    assert any(isinstance(r, IpBanned) for r in outcomes)
    assert conn.ctx.throttler.banned_until is not None
    cid = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    failed = await world.ended(cid)
    assert isinstance(failed, OrderFailed) and failed.reason is not None and "banned" in failed.reason
    assert world.venue_orders(cid) == []
    assert not conn.status()[TRADING_PART].ready and not conn.ready
    # Market data does not go through the banned REST API: the book still follows the venue.
    world.maker("SELL", "0.3", "61000")
    await world.book_caught_up()
    assert conn.best_ask(PAIR) == Decimal("61000")
    assert conn.ctx.throttler.banned_until is not None  # all of it during the ban
    # A restart while the ban holds (a supervisor restarting the bot) sends nothing: the ban's
    # end, kept by the run that saw it, refuses the start at once.
    until = conn.ip_ban_until()
    assert until is not None and time.time() < until <= time.time() + plan.ban_ms / 1000 + 1  # whole s
    received = len(recording(sb).received)
    with pytest.raises(IpBanned) as refused:
        await lab.connector(sb).start(timeout=WAIT, banned_until=until)
    assert refused.value.local and len(recording(sb).received) == received
    # When the ban ends, trading resumes.
    await world.rec.until(lambda: conn.status()[TRADING_PART].ready, timeout=WAIT)
    resumed = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await world.created(resumed)
    await world.rec.until(lambda: conn.ready)
    assert conn.ip_ban_until() is None


async def test_restart_restores_open_orders_and_catches_up_with_what_happened_meanwhile(lab: Lab) -> None:
    sb = await lab.sandbox()
    before = await lab.world(sb, client_id_instance=INSTANCE)
    filled = before.conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    resting = before.conn.sell(PAIR, D("0.01"), OrderType.LIMIT, D("70000"))
    for cid in (filled, resting):
        await before.created(cid)
    saved = [o.to_dict() for o in before.conn.in_flight_orders().values()]  # the journal's part
    await before.conn.stop()
    before.taker("SELL", "0.005", "50000")  # while no connector runs

    restored = [InFlightOrder.from_dict(d) for d in saved]
    after = await lab.world(sb, restore=restored, client_id_instance=INSTANCE)
    orders = after.conn.in_flight_orders()
    assert set(orders) == {filled, resting}
    assert orders[filled].state is OrderState.PARTIALLY_FILLED and orders[filled].executed_base == D("0.005")
    assert orders[resting].state is OrderState.OPEN
    assert after.rec.kinds(filled) == ["OrderFilled"]  # its creation was reported before the restart
    assert after.rec.kinds(resting) == []
    # They are ours after the restart too: fills arrive and they can be cancelled.
    after.taker("SELL", "0.005", "50000")
    await after.rec.until(lambda: after.rec.kinds(filled) == ["OrderFilled", "OrderFilled"])
    results = await after.conn.cancel_all(WAIT)
    assert {(r.client_order_id, r.outcome) for r in results} == {
        (filled, CancelOutcome.CANCELLED), (resting, CancelOutcome.CANCELLED),
    }
    assert sb.exchange.open_orders("demo", after.symbol) == []
    await after.rec.until(after.balances_match)


async def _queued(world: World, n: int) -> None:
    """Let the placements just made run up to the throttler, where they wait (bounded)."""
    for _ in range(10):
        if world.conn.ctx.throttler.waiting >= n:
            return
        await asyncio.sleep(0)  # one loop step: a new task runs to its first real wait
    raise AssertionError(f"{world.conn.ctx.throttler.waiting} requests queued, {n} expected")


async def test_an_order_cancelled_while_it_waits_behind_a_back_off_is_never_sent(world: World) -> None:
    """Sent when the back-off ends (it can last a minute), it would trade at a price chosen long
    before and that the strategy has since withdrawn."""
    conn = world.conn
    world.sb.faults.fail_requests(1, status=429, path_prefix=world.venue.ping_path, retry_after_s=600)
    assert not await conn.check_network()  # the venue: "come back in 10 minutes"
    queued = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await _queued(world, 1)
    conn.cancel(PAIR, queued)
    failed = await world.ended(queued)
    assert isinstance(failed, OrderFailed) and failed.withdrawn  # what the cancel asked, not an error
    # Not yet started when its cancel came (same loop step), and cancelled by cancel_all.
    unstarted = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("44000"))
    conn.cancel(PAIR, unstarted)
    await world.ended(unstarted)
    waiting = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("43000"))
    await _queued(world, 1)
    [result] = await conn.cancel_all(timeout=WAIT)
    assert result.client_order_id == waiting and result.success
    for cid in (queued, unstarted, waiting):
        assert isinstance(await world.ended(cid), OrderFailed)
        assert world.placements_received(cid) == 0
    assert conn.orders.counters.withdrawn == 3
    assert conn.ctx.throttler.waiting == 0
    assert conn.spendable_balance("USDT") == conn.available_balance("USDT")  # nothing reserved


async def test_the_order_count_limit_holds_new_orders_only(lab: Lab) -> None:
    """Another bot on the account spent its order count: new orders are refused here at once,
    while the cancels that pull our resting orders, and every read, go on."""
    sb = await lab.sandbox(options=lab.venue.rate_limits.order_count(3))
    world = await lab.world(sb, adopt_published_limits=False)  # the count is shared: keep ours
    conn = world.conn
    resting = [conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D(p)) for p in ("45000", "44000", "43000")]
    for cid in resting:
        await world.created(cid)
    over = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("42000"))
    refused = await world.ended(over)
    assert isinstance(refused, OrderFailed) and "OrderRateLimited" in (refused.reason or "")
    trading = conn.status()[TRADING_PART]  # said where a user looks, as a ban is
    assert not trading.ready and "order-count limit" in trading.detail
    refused_here = conn.orders.counters.refused_locally
    later = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("42000"))
    held = await world.ended(later)
    assert isinstance(held, OrderFailed) and world.placements_received(later) == 0  # refused here
    assert conn.orders.counters.refused_locally == refused_here + 1
    await conn.refresh_balances()  # reads are not held back
    results = await conn.cancel_all(timeout=WAIT)
    assert sorted(r.client_order_id for r in results if r.success) == sorted(resting)
    assert all(o.status.value == "CANCELED" for cid in resting for o in world.venue_orders(cid))


async def test_a_cancel_refused_for_its_timestamp_is_sent_again_after_the_resync(world: World) -> None:
    """The venue checks the timestamp before it acts, so the refused cancel did nothing: left
    unsent, cancel_all would report a failure while the order kept working."""
    conn = world.conn
    cid = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await world.created(cid)
    world.sb.faults.shift_clock(30_000)
    [result] = await conn.cancel_all(timeout=WAIT)
    assert result.outcome is CancelOutcome.CANCELLED
    assert conn.ctx.http.stats.errors["ClockSkew"] == 1
    assert world.venue_order(cid).status.value == "CANCELED"


async def test_an_order_still_waiting_behind_a_back_off_at_stop_ends_unsent(lab: Lab) -> None:
    """An order that never left is withdrawn at once: not sent when the back-off ends within the
    stop's grace period (a price chosen before the stop, nobody left to follow it), and known not
    to exist at the venue (FAILED), not an unknown to query after a restart."""
    world = await lab.world(request_timeout=WAIT)  # a grace period longer than the back-off
    conn = world.conn
    world.sb.faults.fail_requests(1, status=429, path_prefix=world.venue.ping_path, retry_after_s=1)
    assert not await conn.check_network()
    cid = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await _queued(world, 1)
    await conn.stop()
    [failed] = world.rec.of(OrderFailed, cid)
    assert (failed.reason or "").startswith("not sent") and not failed.withdrawn
    assert world.placements_received(cid) == 0
    assert world.rec.kinds(cid) == ["OrderFailed"]
