"""TimeSync: the offset comes from the fastest round trips, ignores slow or wild samples, and is
anchored on the monotonic clock, so a step of the local wall clock moves nothing we sign with."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.errors import ConfigError
from marketlink.net.timesync import TimeSample, TimeSync, monotonic_ms, wall_clock_ms


class Clocks:
    """A hand-driven monotonic clock and wall clock, both in ms."""

    def __init__(self, mono: float = 0.0, wall: float = 0.0) -> None:
        self.mono = mono
        self.wall = wall

    def sync(self, **kw: Any) -> TimeSync:
        return TimeSync(local_ms=lambda: self.mono, wall_ms=lambda: self.wall, **kw)


def frozen(**kw: Any) -> TimeSync:
    """Both clocks at 0: ``offset_ms`` then reads the raw estimate (venue minus monotonic)."""
    return Clocks().sync(**kw)


def sample(sync: TimeSync, send: float, rtt: float, offset: float) -> bool:
    """A round trip starting at ``send`` whose server clock read ``offset`` ahead at the midpoint."""
    return sync.add_sample(send, send + rtt / 2 + offset, send + rtt)


def raw(send: float, rtt: float, offset: float) -> tuple[float, float, float]:
    return (send, send + rtt / 2 + offset, send + rtt)


def test_one_sample_gives_its_offset_and_server_time() -> None:
    clocks = Clocks(mono=1_000_000.0, wall=1_700_000_000_000.0)
    sync = clocks.sync()
    assert not sync.has_samples and sync.offset_ms == 0.0
    assert sync.server_time_ms() == 1_700_000_000_000  # without samples: the wall clock
    assert sync.add_sample(1000, 1_700_000_000_600, 1020)  # monotonic midpoint 1010
    assert sync.has_samples and sync.samples == (TimeSample(20, 1_700_000_000_600 - 1010),)
    assert sync.server_time_ms(now_ms=2000) == 1_700_000_001_590
    assert sync.server_time_ms() == 1_700_000_999_590
    assert sync.offset_ms == 999_590.0  # venue minus wall clock, for people


def test_a_wall_clock_step_moves_nothing_we_sign_with() -> None:
    # The audit's t2 case: a +2 s NTP step (or a VM resume) of the wall clock. Before, the
    # offset was measured against the wall clock and every signature after the step was 2 s off,
    # still after three periodic syncs.
    clocks = Clocks(mono=5_000.0, wall=1_700_000_000_000.0)
    venue_ahead = 250.0  # of our wall clock, before the step

    def venue_now() -> float:
        return clocks.mono + (1_700_000_000_000.0 - 5_000.0) + venue_ahead

    sync = clocks.sync()
    for _ in range(8):
        send = clocks.mono
        clocks.mono += 10
        clocks.wall += 10
        assert sync.add_sample(send, venue_now() - 5, clocks.mono)
    before = sync.server_time_ms()
    assert before == math.floor(venue_now())
    clocks.wall += 2_000.0  # the step
    assert sync.server_time_ms() == before
    assert sync.offset_ms == pytest.approx(venue_ahead - 2_000.0)  # what people are told changes
    for _ in range(3):  # periodic syncs after the step agree and change nothing either
        clocks.mono += 300_000
        clocks.wall += 300_000
        send = clocks.mono
        clocks.mono += 40
        clocks.wall += 40
        sync.add_samples([(send, venue_now() - 20, clocks.mono)] * 3)
    assert abs(sync.server_time_ms() - venue_now()) <= 1 and sync.steps == 0


def test_outliers_that_would_skew_a_mean_do_not_move_the_estimate() -> None:
    sync = frozen(max_samples=16)
    t = 0.0
    for jitter in (-2, 1, 0, 2, -1, 1, 0, -2, 2, 1):  # fast and honest: offset 500 +- 2 ms
        sample(sync, t, 10, 500 + jitter)
        t += 1000
    for _ in range(4):  # congested: asymmetric delays put the midpoint far from the server read
        sample(sync, t, 3000, 1900)
        t += 1000
    sample(sync, t, 8, 90_000)  # fast but wild (a server clock glitch)
    offsets = [s.offset_ms for s in sync.samples]
    assert statistics.mean(offsets) > 6000  # what a mean would have believed
    assert 499 <= sync.offset_ms <= 501


def test_even_count_takes_the_middle_pair() -> None:
    sync = frozen(best_fraction=1.0)
    for offset in (100, 200, 300, 1000):
        sample(sync, 0, 10, offset)
    assert sync.offset_ms == 250.0


def test_old_samples_leave_the_window() -> None:
    sync = frozen(max_samples=3)
    for _ in range(3):
        sample(sync, 0, 10, 100)
    for _ in range(3):  # one at a time: no batch to prove a step, the window turns over
        sample(sync, 0, 10, 500)
    assert sync.offset_ms == 500.0 and len(sync.samples) == 3


def test_a_batch_proving_a_clock_step_replaces_the_faster_old_samples() -> None:
    # The venue's clock stepped 2 s ahead (or ours stalled while a VM was paused). Sixteen old
    # samples with 10 ms round trips would outvote any number of 50 ms ones for a long time.
    sync = frozen()
    for i in range(16):
        sample(sync, i * 1000.0, 10, 500)
    assert sync.add_samples([raw(20_000.0 + i * 100, 50, 2_500) for i in range(3)]) == 3
    assert sync.offset_ms == 2_500.0 and sync.steps == 1 and len(sync.samples) == 3


def test_one_wild_sample_in_a_batch_proves_nothing() -> None:
    sync = frozen()
    for i in range(8):
        sample(sync, i * 1000.0, 10, 500)
    sync.add_samples([raw(9_000, 8, 90_000), raw(9_100, 12, 501), raw(9_200, 14, 499)])
    assert sync.steps == 0 and len(sync.samples) == 11 and sync.offset_ms == 500.0
    sync.add_samples([raw(10_000, 8, 90_000)])  # a batch of one never clears either
    assert sync.steps == 0 and sync.offset_ms == 500.0


def test_a_batch_off_by_less_than_its_round_trips_allow_is_no_step() -> None:
    sync = frozen()
    for i in range(8):
        sample(sync, i * 1000.0, 10, 500)
    # 400 ms round trips: the true offset may be anywhere within +-200 ms of their midpoints.
    sync.add_samples([raw(9_000 + i, 400, 500 + 250) for i in range(3)])
    assert sync.steps == 0 and len(sync.samples) == 11 and sync.offset_ms == 500.0
    # Nor is a batch beyond them by less than the tolerance (oscillator drift between syncs).
    sync.add_samples([raw(9_500 + i, 10, 500 + 90) for i in range(3)])
    assert sync.steps == 0 and len(sync.samples) == 14


def test_replace_keeps_only_the_new_samples_unless_none_is_real() -> None:
    sync = frozen()
    for i in range(8):
        sample(sync, i, 5, 500)
    assert sync.replace([raw(100, 30, 1_500), raw(200, 40, 1_510)]) == 2
    assert sync.offset_ms == 1_500.0 and len(sync.samples) == 2  # the faster one wins
    assert sync.replace([(0.0, math.nan, 10.0)]) == 0  # nothing better: the estimate stays
    assert sync.offset_ms == 1_500.0 and sync.rejected == 1


@pytest.mark.parametrize(
    ("send", "server", "recv"),
    [(1000, 1500, 990), (math.nan, 1500, 1010), (1000, math.inf, 1010), (-math.inf, 0, 0)],
)
def test_impossible_samples_are_dropped_and_counted(send: float, server: float, recv: float) -> None:
    sync = frozen()
    sample(sync, 0, 10, 42)
    assert not sync.add_sample(send, server, recv)
    assert sync.add_samples([(send, server, recv)]) == 0
    assert sync.rejected == 2 and sync.offset_ms == 42 and len(sync.samples) == 1


def test_clear_forgets_everything_and_signs_with_the_wall_clock_again() -> None:
    clocks = Clocks(mono=10.0, wall=1_700_000_000_000.0)
    sync = clocks.sync()
    sample(sync, 0, 10, 42)
    sync.clear()
    assert not sync.has_samples and sync.offset_ms == 0.0
    assert sync.server_time_ms() == 1_700_000_000_000


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigError):
        TimeSync(max_samples=0)
    for fraction in (0.0, 1.5):
        with pytest.raises(ConfigError):
            TimeSync(best_fraction=fraction)
    for tolerance in (-1.0, math.inf):
        with pytest.raises(ConfigError):
            TimeSync(step_tolerance_ms=tolerance)


def test_the_clocks_are_milliseconds_and_the_local_one_never_goes_back() -> None:
    assert wall_clock_ms() > 1.6e12  # after 2020, in ms rather than s or ns
    readings = [monotonic_ms() for _ in range(100)]
    assert readings == sorted(readings) and readings[0] > 0


@settings(max_examples=200, deadline=None)
@given(
    true_offset=st.floats(-1e7, 1e7),
    legs=st.lists(st.tuples(st.floats(0, 5000), st.floats(0, 5000)), min_size=1, max_size=40),
)
def test_estimate_error_never_exceeds_half_the_slowest_round_trip(
    true_offset: float, legs: list[tuple[float, float]]
) -> None:
    # The server reads its clock after the outbound leg; the error of a sample is (out - back)/2,
    # so the median of any subset is within half the largest round trip of the truth.
    sync = frozen(max_samples=64)
    t = 1.7e9
    for out, back in legs:
        assert sync.add_sample(t, t + out + true_offset, t + out + back)
        t += 10_000
    worst = max(out + back for out, back in legs) / 2
    assert abs(sync.offset_ms - true_offset) <= worst + 1e-3
