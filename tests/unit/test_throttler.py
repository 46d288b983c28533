"""Throttler, ThrottleState and the clocks: configuration, accounting, waiting, venue pushback.

Async tests run on a ``VirtualClock``: a test knows a waiter reached its sleep through
``wait_for_sleepers`` and moves time with ``advance``/``advance_to``; nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from marketlink.core.errors import ConfigError
from marketlink.net.clock import SystemClock, VirtualClock
from marketlink.net.errors import IpBanned, OrderRateLimited
from marketlink.net.throttler import BUCKETS, Cost, RateLimit, Throttler, ThrottleState, Usage, Window


def c(limit_id: str, weight: int = 1) -> list[Cost]:
    return [Cost(limit_id, weight)]


# ------------------------------------------------------------------------------------------------
# limits as data


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5, "3"])
def test_window_refuses_bad_capacity(capacity: object) -> None:
    with pytest.raises(ConfigError, match="capacity"):
        Window(capacity, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [0, -1.0, math.inf, math.nan, True, "1"])
def test_window_refuses_bad_seconds(seconds: object) -> None:
    with pytest.raises(ConfigError, match="seconds"):
        Window(5, seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(("limit_id", "weight"), [("", 1), (None, 1), ("A", -1), ("A", 1.0), ("A", False)])
def test_cost_refuses_bad_values(limit_id: object, weight: object) -> None:
    with pytest.raises(ConfigError):
        Cost(limit_id, weight)  # type: ignore[arg-type]


def test_rate_limit_validation_and_simple() -> None:
    with pytest.raises(ConfigError, match="at least one window"):
        RateLimit("A", ())
    with pytest.raises(ConfigError, match="same length"):
        RateLimit("A", (Window(1, 10), Window(5, 10.0)))
    with pytest.raises(ConfigError, match="Window values"):
        RateLimit("A", ((1, 10),))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Cost values"):
        RateLimit("A", (Window(1, 1),), (("B", 1),))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty"):
        RateLimit("", (Window(1, 1),))
    lim = RateLimit.simple("A", 50, 10, [Cost("B", 2)])
    assert lim == RateLimit("A", (Window(50, 10),), (Cost("B", 2),))
    listed = RateLimit("A", [Window(50, 10)], [Cost("B", 2)])  # type: ignore[arg-type]
    assert isinstance(listed.windows, tuple) and isinstance(listed.linked, tuple)
    assert hash(listed) == hash(lim)


def test_state_refuses_bad_configuration() -> None:
    a = RateLimit.simple("A", 5, 1)
    with pytest.raises(ConfigError, match="duplicate"):
        ThrottleState([a, RateLimit.simple("A", 6, 1)])
    with pytest.raises(ConfigError, match="unknown rate limit id 'B'"):
        ThrottleState([RateLimit.simple("A", 5, 1, [Cost("B")])])
    with pytest.raises(ConfigError, match="cycle: A -> B -> A"):
        ThrottleState([RateLimit.simple("A", 5, 1, [Cost("B")]), RateLimit.simple("B", 5, 1, [Cost("A")])])
    with pytest.raises(ConfigError, match="cycle: A -> A"):
        ThrottleState([RateLimit.simple("A", 5, 1, [Cost("A")])])
    with pytest.raises(ConfigError, match="RateLimit"):
        ThrottleState(["A"])  # type: ignore[list-item]
    for share in (0, -0.5, 1.5, math.nan, True):
        with pytest.raises(ConfigError, match="share"):
            ThrottleState([a], share=share)
    with pytest.raises(ConfigError, match="leaves no capacity"):
        ThrottleState([RateLimit.simple("A", 3, 1)], share=0.3)


def test_share_scales_capacity_exactly_in_decimal() -> None:
    # 100 * 0.29 is 28.999999999999996 in binary floating point: we must still get 29
    state = ThrottleState([RateLimit.simple("A", 100, 60)], share=0.29)
    assert state.try_acquire(c("A", 29), 0.0) == 0.0
    assert state.try_acquire(c("A"), 0.0) == 60.0
    assert state.usage(0.0) == {"A": 1.0}


def test_unknown_ids_fail_at_validation_not_later() -> None:
    state = ThrottleState([RateLimit.simple("A", 5, 1)])
    state.validate(c("A"))
    state.validate([])
    with pytest.raises(ConfigError, match="unknown rate limit id 'nope'"):
        state.validate([Cost("A"), Cost("nope")])
    with pytest.raises(ConfigError, match="unknown rate limit id 'nope'"):
        state.try_acquire(c("nope"), 0.0)
    with pytest.raises(ConfigError, match="Cost values"):
        state.validate(["A"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="Cost values"):
        state.validate([{"A": 1}])  # type: ignore[list-item]
    assert state.usage(0.0) == {"A": 0.0}  # nothing recorded by the refusals


def test_a_charge_that_can_never_fit_is_a_configuration_error() -> None:
    state = ThrottleState([RateLimit.simple("A", 5, 1, [Cost("P", 3)]), RateLimit.simple("P", 10, 1)])
    state.validate(c("A", 3))  # 3 on A, 9 on P
    with pytest.raises(ConfigError, match="charging 12 on 'P'"):
        state.validate(c("A", 4))
    with pytest.raises(ConfigError, match="can never fit"):
        state.validate(c("A", 6))


# ------------------------------------------------------------------------------------------------
# accounting


def test_admits_to_capacity_then_returns_the_exact_wait() -> None:
    state = ThrottleState([RateLimit.simple("A", 3, 10)])
    assert [state.try_acquire(c("A"), t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert state.try_acquire(c("A"), 4.0) == 6.0  # the first charge expires at 10
    assert state.try_acquire(c("A", 2), 4.0) == 7.0  # two must expire: the second one at 11
    assert state.usage(4.0) == {"A": 1.0}  # refusals recorded nothing
    assert state.try_acquire(c("A"), 9.999) > 0.0
    assert state.try_acquire(c("A"), 10.0) == 0.0  # a charge leaves exactly at its expiry


def test_waiting_the_returned_time_is_enough_at_any_magnitude() -> None:
    for start in (0.0, 0.1, 1e6 + 0.1, 1e9 + 0.3, 3.7e12):
        state = ThrottleState([RateLimit.simple("A", 1, 0.3)])
        assert state.try_acquire(c("A"), start) == 0.0
        now = start + 0.1
        wait = state.try_acquire(c("A"), now)
        assert wait > 0.0
        assert state.try_acquire(c("A"), math.nextafter(now + wait, -math.inf)) > 0.0
        assert state.try_acquire(c("A"), now + wait) == 0.0


def test_every_window_of_a_pool_is_enforced() -> None:
    state = ThrottleState([RateLimit("O", (Window(2, 10), Window(3, 100)))])
    assert state.try_acquire(c("O", 2), 0.0) == 0.0
    assert state.try_acquire(c("O"), 1.0) == 9.0  # the 10 s window binds
    assert state.try_acquire(c("O"), 10.0) == 0.0
    assert state.try_acquire(c("O"), 20.0) == 80.0  # now the day-like window binds
    assert state.usage(20.0) == {"O": 1.0}


def test_check_and_record_are_atomic_across_linked_pools() -> None:
    state = ThrottleState([RateLimit.simple("A", 10, 10, [Cost("P")]), RateLimit.simple("P", 2, 5)])
    assert state.try_acquire(c("P", 2), 0.0) == 0.0
    assert state.try_acquire(c("A"), 1.0) == 4.0  # A has room, its linked pool does not
    assert state.usage(1.0) == {"A": 0.0, "P": 1.0}  # so A was not charged either


def test_a_linked_pool_shared_by_two_limits_is_charged_by_both() -> None:
    state = ThrottleState([
        RateLimit.simple("create:BTC", 5, 60, [Cost("POST")]),
        RateLimit.simple("create:ETH", 5, 60, [Cost("POST")]),
        RateLimit.simple("POST", 4, 1),
    ])
    for _ in range(2):
        assert state.try_acquire(c("create:BTC"), 0.0) == 0.0
        assert state.try_acquire(c("create:ETH"), 0.0) == 0.0
    assert state.usage(0.0) == {"create:BTC": 0.4, "create:ETH": 0.4, "POST": 1.0}
    assert state.try_acquire(c("create:BTC"), 0.5) == 0.5
    assert state.try_acquire(c("create:ETH"), 0.5) == 0.5


def test_linked_weights_multiply_along_transitive_links_and_add_across_paths() -> None:
    #   E --x2--> B --x3--> W        E --x1--> W      so 1 unit on E charges W 2*3 + 1 = 7
    state = ThrottleState([
        RateLimit.simple("E", 100, 10, [Cost("B", 2), Cost("W", 1)]),
        RateLimit.simple("B", 100, 10, [Cost("W", 3)]),
        RateLimit.simple("W", 100, 10),
    ])
    assert tuple(state.charges(c("E"))) == ("E", "B", "W")
    assert state.try_acquire(c("E", 2), 0.0) == 0.0
    assert state.usage(0.0) == {"E": 0.02, "B": 0.04, "W": 0.14}
    # several costs naming the same pool add up too; weight 0 charges nothing
    assert state.try_acquire([Cost("W", 5), Cost("B", 1), Cost("E", 0)], 0.0) == 0.0
    assert state.usage(0.0) == {"E": 0.02, "B": 0.05, "W": 0.22}
    assert tuple(state.charges([Cost("E", 0)])) == ()


def test_zero_link_weight_and_empty_costs_charge_nothing() -> None:
    state = ThrottleState([RateLimit.simple("A", 1, 1, [Cost("P", 0)]), RateLimit.simple("P", 1, 1)])
    assert state.try_acquire(c("A"), 0.0) == 0.0
    assert state.try_acquire([], 0.0) == 0.0
    assert state.usage(0.0) == {"A": 1.0, "P": 0.0}


def test_time_going_backwards_is_read_as_the_latest_time_seen() -> None:
    state = ThrottleState([RateLimit.simple("A", 1, 10)])
    assert state.try_acquire(c("A"), 100.0) == 0.0
    assert state.try_acquire(c("A"), 5.0) == 10.0  # read as 100, not as 5 (which would say 105)
    assert state.usage(0.0) == {"A": 1.0}
    with pytest.raises(ValueError, match="NaN"):
        state.try_acquire(c("A"), math.nan)


def test_charges_at_one_instant_share_one_entry() -> None:
    state = ThrottleState([RateLimit.simple("A", 1000, 10)])
    for _ in range(500):
        state.try_acquire(c("A"), 1.0)
    state.try_acquire(c("A"), 2.0)
    assert state.try_acquire(c("A", 500), 3.0) == 8.0  # needs the 1.0 batch to expire, at 11
    assert state.try_acquire(c("A", 499), 3.0) == 0.0


def test_plan_cache_is_bounded_and_stays_correct() -> None:
    state = ThrottleState([RateLimit.simple("A", 10**8, 10)])
    for w in range(1, 5000):
        assert state.try_acquire(c("A", w), 0.0) == 0.0
    assert len(state._plans) <= 4096  # memory stays bounded however many distinct costs come
    assert state.pool_usage("A", 0.0) == sum(range(1, 5000)) / 10**8


def test_blocking_names_every_pool_that_does_not_fit_with_its_own_wait() -> None:
    state = ThrottleState([
        RateLimit.simple("A", 2, 10, [Cost("P")]),
        RateLimit("P", (Window(3, 5), Window(4, 20))),
    ])
    assert state.try_acquire(c("A", 2), 0.0) == 0.0  # A 2/2, P 2 in both windows
    assert state.try_acquire(c("P"), 1.0) == 0.0  # P 3/3 in the 5 s window
    assert state.blocking(c("A"), 2.0) == {"A": 8.0, "P": 3.0}
    assert state.try_acquire(c("A"), 2.0) == 8.0  # the overall wait is the longest of them
    assert state.blocking(c("P"), 2.0) == {"P": 3.0}
    assert state.blocking(c("P"), 5.0) == {}  # the 0 s charges left the 5 s window; 4 of 4 in 20 s
    assert state.blocking(c("P", 2), 5.0) == {"P": 15.0}  # now the 20 s window binds
    assert state.blocking([], 5.0) == {}
    assert state.usage(5.0) == {"A": 1.0, "P": 0.75}  # asking recorded nothing


def test_charges_and_room_per_pool() -> None:
    state = ThrottleState([
        RateLimit.simple("A", 5, 10, [Cost("P", 2)]),
        RateLimit("P", (Window(10, 5), Window(12, 60))),
    ])
    assert state.charges([Cost("A", 2), Cost("P")]) == {"A": 2, "P": 5}
    assert state.charges([Cost("A", 0)]) == {}
    assert state.room("P", 0.0) == 10  # the tighter of its windows
    state.try_acquire(c("A", 2), 0.0)
    assert (state.room("A", 1.0), state.room("P", 1.0)) == (3, 6)
    assert state.room("P", 5.0) == 8  # the 5 s window emptied; 4 of 12 still in the 60 s one
    state.calibrate("P", 20, 6.0, window_seconds=60)
    assert state.room("P", 6.0) == -8  # over capacity: the venue counts more than fits
    with pytest.raises(ConfigError, match="unknown rate limit id 'X'"):
        state.room("X", 6.0)


def test_wait_rounding_guard_where_the_difference_itself_rounds() -> None:
    from marketlink.net.throttler import _wait_until

    now, when = -1e17, 0.3  # 0.3 - now rounds to 1e17, and now + 1e17 is 0.0, short of 0.3
    wait = _wait_until(when, now)
    assert now + wait >= when and now + math.nextafter(wait, -math.inf) < when


# ------------------------------------------------------------------------------------------------
# calibration


def test_calibration_raises_our_count_but_never_lowers_it() -> None:
    state = ThrottleState([RateLimit.simple("W", 10, 60)])
    state.try_acquire(c("W", 3), 0.0)
    state.calibrate("W", 1, 1.0)  # the venue counts less: keep ours
    assert state.usage(1.0) == {"W": 0.3}
    state.calibrate("W", 8, 2.0)  # the venue counts more: take its count, charged now
    assert state.usage(2.0) == {"W": 0.8}
    assert state.try_acquire(c("W", 3), 2.0) == 58.0  # the 5 extra units leave at 62, ours at 60
    assert state.try_acquire(c("W", 6), 60.0) == 2.0  # ours left at 60, the 5 extra are still there
    assert state.try_acquire(c("W", 6), 62.0) == 0.0


def test_calibration_of_one_window_also_bounds_longer_ones() -> None:
    state = ThrottleState([RateLimit("O", (Window(10, 10), Window(100, 86400), Window(5, 1)))])
    state.calibrate("O", 7, 0.0, window_seconds=10)
    assert state.pool_usage("O", 0.0) == 0.7
    assert state.try_acquire(c("O", 3), 0.0) == 0.0  # so the 1 s window was left alone (3 of 5)
    assert state.pool_usage("O", 10.5) == 0.1  # the day window holds the 7 and our 3
    state.calibrate("O", 50, 11.0, window_seconds=1)  # the shortest window bounds them all
    assert state.usage(11.0) == {"O": 10.0}  # over capacity: the venue says we are
    assert state.try_acquire(c("O"), 11.0) == 10.0  # the longest wait of all windows: the 10 s one
    assert state.try_acquire(c("O"), 21.0) == 0.0
    assert state.pool_usage("O", 21.0) == 0.51  # the day window was raised to 50, plus this 1
    with pytest.raises(ConfigError, match="say which one"):
        state.calibrate("O", 60, 21.0)  # a daily count must not be taken for a 1 s count


def test_usage_values_are_validated() -> None:
    assert Usage("W", 5) == Usage("W", 5, None)
    assert Usage("O", 3, 10).window_seconds == 10
    with pytest.raises(ConfigError, match="non-empty"):
        Usage("", 1)
    for bad_count in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="usage count"):
            Usage("W", bad_count)  # type: ignore[arg-type]
    for bad_window in (0, -10.0, math.inf, math.nan, True, "10"):
        with pytest.raises(ConfigError, match="window seconds"):
            Usage("W", 1, bad_window)  # type: ignore[arg-type]


def test_calibration_refuses_unknown_limits_and_windows() -> None:
    state = ThrottleState([RateLimit.simple("W", 10, 60)])
    with pytest.raises(ConfigError, match="unknown rate limit id 'X'"):
        state.calibrate("X", 1, 0.0)
    with pytest.raises(ConfigError, match="no 10s window"):
        state.calibrate("W", 1, 0.0, window_seconds=10)
    with pytest.raises(ConfigError, match="unknown rate limit id 'X'"):
        state.pool_usage("X", 0.0)
    for bad in (-1, 2.5, "7", True):
        with pytest.raises(ValueError, match="usage count"):
            state.calibrate("W", bad, 0.0)  # type: ignore[arg-type]
    state.calibrate("W", 4, 0.0, window_seconds=60)
    assert state.usage(0.0) == {"W": 0.4}


# ------------------------------------------------------------------------------------------------
# clocks


async def test_system_clock_is_monotonic_and_sleeps() -> None:
    clock = SystemClock()
    t0 = clock.time()
    await clock.sleep(0)
    assert clock.time() >= t0


async def test_virtual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = VirtualClock(start=100.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.time()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0))]
    await clock.wait_for_sleepers(4)
    first_deadline = clock.next_deadline
    assert clock.pending == 4 and first_deadline == 101.0
    clock.advance(1.5)
    await tasks[1]
    assert woke == [("a", 101.5)] and clock.pending == 3
    clock.advance(10)
    await asyncio.gather(*tasks)
    assert [n for n, _ in woke] == ["a", "b", "b2", "c"]
    assert (clock.next_deadline, clock.time()) == (None, 111.5)


async def test_virtual_clock_edges() -> None:
    clock = VirtualClock(start=1e17)  # a float step here is 16 s
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.advance(math.nan)
    with pytest.raises(ValueError):
        clock.advance_to(math.inf)
    with pytest.raises(ValueError):
        await clock.sleep(math.nan)
    with pytest.raises(ValueError):
        VirtualClock(start=math.inf)
    await clock.sleep(0)
    await clock.sleep(-1)
    await clock.wait_for_sleepers(0)  # already true: returns at once
    tiny = asyncio.create_task(clock.sleep(1e-3))  # below resolution: must still need time to pass
    await clock.wait_for_sleepers(1)
    clock.advance(0)
    assert not tiny.done()
    deadline = clock.next_deadline
    assert deadline is not None and deadline > 1e17
    clock.advance_to(deadline)
    await tiny
    clock.advance_to(0.0)  # never backwards
    assert clock.time() == deadline


async def test_virtual_clock_skips_cancelled_sleepers() -> None:
    clock = VirtualClock()
    first = asyncio.create_task(clock.sleep(1))
    second = asyncio.create_task(clock.sleep(2))
    watcher = asyncio.create_task(clock.wait_for_sleepers(3))
    await clock.wait_for_sleepers(2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert clock.pending == 1 and clock.next_deadline == 2.0
    gave_up = asyncio.create_task(clock.wait_for_sleepers(10))
    third = asyncio.create_task(clock.sleep(3))
    await clock.wait_for_sleepers(2)
    assert not watcher.done()  # only two sleepers wait: the cancelled one does not count
    gave_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gave_up
    fourth = asyncio.create_task(clock.sleep(4))
    await watcher
    clock.advance(5)
    await asyncio.gather(second, third, fourth)
    assert clock.pending == 0


# ------------------------------------------------------------------------------------------------
# the asyncio throttler


def make(limits: list[RateLimit], **kw: object) -> tuple[Throttler, VirtualClock]:
    clock = VirtualClock()
    return Throttler(limits, clock=clock, **kw), clock  # type: ignore[arg-type]


async def test_admission_without_contention_does_not_wait() -> None:
    thr, clock = make([RateLimit.simple("A", 2, 1)])
    await thr.acquire(c("A"))
    await thr.acquire(c("A"))
    assert thr.usage() == {"A": 1.0} and clock.pending == 0 and thr.waiting == 0


async def test_a_blocked_request_sleeps_exactly_until_it_fits() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10)])
    await thr.acquire(c("A"))
    clock.advance(3)
    task = asyncio.create_task(thr.acquire(c("A")))
    await clock.wait_for_sleepers(1)
    assert clock.next_deadline == 10.0 and thr.waiting == 1
    clock.advance(6.5)
    assert clock.pending == 1 and not task.done()
    clock.advance(0.5)
    await task
    assert clock.time() == 10.0 and thr.waiting == 0


async def test_waiters_sharing_a_blocking_pool_keep_request_order_and_others_pass() -> None:
    thr, clock = make([RateLimit.simple("A", 3, 10), RateLimit.simple("B", 5, 10)])
    await thr.acquire(c("A", 2))
    order: list[str] = []

    async def req(name: str, costs: list[Cost]) -> None:
        await thr.acquire(costs)
        order.append(name)

    heavy = asyncio.create_task(req("heavy", c("A", 3)))  # blocked on A until 10
    light = asyncio.create_task(req("light", c("A", 1)))  # would fit A, but A is heavy's now
    other = asyncio.create_task(req("other-pool", c("B", 1)))  # nothing blocks B: passes both
    await other
    await clock.wait_for_sleepers(1)
    assert order == ["other-pool"] and thr.waiting == 2 and clock.next_deadline == 10.0
    clock.advance(10)
    await heavy
    await clock.wait_for_sleepers(1)  # light is blocked on A itself now, behind heavy's charge
    assert order == ["other-pool", "heavy"] and thr.waiting == 1 and clock.next_deadline == 20.0
    clock.advance(10)
    await light
    assert order == ["other-pool", "heavy", "light"] and clock.pending == 0


async def test_a_depth_read_is_not_stuck_behind_an_order_on_a_full_order_pool() -> None:
    # Binance spot shape: orders charge ORDERS (10 s and 1 day) and REQUEST_WEIGHT; reads only weight
    thr, clock = make([
        RateLimit("ORDERS", (Window(2, 10), Window(1000, 86400))),
        RateLimit.simple("WEIGHT", 6000, 60),
    ])
    order_costs = [Cost("ORDERS"), Cost("WEIGHT")]
    for _ in range(2):
        await thr.acquire(order_costs, is_order=True)
    third_order = asyncio.create_task(thr.acquire(order_costs, is_order=True))
    await clock.wait_for_sleepers(1)
    await thr.acquire(c("WEIGHT", 250))  # a 5000-level depth snapshot: admitted at once
    await thr.acquire(c("WEIGHT", 4))  # an order-status query: the same
    assert clock.time() == 0.0 and thr.waiting == 1 and not third_order.done()
    assert thr.usage()["WEIGHT"] == pytest.approx(256 / 6000)
    clock.advance(10)
    await third_order
    assert thr.waiting == 0


async def test_a_waiter_reserves_only_the_pools_it_is_blocked_on() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10), RateLimit.simple("B", 3, 10)])
    await thr.acquire(c("A"))
    order: list[str] = []

    async def req(name: str, costs: list[Cost]) -> None:
        await thr.acquire(costs)
        order.append(name)

    early = asyncio.create_task(req("early", [Cost("A"), Cost("B", 2)]))  # blocked on A, fits B
    await clock.wait_for_sleepers(1)
    await req("l1", c("B"))  # B is not blocked for early: l1 may use it (B at 1, early still fits)
    await req("l2", c("B"))  # and so may l2; that leaves early short on B (2 + 2 > 3)
    late = asyncio.create_task(req("late", c("B")))  # B would take it, but early is blocked on B now
    await asyncio.sleep(0)  # a pure loop yield (no clock involved): late runs up to its wait
    assert order == ["l1", "l2"] and thr.waiting == 2
    clock.advance(10)  # A and B both drain at 10: early first, then late fits beside it
    await asyncio.gather(early, late)
    assert order == ["l1", "l2", "early", "late"] and thr.usage() == {"A": 1.0, "B": 1.0}


async def test_an_admission_in_a_scan_closes_the_pools_it_leaves_an_earlier_waiter_short_on() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10), RateLimit.simple("B", 3, 10)])
    await thr.acquire(c("A"))
    thr.back_off(5)  # everyone queues, so one scan at 5 judges all three
    order: list[str] = []

    async def req(name: str, costs: list[Cost]) -> None:
        await thr.acquire(costs)
        order.append(name)

    tasks = [
        asyncio.create_task(req("early", [Cost("A"), Cost("B", 2)])),  # at 5: blocked on A only
        asyncio.create_task(req("middle", c("B", 2))),  # fits B: admitted, early now short on B
        asyncio.create_task(req("late", c("B"))),  # B has room for it but is early's now
    ]
    await clock.wait_for_sleepers(1)
    assert thr.waiting == 3
    clock.advance(5)
    await tasks[1]
    await clock.wait_for_sleepers(1)
    assert order == ["middle"] and thr.waiting == 2
    clock.advance_to(15.0)  # A drained at 10, B (middle's 2) at 15: early, then late beside it
    await asyncio.gather(*tasks)
    assert order == ["middle", "early", "late"] and clock.time() == 15.0


async def test_cancelling_a_blocked_waiter_releases_those_held_behind_it() -> None:
    thr, clock = make([RateLimit.simple("A", 3, 10)])
    await thr.acquire(c("A", 2))
    heavy = asyncio.create_task(thr.acquire(c("A", 3)))
    light = asyncio.create_task(thr.acquire(c("A", 1)))
    await clock.wait_for_sleepers(1)
    assert thr.waiting == 2
    heavy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await heavy
    await light  # no time passed: light fitted all along, only heavy's claim on A held it
    assert clock.time() == 0.0 and thr.waiting == 0 and clock.pending == 0
    assert thr.usage() == {"A": 1.0}


async def test_a_waiter_cancelled_just_before_a_scan_blocks_nobody() -> None:
    thr, clock = make([RateLimit.simple("A", 3, 10)])
    await thr.acquire(c("A", 2))
    heavy = asyncio.create_task(thr.acquire(c("A", 3)))
    light = asyncio.create_task(thr.acquire(c("A", 1)))
    await clock.wait_for_sleepers(1)
    heavy.cancel()  # its future is cancelled now; its task only runs its cleanup later
    thr.back_off(0)  # a scan in between must skip it rather than keep A closed for it
    assert thr.waiting == 0
    await light
    with pytest.raises(asyncio.CancelledError):
        await heavy
    assert thr.usage() == {"A": 1.0} and clock.pending == 0


async def test_calibration_re_judges_the_queue_at_once() -> None:
    thr, clock = make([RateLimit.simple("A", 2, 10)])
    await thr.acquire(c("A", 2))
    task = asyncio.create_task(thr.acquire(c("A")))
    await clock.wait_for_sleepers(1)
    assert clock.next_deadline == 10.0
    clock.advance(2)
    thr.calibrate("A", 4)  # the venue saw 2 more than we did, charged now: they leave at 12
    await clock.wait_for_sleepers(1)
    assert clock.next_deadline == 12.0  # re-armed at once, not found out by waking at 10
    clock.advance(10)
    await task


async def test_an_observer_backing_off_during_a_scan_holds_the_rest_of_it() -> None:
    thr: Throttler
    thr, clock = make(
        [RateLimit.simple("A", 10, 10)], near_limit=0.5,
        on_near_limit=lambda limit_id, fraction: thr.back_off(5),
    )
    thr.back_off(1)
    first = asyncio.create_task(thr.acquire(c("A", 6)))
    second = asyncio.create_task(thr.acquire(c("A", 1)))
    await clock.wait_for_sleepers(1)
    clock.advance(1)  # first is admitted, crosses 0.5, and its observer backs off mid-scan
    await first
    await clock.wait_for_sleepers(1)
    assert not second.done() and clock.next_deadline == 6.0
    clock.advance(5)
    await second
    assert thr.usage() == {"A": 0.7}


async def test_an_observer_backing_off_during_an_arrival_holds_later_arrivals() -> None:
    thr: Throttler
    thr, clock = make(
        [RateLimit.simple("A", 1, 10), RateLimit.simple("W", 10, 60)], near_limit=0.5,
        on_near_limit=lambda limit_id, fraction: thr.back_off(5) if limit_id == "W" else None,
    )
    await thr.acquire(c("A"))
    blocked = asyncio.create_task(thr.acquire(c("A")))  # waits for A until 10
    await clock.wait_for_sleepers(1)
    await thr.acquire(c("W", 6))  # passes the blocked waiter, crosses 0.5: the observer backs off
    later = asyncio.create_task(thr.acquire(c("W")))
    await clock.wait_for_sleepers(1)
    assert clock.next_deadline == 5.0 and thr.waiting == 2
    clock.advance(5)
    await later
    assert not blocked.done()
    await clock.wait_for_sleepers(1)
    assert clock.next_deadline == 10.0
    clock.advance(5)
    await blocked


async def test_a_late_starting_alarm_does_not_oversleep() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10)])
    await thr.acquire(c("A"))
    task = asyncio.create_task(thr.acquire(c("A")))
    await asyncio.sleep(0)  # a pure loop yield: the task queued and armed its alarm, not yet run
    assert thr.waiting == 1 and clock.pending == 0
    clock.advance(25)  # time passes the deadline before the alarm task even starts
    await task
    assert clock.time() == 25.0 and clock.pending == 0


async def test_a_cancelled_head_hands_the_turn_on() -> None:
    thr, clock = make([RateLimit.simple("A", 2, 10)])
    await thr.acquire(c("A", 2))
    head = asyncio.create_task(thr.acquire(c("A", 2)))
    second = asyncio.create_task(thr.acquire(c("A", 1)))
    third = asyncio.create_task(thr.acquire(c("A", 1)))
    await clock.wait_for_sleepers(1)
    assert thr.waiting == 3
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    await clock.wait_for_sleepers(1)  # second is the head now, sleeping until 10
    assert clock.next_deadline == 10.0
    clock.advance(10)
    await asyncio.gather(second, third)
    assert thr.usage() == {"A": 1.0} and thr.waiting == 0 and clock.pending == 0


async def test_a_cancelled_middle_waiter_leaves_quietly() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10)])
    await thr.acquire(c("A"))
    first = asyncio.create_task(thr.acquire(c("A")))
    middle = asyncio.create_task(thr.acquire(c("A")))
    last = asyncio.create_task(thr.acquire(c("A")))
    await clock.wait_for_sleepers(1)
    assert thr.waiting == 3
    middle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await middle
    assert thr.waiting == 2
    clock.advance(10)
    await first
    await clock.wait_for_sleepers(1)
    clock.advance(10)
    await last
    assert clock.time() == 20.0 and thr.waiting == 0


async def test_a_waiter_cancelled_right_after_its_turn_came_passes_it_on() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10)])
    await thr.acquire(c("A"))
    first = asyncio.create_task(thr.acquire(c("A")))
    second = asyncio.create_task(thr.acquire(c("A")))
    third = asyncio.create_task(thr.acquire(c("A")))
    await clock.wait_for_sleepers(1)
    clock.advance(10)
    await first  # second's turn is now set, but second has not run yet
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await clock.wait_for_sleepers(1)
    clock.advance(10)
    await third
    assert thr.waiting == 0


async def test_unknown_costs_fail_before_queueing() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10)])
    thr.validate(c("A"))
    with pytest.raises(ConfigError, match="'Z'"):
        thr.validate(c("Z"))
    await thr.acquire(c("A"))
    blocked = asyncio.create_task(thr.acquire(c("A")))
    await clock.wait_for_sleepers(1)
    with pytest.raises(ConfigError, match="'Z'"):
        await thr.acquire(c("Z"))
    assert thr.waiting == 1
    clock.advance(10)
    await blocked


async def test_back_off_holds_reads_and_orders_until_it_ends() -> None:
    thr, clock = make([RateLimit.simple("A", 100, 10)])
    thr.back_off(5)
    thr.back_off(2)  # a shorter Retry-After never shortens the current one
    read = asyncio.create_task(thr.acquire(c("A")))
    order = asyncio.create_task(thr.acquire(c("A"), is_order=True))
    await clock.wait_for_sleepers(1)
    assert clock.next_deadline == 5.0 and thr.waiting == 2
    clock.advance(4.9)
    assert not read.done()
    clock.advance(0.1)
    await asyncio.gather(read, order)
    assert thr.usage() == {"A": 0.02}
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            thr.back_off(bad)


async def test_back_off_arriving_while_a_head_sleeps_extends_its_wait() -> None:
    thr, clock = make([RateLimit.simple("A", 1, 10)])
    await thr.acquire(c("A"))
    task = asyncio.create_task(thr.acquire(c("A")))
    await clock.wait_for_sleepers(1)
    thr.back_off(30)
    clock.advance(10)
    await clock.wait_for_sleepers(1)  # woke at 10, found the back-off, sleeps again
    assert clock.next_deadline == 30.0 and not task.done()
    clock.advance(20)
    await task


async def test_ban_refuses_orders_at_once_and_lets_reads_through() -> None:
    thr, clock = make([RateLimit.simple("A", 100, 10)])
    before = thr.banned_until
    thr.ban(120)
    assert (before, thr.banned_until) == (None, 120.0)
    with pytest.raises(IpBanned) as info:
        await thr.acquire(c("A"), is_order=True)
    err = info.value
    assert err.local and err.until == 120.0 and err.retry_after == 120.0
    await thr.acquire(c("A"))  # reads continue
    assert thr.usage() == {"A": 0.01}  # the refused order charged nothing
    clock.advance(119)
    with pytest.raises(IpBanned) as info:
        await thr.acquire(c("A"), is_order=True)
    assert info.value.retry_after == 1.0
    clock.advance(1)
    assert thr.banned_until is None
    await thr.acquire(c("A"), is_order=True)
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError):
            thr.ban(bad)
    thr.ban(0)  # a zero ban opens nothing
    assert thr.banned_until is None


async def test_an_order_hold_refuses_new_and_queued_orders_and_nothing_else() -> None:
    """The venue's order-count limit (Binance -1015): reads and cancels do not count against it."""
    thr, clock = make([RateLimit.simple("O", 10, 10, [Cost("W", 5)]), RateLimit.simple("W", 6, 10)])
    await thr.acquire(c("O"), is_order=True)  # W at 5 of 6
    queued = asyncio.create_task(thr.acquire(c("O"), is_order=True))  # blocked on W
    read = asyncio.create_task(thr.acquire(c("W")))  # behind it
    await clock.wait_for_sleepers(1)
    assert thr.waiting == 2
    thr.hold_orders(30)
    assert thr.orders_held_until == 30.0
    with pytest.raises(OrderRateLimited) as info:
        await queued
    assert info.value.local and info.value.retry_after == 30.0
    await read  # the order ahead of it was refused: the read goes at once
    with pytest.raises(OrderRateLimited):
        await thr.acquire(c("O"), is_order=True)
    assert thr.banned_until is None  # not a ban
    clock.advance(30)
    assert thr.orders_held_until is None
    await thr.acquire(c("O"), is_order=True)
    for bad in (-1.0, math.inf):
        with pytest.raises(ValueError):
            thr.hold_orders(bad)


