"""Server-time offset from request round trips, robust to slow and odd samples and to local clock steps.

A venue rejects a signed request whose timestamp strays outside its window, so we sign with our
estimate of the *server's* clock. One sample is ``(local send, server time, local receive)``; the
server read its clock somewhere inside that round trip, so ``server - midpoint`` estimates the
offset with an error of at most half the round trip. A slow round trip therefore carries a wide
error, and a mean over all samples lets one congested request skew every signature after it.
We keep the recent samples, trust only the fastest part of them, and take the median of those:
slow samples never vote, and one fast sample with a wild server time cannot move a median.

The local side of a sample is read on a clock that is never stepped (:func:`monotonic_ms`), not
on the wall clock: an NTP step, a manual ``date`` or a VM resume moves the wall clock, and an
offset measured against it would shift every signature after the step by the size of the step,
with the old, fast samples outvoting any new one. Against a monotonic clock, a local step changes
nothing. The wall clock is read only to sign before the first sample and to report the offset.

What a monotonic clock cannot see is the *venue's* clock stepping (or ours stalling while a VM is
paused). A batch of samples that mostly contradicts the estimate by more than their own round
trips can explain is proof of that, and then the old samples are dropped (:meth:`add_samples`).

Pure: no clock is read unless asked for the time without an explicit ``now_ms``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from marketlink.core.errors import ConfigError

__all__ = ["Sample", "TimeSample", "TimeSync", "monotonic_ms", "wall_clock_ms"]

log = logging.getLogger(__name__)

#: ``(local send ms, server ms, local receive ms)``, the local instants on :func:`monotonic_ms`.
Sample = tuple[float, float, float]

_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def wall_clock_ms() -> float:
    """Local wall-clock time in ms: what venues' timestamps are measured against."""
    return time.time_ns() / 1_000_000


def monotonic_ms() -> float:
    """Milliseconds on a clock that is never stepped: the local side of every time sample.

    Linux's ``CLOCK_BOOTTIME`` where there is one: monotonic like ``time.monotonic`` and also
    counting a system suspend, so the offset to the venue's clock is still right after a laptop
    or host wakes up (``CLOCK_MONOTONIC`` stops while suspended). Elsewhere ``time.monotonic``.
    """
    if _BOOTTIME is not None:
        return time.clock_gettime_ns(_BOOTTIME) / 1_000_000
    return time.monotonic_ns() / 1_000_000


@dataclass(frozen=True, slots=True)
class TimeSample:
    rtt_ms: float
    offset_ms: float  # server clock minus the local monotonic clock, at the round trip's midpoint


