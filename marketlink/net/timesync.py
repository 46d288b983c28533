"""Server-time offset from request round trips, robust to slow and odd samples.

A venue rejects a signed request whose timestamp strays outside its window, so we sign with our
estimate of the *server's* clock. One sample is ``(local send, server time, local receive)``; the
server read its clock somewhere inside that round trip, so ``server - midpoint`` estimates the
offset with an error of at most half the round trip. A slow round trip therefore carries a wide
error, and a mean over all samples lets one congested request skew every signature after it.
We keep the recent samples, trust only the fastest part of them, and take the median of those:
slow samples never vote, and one fast sample with a wild server time cannot move a median.

Pure: no clock is read unless asked for ``server_time_ms()`` without an explicit ``now_ms``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from marketlink.core.errors import ConfigError

__all__ = ["TimeSample", "TimeSync", "wall_clock_ms"]

log = logging.getLogger(__name__)


def wall_clock_ms() -> float:
    """Local wall-clock time in ms: what venues' timestamps are measured against."""
    return time.time_ns() / 1_000_000


@dataclass(frozen=True, slots=True)
class TimeSample:
    rtt_ms: float
    offset_ms: float  # server clock minus local clock, estimated at the round trip's midpoint


class TimeSync:
    """Estimate of ``server clock - local clock`` from the last ``max_samples`` round trips.

    The estimate is the median offset of the ``best_fraction`` of samples with the lowest round
    trip (at least one sample). Without samples the offset is 0: signing with local time is the
    best available guess, and ``has_samples`` lets the engine insist on a sync first.
    """

    def __init__(
        self,
        max_samples: int = 16,
        *,
        best_fraction: float = 0.5,
        now_ms: Callable[[], float] = wall_clock_ms,
    ) -> None:
        if max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1, got {max_samples}")
        if not 0.0 < best_fraction <= 1.0:
            raise ConfigError(f"best_fraction must be in (0, 1], got {best_fraction}")
        self._samples: deque[TimeSample] = deque(maxlen=max_samples)
        self._best_fraction = best_fraction
        self._now_ms = now_ms
        self._offset_ms = 0.0
        self.rejected = 0

    @property
    def has_samples(self) -> bool:
        return bool(self._samples)

    @property
    def offset_ms(self) -> float:
        return self._offset_ms

    @property
    def samples(self) -> tuple[TimeSample, ...]:
        return tuple(self._samples)

    def add_sample(self, local_send_ms: float, server_ms: float, local_recv_ms: float) -> bool:
        """Record one round trip; False (counted, logged) when it cannot be a real measurement."""
        if not all(math.isfinite(v) for v in (local_send_ms, server_ms, local_recv_ms)):
            return self._reject("non-finite value", local_send_ms, server_ms, local_recv_ms)
        rtt = local_recv_ms - local_send_ms
        if rtt < 0:
            # Received before sent: the local clock jumped (NTP step) mid-request.
            return self._reject("negative round trip", local_send_ms, server_ms, local_recv_ms)
        self._samples.append(TimeSample(rtt, server_ms - (local_send_ms + local_recv_ms) / 2))
        self._offset_ms = self._estimate()
        return True

    def server_time_ms(self, now_ms: float | None = None) -> int:
        """The server's clock now (or at local time ``now_ms``), in whole ms as venues expect."""
        local = self._now_ms() if now_ms is None else now_ms
        return math.floor(local + self._offset_ms)

    def clear(self) -> None:
        """Forget every sample, e.g. after the venue rejected a timestamp we signed with them."""
        self._samples.clear()
        self._offset_ms = 0.0

    def _estimate(self) -> float:
        by_rtt = sorted(self._samples, key=lambda s: s.rtt_ms)
        keep = max(1, math.ceil(len(by_rtt) * self._best_fraction))
        offsets = sorted(s.offset_ms for s in by_rtt[:keep])
        mid = len(offsets) // 2
        if len(offsets) % 2:
            return offsets[mid]
        return (offsets[mid - 1] + offsets[mid]) / 2

    def _reject(self, why: str, send: float, server: float, recv: float) -> bool:
        self.rejected += 1
        log.warning("time sample dropped (%s): send=%s server=%s recv=%s", why, send, server, recv)
        return False
