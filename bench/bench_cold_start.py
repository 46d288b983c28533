"""Cold start: time from ``start()`` to ``ready`` for a Binance connector on 50 pairs.

Run (not part of CI):  python bench/bench_cold_start.py [--runs 7] [--pairs 50] [--seed 7] [--delay-ms 0]

Each run starts a fresh sandbox in its own process (so the server's work is not billed to the
connector, and its rate-limit windows start empty) with ``--pairs`` generated markets and the
market flow on. The sandbox's Binance front-end keeps its default configuration, i.e. Binance's
real limits and weights: 6,000 request weight per minute, and 50 per ``GET /api/v3/depth`` at
the connector's 1,000 levels, so the 50 snapshots alone weigh 2,500. Then, in this process:

* connector: ``marketlink.connect("binance", pairs, api_key=..., api_secret=...)`` against the
  sandbox's endpoints, timed from the start (the ``await``) until it returns ready: clock sync,
  markets and rules, balances, the private stream, a first reconciliation, then every book
  subscribed, snapshotted, bridged to its diff stream and in sync. The time each status part
  first became ready is recorded from the connector's ``ConnectorStatusChanged`` events;
* baseline: the same 50 snapshot requests (``limit=1000``) made one after another with plain
  aiohttp (a fresh ``ClientSession``, JSON decoded), on the same server.

The two alternate which goes first from run to run. Both together stay under the minute's 6,000
weight, so no answer is a 429; the script checks every run for one and for a ban, and reports
the server's own count of the weight used (``X-MBX-USED-WEIGHT-1M``) after the connector's start.
``--delay-ms`` makes the sandbox answer every REST request that many milliseconds after
executing it (its ``delay_responses`` fault), a stand-in for the distance to a real venue, where
the connector's concurrent snapshots and the baseline's sequential ones part ways. WebSocket
frames are not delayed.

Reported: medians over the runs, and the target (<= 5 s to ready).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

import marketlink
from marketlink.core.events import ConnectorStatusChanged, Event
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.markets_default import USD_PRICES
from marketlink.sandbox.server import Sandbox
from marketlink.venues.binance import SPEC, local_endpoints

API_KEY = "coldStartBenchKey0001"
API_SECRET = "coldStartBenchSecret0001"
TARGET_SECONDS = 5.0


def bench_pairs(n: int) -> tuple[str, ...]:
    """``n`` USDT markets: the well-known assets first, then generated names (their filters
    and starting prices come from markets_default's generator)."""
    bases = [asset for asset in USD_PRICES if asset != "EUR"]
    bases += [f"COIN{i:02d}" for i in range(max(0, n - len(bases)))]
    return tuple(f"{base}-USDT" for base in bases[:n])


# -- the sandbox process ------------------------------------------------------------------------


def server_main(conn: Connection, pairs: tuple[str, ...], seed: int, delay: float) -> None:
    asyncio.run(serve(conn, pairs, seed, delay))


async def serve(conn: Connection, pairs: tuple[str, ...], seed: int, delay: float) -> None:
    config = SandboxConfig(markets=pairs, seed=seed, api_key=API_KEY, api_secret=API_SECRET)
    async with Sandbox(config) as sb:
        if delay > 0:
            sb.faults.delay_responses(delay, 1_000_000, path_prefix="/api/")
        symbols = [setup.symbol for setup in sb.markets]
        conn.send((sb.base_url, symbols))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
        conn.send(sb.health())


class ServerProcess:
    def __init__(self, pairs: tuple[str, ...], seed: int, delay: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=server_main, args=(child, pairs, seed, delay), daemon=True)
        self.process.start()
        self.base_url, self.symbols = self.conn.recv()

    def stop(self) -> dict[str, Any]:
        self.conn.send("stop")
        health: dict[str, Any] = self.conn.recv()
        self.process.join(timeout=10)
        return health


# -- the two contenders ---------------------------------------------------------------------------


async def connector_start(base_url: str, pairs: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Seconds from the start to ready, and when each status part first became ready."""
    connecting = marketlink.connect(
        "binance", pairs, api_key=API_KEY, api_secret=API_SECRET, endpoints=local_endpoints(base_url),
        timeout=60,
    )
    parts: dict[str, float] = {}
    t0 = 0.0

    def on_status(event: Event) -> None:
        assert isinstance(event, ConnectorStatusChanged)
        now = time.perf_counter() - t0
        missing = {name for name, _ in event.not_ready}
        for name in connecting.connector.status():
            if name not in missing:
                parts.setdefault(name, now)

    connecting.connector.bus.subscribe_callback(on_status, (ConnectorStatusChanged,))
    t0 = time.perf_counter()
    conn = await connecting
    elapsed = time.perf_counter() - t0
    await conn.stop()
    return elapsed, parts


async def sequential_snapshots(base_url: str, symbols: list[str]) -> float:
    limit = str(SPEC.snapshot_depth)
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        for symbol in symbols:
            params = {"symbol": symbol, "limit": limit}
            async with session.get(f"{base_url}/api/v3/depth", params=params) as r:
                if r.status != 200:
                    raise AssertionError(f"depth {symbol}: HTTP {r.status}: {await r.text()}")
                book = await r.json()
                if not book["bids"] or not book["asks"]:
                    raise AssertionError(f"depth {symbol}: an empty side")
        return time.perf_counter() - t0


async def used_weight(base_url: str) -> int:
    """The server's count of this minute's request weight (the ping itself weighs 1)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/api/v3/ping") as r:
        return int(r.headers["X-MBX-USED-WEIGHT-1M"])


async def one_run(pairs: tuple[str, ...], seed: int, delay: float, connector_first: bool) -> dict[str, Any]:
    server = ServerProcess(pairs, seed, delay)
    try:
        result: dict[str, Any] = {}
        if not connector_first:
            result["baseline"] = await sequential_snapshots(server.base_url, server.symbols)
        result["ready"], result["parts"] = await connector_start(server.base_url, pairs)
        result["weight"] = await used_weight(server.base_url)
        if connector_first:
            result["baseline"] = await sequential_snapshots(server.base_url, server.symbols)
    finally:
        health = server.stop()
    errors = health["errors"]
    if any(errors.values()):
        raise AssertionError(f"the sandbox reported errors: {errors}")
    return result


# -- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="REST answer delay (default 0)")
    args = parser.parse_args()
    if args.runs < 1 or not 1 <= args.pairs <= 200 or not 0 <= args.delay_ms <= 5_000:
        parser.error("--runs must be >= 1, --pairs in 1..200 and --delay-ms in 0..5000")
    pairs = bench_pairs(args.pairs)
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"{len(pairs)} pairs, {args.runs} runs, REST answers delayed {args.delay_ms:g} ms, "
          "sandbox with Binance's default limits and weights")
    runs = []
    for i in range(args.runs):
        run = asyncio.run(one_run(pairs, args.seed + i, args.delay_ms / 1000, connector_first=i % 2 == 0))
        runs.append(run)
        print(f"  run {i + 1}: ready in {run['ready']:.3f} s; sequential snapshots {run['baseline']:.3f} s; "
              f"server weight after start {run['weight']}")
    ready = statistics.median(r["ready"] for r in runs)
    baseline = statistics.median(r["baseline"] for r in runs)
    print("\nmedian time each status part first became ready (s after the start):")
    names = sorted({n for r in runs for n in r["parts"]}, key=lambda n: statistics.median(
        r["parts"].get(n, float("nan")) for r in runs))
    for name in names:
        print(f"  {name:16} {statistics.median(r['parts'][name] for r in runs if name in r['parts']):.3f}")
    print(f"\nconnector, start() to ready, {len(pairs)} pairs: median {ready:.3f} s "
          f"(min {min(r['ready'] for r in runs):.3f}, max {max(r['ready'] for r in runs):.3f})")
    print(f"baseline, {len(pairs)} depth snapshots one after another (plain aiohttp): "
          f"median {baseline:.3f} s")
    print(f"ratio connector / baseline: x{ready / baseline:.2f}")
    met = ready <= TARGET_SECONDS
    print(f"target <= {TARGET_SECONDS:.0f} s: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
