"""Throttler cost per acquire, and proof that it does not grow with history.

Run (not part of CI):  python bench/bench_throttler.py [--acquires 20000] [--runs 7]

Two limit sets:

* ``1 limit``: one pool with a one-day window, every request charges it.
* ``50 limits``: Binance/Bybit-shaped. 40 endpoint limits (60 s windows) linked to a shared
  ``WEIGHT`` pool (1 min and 1 day windows) with link weights 1-5, 8 per-pair order limits
  (10 s) linked to a shared ``ORDERS`` pool (10 s and 1 day windows) and to ``WEIGHT``. Requests
  rotate over the 48 leaf limits, so each one charges 3-4 pools and 4-6 windows.

Each run builds a fresh throttler, records ``history`` prior requests (1k or 100k, one per
tenth of a virtual second, all kept by the one-day windows), then times ``--acquires`` more in
chunks of 1000 (a run's figure is its median chunk, so a preempted chunk does not skew it).
Capacities are large so every request is admitted: we measure the accounting, not waiting. The
pure ``ThrottleState.try_acquire`` and the asyncio ``Throttler.acquire`` (on a ``VirtualClock``)
are both timed. Runs alternate between the two histories so that both see the same machine
load. Reported: median over the runs of acquires per second, and the ratio of the 100k-history
figure to the 1k one (1.00 means the cost does not depend on history).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable

from marketlink.net.clock import VirtualClock
from marketlink.net.throttler import Cost, RateLimit, Throttler, ThrottleState, Window

BIG = 10**12
DAY = 86_400.0
CHUNK = 1000  # timed in chunks; a run's figure is its median chunk, robust to preemption
STEP = 0.1  # virtual seconds between requests: 1k of history spans 100 s, 100k under a day


def one_limit() -> tuple[list[RateLimit], list[list[Cost]]]:
    return [RateLimit.simple("ORDERS", BIG, DAY)], [[Cost("ORDERS")]]


def fifty_limits() -> tuple[list[RateLimit], list[list[Cost]]]:
    limits = [
        RateLimit("WEIGHT", (Window(BIG, 60), Window(BIG, DAY))),
        RateLimit("ORDERS", (Window(BIG, 10), Window(BIG, DAY))),
    ]
    limits += [RateLimit.simple(f"ep{i}", BIG, 60, [Cost("WEIGHT", i % 5 + 1)]) for i in range(40)]
    limits += [
        RateLimit.simple(f"order:PAIR{i}", BIG, 10, [Cost("ORDERS"), Cost("WEIGHT")]) for i in range(8)
    ]
    assert len(limits) == 50
    requests = [[Cost(lim.id)] for lim in limits[2:]]
    return limits, requests


MakeLimits = Callable[[], tuple[list[RateLimit], list[list[Cost]]]]
SETS: dict[str, MakeLimits] = {
    "1 limit": one_limit,
    "50 limits": fifty_limits,
}


def time_state(make: MakeLimits, history: int, n: int) -> float:
    limits, requests = make()
    state = ThrottleState(limits)
    k = len(requests)
    now = 0.0
    for i in range(history):
        now += STEP
        state.try_acquire(requests[i % k], now)
    stamps = [now + STEP * (j + 1) for j in range(n)]
    batch = [requests[(history + j) % k] for j in range(n)]
    acquire = state.try_acquire
    gc.collect()
    rates = []
    for lo in range(0, n, CHUNK):
        t0 = time.perf_counter()
        for costs, at in zip(batch[lo:lo + CHUNK], stamps[lo:lo + CHUNK], strict=True):
            if acquire(costs, at):
                raise RuntimeError("benchmark request was not admitted")
        rates.append(CHUNK / (time.perf_counter() - t0))
    return statistics.median(rates)


async def _time_async(limits: list[RateLimit], requests: list[list[Cost]], history: int, n: int) -> float:
    clock = VirtualClock()
    thr = Throttler(limits, clock=clock)
    k = len(requests)
    for i in range(history):
        clock.advance(STEP)
        await thr.acquire(requests[i % k])
    batch = [requests[(history + j) % k] for j in range(n)]
    advance, acquire = clock.advance, thr.acquire
    gc.collect()
    rates = []
    for lo in range(0, n, CHUNK):
        t0 = time.perf_counter()
        for costs in batch[lo:lo + CHUNK]:
            advance(STEP)
            await acquire(costs)
        rates.append(CHUNK / (time.perf_counter() - t0))
    if thr.waiting or clock.pending:
        raise RuntimeError("benchmark request had to wait")
    return statistics.median(rates)


def time_throttler(make: MakeLimits, history: int, n: int) -> float:
    limits, requests = make()
    return asyncio.run(_time_async(limits, requests, history, n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--acquires", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    histories = (1_000, 100_000)
    print(f"acquires/s, median of {args.runs} runs of {args.acquires} acquires each")
    print(f"{'layer':<26}{'limits':<11}{'after 1k':>12}{'after 100k':>13}{'100k/1k':>10}")
    for layer, timer in (("ThrottleState.try_acquire", time_state), ("Throttler.acquire", time_throttler)):
        for name, make in SETS.items():
            samples: dict[int, list[float]] = {h: [] for h in histories}
            for run in range(args.runs):  # interleaved, alternating order: both see the same load
                for h in histories if run % 2 == 0 else histories[::-1]:
                    samples[h].append(timer(make, h, args.acquires))
            medians = [statistics.median(samples[h]) for h in histories]
            ratio = medians[1] / medians[0]
            print(f"{layer:<26}{name:<11}{medians[0]:>12,.0f}{medians[1]:>13,.0f}{ratio:>10.2f}")


if __name__ == "__main__":
    main()
