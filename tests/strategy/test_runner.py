"""StrategyRunner on a VirtualClock with fake connectors: ticks, event order, error policy, stop
and cancellation of the strategy's own orders only, status snapshots."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from strategy_fakes import PAIR, FakeConnector

from marketlink.core.enums import OrderType, PositionAction, Side
from marketlink.core.errors import ConfigError
from marketlink.core.events import WITHDRAWN_PREFIX, OrderCreated, OrderFilled
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.net.clock import VirtualClock
from marketlink.strategy.api import Strategy, StrategyContext, StrategyEvent
from marketlink.strategy.runner import RunnerState, StrategyRunner

D = Decimal


class Recorder(Strategy):
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.tick_times: list[float] = []
        self.events: list[tuple[str, StrategyEvent]] = []
        self.want_events = 0
        self.got_events = asyncio.Event()
        self.fail_ticks = 0
        self.advance_on_first_tick: tuple[VirtualClock, float] | None = None

    def on_start(self, ctx: StrategyContext) -> None:
        self.calls.append("start")

    def on_tick(self, ctx: StrategyContext) -> None:
        self.calls.append("tick")
        self.tick_times.append(ctx.now())
        if self.advance_on_first_tick is not None and len(self.tick_times) == 1:
            clock, by = self.advance_on_first_tick
            clock.advance(by)
        if self.fail_ticks:
            self.fail_ticks -= 1
            raise RuntimeError("boom")

    def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> None:
        self.events.append((connector, event))
        if len(self.events) >= self.want_events:
            self.got_events.set()

    def on_stop(self, ctx: StrategyContext) -> None:
        self.calls.append("stop")


async def _started(runner: StrategyRunner, clock: VirtualClock) -> None:
    await runner.start()
    await clock.wait_for_sleepers(1)  # the first tick ran and the loop sleeps until the next


async def _advance(clock: VirtualClock, seconds: float) -> None:
    clock.advance(seconds)
    await clock.wait_for_sleepers(1)


async def test_ticks_follow_the_clock_after_on_start() -> None:
    clock, conn, strat = VirtualClock(), FakeConnector(), Recorder()
    runner = StrategyRunner(strat, {"main": conn}, clock=clock, tick_interval=2.0)
    await _started(runner, clock)
    assert strat.calls == ["start", "tick"]
    clock.advance(1.0)  # half an interval: no tick
    await asyncio.sleep(0)
    assert runner.ticks == 1
    await _advance(clock, 1.0)
    await _advance(clock, 2.0)
    assert strat.tick_times == [0.0, 2.0, 4.0]
    await runner.stop()
    assert strat.calls[-1] == "stop" and runner.state is RunnerState.STOPPED


async def test_an_overrunning_tick_skips_the_ticks_it_missed() -> None:
    clock, strat = VirtualClock(), Recorder()
    strat.advance_on_first_tick = (clock, 2.5)
    runner = StrategyRunner(strat, {"main": FakeConnector()}, clock=clock, tick_interval=1.0)
    await _started(runner, clock)
    await _advance(clock, 0.5)
    assert strat.tick_times == [0.0, 3.0]
    await runner.stop()


async def test_events_reach_on_event_in_publish_order_with_the_connector_name() -> None:
    clock, a, b, strat = VirtualClock(), FakeConnector("a"), FakeConnector("b"), Recorder()
    runner = StrategyRunner(strat, {"maker": a, "taker": b}, clock=clock)
    await _started(runner, clock)
    ids = [runner.ctx.buy("maker", PAIR, D("0.1"), OrderType.LIMIT, D("99")) for _ in range(3)]
    other = runner.ctx.sell("taker", PAIR, D("0.1"), OrderType.LIMIT, D("102"))
    strat.want_events = 4
    for cid in ids:
        a.ack(cid)
    b.ack(other)
    await asyncio.wait_for(strat.got_events.wait(), 5)
    maker = [e.client_order_id for n, e in strat.events if n == "maker" and isinstance(e, OrderCreated)]
    taker = [e.client_order_id for n, e in strat.events if n == "taker" and isinstance(e, OrderCreated)]
    assert maker == ids and taker == [other]
    assert runner.status().events == 4
    stop = asyncio.ensure_future(runner.stop())
    await asyncio.wait_for(b.cancel_seen.wait(), 5)  # cancels go out together, then confirmations
    a.confirm_cancels()
    b.confirm_cancels()
    await asyncio.wait_for(stop, 5)
    assert sorted(a.cancels) == sorted(ids) and b.cancels == [other]
    assert runner.left_open == ()


async def test_stop_cancels_only_this_strategys_orders_and_reports_those_left_open() -> None:
    clock, conn, strat = VirtualClock(), FakeConnector(), Recorder()
    runner = StrategyRunner(strat, {"main": conn}, clock=clock, cancel_timeout=5.0)
    await _started(runner, clock)
    mine = runner.ctx.buy("main", PAIR, D("0.1"), OrderType.LIMIT, D("99"))
    foreign = conn.buy(PAIR, D("0.1"), OrderType.LIMIT, D("98"))  # another bot on the same connector
    assert [o.client_order_id for o in runner.ctx.open_orders()] == [mine]
    stop = asyncio.ensure_future(runner.stop())
    await asyncio.wait_for(conn.cancel_seen.wait(), 5)
    assert conn.cancels == [mine]
    await clock.wait_for_sleepers(1)  # the cancel timeout's timer
    clock.advance(5.0)  # the venue never confirms
    await asyncio.wait_for(stop, 5)
    assert runner.left_open == (mine,) and runner.status().cancel_left_open == (mine,)
    assert foreign not in conn.cancels
    assert strat.calls[-1] == "stop"


async def test_callback_errors_are_counted_and_the_runner_carries_on() -> None:
    clock, strat = VirtualClock(), Recorder()
    strat.fail_ticks = 2
    runner = StrategyRunner(strat, {"main": FakeConnector()}, clock=clock, max_consecutive_errors=3)
    await _started(runner, clock)
    await _advance(clock, 1.0)
    assert (runner.errors, runner.consecutive_errors) == (2, 2)
    assert runner.last_error == "on_tick: RuntimeError: boom"
    await _advance(clock, 1.0)
    assert (runner.errors, runner.consecutive_errors, runner.state) == (2, 0, RunnerState.RUNNING)
    await runner.stop()


async def test_too_many_consecutive_errors_stop_the_runner() -> None:
    clock, conn, strat = VirtualClock(), FakeConnector(), Recorder()
    strat.fail_ticks = 10
    runner = StrategyRunner(strat, {"main": conn}, clock=clock, max_consecutive_errors=2, cancel_timeout=0)
    await _started(runner, clock)
    clock.advance(1.0)
    await asyncio.wait_for(runner.wait_stopped(), 5)
    assert runner.state is RunnerState.STOPPED
    assert runner.stop_reason is not None and runner.stop_reason.startswith("2 consecutive errors")
    assert strat.calls.count("tick") == 2 and strat.calls[-1] == "stop"


async def test_run_returns_after_request_stop_and_cleans_up_when_cancelled() -> None:
    clock, conn, strat = VirtualClock(), FakeConnector(), Recorder()
    runner = StrategyRunner(strat, {"main": conn}, clock=clock, cancel_timeout=0)
    task = asyncio.ensure_future(runner.run())
    await clock.wait_for_sleepers(1)
    runner.request_stop("user")
    await asyncio.wait_for(task, 5)
    assert runner.stop_reason == "user" and strat.calls[-1] == "stop"
    assert len(conn.bus) == 0  # every subscription closed

    strat2 = Recorder()
    runner2 = StrategyRunner(strat2, {"main": conn}, clock=clock, cancel_timeout=0)
    task2 = asyncio.ensure_future(runner2.run())
    await clock.wait_for_sleepers(1)
    runner2.ctx.buy("main", PAIR, D("0.1"), OrderType.LIMIT, D("99"))
    task2.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task2
    assert runner2.state is RunnerState.STOPPED and runner2.stop_reason == "interrupted"
    assert strat2.calls[-1] == "stop" and len(conn.cancels) == 1


async def test_async_callbacks_are_awaited_and_never_overlap() -> None:
    clock = VirtualClock()
    running: list[str] = []
    overlaps = 0
    gate = asyncio.Event()

    class Slow(Strategy):
        name = "slow"

        async def on_tick(self, ctx: StrategyContext) -> None:
            nonlocal overlaps
            overlaps += bool(running)
            running.append("tick")
            await gate.wait()
            running.pop()

        async def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> None:
            nonlocal overlaps
            overlaps += bool(running)

    conn = FakeConnector()
    runner = StrategyRunner(Slow(), {"main": conn}, clock=clock)
    await runner.start()
    cid = runner.ctx.buy("main", PAIR, D("0.1"), OrderType.LIMIT, D("99"))
    conn.ack(cid)
    await asyncio.sleep(0)
    gate.set()
    await clock.wait_for_sleepers(1)
    for _ in range(3):
        await asyncio.sleep(0)
    assert overlaps == 0 and runner.events == 1
    stop = asyncio.ensure_future(runner.stop())
    await asyncio.wait_for(conn.cancel_seen.wait(), 5)
    conn.confirm_cancels()
    await asyncio.wait_for(stop, 5)


async def test_status_snapshot_has_orders_balances_pnl_and_recent_events() -> None:
    clock, conn = VirtualClock(), FakeConnector()
    strat = Recorder()
    runner = StrategyRunner(strat, {"main": conn}, clock=clock, cancel_timeout=0)
    await _started(runner, clock)
    buy = runner.ctx.buy("main", PAIR, D("0.5"), OrderType.LIMIT, D("100"))
    rest = runner.ctx.sell("main", PAIR, D("0.2"), OrderType.LIMIT, D("110"))
    strat.want_events = 4
    conn.ack(buy)
    conn.ack(rest)
    conn.fill(buy, fee=TokenAmount("BTC", D("0.0005")))
    await asyncio.wait_for(strat.got_events.wait(), 5)
    status = runner.status()
    assert status.state is RunnerState.RUNNING and status.strategy == "recorder"
    assert [o.client_order_id for o in status.open_orders] == [rest]
    assert status.open_orders[0].price == D("110") and status.open_orders[0].side is Side.SELL
    assert status.balances["main"]["BTC"] == (D("10.4995"), D("10.2995"))
    (pnl,) = status.pnl
    assert (pnl.fills, pnl.base_delta, pnl.quote_delta) == (1, D("0.4995"), D("-50.0"))
    assert pnl.price == D("100.5") and pnl.value == D("-50.0") + D("0.4995") * D("100.5")
    assert isinstance(status.last_events[-1][1], OrderFilled) or status.events == 4
    assert status.orders_placed == 2 and status.orders_failed == 0
    await runner.stop()


async def test_pnl_keeps_third_token_fees_apart_and_failed_orders_are_counted() -> None:
    clock, conn = VirtualClock(), FakeConnector()
    runner = StrategyRunner(Recorder(), {"main": conn}, clock=clock, cancel_timeout=0)
    await _started(runner, clock)
    sell = runner.ctx.sell("main", PAIR, D("1"), OrderType.MARKET)
    conn.fill(sell, price=D("100"), fee=TokenAmount("BNB", D("0.01")))
    bad = runner.ctx.buy("main", PAIR, D("1"), OrderType.LIMIT, D("1"))
    conn.fail(bad)
    (pnl,) = runner.ctx.pnl()
    assert (pnl.base_delta, pnl.quote_delta, pnl.value) == (D("-1"), D("100"), None)
    assert pnl.other_fees == (TokenAmount("BNB", D("0.01")),)
    assert runner.ctx.orders_failed == 1 and not runner.ctx.is_own(bad)
    assert runner.ctx.cancel(bad) is False
    # Withdrawn by its cancel before it was sent: what the strategy asked for, not a failure.
    pulled = runner.ctx.buy("main", PAIR, D("1"), OrderType.LIMIT, D("1"))
    conn.fail(pulled, reason=f"{WITHDRAWN_PREFIX} cancelled while it waited")
    assert runner.ctx.orders_failed == 1 and not runner.ctx.is_own(pulled)
    await runner.stop()


def test_runner_refuses_bad_settings() -> None:
    conn = FakeConnector()
    with pytest.raises(ConfigError):
        StrategyRunner(Recorder(), {"main": conn}, tick_interval=0)
    with pytest.raises(ConfigError):
        StrategyRunner(Recorder(), {"main": conn}, max_consecutive_errors=-1)
    with pytest.raises(ConfigError):
        StrategyRunner(Recorder(), {"main": conn}, cancel_timeout=float("nan"))
    with pytest.raises(ConfigError):
        StrategyRunner(Recorder(), {})
    with pytest.raises(ConfigError, match="no connector named 'x'"):
        StrategyRunner(Recorder(), {"main": conn}).ctx.connector("x")


async def test_start_twice_is_refused_and_stop_before_start_is_harmless() -> None:
    clock = VirtualClock()
    runner = StrategyRunner(Recorder(), {"main": FakeConnector()}, clock=clock)
    await runner.stop()
    assert runner.state is RunnerState.STOPPED
    with pytest.raises(RuntimeError):
        await runner.start()


async def test_a_late_fill_after_the_terminal_event_still_counts_in_the_pnl() -> None:
    """Audit F-3: a fill the venue reports after the order's terminal event (``late``) moved money;
    the strategy's PnL must book it (and only for the connector the order was placed on)."""
    clock, conn, other = VirtualClock(), FakeConnector(), FakeConnector(name="other")
    runner = StrategyRunner(Recorder(), {"main": conn, "other": other}, clock=clock, cancel_timeout=0)
    await _started(runner, clock)
    cid = runner.ctx.buy("main", PAIR, D("1"), OrderType.LIMIT, D("100"))
    conn.ack(cid)
    conn.fail(cid, "declared failed; the venue holds it")
    assert not runner.ctx.is_own(cid) and runner.ctx.pnl() == ()
    late = OrderFilled(
        conn.now, cid, f"x{cid}", PAIR, Side.BUY, OrderType.LIMIT, "t-late", D("100"), D("0.004"), D("0.4"),
        TradeFee(FeeKind.DEDUCTED_FROM_RETURNS), (), False, PositionAction.NIL, 1, late=True,
    )
    other.bus.publish(late)  # the same id on another connector is not this order
    conn.bus.publish(late)
    main = {p.connector: p for p in runner.ctx.pnl()}["main"]
    assert (main.fills, main.base_delta, main.quote_delta) == (1, D("0.004"), D("-0.4"))
    assert "other" not in {p.connector for p in runner.ctx.pnl()}
    await runner.stop()


