"""Where timing code gets "now" and "wait": one small protocol, a real and a virtual clock.

Everything that waits (the throttler, back-offs, keep-alives) takes a ``Clock`` instead of calling
``time.monotonic`` and ``asyncio.sleep`` directly, so tests can drive time by hand: with
``VirtualClock`` time only moves when a test says so, a wait of a day costs nothing, and the order
in which sleepers wake is exactly the order of their deadlines. That is what lets us test timing
behaviour without a single real sleep or a timing threshold.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    """Monotonic seconds and a way to wait for them. Not wall-clock time: never compare to epochs."""

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real thing: ``time.monotonic`` (immune to wall-clock jumps) and ``asyncio.sleep``."""

    __slots__ = ()

    def time(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _check_seconds(seconds: float, what: str) -> None:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} needs a finite, non-negative number of seconds, got {seconds!r}")


class VirtualClock:
    """A clock for tests: time stands still until ``advance`` or ``advance_to`` moves it.

    ``sleep(d)`` parks the caller until the clock reaches ``time() + d``. Moving the clock wakes
    every sleeper whose deadline is reached, earliest deadline first (ties in the order they went
    to sleep), so the woken coroutines resume in deadline order on the next loop iteration. A
    positive sleep always needs the clock to move, even when ``d`` is below the float resolution
    of ``time()``: a coroutine that sleeps in a loop can never spin without time passing.
    """

    __slots__ = ("_now", "_seq", "_sleepers", "_watchers")

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start!r}")
        self._now = float(start)
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._watchers: list[tuple[int, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if math.isnan(seconds):
            raise ValueError("cannot sleep NaN seconds")
        if seconds <= 0:
            await asyncio.sleep(0)  # like asyncio: a zero sleep still yields to other tasks
            return
        deadline = self._now + seconds
        if deadline <= self._now:  # below float resolution at this magnitude: still a real wait
            deadline = math.nextafter(self._now, math.inf)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        self._notify_watchers()
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake the sleepers whose deadline is reached."""
        _check_seconds(seconds, "advance")
        self._now += seconds
        self._wake()

    def advance_to(self, when: float) -> None:
        """Set time to ``when`` exactly (never backwards), e.g. to a deadline from ``next_deadline``.

        Adding ``deadline - time()`` to the clock could land one float step short of the deadline;
        this cannot.
        """
        if not math.isfinite(when):
            raise ValueError(f"advance_to needs a finite time, got {when!r}")
        if when > self._now:
            self._now = when
        self._wake()

    @property
    def pending(self) -> int:
        """How many sleepers are still waiting (cancelled ones do not count)."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline among waiting sleepers, or ``None`` when nobody sleeps."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    async def wait_for_sleepers(self, count: int) -> None:
        """Return once at least ``count`` sleepers wait: the event-based way for a test to know
        that the coroutines it started have reached their sleep, with no guessing about time."""
        if self.pending >= count:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append((count, fut))
        await fut

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _notify_watchers(self) -> None:
        if not self._watchers:
            return
        pending = self.pending
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for count, fut in self._watchers:
            if fut.done():
                continue
            if pending >= count:
                fut.set_result(None)
            else:
                keep.append((count, fut))
        self._watchers = keep