async def test_a_ban_refuses_queued_orders_and_unblocks_the_reads_behind_them() -> None:
    thr, clock = make([RateLimit.simple("O", 10, 10, [Cost("W", 5)]), RateLimit.simple("W", 6, 10)])
    await thr.acquire(c("O"), is_order=True)  # W at 5 of 6
    head_order = asyncio.create_task(thr.acquire(c("O"), is_order=True))  # blocked on W
    queued_order = asyncio.create_task(thr.acquire(c("O"), is_order=True))
    read = asyncio.create_task(thr.acquire(c("W")))  # fits W, but W is the head order's
    await clock.wait_for_sleepers(1)
    assert thr.waiting == 3 and not read.done()
    thr.ban(60)
    for task in (head_order, queued_order):
        with pytest.raises(IpBanned) as info:
            await task
        assert info.value.local and info.value.until == 60.0
    await read  # no time passed: the read went through as soon as the orders were refused
    assert clock.time() == 0.0 and thr.waiting == 0 and clock.pending == 0
    assert thr.usage() == {"O": 0.1, "W": 1.0}


async def test_a_ban_does_not_wake_a_read_at_the_head() -> None:
    thr, clock = make([RateLimit.simple("W", 1, 10)])
    await thr.acquire(c("W"))
    read = asyncio.create_task(thr.acquire(c("W")))
    await clock.wait_for_sleepers(1)
    thr.ban(60)
    assert clock.pending == 1 and not read.done()
    clock.advance(10)
    await read


