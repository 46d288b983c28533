"""Properties of the throttler against a brute-force oracle, under random limits and arrivals.

The oracle keeps every charge forever and sums, for each window, the charges still inside it
(``t + seconds > now``, the same float expression the throttler uses): it is slow and obviously
right. The pure core must agree with it exactly, decision by decision. The asyncio throttler, fed
random arrivals on a virtual clock, must never exceed any window; must never admit a request
charging a pool on which an earlier, still waiting request is blocked (so requests sharing the pool
that blocks the earlier one keep request order); and must never keep a request waiting whose pools
all fit and none of which blocks an earlier waiter.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.errors import ConfigError
from marketlink.net.clock import VirtualClock
from marketlink.net.throttler import (
    BUCKETS,
    EXACT_UP_TO,
    Cost,
    RateLimit,
    Throttler,
    ThrottleState,
    Window,
    slot_end,
)

SPANS = (0.3, 0.5, 1.0, 2.5, 7.0)  # 0.3 is not a binary fraction: float edges get exercised
#: Windows counted in slots (longer than EXACT_UP_TO), one of them a day.
LONG_SPANS = (61.0, 90.0, 300.0, 86400.0)


@st.composite
def limit_sets(draw: st.DrawFn, spans_from: tuple[float, ...] = SPANS) -> list[RateLimit]:
    """1-3 pools, 1-2 windows each, random forward links (so no cycles) with weights 0-2."""
    n = draw(st.integers(1, 3))
    limits = []
    for i in range(n):
        spans = draw(st.lists(st.sampled_from(spans_from), min_size=1, max_size=2, unique=True))
        windows = tuple(Window(draw(st.integers(1, 6)), s) for s in spans)
        links = tuple(Cost(f"L{j}", draw(st.integers(0, 2))) for j in range(i + 1, n) if draw(st.booleans()))
        limits.append(RateLimit(f"L{i}", windows, links))
    return limits


def cost_lists(n_pools: int) -> st.SearchStrategy[list[Cost]]:
    one = st.builds(Cost, st.integers(0, n_pools - 1).map(lambda i: f"L{i}"), st.integers(0, 3))
    return st.lists(one, min_size=1, max_size=2)


@dataclass
class Oracle:
    """Every charge ever made, per (pool, window); loads recomputed from scratch each time."""

    limits: dict[str, RateLimit]
    share: float
    #: Lengthen every slotted window by one slot: the most the throttler may hold a charge back.
    slack: bool = False
    log: dict[tuple[str, float], list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))

    def capacity(self, window: Window) -> int:
        return int(window.capacity * Decimal(repr(self.share)))

    def charges(self, costs: list[Cost]) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)

        def walk(limit_id: str, units: int) -> None:
            out[limit_id] += units
            for link in self.limits[limit_id].linked:
                walk(link.limit_id, units * link.weight)

        for cost in costs:
            walk(cost.limit_id, cost.weight)
        return {k: v for k, v in out.items() if v}

    def expiry(self, t: float, seconds: float) -> float:
        """When a charge made at ``t`` leaves: exactly ``t + seconds``, or for a long window the
        end of its slot, as the module docstring promises."""
        if seconds <= EXACT_UP_TO:
            return t + seconds
        grain = seconds / BUCKETS
        return t + seconds + grain if self.slack else slot_end(t + seconds, grain)

    def load(self, pool: str, seconds: float, now: float) -> int:
        return sum(u for t, u in self.log[(pool, seconds)] if self.expiry(t, seconds) > now)

    def fits(self, costs: list[Cost], now: float) -> bool:
        return all(
            self.load(pool, w.seconds, now) + units <= self.capacity(w)
            for pool, units in self.charges(costs).items()
            for w in self.limits[pool].windows
        )

    def blocked_pools(self, costs: list[Cost], now: float) -> set[str]:
        return {
            pool
            for pool, units in self.charges(costs).items()
            for w in self.limits[pool].windows
            if self.load(pool, w.seconds, now) + units > self.capacity(w)
        }

    def never_fits(self, costs: list[Cost]) -> bool:
        return any(
            units > self.capacity(w)
            for pool, units in self.charges(costs).items()
            for w in self.limits[pool].windows
        )

    def record(self, costs: list[Cost], now: float) -> None:
        for pool, units in self.charges(costs).items():
            for w in self.limits[pool].windows:
                self.log[(pool, w.seconds)].append((now, units))

    def calibrate(self, pool: str, used: int, now: float, seconds: float | None) -> None:
        for w in self.limits[pool].windows:
            if seconds is None or w.seconds >= seconds:  # None: the pool's only window
                extra = used - self.load(pool, w.seconds, now)
                if extra > 0:
                    self.log[(pool, w.seconds)].append((now, extra))

    def usage(self, now: float) -> dict[str, float]:
        return {
            pool: max(self.load(pool, w.seconds, now) / self.capacity(w) for w in lim.windows)
            for pool, lim in self.limits.items()
        }


@st.composite
def scenarios(
    draw: st.DrawFn, spans_from: tuple[float, ...] = SPANS
) -> tuple[list[RateLimit], float, list[tuple[Any, ...]]]:
    limits = draw(limit_sets(spans_from))
    share = draw(st.sampled_from((1.0, 1.0, 0.5, 0.8)))
    # Steps scaled to the windows, so charges expire within a scenario, long windows included.
    scale = min(spans_from) / 0.3
    step = st.one_of(st.sampled_from((0.0, 0.0, 0.1, 0.3, 1.0)), st.floats(0, 3, allow_nan=False)).map(
        lambda x: x * scale
    )
    acquire = st.tuples(st.just("acquire"), step, cost_lists(len(limits)))
    calibrate = st.tuples(
        st.just("calibrate"), step, st.sampled_from(limits),
        st.integers(0, 8), st.booleans(),
    )
    ops: list[tuple[Any, ...]] = draw(
        st.lists(st.one_of(acquire, acquire, acquire, calibrate), min_size=1, max_size=60)
    )
    return limits, share, ops


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_pure_core_agrees_with_the_oracle_decision_by_decision(
    scenario: tuple[list[RateLimit], float, list[tuple[Any, ...]]],
) -> None:
    _agrees_with_the_oracle(scenario)


@settings(max_examples=200, deadline=None)
@given(scenarios(LONG_SPANS))
def test_long_windows_agree_with_the_slotted_oracle_decision_by_decision(
    scenario: tuple[list[RateLimit], float, list[tuple[Any, ...]]],
) -> None:
    _agrees_with_the_oracle(scenario)


@settings(max_examples=200, deadline=None)
@given(scenarios(LONG_SPANS))
def test_long_windows_are_conservative_by_at_most_one_slot(
    scenario: tuple[list[RateLimit], float, list[tuple[Any, ...]]],
) -> None:
    """Against the exact count, the slotted one never admits what overfills a window, and
    never refuses what would fit were each window one slot longer."""
    limits, share, ops = scenario
    exact = Oracle({lim.id: lim for lim in limits}, share)
    exact.expiry = lambda t, seconds: t + seconds  # type: ignore[method-assign]
    slack = Oracle({lim.id: lim for lim in limits}, share, slack=True)
    if any(exact.capacity(w) < 1 for lim in limits for w in lim.windows):
        return
    state = ThrottleState(limits, share=share)
    now = 0.0
    for op in ops:
        now += op[1]
        costs = op[2]
        if op[0] != "acquire" or exact.never_fits(costs):
            continue
        admitted = state.try_acquire(costs, now) == 0.0
        if admitted:
            assert exact.fits(costs, now), "admitted beyond a window's exact count"
            exact.record(costs, now)
            slack.record(costs, now)
        else:
            assert not slack.fits(costs, now), "held back longer than one slot"


def _agrees_with_the_oracle(scenario: tuple[list[RateLimit], float, list[tuple[Any, ...]]]) -> None:
    limits, share, ops = scenario
    oracle = Oracle({lim.id: lim for lim in limits}, share)
    if any(oracle.capacity(w) < 1 for lim in limits for w in lim.windows):
        try:
            ThrottleState(limits, share=share)
        except ConfigError:
            return
        raise AssertionError("a share leaving no capacity must be refused")
    state = ThrottleState(limits, share=share)
    now = 0.0
    for op in ops:
        now += op[1]
        if op[0] == "calibrate":
            limit, used, pick = op[2], op[3], op[4]
            assert isinstance(limit, RateLimit) and isinstance(used, int)
            seconds = limit.windows[0].seconds if pick or len(limit.windows) > 1 else None
            state.calibrate(limit.id, used, now, seconds)
            oracle.calibrate(limit.id, used, now, seconds)
            continue
        costs = op[2]
        assert isinstance(costs, list)
        if oracle.never_fits(costs):
            try:
                state.try_acquire(costs, now)
            except ConfigError:
                continue
            raise AssertionError(f"{costs} can never fit and must be refused as configuration")
        wait = state.try_acquire(costs, now)
        if oracle.fits(costs, now):
            assert wait == 0.0
            oracle.record(costs, now)
        else:
            assert wait > 0.0
            ready = now + wait  # what a clock computes as the sleeper's deadline
            assert oracle.fits(costs, ready), "waiting the returned time must be enough"
            earlier = now + math.nextafter(wait, -math.inf)
            assert earlier == ready or not oracle.fits(costs, earlier), "and no shorter wait would do"
        assert state.usage(now) == oracle.usage(now)


# ------------------------------------------------------------------------------------------------
# the asyncio throttler on a virtual clock


TAG = Cost("L0", 0)


@dataclass
class Arrival:
    at: float
    costs: list[Cost]


@st.composite
def arrival_scenarios(draw: st.DrawFn) -> tuple[list[RateLimit], list[Arrival], list[tuple[float, float]]]:
    limits = draw(limit_sets())
    oracle = Oracle({lim.id: lim for lim in limits}, 1.0)
    costs = cost_lists(len(limits)).filter(lambda cs: not oracle.never_fits(cs) and TAG not in cs)
    times = st.integers(0, 40).map(lambda k: k / 10)  # many ties on purpose
    arrivals = draw(st.lists(st.builds(Arrival, times, costs), min_size=1, max_size=25))
    back_offs = draw(st.lists(st.tuples(times, st.sampled_from((0.2, 1.0, 3.0))), max_size=2))
    return limits, arrivals, back_offs


async def one_loop_round() -> None:
    await asyncio.sleep(0)  # a zero sleep is a pure yield to the event loop: no clock is involved


class RecordingState(ThrottleState):
    """The throttler's own accounting, reporting every admission at the moment it is charged.

    Tasks resume in an order of their own after admission, so only the state sees the true
    admission order, which the fairness rule is about.
    """

    def __init__(self, limits: list[RateLimit], on_admit: Callable[[list[Cost], float], None]) -> None:
        super().__init__(limits)
        self.on_admit = on_admit

    def try_acquire(self, costs: Sequence[Cost], now: float) -> float:
        wait = super().try_acquire(costs, now)
        if wait == 0.0:
            self.on_admit(list(costs), now)
        return wait


def tagged(costs: list[Cost], i: int) -> list[Cost]:
    """``costs`` plus ``i + 1`` ``TAG`` entries: they charge nothing, but make every request's
    costs distinct by value (drawn costs never hold ``TAG``), so the state can name the request."""
    return [*costs, *[TAG] * (i + 1)]


async def run_arrivals(
    limits: list[RateLimit], arrivals: list[Arrival], back_offs: list[tuple[float, float]],
) -> tuple[list[tuple[int, float, list[Cost]]], Oracle]:
    clock = VirtualClock()
    thr = Throttler(limits, clock=clock)
    oracle = Oracle({lim.id: lim for lim in limits}, 1.0)
    requests = [tagged(a.costs, i) for i, a in enumerate(arrivals)]
    whose = {tuple(costs): i for i, costs in enumerate(requests)}
    started: list[int] = []  # call order of acquire, which is request order
    admitted: list[tuple[int, float, list[Cost]]] = []  # in the order the throttler charged them
    done: set[int] = set()
    violations: list[str] = []

    def earlier_waiting(i: int) -> list[int]:
        return [e for e in started[:started.index(i)] if e not in done]

    def on_admit(costs: list[Cost], now: float) -> None:
        # judged against the state just before this charge, as the throttler judged it
        i = whose[tuple(costs)]
        pools = set(oracle.charges(costs))
        for e in earlier_waiting(i):
            shared = oracle.blocked_pools(requests[e], now) & pools
            if shared:
                violations.append(f"request {i} passed earlier request {e}, blocked on {shared}, at {now}")
        oracle.record(costs, now)
        admitted.append((i, now, costs))
        done.add(i)

    thr._state = RecordingState(limits, on_admit)  # before first use: the throttler holds no other

    async def client(i: int) -> None:
        await clock.sleep(arrivals[i].at)
        started.append(i)
        await thr.acquire(requests[i])

    tasks = [asyncio.create_task(client(i)) for i in range(len(arrivals))]
    pending_back_offs = sorted(back_offs)
    applied: list[tuple[int, float, float]] = []  # (admissions before it, start, seconds)

    def settled() -> bool:
        # every client is admitted, queued, or asleep until its arrival; a non-empty queue has its
        # alarm asleep on the clock; nobody is between states (woken but not yet run)
        asleep_arriving = len(arrivals) - len(started)
        alarm_asleep = 1 if thr.waiting else 0
        return (
            len(admitted) + thr.waiting == len(started)
            and clock.pending == asleep_arriving + alarm_asleep
        )

    for _ in range(10_000):
        for _ in range(1000):
            if settled():
                break
            await one_loop_round()
        else:
            raise AssertionError("the throttler did not settle")
        # Nobody free may wait: a waiter that fits, on pools no earlier waiter is blocked on, must
        # have been admitted, or wake one float step later at most (a relative sleep cannot always
        # land on the exact instant).
        now = clock.time()
        in_back_off = any(t <= now < t + s for _, t, s in applied)
        deadline = clock.next_deadline
        wakes_next_step = deadline is not None and deadline <= math.nextafter(now, math.inf)
        closed: set[str] = set()
        for w in (i for i in started if i not in done):
            free = closed.isdisjoint(oracle.charges(requests[w])) and oracle.fits(requests[w], now)
            assert in_back_off or wakes_next_step or not free, f"request {w} idles at {now}"
            closed |= oracle.blocked_pools(requests[w], now)
        if len(admitted) == len(arrivals):
            break
        # Stop at every instant a charge expires too, not only when the throttler chose to wake:
        # a waiter freed there and left asleep is caught idling.
        expiries = (t + s for (_, s), charges in oracle.log.items() for t, _ in charges if t + s > now)
        step = min((x for x in (deadline, min(expiries, default=None)) if x is not None), default=None)
        if pending_back_offs and (step is None or pending_back_offs[0][0] < step):
            at, seconds = pending_back_offs.pop(0)
            clock.advance_to(at)
            thr.back_off(seconds)
            applied.append((len(admitted), clock.time(), seconds))
        else:
            assert step is not None
            clock.advance_to(step)
    else:
        raise AssertionError("the scenario did not finish")
    await asyncio.gather(*tasks)
    assert not violations, violations
    assert sorted(i for i, _, _ in admitted) == list(range(len(arrivals)))
    for before, t, s in applied:
        for _, at, _ in admitted[before:]:
            assert not t <= at < t + s, f"admitted at {at} during a back-off from {t} for {s}s"
    return admitted, oracle


@settings(max_examples=150, deadline=None)
@given(arrival_scenarios())
def test_async_throttler_never_exceeds_a_window_and_lets_only_the_unblocked_pass(
    scenario: tuple[list[RateLimit], list[Arrival], list[tuple[float, float]]],
) -> None:
    limits, arrivals, back_offs = scenario
    admitted, oracle = asyncio.run(run_arrivals(limits, arrivals, back_offs))
    assert len(admitted) == len(arrivals)
    for _, at, _ in admitted:
        for (pool, seconds), charges in oracle.log.items():
            window = next(w for w in oracle.limits[pool].windows if w.seconds == seconds)
            inside = sum(u for t, u in charges if t <= at < t + seconds)
            assert inside <= window.capacity, f"{pool} {window} held {inside} at {at}"
    for i, at, _ in admitted:
        assert at >= arrivals[i].at