async def test_ended_ids_are_remembered_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import marketlink.strategy.api as api

    monkeypatch.setattr(api, "ENDED_REMEMBERED", 2)
    clock, conn = VirtualClock(), FakeConnector()
    runner = StrategyRunner(Recorder(), {"main": conn}, clock=clock, cancel_timeout=0)
    await _started(runner, clock)
    ids = [runner.ctx.buy("main", PAIR, D("1"), OrderType.LIMIT, D("100")) for _ in range(3)]
    for cid in ids:
        conn.fail(cid)
    assert list(runner.ctx._ended) == ids[1:]
    await runner.stop()


async def test_a_cancelled_error_out_of_a_callback_is_a_strategy_error_not_a_silent_stop() -> None:
    """Audit F-4: a strategy awaiting a helper task that got cancelled raises CancelledError; that
    must not end the tick loop while the runner still says RUNNING."""
    clock = VirtualClock()

    class AwaitsCancelledHelper(Strategy):
        name = "helper"
        ticks = 0

        async def on_tick(self, ctx: StrategyContext) -> None:
            self.ticks += 1
            if self.ticks == 1:
                helper = asyncio.ensure_future(asyncio.sleep(3600))
                helper.cancel()
                await helper  # raises CancelledError into the callback

    strat = AwaitsCancelledHelper()
    runner = StrategyRunner(strat, {"main": FakeConnector()}, clock=clock, max_consecutive_errors=5)
    await _started(runner, clock)
    assert runner.errors == 1 and runner.last_error is not None and "CancelledError" in runner.last_error
    await _advance(clock, 1.0)
    await _advance(clock, 1.0)
    assert strat.ticks == 3 and runner.state is RunnerState.RUNNING
    assert runner.consecutive_errors == 0
    await runner.stop()
    assert runner.state is RunnerState.STOPPED