async def test_calibration_through_the_throttler_delays_the_next_request() -> None:
    thr, clock = make([RateLimit.simple("W", 10, 60)])
    thr.calibrate("W", 10, window_seconds=60)
    assert thr.usage() == {"W": 1.0}
    task = asyncio.create_task(thr.acquire(c("W")))
    await clock.wait_for_sleepers(1)
    assert clock.next_deadline == 60.0
    clock.advance(60)
    await task


async def test_near_limit_fires_once_per_crossing_and_rearms() -> None:
    seen: list[tuple[str, float]] = []
    thr, clock = make(
        [RateLimit.simple("A", 10, 10, [Cost("P")]), RateLimit.simple("P", 20, 10)],
        on_near_limit=lambda limit_id, fraction: seen.append((limit_id, fraction)),
        near_limit=0.5,
    )
    for _ in range(4):
        await thr.acquire(c("A"))
    assert seen == []
    await thr.acquire(c("A"))
    assert seen == [("A", 0.5)]
    await thr.acquire(c("A"))
    await thr.acquire(c("P", 5))
    assert seen == [("A", 0.5), ("P", 0.55)]
    clock.advance(10)  # everything expired
    await thr.acquire(c("A", 6))  # one jump from 0 to 0.6: a new crossing, seen despite no dip observed
    assert seen[2:] == [("A", 0.6)]
    thr.calibrate("P", 15)
    assert seen[3:] == [("P", 0.75)]
    thr.calibrate("P", 16)
    assert len(seen) == 4


