"""Client-side rate limiting: the venue's limits as data, checked in O(1) per request.

A venue publishes its limits as pools with windows ("6000 weight per minute", "50 orders per 10 s
and 160000 per day") and says what each request costs. We mirror that as plain data
(``RateLimit``, ``Window``, ``Cost``) and keep, per pool and window, a deque of charges with a
running sum. Expired charges leave from the left as time passes, so each charge is appended once
and removed once: the work per request is amortized O(1) however long the history.

Memory stays bounded too. A window up to ``EXACT_UP_TO`` seconds (the per-second to per-minute
limits that pace trading) is kept exactly: one entry per instant charged, at most its capacity.
A longer window (Binance's 160,000 orders a day, 61,000 raw requests per 5 minutes) would keep one
entry per request for its whole length: a market maker at 25 orders a second would pile up 150k
entries (13 MB) over a day, growing all the while. Its charges are therefore grouped into
``BUCKETS`` slots: each expires at the end of its slot, never before its exact time and at most
``seconds / BUCKETS`` after it (84 s for a day, 0.3 s for 5 minutes), so the count is only ever
conservative, and the window holds at most ``BUCKETS + 1`` entries.

Two layers, as in the rest of ``net``:

* ``ThrottleState`` is the pure accounting: no asyncio, no clock of its own. ``try_acquire`` checks
  *and* records in one synchronous call, so no other request can slip in between.
* ``Throttler`` wraps it for asyncio: a queue of waiters admitted by the rule below, one timed
  sleep for the whole queue until the next moment anything can change (no polling), plus the
  venue's pushback: ``Retry-After`` back-offs and the ban circuit breaker.

Linked limits (``RateLimit.linked``). Charging ``w`` units to limit ``L`` charges ``w`` to ``L``
and, for each ``Cost(M, k)`` in ``L.linked``, ``w * k`` to ``M``, and so on through ``M``'s own
links: links are transitive and multiply along the path. A pool reached by several paths is
charged once per path (charges add up), and so are several ``Cost`` entries of one request naming
the same pool. Example: per-pair order buckets ``create:BTCUSDT`` and ``create:ETHUSDT``, both
linked with ``Cost("POST", 1)``: every order charges its own bucket and the shared ``POST`` pool.
Cycles are refused at configuration time.

Fairness (who may pass whom). A request's *pools* are every pool it charges a non-zero amount,
own and linked. A waiter is *blocked on* a pool when its charge does not fit that pool now (in
any of the pool's windows). The rule: a request is admitted as soon as it fits every one of its
pools and none of its pools is one that an earlier, still waiting request is blocked on at that
moment. So

* requests that share a pool on which the earlier one is blocked are served in request order:
  the blocked pool is reserved for its earliest waiter, later requests cannot drain it further,
  and every waiter is admitted once its blocking pools have drained (no starvation);
* a request whose pools are all free and none of them blocked for an earlier waiter never waits
  behind it: a depth snapshot charging only the weight pool passes an order stuck on a full
  order pool, which matters most to a market maker near its order limit.

A waiter that fits a pool it shares with a later request does not reserve that pool: the later
one may use it, and if that leaves the earlier waiter short there, the earlier one is now blocked
on it and the pool is reserved for it from then on. Admission charges the state immediately and
in request order within one scan of the queue, so "earlier waiter blocked now" is judged against
the exact state each admission sees. A back-off holds everyone, whatever their pools.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from marketlink.core.errors import ConfigError
from marketlink.net.clock import Clock, SystemClock
from marketlink.net.errors import IpBanned, OrderRateLimited

__all__ = [
    "BUCKETS", "EXACT_UP_TO", "Cost", "RateLimit", "ThrottleState", "Throttler", "Usage", "Window",
    "slot_end",
]

log = logging.getLogger(__name__)

_PLAN_CACHE_MAX = 4096  # distinct cost combinations remembered; a venue has a few dozen
#: Windows up to this long (seconds) are counted exactly; longer ones in ``BUCKETS`` slots.
EXACT_UP_TO = 60.0
BUCKETS = 1024


def slot_end(expires_at: float, grain: float) -> float:
    """The end of the ``grain``-wide slot holding ``expires_at``: never earlier than it, at most
    one grain later, and non-decreasing in ``expires_at`` (so the deque stays ordered)."""
    end = math.ceil(expires_at / grain) * grain
    return end if end >= expires_at else end + grain  # the product may round a hair low


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``capacity`` units within any ``seconds``-long sliding interval."""

    capacity: int
    seconds: float

    def __post_init__(self) -> None:
        if not _is_int(self.capacity) or self.capacity < 1:
            raise ConfigError(f"window capacity must be a positive int, got {self.capacity!r}")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float):
            raise ConfigError(f"window seconds must be a number, got {self.seconds!r}")
        if not math.isfinite(self.seconds) or self.seconds <= 0:
            raise ConfigError(f"window seconds must be finite and positive, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Cost:
    """A request's charge on one pool; weight 0 is allowed and charges nothing."""

    limit_id: str
    weight: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.limit_id, str) or not self.limit_id:
            raise ConfigError(f"limit id must be a non-empty string, got {self.limit_id!r}")
        if not _is_int(self.weight) or self.weight < 0:
            raise ConfigError(f"{self.limit_id}: weight must be an int >= 0, got {self.weight!r}")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One pool: its windows, all enforced at once, and the pools it charges too (see module doc)."""

    id: str
    windows: tuple[Window, ...]
    linked: tuple[Cost, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"limit id must be a non-empty string, got {self.id!r}")
        # accept any sequence from config code, but hold tuples so the value stays immutable
        object.__setattr__(self, "windows", tuple(self.windows))
        object.__setattr__(self, "linked", tuple(self.linked))
        if not self.windows:
            raise ConfigError(f"{self.id}: a rate limit needs at least one window")
        for w in self.windows:
            if not isinstance(w, Window):
                raise ConfigError(f"{self.id}: windows must be Window values, got {w!r}")
        spans = [w.seconds for w in self.windows]
        if len(set(spans)) != len(spans):
            raise ConfigError(f"{self.id}: two windows of the same length ({spans})")
        for c in self.linked:
            if not isinstance(c, Cost):
                raise ConfigError(f"{self.id}: linked entries must be Cost values, got {c!r}")

    @classmethod
    def simple(cls, id: str, capacity: int, seconds: float, linked: Sequence[Cost] = ()) -> RateLimit:
        return cls(id, (Window(capacity, seconds),), tuple(linked))


@dataclass(frozen=True, slots=True)
class Usage:
    """A venue's own count of ``used`` units on one pool, for ``Throttler.calibrate``.

    ``window_seconds`` names the window the count is for; it is required for a pool with several
    windows, because Binance reports the same order pool per 10 s and per day and reading one count
    as the other is either unsafe or stalls every order. ``None`` is for single-window pools.
    """

    limit_id: str
    used: int
    window_seconds: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.limit_id, str) or not self.limit_id:
            raise ConfigError(f"limit id must be a non-empty string, got {self.limit_id!r}")
        if not _is_int(self.used) or self.used < 0:
            raise ValueError(f"{self.limit_id}: a usage count must be an int >= 0, got {self.used!r}")
        seconds = self.window_seconds
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or seconds <= 0
        ):
            raise ConfigError(f"{self.limit_id}: window seconds must be positive and finite, got {seconds!r}")


class _Track:
    """One (pool, window): charges as (expires_at, units), oldest first, and their sum."""

    __slots__ = ("capacity", "entries", "grain", "limit_id", "seconds", "used")

    def __init__(self, limit_id: str, seconds: float, capacity: int) -> None:
        self.limit_id = limit_id
        self.seconds = seconds
        self.capacity = capacity
        self.entries: deque[tuple[float, int]] = deque()
        self.used = 0
        #: Slot width for a long window (see the module docstring); 0.0: exact.
        self.grain = seconds / BUCKETS if seconds > EXACT_UP_TO else 0.0

    def expire(self, now: float) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now:
            self.used -= entries.popleft()[1]

    def record(self, now: float, units: int) -> None:
        expires_at = now + self.seconds
        if self.grain:
            expires_at = slot_end(expires_at, self.grain)
        entries = self.entries
        if entries and entries[-1][0] == expires_at:  # same instant: one entry, not two
            entries[-1] = (expires_at, entries[-1][1] + units)
        else:
            entries.append((expires_at, units))
        self.used += units

    def wait_for(self, units: int, now: float) -> float:
        """Seconds until ``units`` more fit, assuming nothing else is charged meanwhile.

        Walks only the oldest charges that must expire, so the cost is bounded by the request's
        own weight (plus one calibration entry), not by the history length.
        """
        excess = self.used + units - self.capacity
        freed = 0
        for expires_at, n in self.entries:
            freed += n
            if freed >= excess:
                return _wait_until(expires_at, now)
        raise AssertionError("unreachable: a charge never exceeds its window's capacity")  # pragma: no cover


def _wait_until(when: float, now: float) -> float:
    """``when - now``, nudged up if needed so that ``now + result >= when`` in floating point.

    A caller that sleeps the returned time and asks again is then admitted, never one float step
    short (which would cost it a second sleep). The plain difference already lands on ``when`` or
    the next float after it in practice; the loop guards the rare rounding that falls short.
    """
    wait = when - now
    while now + wait < when:
        wait = math.nextafter(wait, math.inf)
    return wait


_Plan = tuple[tuple[_Track, int], ...]


class ThrottleState:
    """The pure accounting core: which charges are live in every window, and what fits now.

    ``share`` is the fraction of every capacity this process may use, for several bots on one
    account: each capacity becomes ``floor(capacity * share)`` (computed in decimal, so 100 * 0.29
    is 29, not 28), and a capacity that would round to zero is a configuration error rather than a
    silent over-use. Time passed in must not go backwards; an earlier ``now`` is read as the latest
    one seen, so the deques stay ordered.
    """

    __slots__ = ("_expansion", "_fraction", "_last_now", "_limits", "_plans", "_tracks")

    def __init__(self, limits: Sequence[RateLimit], *, share: float = 1.0) -> None:
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ConfigError(f"share must be in (0, 1], got {share!r}")
        fraction = self._fraction = Decimal(repr(float(share)))
        self._limits: dict[str, RateLimit] = {}
        for limit in limits:
            if not isinstance(limit, RateLimit):
                raise ConfigError(f"expected RateLimit values, got {limit!r}")
            if limit.id in self._limits:
                raise ConfigError(f"duplicate rate limit id {limit.id!r}")
            self._limits[limit.id] = limit
        self._tracks: dict[str, tuple[_Track, ...]] = {}
        for limit in self._limits.values():
            tracks = []
            for w in limit.windows:
                cap = int(w.capacity * fraction)  # int() truncates toward zero: floor for positives
                if cap < 1:
                    raise ConfigError(
                        f"{limit.id}: share {share} leaves no capacity of {w.capacity}/{w.seconds}s"
                    )
                tracks.append(_Track(limit.id, float(w.seconds), cap))
            self._tracks[limit.id] = tuple(tracks)
        self._expansion: dict[str, dict[str, int]] = {}
        for limit_id in self._limits:
            self._expand(limit_id, ())
        self._plans: dict[tuple[Cost, ...], _Plan] = {}
        self._last_now = -math.inf

    def _expand(self, limit_id: str, path: tuple[str, ...]) -> dict[str, int]:
        """Units charged to each pool per unit charged to ``limit_id``, following links."""
        done = self._expansion.get(limit_id)
        if done is not None:
            return done
        if limit_id in path:
            cycle = " -> ".join((*path[path.index(limit_id):], limit_id))
            raise ConfigError(f"rate limit links form a cycle: {cycle}")
        limit = self._limits.get(limit_id)
        if limit is None:
            raise ConfigError(f"{path[-1]} links to unknown rate limit id {limit_id!r}")
        charges = {limit_id: 1}
        for link in limit.linked:
            for pool, units in self._expand(link.limit_id, (*path, limit_id)).items():
                charges[pool] = charges.get(pool, 0) + units * link.weight
        self._expansion[limit_id] = charges
        return charges

    def _plan(self, costs: Sequence[Cost]) -> _Plan:
        key = tuple(costs)
        try:
            plan = self._plans.get(key)
        except TypeError:  # something unhashable, so certainly not a Cost
            raise ConfigError(f"expected Cost values, got {key!r}") from None
        if plan is not None:
            return plan
        totals: dict[str, int] = {}
        for cost in key:
            if not isinstance(cost, Cost):
                raise ConfigError(f"expected Cost values, got {cost!r}")
            charges = self._expansion.get(cost.limit_id)
            if charges is None:
                raise ConfigError(f"unknown rate limit id {cost.limit_id!r}")
            for pool, units in charges.items():
                totals[pool] = totals.get(pool, 0) + units * cost.weight
        steps: list[tuple[_Track, int]] = []
        for pool, units in totals.items():
            if units == 0:
                continue
            for track in self._tracks[pool]:
                if units > track.capacity:
                    raise ConfigError(
                        f"a request charging {units} on {pool!r} can never fit its "
                        f"{track.capacity}/{track.seconds}s window"
                    )
                steps.append((track, units))
        plan = tuple(steps)
        if len(self._plans) >= _PLAN_CACHE_MAX:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def adopt(self, limit_id: str, seconds: float, capacity: int) -> int | None:
        """Take a window the venue publishes for one of our pools (Binance lists its limits in
        ``exchangeInfo``): the venue's number is the truth for this account, whichever way it
        differs from the spec we were built with. Our share of it applies as at construction.

        Returns the capacity the window had before, or ``None`` for a window the pool lacked,
        now added (empty: what the venue counted before we knew is calibrated as usual).
        """
        tracks = self._tracks.get(limit_id)
        if tracks is None:
            raise ConfigError(f"unknown rate limit id {limit_id!r}")
        window = Window(capacity, seconds)  # the same checks as a configured window
        cap = max(1, int(window.capacity * self._fraction))
        self._plans.clear()  # plans checked costs against the old capacities
        for track in tracks:
            if track.seconds == window.seconds:
                before, track.capacity = track.capacity, cap
                return before
        self._tracks[limit_id] = tuple(sorted((*tracks, _Track(limit_id, float(window.seconds), cap)),
                                              key=lambda t: t.seconds))
        return None

    def windows(self, limit_id: str) -> list[tuple[float, int]]:
        """``(seconds, capacity)`` of each window of a pool, shortest first."""
        tracks = self._tracks.get(limit_id)
        if tracks is None:
            raise ConfigError(f"unknown rate limit id {limit_id!r}")
        return [(t.seconds, t.capacity) for t in tracks]

    def validate(self, costs: Sequence[Cost]) -> None:
        """Refuse, at configuration time, costs naming an unknown limit or too heavy to ever fit."""
        self._plan(costs)

    def charges(self, costs: Sequence[Cost]) -> dict[str, int]:
        """Units these costs charge each pool (own and linked; pools charged nothing left out),
        in a stable order."""
        return {track.limit_id: units for track, units in self._plan(costs)}

    def room(self, limit_id: str, now: float) -> int:
        """Units one more request may charge this pool now: the least room over its windows
        (negative when calibration put the pool over capacity)."""
        tracks = self._tracks.get(limit_id)
        if tracks is None:
            raise ConfigError(f"unknown rate limit id {limit_id!r}")
        now = self._clamp(now)
        room = math.inf
        for track in tracks:
            track.expire(now)
            room = min(room, track.capacity - track.used)
        return int(room)

    def _clamp(self, now: float) -> float:
        if now >= self._last_now:
            self._last_now = now
            return now
        if math.isnan(now):
            raise ValueError("now is NaN")
        return self._last_now

    def try_acquire(self, costs: Sequence[Cost], now: float) -> float:
        """Admit and record on every pool and window, or record nothing and say how long to wait.

        Returns 0.0 when admitted. Otherwise the wait is exact for the current history: at
        ``now + wait`` the same costs fit, unless something else was charged in between.
        """
        plan = self._plan(costs)
        now = self._clamp(now)
        wait = 0.0
        for track, units in plan:
            entries = track.entries
            while entries and entries[0][0] <= now:
                track.used -= entries.popleft()[1]
            if track.used + units > track.capacity:
                wait = max(wait, track.wait_for(units, now))
        if wait > 0.0:
            return wait
        for track, units in plan:
            track.record(now, units)
        return 0.0

    def blocking(self, costs: Sequence[Cost], now: float) -> dict[str, float]:
        """The pools these costs do not fit now, each with the wait until they would fit there.

        Empty when the costs fit. The waiter queue needs this per pool, not just the overall wait
        of ``try_acquire``: a pool that blocks an earlier waiter is closed to later requests.
        """
        plan = self._plan(costs)
        now = self._clamp(now)
        out: dict[str, float] = {}
        for track, units in plan:
            track.expire(now)
            if track.used + units > track.capacity:
                wait = track.wait_for(units, now)
                pool = track.limit_id
                if wait > out.get(pool, 0.0):
                    out[pool] = wait
        return out

    def calibrate(self, limit_id: str, used: int, now: float, window_seconds: float | None = None) -> None:
        """Take the venue's count of ``used`` units in a window, erring on the safe side.

        Our count is never lowered (the venue's header may predate our latest requests); when the
        venue counts more (other clients on the same IP or account, requests we did not see), the
        difference is charged now, so it expires a full window from now: the latest the venue's
        own units could expire. ``window_seconds`` picks the window; the same count then also
        holds for every longer window of the pool, since a longer window contains the shorter
        one. ``None`` is only accepted for a single-window pool: a daily count read as a 10 s
        count would stall every request for 10 s, so an ambiguous count is refused.
        """
        tracks = self._tracks.get(limit_id)
        if tracks is None:
            raise ConfigError(f"unknown rate limit id {limit_id!r}")
        if not _is_int(used) or used < 0:
            raise ValueError(f"{limit_id}: a usage count must be an int >= 0, got {used!r}")
        spans = [t.seconds for t in tracks]
        if window_seconds is None:
            if len(tracks) > 1:
                raise ConfigError(f"{limit_id} has windows {spans}: say which one the count is for")
            window_seconds = spans[0]
        elif window_seconds not in spans:
            raise ConfigError(f"{limit_id} has no {window_seconds}s window (it has {spans})")
        now = self._clamp(now)
        for track in tracks:
            if track.seconds < window_seconds:
                continue
            track.expire(now)
            if used > track.used:
                track.record(now, used - track.used)

    def pool_usage(self, limit_id: str, now: float) -> float:
        """Used over capacity for one pool: the max over its windows (above 1 after calibration)."""
        tracks = self._tracks.get(limit_id)
        if tracks is None:
            raise ConfigError(f"unknown rate limit id {limit_id!r}")
        now = self._clamp(now)
        fraction = 0.0
        for track in tracks:
            track.expire(now)
            fraction = max(fraction, track.used / track.capacity)
        return fraction

    def pool_usage_around(self, limit_id: str, now: float, units: int) -> tuple[float, float]:
        """``pool_usage`` just before and just after a charge of ``units`` that was recorded:
        one pass over the windows for the "near the limit" watch."""
        tracks = self._tracks[limit_id]
        now = self._clamp(now)
        before = after = 0.0
        for track in tracks:
            track.expire(now)
            used, capacity = track.used, track.capacity
            if used / capacity > after:
                after = used / capacity
            if (used - units) / capacity > before:
                before = (used - units) / capacity
        return before, after

    def usage(self, now: float) -> dict[str, float]:
        """Every pool's ``pool_usage``, for "near the limit" warnings and status pages."""
        return {limit_id: self.pool_usage(limit_id, now) for limit_id in self._tracks}


def _check_seconds(seconds: float, what: str) -> None:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} needs finite, non-negative seconds, got {seconds!r}")