class TimeSync:
    """Estimate of the venue's clock from the last ``max_samples`` round trips.

    The estimate of ``server - local monotonic`` is the median of the ``best_fraction`` of samples
    with the lowest round trip (at least one sample). Without samples the venue's time is taken
    to be the local wall clock: the best available guess, and ``has_samples`` lets the engine
    insist on a sync first. ``step_tolerance_ms`` is how far a batch may contradict the estimate,
    beyond what its round trips explain, before the estimate counts as describing another clock
    (it covers the drift of the local oscillator between syncs).
    """

    def __init__(
        self,
        max_samples: int = 16,
        *,
        best_fraction: float = 0.5,
        step_tolerance_ms: float = 100.0,
        local_ms: Callable[[], float] = monotonic_ms,
        wall_ms: Callable[[], float] = wall_clock_ms,
    ) -> None:
        if max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1, got {max_samples}")
        if not 0.0 < best_fraction <= 1.0:
            raise ConfigError(f"best_fraction must be in (0, 1], got {best_fraction}")
        if not (math.isfinite(step_tolerance_ms) and step_tolerance_ms >= 0):
            raise ConfigError(f"step_tolerance_ms must be finite and >= 0, got {step_tolerance_ms}")
        self._samples: deque[TimeSample] = deque(maxlen=max_samples)
        self._best_fraction = best_fraction
        self._tolerance = step_tolerance_ms
        self._local_ms = local_ms
        self._wall_ms = wall_ms
        self._anchor: float | None = None  # the estimate; None without samples
        self.rejected = 0
        self.steps = 0  # batches that proved the venue's clock (or ours) stepped

    @property
    def has_samples(self) -> bool:
        return bool(self._samples)

    @property
    def offset_ms(self) -> float:
        """How far the venue's clock is ahead of this machine's wall clock now (0 without samples).

        For people (status, logs): signing never uses it, and it moves when the wall clock is
        stepped while the venue time we sign with does not."""
        if self._anchor is None:
            return 0.0
        return self._local_ms() + self._anchor - self._wall_ms()

    @property
    def samples(self) -> tuple[TimeSample, ...]:
        return tuple(self._samples)

    def add_sample(self, local_send_ms: float, server_ms: float, local_recv_ms: float) -> bool:
        """Record one round trip; False (counted, logged) when it cannot be a real measurement."""
        sample = self._check(local_send_ms, server_ms, local_recv_ms)
        if sample is None:
            return False
        self._samples.append(sample)
        self._anchor = self._estimate()
        return True

    def add_samples(self, samples: Iterable[Sample]) -> int:
        """Record a batch (a periodic sync); returns how many were kept.

        If at least two of them and more than half contradict the current estimate (it lies
        outside what their round trips allow, by more than the tolerance), a clock has stepped:
        the old samples describe it no longer, and only this batch counts. One contradicting
        sample alone is not trusted to do that: a venue's clock glitch must not move us."""
        batch = [raw for raw in samples if self._check(*raw) is not None]
        contradicting = sum(1 for raw in batch if self._contradicts(*raw))
        if len(batch) >= 2 and 2 * contradicting > len(batch):
            self.steps += 1
            log.warning("time sync: %d of %d new samples contradict the offset estimate: "
                        "a clock stepped, the earlier samples are dropped", contradicting, len(batch))
            self._samples.clear()
        for raw in batch:
            self._samples.append(self._sample(*raw))
        if batch:
            self._anchor = self._estimate()
        return len(batch)

    def replace(self, samples: Iterable[Sample]) -> int:
        """Keep only these samples, e.g. after the venue refused a timestamp we signed with the old
        ones (whose fast round trips would otherwise keep outvoting the new). If none of them is a
        real measurement the old estimate stays: it beats signing with an unsynced wall clock."""
        batch = [raw for raw in samples if self._check(*raw) is not None]
        if not batch:
            return 0
        self._samples.clear()
        for raw in batch:
            self._samples.append(self._sample(*raw))
        self._anchor = self._estimate()
        return len(batch)

    def server_time_ms(self, now_ms: float | None = None) -> int:
        """The venue's clock now (or at local monotonic time ``now_ms``), in whole ms as venues
        expect. Without samples: the wall clock now, whatever ``now_ms`` says."""
        if self._anchor is None:
            return math.floor(self._wall_ms())
        local = self._local_ms() if now_ms is None else now_ms
        return math.floor(local + self._anchor)

    def clear(self) -> None:
        """Forget every sample: the venue's time is the wall clock again until the next one."""
        self._samples.clear()
        self._anchor = None

    def _check(self, send: float, server: float, recv: float) -> TimeSample | None:
        if not all(math.isfinite(v) for v in (send, server, recv)):
            self._reject("non-finite value", send, server, recv)
            return None
        if recv < send:  # received before sent: not a measurement on a monotonic clock
            self._reject("negative round trip", send, server, recv)
            return None
        return self._sample(send, server, recv)

    @staticmethod
    def _sample(send: float, server: float, recv: float) -> TimeSample:
        return TimeSample(recv - send, server - (send + recv) / 2)

    def _contradicts(self, send: float, server: float, recv: float) -> bool:
        # The venue read its clock at a local instant inside [send, recv] and reports whole ms
        # (floored), so its true offset lies in (server - recv, server + 1 - send).
        if self._anchor is None:
            return False
        return not server - recv - self._tolerance <= self._anchor <= server + 1 - send + self._tolerance

    def _estimate(self) -> float:
        by_rtt = sorted(self._samples, key=lambda s: s.rtt_ms)
        keep = max(1, math.ceil(len(by_rtt) * self._best_fraction))
        offsets = sorted(s.offset_ms for s in by_rtt[:keep])
        mid = len(offsets) // 2
        if len(offsets) % 2:
            return offsets[mid]
        return (offsets[mid - 1] + offsets[mid]) / 2

    def _reject(self, why: str, send: float, server: float, recv: float) -> None:
        self.rejected += 1
        log.warning("time sample dropped (%s): send=%s server=%s recv=%s", why, send, server, recv)
