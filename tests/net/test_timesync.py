"""TimeSync: the offset comes from the fastest round trips and ignores slow or wild samples."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.errors import ConfigError
from marketlink.net.timesync import TimeSample, TimeSync, wall_clock_ms


def sample(sync: TimeSync, send: float, rtt: float, offset: float) -> bool:
    """A round trip starting at ``send`` whose server clock read ``offset`` ahead at the midpoint."""
    return sync.add_sample(send, send + rtt / 2 + offset, send + rtt)


def test_one_sample_gives_its_offset_and_server_time() -> None:
    sync = TimeSync(now_ms=lambda: 1_000_000.0)
    assert not sync.has_samples and sync.offset_ms == 0.0
    assert sync.server_time_ms() == 1_000_000  # without samples: local time, offset 0
    assert sync.add_sample(1000, 1600, 1020)  # midpoint 1010, server 1600
    assert sync.has_samples and sync.offset_ms == 590.0
    assert sync.server_time_ms(now_ms=2000) == 2590
    assert sync.server_time_ms() == 1_000_590
    assert sync.samples == (TimeSample(20, 590.0),)


def test_outliers_that_would_skew_a_mean_do_not_move_the_estimate() -> None:
    sync = TimeSync(max_samples=16)
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
    sync = TimeSync(best_fraction=1.0)
    for offset in (100, 200, 300, 1000):
        sample(sync, 0, 10, offset)
    assert sync.offset_ms == 250.0


def test_old_samples_leave_the_window() -> None:
    sync = TimeSync(max_samples=3)
    for _ in range(3):
        sample(sync, 0, 10, 100)
    for _ in range(3):  # the local clock was stepped: the venue is now 400 ms further ahead
        sample(sync, 0, 10, 500)
    assert sync.offset_ms == 500.0 and len(sync.samples) == 3


@pytest.mark.parametrize(
    ("send", "server", "recv"),
    [(1000, 1500, 990), (math.nan, 1500, 1010), (1000, math.inf, 1010), (-math.inf, 0, 0)],
)
def test_impossible_samples_are_dropped_and_counted(send: float, server: float, recv: float) -> None:
    sync = TimeSync()
    sample(sync, 0, 10, 42)
    assert not sync.add_sample(send, server, recv)
    assert sync.rejected == 1 and sync.offset_ms == 42 and len(sync.samples) == 1


def test_clear_forgets_everything() -> None:
    sync = TimeSync()
    sample(sync, 0, 10, 42)
    sync.clear()
    assert not sync.has_samples and sync.offset_ms == 0.0


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigError):
        TimeSync(max_samples=0)
    for fraction in (0.0, 1.5):
        with pytest.raises(ConfigError):
            TimeSync(best_fraction=fraction)


def test_wall_clock_is_epoch_milliseconds() -> None:
    assert wall_clock_ms() > 1.6e12  # after 2020, in ms rather than s or ns


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
    sync = TimeSync(max_samples=64)
    t = 1.7e12
    for out, back in legs:
        assert sync.add_sample(t, t + out + true_offset, t + out + back)
        t += 10_000
    worst = max(out + back for out, back in legs) / 2
    assert abs(sync.offset_ms - true_offset) <= worst + 1e-3