async def test_near_limit_does_not_flood_at_a_steady_rate_on_the_line() -> None:
    """A sliding window used at a steady 80 % dips under the line before nearly every charge:
    one warning per plateau, not one per request; a real drain (5 points) re-arms it."""
    seen: list[float] = []
    thr, clock = make([RateLimit.simple("A", 100, 10)], near_limit=0.8,
                      on_near_limit=lambda limit_id, fraction: seen.append(clock.time()))
    for _ in range(480):  # 60 s at 8 a second: 80 in every 10 s
        await thr.acquire(c("A"))
        clock.advance(0.125)
    assert len(seen) == 1
    clock.advance(1.0)  # 8 of 80 expire: 72 %, below 75 %
    for _ in range(16):
        await thr.acquire(c("A"))
        clock.advance(0.0625)
    assert len(seen) == 2


async def test_a_failing_near_limit_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def boom(limit_id: str, fraction: float) -> None:
        raise RuntimeError("observer bug")

    thr, _ = make([RateLimit.simple("A", 2, 10)], on_near_limit=boom)
    with caplog.at_level(logging.ERROR, logger="marketlink.net.throttler"):
        await thr.acquire(c("A", 2))
    assert thr.usage() == {"A": 1.0}
    assert "on_near_limit callback failed for A" in caplog.text