#: How far under ``near_limit`` a pool must drain before its warning can fire again.
REARM_MARGIN = 0.05


@dataclass(eq=False, slots=True)
class _Waiter:
    costs: Sequence[Cost]
    charges: dict[str, int]  # units on every pool charged a non-zero amount, own and linked
    pools: frozenset[str]  # the keys of charges, for fast set operations
    is_order: bool
    admitted: asyncio.Future[None]  # result: admitted and charged; exception: refused
    blockers: dict[str, float] = field(default_factory=dict)  # pool -> wait there, as last judged


class Throttler:
    """Asyncio front of ``ThrottleState``: the waiter queue, back-offs and the ban circuit breaker.

    With nobody waiting, a request that fits is admitted on the spot: one ``try_acquire``. Otherwise
    the queue is *scanned* (in request order, admitting by the rule in the module doc) whenever
    something may have changed: a cancellation, calibration, a back-off or ban, and the timer. The
    timer is one sleep for the whole queue, until the earliest moment some waiter's blocking pool
    frees (or the back-off ends); a scan re-arms it. Until then the scan's verdicts (who is blocked
    where) stay exact, so an arrival is judged against them alone, in O(1) unless its admission
    leaves earlier waiters short. Admission charges the state before the waiter's task resumes, so
    check and record stay one synchronous step. A waiter cancelled while queued leaves and the rest
    are re-scanned; one cancelled after its admission keeps its charge, erring on the safe side.

    ``back_off(seconds)`` (a 429's ``Retry-After``) holds every request until it ends. ``ban``
    (a 418) opens the circuit breaker: new orders fail at once with a local ``IpBanned``, orders
    already queued fail too; reads are not refused (the HTTP client pairs a ban with a back-off
    so they wait). ``on_near_limit(limit_id, fraction)`` fires when a pool's usage crosses
    ``near_limit`` upwards, once per crossing; it re-arms when the pool is next seen
    ``REARM_MARGIN`` (5 points of usage) below it.
    ``on_ban(until)`` fires on every ``ban``, whatever request earned it, so the owner can report
    that trading stopped even when no order was being placed.
    """

    def __init__(
        self,
        limits: Sequence[RateLimit],
        *,
        clock: Clock | None = None,
        share: float = 1.0,
        on_near_limit: Callable[[str, float], None] | None = None,
        near_limit: float = 0.8,
        on_ban: Callable[[float], None] | None = None,
    ) -> None:
        if isinstance(near_limit, bool) or not isinstance(near_limit, int | float) or not 0 < near_limit <= 1:
            raise ConfigError(f"near_limit must be in (0, 1], got {near_limit!r}")
        self._state = ThrottleState(limits, share=share)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._queue: list[_Waiter] = []  # request order
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None  # the waiters' loop, for the timer
        self._closed: set[str] | None = None  # the last verdicts' blocked pools; None when stale
        self._heaviest: dict[str, int] = {}  # pool -> largest charge a judged waiter has on it
        self._scanning = False
        self._rescan = False
        self._backoff_until = -math.inf
        self._banned_until = -math.inf
        self._orders_held_until = -math.inf
        self._on_near_limit = on_near_limit
        self._near_limit = float(near_limit)
        # Hysteresis: a sliding window used at a steady rate right at the line dips under it
        # before nearly every charge; re-arming there sent one warning per request.
        self._rearm_below = self._near_limit - min(REARM_MARGIN, self._near_limit / 2)
        self._armed: dict[str, bool] = {}
        self._on_ban = on_ban

    # configuration ---------------------------------------------------------------------------

    def validate(self, costs: Sequence[Cost]) -> None:
        self._state.validate(costs)

    # requests --------------------------------------------------------------------------------

    async def acquire(self, costs: Sequence[Cost], *, is_order: bool = False) -> None:
        """Return once the request is admitted and charged; raise ``IpBanned`` for an order while
        the ban holds, and ``ConfigError`` for costs that ``validate`` would refuse."""
        self._state.validate(costs)
        now = self._clock.time()
        if is_order:
            self._refuse_if_banned(now)
        if not self._queue and self._admit(costs, now) == 0.0:
            return
        self._loop = loop = asyncio.get_running_loop()
        charges = self._state.charges(costs)
        me = _Waiter(costs, charges, frozenset(charges), is_order, loop.create_future())
        if self._queue and self._closed is not None and now < self._timer_at:
            self._arrive(me, now)
        else:
            self._queue.append(me)
            self._scan()
        try:
            await me.admitted
        except BaseException:
            if me.admitted.done() and not me.admitted.cancelled():
                me.admitted.exception()  # mark a refusal as seen even if we leave by cancellation
            if me in self._queue:
                self._queue.remove(me)
                self._scan()  # what it blocked may be free for those behind it
            raise

    def _scan(self) -> None:
        """Admit every waiter the rule allows now, in request order, and re-arm the timer."""
        if self._scanning:  # called back from an on_near_limit observer: finish this scan first
            self._rescan = True
            return
        self._scanning = True
        try:
            self._rescan = True
            while self._rescan:
                self._rescan = False
                self._scan_once()
        finally:
            self._scanning = False

    def _scan_once(self) -> None:
        now = self._clock.time()
        if now < self._backoff_until:
            self._queue = [w for w in self._queue if not w.admitted.done()]
            self._closed = None  # nobody was judged
            self._arm(self._backoff_until if self._queue else math.inf)
            return
        kept: list[_Waiter] = []
        closed: set[str] = set()  # pools some kept (earlier) waiter is blocked on
        self._heaviest = {}
        at = math.inf  # the earliest moment one of those pools frees for its waiter
        for waiter in self._queue:
            if waiter.admitted.done():  # cancelled, its task not yet run
                continue
            if closed.isdisjoint(waiter.pools) and self._admit(waiter.costs, now) == 0.0:
                waiter.admitted.set_result(None)
                at = min(at, self._reblock(kept, closed, waiter.pools, now))
                continue
            at = min(at, self._judge(waiter, closed, now))
            kept.append(waiter)
        self._queue = kept
        self._closed = closed
        if now < self._backoff_until:  # an on_near_limit observer backed off during this scan
            self._closed = None
            at = self._backoff_until
        # The earliest kept waiter was held by nobody, so it is blocked somewhere: a non-empty
        # queue always has a time to wake at.
        assert at < math.inf or not kept
        self._arm(at)

    def _arrive(self, me: _Waiter, now: float) -> None:
        """Judge one arrival by the last verdicts alone, which hold until the timer is due.

        A blocked pool frees no sooner than the timer's moment, and every charge since the last
        scan went through here or ``_reblock``, so the verdicts are exact (at worst one float step
        conservative). A burst of arrivals behind a long queue then costs O(1) each, not O(queue).
        """
        closed = self._closed
        assert closed is not None
        self._scanning = True  # an observer's feedback (back_off, ban, calibrate) rescans after us
        self._rescan = False
        try:
            if closed.isdisjoint(me.pools) and self._admit(me.costs, now) == 0.0:
                me.admitted.set_result(None)
                at = self._reblock(self._queue, closed, me.pools, now)
            else:
                at = self._judge(me, closed, now)
                self._queue.append(me)
            if at < self._timer_at:
                self._arm(at)
        finally:
            self._scanning = False
        if self._rescan:
            self._scan()

    def _judge(self, waiter: _Waiter, closed: set[str], now: float) -> float:
        """Record where ``waiter`` is blocked, close those pools; when the first of them frees."""
        blockers = waiter.blockers = self._state.blocking(waiter.costs, now)
        closed.update(blockers)
        heaviest = self._heaviest
        for pool, units in waiter.charges.items():
            if units > heaviest.get(pool, 0):
                heaviest[pool] = units
        return now + min(blockers.values()) if blockers else math.inf

    def _reblock(
        self, earlier: list[_Waiter], closed: set[str], charged: frozenset[str], now: float,
    ) -> float:
        """After an admission charging ``charged``, re-judge the earlier waiters it left short.

        It can only have blocked them on the pools it charged, and on such a pool only if the
        heaviest claim of a judged waiter no longer fits: usually there is room, and this is O(1)
        per pool rather than a walk over the queue.
        """
        heaviest = self._heaviest
        short = {p for p in charged if p in heaviest and heaviest[p] > self._state.room(p, now)}
        if not short:
            return math.inf
        at = math.inf
        for waiter in earlier:
            if not short.isdisjoint(waiter.pools):
                at = min(at, self._judge(waiter, closed, now))
        return at

    def _arm(self, at: float) -> None:
        """Have the timer fire at ``at`` (clock time), or not at all for ``inf``."""
        timer = self._timer
        if timer is not None and not timer.done() and self._timer_at == at:
            return
        if timer is not None:
            timer.cancel()
            self._timer = None
        self._timer_at = at
        if at < math.inf:
            assert self._loop is not None  # set by the first waiter, which a timer implies
            self._timer = self._loop.create_task(self._alarm(at))

    async def _alarm(self, at: float) -> None:
        # ``at`` is absolute: the task starts a loop round after the scan, maybe at a later time
        now = self._clock.time()
        try:
            if at > now:
                await self._clock.sleep(_wait_until(at, now))
        except Exception as exc:  # a broken clock: fail the waiters rather than spin or hang them
            self._timer = None
            self._timer_at = math.inf
            self._closed = None
            self._heaviest = {}
            queue, self._queue = self._queue, []
            for waiter in queue:
                if not waiter.admitted.done():
                    waiter.admitted.set_exception(exc)
            return
        self._timer = None  # a replaced alarm is cancelled before it gets here
        self._scan()

    def _admit(self, costs: Sequence[Cost], now: float) -> float:
        if now < self._backoff_until:
            return _wait_until(self._backoff_until, now)
        wait = self._state.try_acquire(costs, now)
        if wait == 0.0 and self._on_near_limit is not None:
            self._watch(self._state.charges(costs), now)
        return wait

    def _watch(self, charges: Mapping[str, int], now: float) -> None:
        """Warn once per upward crossing of ``near_limit`` by an admitted charge. A pool is
        re-armed when it is seen ``REARM_MARGIN`` below the line before a charge (it drained
        since), so one pass over its windows after the charge tells both."""
        callback = self._on_near_limit
        if callback is None:
            return
        near = self._near_limit
        for pool, units in charges.items():
            before, fraction = self._state.pool_usage_around(pool, now, units)
            if before < self._rearm_below:
                self._armed[pool] = True
            if fraction < near:
                continue
            if self._armed.get(pool, True):
                self._armed[pool] = False
                try:
                    callback(pool, fraction)
                except Exception:
                    log.exception("on_near_limit callback failed for %s", pool)

    def _refuse_if_banned(self, now: float) -> None:
        if now < self._banned_until:
            raise self._ban_error(now)
        if now < self._orders_held_until:
            raise self._held_error(now)

    def _held_error(self, now: float) -> OrderRateLimited:
        left = self._orders_held_until - now
        return OrderRateLimited(
            f"order refused locally: the venue's order-count limit holds for {left:.3f}s more",
            retry_after=left, local=True,
        )

    def _ban_error(self, now: float) -> IpBanned:
        until = self._banned_until
        return IpBanned(
            f"order refused locally: IP ban in force for {until - now:.3f}s more",
            retry_after=until - now, until=until, local=True,
        )

    # venue feedback --------------------------------------------------------------------------

    def calibrate(self, limit_id: str, used: int, window_seconds: float | None = None) -> None:
        """Take the venue's count (see ``ThrottleState.calibrate``); waiters are re-judged by it."""
        now = self._clock.time()
        self._state.calibrate(limit_id, used, now, window_seconds)
        self._watch({limit_id: 0}, now)
        if self._queue:
            self._scan()

    def adopt(self, limit_id: str, seconds: float, capacity: int) -> int | None:
        """A window the venue publishes (see ``ThrottleState.adopt``); waiters are re-judged."""
        before = self._state.adopt(limit_id, seconds, capacity)
        if self._queue:
            self._scan()
        return before

    def windows(self, limit_id: str) -> list[tuple[float, int]]:
        return self._state.windows(limit_id)

    def back_off(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (a 429's ``Retry-After``); never shortens one."""
        _check_seconds(seconds, "back-off")
        self._backoff_until = max(self._backoff_until, self._clock.time() + seconds)
        if self._queue:
            self._scan()

    def ban(self, seconds: float) -> None:
        """Refuse orders for ``seconds`` (a 418), queued ones at once. Reads are not refused: the
        caller decides whether they wait (``back_off``), since only it knows what the venue banned."""
        _check_seconds(seconds, "ban")
        now = self._clock.time()
        self._banned_until = max(self._banned_until, now + seconds)
        if self._on_ban is not None and now < self._banned_until:
            try:
                self._on_ban(self._banned_until)
            except Exception:
                log.exception("on_ban callback failed")
        if now < self._banned_until:
            self._refuse_queued_orders(lambda: self._ban_error(now))

    def hold_orders(self, seconds: float) -> None:
        """Refuse orders for ``seconds`` (the venue's order-count limit, Binance -1015), queued
        ones at once; every other request goes on. An order queued past that limit would only
        go out late, at a stale price, or be refused again; the strategy decides what to do."""
        _check_seconds(seconds, "order hold")
        now = self._clock.time()
        self._orders_held_until = max(self._orders_held_until, now + seconds)
        if now < self._orders_held_until:
            self._refuse_queued_orders(lambda: self._held_error(now))

    def _refuse_queued_orders(self, error: Callable[[], BaseException]) -> None:
        if not any(w.is_order for w in self._queue):
            return
        keep: list[_Waiter] = []
        for waiter in self._queue:
            if not waiter.is_order:
                keep.append(waiter)
            elif not waiter.admitted.done():
                waiter.admitted.set_exception(error())
        self._queue = keep
        self._scan()  # reads held behind the refused orders may go now

    @property
    def orders_held_until(self) -> float | None:
        """End of the order-count hold (``hold_orders``) on the clock's time line, or ``None``."""
        return self._orders_held_until if self._clock.time() < self._orders_held_until else None

    @property
    def banned_until(self) -> float | None:
        """End of the ban on the clock's time line (monotonic seconds), or ``None`` when none holds."""
        return self._banned_until if self._clock.time() < self._banned_until else None

    @property
    def waiting(self) -> int:
        """Requests queued behind the limits, back-off or each other (a health metric)."""
        return len(self._queue)

    def usage(self) -> dict[str, float]:
        return self._state.usage(self._clock.time())