async def test_stopping_still_cancels_a_callback_that_is_running() -> None:
    """The runner's own cancellation (a stop) still ends a callback blocked in an await."""
    clock = VirtualClock()
    entered = asyncio.Event()

    class Blocks(Strategy):
        name = "blocks"

        async def on_tick(self, ctx: StrategyContext) -> None:
            entered.set()
            await asyncio.Event().wait()

    runner = StrategyRunner(Blocks(), {"main": FakeConnector()}, clock=clock, cancel_timeout=0)
    await runner.start()
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(runner.stop(), 5)
    assert runner.state is RunnerState.STOPPED and runner.errors == 0


async def test_the_error_limit_marks_the_runner_stopped_by_errors() -> None:
    clock, strat = VirtualClock(), Recorder()
    strat.fail_ticks = 10
    runner = StrategyRunner(strat, {"main": FakeConnector()}, clock=clock, max_consecutive_errors=1,
                            cancel_timeout=0)
    await runner.start()
    await asyncio.wait_for(runner.wait_stopped(), 5)
    assert runner.stopped_by_errors and runner.status().stopped_by_errors

    polite = StrategyRunner(Recorder(), {"main": FakeConnector()}, clock=clock, cancel_timeout=0)
    await polite.start()
    polite.request_stop("done")
    await asyncio.wait_for(polite.wait_stopped(), 5)
    assert not polite.stopped_by_errors