def test_throttler_configuration_errors() -> None:
    for bad in (0, 1.5, math.nan, True):
        with pytest.raises(ConfigError, match="near_limit"):
            Throttler([RateLimit.simple("A", 1, 1)], near_limit=bad)
    with pytest.raises(ConfigError, match="leaves no capacity"):
        Throttler([RateLimit.simple("A", 1, 1)], share=0.5)
    thr = Throttler([RateLimit.simple("A", 4, 1)], share=0.5)  # default clock: the system's
    assert thr.usage() == {"A": 0.0} and thr.banned_until is None


async def test_a_failing_clock_surfaces_instead_of_spinning() -> None:
    class BrokenClock(VirtualClock):
        async def sleep(self, seconds: float) -> None:
            raise OSError("timer broke")

    thr = Throttler([RateLimit.simple("A", 1, 10)], clock=BrokenClock())
    await thr.acquire(c("A"))
    with pytest.raises(OSError, match="timer broke"):
        await thr.acquire(c("A"))
    assert thr.waiting == 0


def test_a_day_long_window_holds_a_bounded_number_of_entries_however_many_orders() -> None:
    # Binance's ORDERS pool: 50 per 10 s and 160,000 a day. A market maker placing 4 orders a
    # second for ten hours must not grow the daily window's history with every order.
    state = ThrottleState([RateLimit("ORDERS", (Window(50, 10), Window(160_000, 86_400)))])
    order = [Cost("ORDERS", 1)]
    now, placed = 0.0, 0
    while placed < 150_000:
        assert state.try_acquire(order, now) == 0.0
        placed += 1
        now += 0.25
    ten_s, day = state._tracks["ORDERS"]
    assert day.used == 150_000  # every order still counted for the day ...
    assert len(day.entries) <= BUCKETS + 1  # ... in at most one entry per slot
    assert len(ten_s.entries) == 40  # the 10 s window is exact: one entry per order in it
    assert day.capacity - day.used == 10_000


def test_a_slotted_charge_leaves_no_earlier_than_its_window_and_at_most_one_slot_later() -> None:
    state = ThrottleState([RateLimit("DAY", (Window(2, 86_400),))])
    assert state.try_acquire([Cost("DAY", 2)], 1_000.0) == 0.0
    wait = state.try_acquire([Cost("DAY", 1)], 1_000.0)
    assert 86_400 <= wait <= 86_400 + 86_400 / BUCKETS
    assert state.try_acquire([Cost("DAY", 1)], 1_000.0 + 86_400 - 1) > 0.0  # still inside the day
    assert state.try_acquire([Cost("DAY", 1)], 1_000.0 + wait) == 0.0


def test_adopt_replaces_a_windows_capacity_or_adds_the_window_and_refuses_nonsense() -> None:
    state = ThrottleState([RateLimit("W", (Window(10, 60),)), RateLimit("O", (Window(4, 10),))], share=0.5)
    assert state.adopt("W", 60, 30) == 5  # ours was 10 * 0.5; now 30 * 0.5
    assert state.windows("W") == [(60.0, 15)]
    assert state.adopt("W", 1, 4) is None  # a window the spec lacked: added, shortest first
    assert state.windows("W") == [(1.0, 2), (60.0, 15)]
    assert state.try_acquire([Cost("W", 2)], 0.0) == 0.0
    assert state.try_acquire([Cost("W", 1)], 0.0) > 0.0  # the new 1 s window binds at once
    assert state.try_acquire([Cost("W", 1)], 1.0) == 0.0
    with pytest.raises(ConfigError, match="can never fit"):  # plans were re-checked
        state.try_acquire([Cost("W", 3)], 5.0)
    for bad in (("X", 1, 1), ("W", 1, 0), ("W", 1, True), ("W", 0, 5), ("W", math.inf, 5), ("O", "10", 5)):
        with pytest.raises(ConfigError):
            state.adopt(*bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        state.windows("X")


async def test_throttler_adopt_wakes_a_waiter_the_larger_capacity_now_admits() -> None:
    clock = VirtualClock()
    throttler = Throttler([RateLimit.simple("W", 1, 60)], clock=clock)
    await throttler.acquire([Cost("W", 1)])
    waiter = asyncio.ensure_future(throttler.acquire([Cost("W", 1)]))
    await asyncio.sleep(0)
    assert not waiter.done() and throttler.waiting == 1
    assert throttler.adopt("W", 60, 2) == 1
    await asyncio.wait_for(waiter, 1.0)  # admitted without the clock moving
    assert clock.time() == 0.0 and throttler.windows("W") == [(60.0, 2)]


async def test_on_ban_tells_the_owner_of_every_ban_and_survives_a_failing_callback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    seen: list[float] = []
    thr = Throttler([RateLimit.simple("A", 100, 10)], clock=clock, on_ban=seen.append)
    thr.ban(0)  # no ban opens: nobody is told
    thr.ban(30)
    clock.advance(10)
    thr.ban(5)  # shorter than what is left: the ban's end does not move
    assert seen == [30.0, 30.0]

    def broken(until: float) -> None:
        raise RuntimeError("observer bug")

    failing = Throttler([RateLimit.simple("A", 100, 10)], clock=clock, on_ban=broken)
    with caplog.at_level(logging.ERROR):
        failing.ban(10)
    assert failing.banned_until is not None and "on_ban callback failed" in caplog.text


def test_pool_usage_around_a_charge_gives_the_usage_before_and_after_it() -> None:
    state = ThrottleState([RateLimit("W", (Window(100, 10.0), Window(200, 60.0)))])
    state.try_acquire(c("W", 30), 0.0)
    before, after = state.pool_usage_around("W", 0.0, 30)
    assert (before, after) == (0.0, 0.3)  # the 10 s window binds: 30/100 against 30/200
    state.try_acquire(c("W", 50), 1.0)
    assert state.pool_usage_around("W", 1.0, 50) == (0.3, 0.8)
    assert state.pool_usage_around("W", 1.0, 0) == (0.8, 0.8)
