"""Fast-refresh soak (QA row Q7, sustained): market making that cancels and re-quotes its whole
ladder every few hundred milliseconds, for minutes, against the sandbox.

Run (not part of CI):  python bench/bench_fast_refresh.py [--duration 180] [--quick] [--levels 5]
                       [--refresh 0.2] [--tick 0.1] [--order-limit 50] [--seed 7]
                       [--memory-duration 60]

Two processes, so each side's CPU is billed to itself. The sandbox (Binance's protocol, market
flow on) runs in a child process; this process runs what a trader runs: the real ``SpotConnector``
on the sandbox's demo account, the SQLite journal recording it, and ``PureMarketMaking`` under a
``StrategyRunner`` on the system clock, with a short refresh, zero tolerance and several levels a
side placed a tick or two apart inside the flow's book, so quotes are re-placed on nearly every
refresh and the flow fills some of them during the churn.

Rate limits. Binance's real ORDERS limit is 50 per 10 s (5 a second), below the 20 a second this
soak must sustain. So the connector's venue is the real Binance venue with only its ORDERS pool
replaced (``dataclasses.replace`` of the spec's ``rate_limits``): ``--order-limit`` new orders a
second plus Binance's daily window; the sandbox counts twice that in fixed one-second windows
(as Q7 does: the connector's sliding window against the venue's fixed ones a latency later never
needs more than twice). Request weight stays Binance's 6,000 a minute on both sides.

Measured (after an idle phase: the connector ready, streams live, no strategy, to show what the
market data alone costs): orders acknowledged and cancelled per second, median of 10 s windows;
every error counter the engine keeps (failed, rejected, unknown and locally refused orders,
tracker refusals, 429/418 answers, other HTTP errors, stream reconnects, lost orders, strategy
callback errors, dropped events, journal rows dropped, supervised task restarts, sandbox errors)
which must all be 0 (a LIMIT_MAKER quote the venue refused because the book had moved onto its
price, Binance's -2010 "Order would immediately match and take.", is what maker-only quoting is
for: counted on a line of its own, not as an error; every other rejection is one); client CPU
seconds per order (``time.process_time`` over the soak divided by the orders placed; the
journal's writer thread included); peak memory (``ru_maxrss`` and the
tracemalloc peak of the Python heap); RSS and SQLite's heap (``sqlite3_memory_used``: the journal
connections' page caches) every 5 s with least-squares slopes in KB/min over the samples after the
first minute (warm-up) and over the last half, and what ``malloc_trim(0)`` gives back at the end
(free memory held by glibc's arenas); fills in the journal against the venue's own trade
list for the account (equal as sets, no duplicates); balances against the venue's; no order left
open at the venue.

Baseline, in the same run: as many place + cancel pairs as the soak placed orders, sent by a bare
loop (``aiohttp`` session, HMAC signing, ``orjson`` decoding, a status check; no engine, no
journal, no market data) to a second, quiet sandbox in the server process with its limits raised,
from 4 concurrent loops. Its CPU per pair against the engine's CPU per order shows the engine's
overhead as a ratio. The baseline runs as fast as the sandbox answers, so its loop overhead is
amortised over busy wake-ups: a lower bound for any client.

Exit status: 0 when every error counter is 0, fills, balances and open orders check out and the
median rates reach 20/s; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import gc
import hashlib
import hmac
import logging
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType
from marketlink.core.events import (
    BalanceUpdated,
    Event,
    OrderCancelled,
    OrderCreated,
    OrderFailed,
    OrderFilled,
    OrderLost,
)
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.journal import Journal
from marketlink.net.throttler import RateLimit, Window
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.strategy.pmm_proposal import PriceSource
from marketlink.strategy.pure_market_making import PureMarketMaking, PureMarketMakingConfig
from marketlink.strategy.runner import StrategyRunner
from marketlink.venues.base import Venue
from marketlink.venues.binance import VENUE, local_endpoints
from marketlink.venues.binance import spec as binance_spec

API_KEY = "soakKey0001"
API_SECRET = "soakSecret0001"
PAIR = "BTC-USDT"
SYMBOL = "BTCUSDT"
DEMO = "demo"
ASSETS = ("BTC", "USDT")
TARGET_PER_SECOND = 20.0
WINDOW_S = 10.0
RSS_EVERY_S = 5.0
WARMUP_S = 60.0
BASELINE_LOOPS = 4
HUGE = 10**12
UNLIMITED = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": HUGE},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": HUGE},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": HUGE},
]
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

log = logging.getLogger("bench.fast_refresh")


# -- server process --------------------------------------------------------------------------------------


def venue_limits(orders_per_second: int) -> list[dict[str, object]]:
    """The soak sandbox's limits: Binance's weight, the raised ORDERS pool (see the docstring)."""
    return [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 1, "limit": orders_per_second},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160_000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61_000},
    ]


def trade_keys(sb: Sandbox) -> list[tuple[str, str, str, str, str, str]]:
    """(exchange order id, trade id, price, amount, fee asset, fee) of every demo trade, as strings."""
    trades = sb.exchange.my_trades(DEMO, SYMBOL, limit=1_000_000)
    return [
        (str(t.order_id), str(t.trade_id), str(t.price), str(t.qty), t.commission_asset, str(t.commission))
        for t in trades
    ]


async def serve(conn: Connection, seed: int, venue_orders_per_second: int) -> None:
    soak_config = SandboxConfig(
        markets=(PAIR,), seed=seed, flow=True, api_key=API_KEY, api_secret=API_SECRET,
        venue_options={"binance": {"rate_limits": venue_limits(venue_orders_per_second)}},
    )
    quiet_config = SandboxConfig(
        markets=(PAIR,), seed=seed, flow=False, api_key=API_KEY, api_secret=API_SECRET,
        venue_options={"binance": {"rate_limits": UNLIMITED}},
    )
    loop = asyncio.get_running_loop()
    async with Sandbox(soak_config) as sb, Sandbox(quiet_config) as quiet:
        conn.send(("ready", sb.base_url, quiet.base_url))
        cpu0 = time.process_time()
        while True:
            command, _arg = await loop.run_in_executor(None, conn.recv)
            if command == "trades":
                conn.send(("done", trade_keys(sb)))
            elif command == "balances":
                truth = sb.ground_truth().balances[DEMO]
                conn.send(("done", {a: (str(truth[a].total), str(truth[a].free)) for a in ASSETS}))
            elif command == "open_orders":
                conn.send(("done", len(sb.exchange.open_orders(DEMO, SYMBOL))))
            elif command == "health":
                conn.send(("done", sb.health()))
            elif command == "cpu":
                conn.send(("done", time.process_time() - cpu0))
            else:
                conn.send(("done", None))
                return


def server_main(conn: Connection, seed: int, venue_orders_per_second: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="sandbox %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(conn, seed, venue_orders_per_second))


class ServerProcess:
    def __init__(self, seed: int, venue_orders_per_second: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=server_main, args=(child, seed, venue_orders_per_second), daemon=True,
        )
        self.process.start()
        reply, self.base_url, self.quiet_url = self.conn.recv()
        assert reply == "ready"

    async def command(self, name: str) -> Any:
        self.conn.send((name, None))
        reply, value = await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)
        assert reply == "done"
        return value

    def stop(self) -> None:
        if self.process.is_alive():
            self.conn.send(("stop", None))
            self.conn.recv()
        self.process.join(timeout=10)


# -- the client under test ---------------------------------------------------------------------------------


def fast_venue(orders_per_second: int) -> Venue:
    """Binance Spot with its ORDERS pool raised to ``orders_per_second`` (the daily window kept)."""
    limits = tuple(
        RateLimit(lim.id, (Window(orders_per_second, 1), *lim.windows[1:]))
        if lim.id == binance_spec.ORDERS else lim
        for lim in VENUE.spec.rate_limits
    )
    return dataclasses.replace(VENUE, spec=dataclasses.replace(VENUE.spec, rate_limits=limits))


def strategy_config(levels: int, refresh: float) -> PureMarketMakingConfig:
    """Quotes a tick or two apart from about a tick off the mid: inside the flow's ladder (2 ticks
    wide, 1-tick gaps), so the mid's moves change the ladder on most refreshes and the flow's
    takers fill some quotes. 0.00002 % of 60,000 is 0.012, a little over one 0.01 tick."""
    step = Decimal("0.00002")
    return PureMarketMakingConfig(
        connector="binance", trading_pair=PAIR, bid_spread=step, ask_spread=step,
        order_amount=Decimal("0.001"), order_levels=levels, order_level_spread=step,
        order_refresh_time=refresh, order_refresh_tolerance_pct=Decimal(0), price_source=PriceSource.MID,
    )


WOULD_TAKE_CODE = "[-2010]"
WOULD_TAKE_TEXT = "order would immediately match and take"


def maker_would_take(event: OrderFailed) -> bool:
    """A maker-only quote the venue refused because the book moved onto its price between our
    snapshot and its arrival: what LIMIT_MAKER is for, not a fault. Binance has no code of its
    own for it (-2010 also means insufficient funds and more) and the codec raises a plain
    ``Rejected`` for it, so the code and the venue's text in the failure reason identify it."""
    reason = (event.reason or "").lower()
    return (
        event.order_type is OrderType.LIMIT_MAKER and WOULD_TAKE_CODE in reason and WOULD_TAKE_TEXT in reason
    )


class Tally:
    """Order events per ``WINDOW_S`` window of the soak (counts, not a list of times: the bench
    must not grow its own memory by the order while it measures the engine's), and counts of what
    must stay 0, from the bus."""

    def __init__(self) -> None:
        self.origin: float | None = None  # the soak's start: windows count from here
        self.until = math.inf  # and stop here
        self.created: dict[int, int] = {}
        self.cancelled: dict[int, int] = {}
        self.fills = 0
        self.failed = 0  # every failure but the expected one below
        self.would_take = 0  # maker-only quotes refused because they would have taken
        self.withdrawn = 0  # cancelled while they waited behind the rate limits: never sent
        self.failure_reasons: list[str] = []
        self.lost = 0
        self.balance_updates = 0
        self.changed = asyncio.Event()

    def _count(self, counts: dict[int, int]) -> None:
        now = time.monotonic()
        if self.origin is not None and self.origin <= now < self.until:
            k = int((now - self.origin) // WINDOW_S)
            counts[k] = counts.get(k, 0) + 1

    def on_event(self, event: Event) -> None:
        if isinstance(event, OrderCreated):
            self._count(self.created)
        elif isinstance(event, OrderCancelled):
            self._count(self.cancelled)
        elif isinstance(event, OrderFilled):
            self.fills += 1
        elif isinstance(event, OrderFailed):
            if maker_would_take(event):
                self.would_take += 1
            elif event.withdrawn:
                self.withdrawn += 1
            else:
                self.failed += 1
                if len(self.failure_reasons) < 5:
                    self.failure_reasons.append(f"{event.order_type} {event.client_order_id}: {event.reason}")
        elif isinstance(event, OrderLost):
            self.lost += 1
        elif isinstance(event, BalanceUpdated):
            self.balance_updates += 1
        self.changed.set()


class LogCounter(logging.Handler):
    """Counts WARNING and ERROR records of the library (a drop or a bug is always logged)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings = 0
        self.errors = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors += 1
        else:
            self.warnings += 1
        if len(self.first) < 5:
            self.first.append(f"{record.levelname} {record.name}: {record.getMessage()[:160]}")


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def _c_function(library: str | None, name: str, restype: Any) -> Any:
    """``name`` from a shared library, or None (not glibc, SQLite built into the module...)."""
    if library is None:
        return None
    try:
        fn = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    fn.restype = restype
    return fn


def _sqlite_library() -> str | None:
    import _sqlite3  # the extension module: its own symbols, or those of the libsqlite3 it links

    return _sqlite3.__file__


_SQLITE_MEMORY_USED = _c_function(_sqlite_library(), "sqlite3_memory_used", ctypes.c_int64)
_MALLOC_TRIM = _c_function(ctypes.util.find_library("c"), "malloc_trim", ctypes.c_int)


def sqlite_kb() -> int:
    """Every byte SQLite holds from its allocator in this process (page caches of all journal
    connections, schema, statements): what separates its growth from the allocator's. -1: not
    available."""
    return -1 if _SQLITE_MEMORY_USED is None else int(_SQLITE_MEMORY_USED()) // 1024


def trimmed_kb() -> int | None:
    """RSS given back by ``malloc_trim(0)`` (glibc): memory malloc held free in its arenas."""
    if _MALLOC_TRIM is None:
        return None
    before = rss_kb()
    _MALLOC_TRIM(0)
    return before - rss_kb()


def window_rates(counts: dict[int, int], start: float, end: float) -> list[float]:
    """Events per second in each whole ``WINDOW_S`` window of [start, end) (counted from start)."""
    return [counts.get(k, 0) / WINDOW_S for k in range(int((end - start) // WINDOW_S))]


def slope_kb_per_min(samples: list[tuple[float, int]], warmup: float) -> tuple[float | None, int]:
    kept = [(t, kb) for t, kb in samples if t >= warmup]
    if len(kept) < 3:
        return None, len(kept)
    fit = statistics.linear_regression([t for t, _ in kept], [float(kb) for _, kb in kept])
    return fit.slope * 60.0, len(kept)


def heap_growth(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot, seconds: float,
                top: int = 8) -> list[str]:
    """The source lines whose live heap grew most between two snapshots, in KB/min: where an
    accumulation comes from, if there is one."""
    lines = []
    for stat in last.compare_to(first, "lineno")[:top]:
        if stat.size_diff <= 0:
            break
        frame = stat.traceback[0]
        lines.append(f"{stat.size_diff / 1024 / seconds * 60:+8.1f} KB/min {stat.count_diff:+7d} blocks  "
                     f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}")
    return lines


async def sample_rss(samples: list[tuple[float, int, int, int]], start: float, stop: asyncio.Event) -> None:
    """(time, RSS, SQLite's heap, Python's allocated blocks) now and every ``RSS_EVERY_S`` until
    ``stop`` (a wait on the event, not a sleep). The block count costs nothing, unlike tracemalloc,
    so it shows over the whole soak whether Python objects accumulate."""
    while True:
        samples.append((time.monotonic() - start, rss_kb(), sqlite_kb(), sys.getallocatedblocks()))
        try:
            await asyncio.wait_for(stop.wait(), RSS_EVERY_S)
            return
        except TimeoutError:
            continue


async def wait_event(tally: Tally, timeout: float) -> None:
    tally.changed.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.changed.wait(), timeout)


async def balances_match(server: ServerProcess, conn: SpotConnector, tally: Tally) -> tuple[bool, str]:
    """Ours against the venue's, re-checked on each event for up to 10 s (pushes may trail)."""
    deadline = time.monotonic() + 10.0
    while True:
        venue: dict[str, tuple[str, str]] = await server.command("balances")
        ours = conn.balances()
        mine = {a: (str(ours[a].total), str(ours[a].available)) if a in ours else ("-", "-") for a in ASSETS}
        same = all(
            a in ours and ours[a].total == Decimal(venue[a][0]) and ours[a].available == Decimal(venue[a][1])
            for a in ASSETS
        )
        if same or time.monotonic() > deadline:
            return same, f"ours {mine} venue {venue}"
        await wait_event(tally, 0.5)


def journal_keys(journal: Journal, bot_id: int) -> list[tuple[str, str, str, str, str, str]]:
    out = []
    for f in journal.fills(bot_id):
        [fee] = f.fees if len(f.fees) == 1 else [None]
        out.append((
            str(f.exchange_order_id), f.trade_id, str(f.price), str(f.amount),
            fee.token if fee else "?", str(fee.amount) if fee else "?",
        ))
    return out


TradeKey = tuple[str, str, str, str, str, str]


def normalise(keys: Iterable[TradeKey]) -> list[tuple[str, str, Decimal, Decimal, str, Decimal]]:
    """Compare amounts as numbers (the venue and the journal may write trailing zeros differently)."""
    return sorted((x, t, Decimal(p), Decimal(q), a, Decimal(c)) for x, t, p, q, a, c in keys)


async def soak(
    server: ServerProcess, args: argparse.Namespace, journal: Journal, *, bot: str, duration: float,
    idle: float, traced: bool, earlier_trades: frozenset[str],
) -> dict[str, Any]:
    """One bot's run: connector, journal recorder, idle phase, the strategy for ``duration``, a
    clean stop, then every check. ``traced``: tracemalloc runs from before the connector is
    built (it triples the CPU cost, so it never runs during the timed soak). Trades with ids in
    ``earlier_trades`` belong to an earlier bot on the same account and are left out."""
    if traced:
        gc.collect()
        tracemalloc.start()
    tally = Tally()
    logs = LogCounter()
    logging.getLogger("marketlink").addHandler(logs)
    record = journal.bot(bot, VENUE.name)
    conn = SpotConnector(
        fast_venue(args.order_limit), [PAIR], Credentials(API_KEY, API_SECRET),
        endpoints=local_endpoints(server.base_url),
        config=ConnectorConfig(client_id_instance=record.client_id_instance, seed=args.seed),
    )
    conn.bus.subscribe_callback(tally.on_event, name="bench")
    recorder = journal.attach(conn, record.bot_id)
    await conn.start(timeout=30)

    # Idle: streams live, no strategy. What the market data costs by itself per second.
    idle_cpu0, idle_t0 = time.process_time(), time.monotonic()
    idle_stop = asyncio.Event()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(idle_stop.wait(), idle)
    idle_cpu_per_s = (time.process_time() - idle_cpu0) / (time.monotonic() - idle_t0)

    strategy = PureMarketMaking(strategy_config(args.levels, args.refresh))
    runner = StrategyRunner(strategy, {"binance": conn}, tick_interval=args.tick, cancel_timeout=10.0)
    rss: list[tuple[float, int, int, int]] = []
    stop = asyncio.Event()
    gc.collect()
    start = tally.origin = time.monotonic()
    cpu0 = time.process_time()
    placed0 = conn.orders.counters.placed
    sampler = asyncio.create_task(sample_rss(rss, start, stop))
    await runner.start()
    first: tracemalloc.Snapshot | None = None
    if traced:  # the heap after warm-up, to compare with the end: what keeps growing, and where
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration / 3)
        first = tracemalloc.take_snapshot()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration - (duration / 3 if traced else 0.0))
    cpu = time.process_time() - cpu0
    end = tally.until = time.monotonic()
    placed = conn.orders.counters.placed - placed0
    traced_now, traced_peak = tracemalloc.get_traced_memory() if traced else (0, 0)
    growth = heap_growth(first, tracemalloc.take_snapshot(), duration * 2 / 3) if first else []
    stop.set()
    await sampler
    trimmed = trimmed_kb()
    await runner.stop("soak over")
    stop_results = await conn.cancel_all(10.0)
    balances_ok, balances_text = await balances_match(server, conn, tally)
    venue_open = await server.command("open_orders")
    counters = collect_errors(conn, runner, tally, recorder.stats, logs)
    await conn.stop()
    await recorder.aclose()
    if traced:
        tracemalloc.stop()
    all_trades = await server.command("trades")
    venue_fills = normalise(t for t in all_trades if t[1] not in earlier_trades)
    stored = normalise(journal_keys(journal, record.bot_id))
    logging.getLogger("marketlink").removeHandler(logs)
    health = await server.command("health")
    sandbox_errors = sum(int(v) for v in health["errors"].values())
    return {
        "duration": end - start, "cpu": cpu, "placed": placed, "idle_cpu_per_s": idle_cpu_per_s,
        "created": window_rates(tally.created, start, end),
        "cancelled": window_rates(tally.cancelled, start, end),
        "created_total": sum(tally.created.values()),
        "cancelled_total": sum(tally.cancelled.values()),
        "cycles": strategy.cycles, "kept": strategy.refreshes_kept, "fills_seen": tally.fills,
        "errors": counters, "left_open": list(runner.left_open) + [r.client_order_id for r in stop_results
                                                                   if not r.success],
        "venue_open": venue_open, "balances_ok": balances_ok, "balances_text": balances_text,
        "venue_fills": venue_fills, "stored_fills": stored, "sandbox_errors": sandbox_errors,
        "rss": rss, "trimmed_kb": trimmed, "would_take": tally.would_take,
        "withdrawn": tally.withdrawn, "cancel_races": conn.orders.counters.cancel_races,
        "http_errors": dict(conn.ctx.http.stats.errors),
        "refusals": dict(conn.orders.counters.refusals),
        "failure_reasons": tally.failure_reasons, "traced_peak": traced_peak, "traced_end": traced_now,
        "heap_growth": growth,
        "trade_ids": frozenset(t[1] for t in all_trades), "warnings": logs.warnings, "first_logs": logs.first,
        "tracker_evicted": conn.ctx.tracker.counters.evicted, "tracked_now": len(conn.ctx.tracker),
        "transient_excess": conn.ctx.tracker.counters.excess_fill,
    }


def collect_errors(conn: SpotConnector, runner: StrategyRunner, tally: Tally, journal_stats: Any,
                   logs: LogCounter) -> dict[str, int]:
    """Every counter of something that went wrong; all must be 0."""
    oc = conn.orders.counters
    tc = conn.ctx.tracker.counters
    http = conn.ctx.http.stats.errors
    md = conn.market_data.stats
    rc = conn.reconciler.counters
    us = conn.user_stream.counters
    restarts = sum(r.restarts for r in conn.ctx.supervisor.records.values())
    return {
        "failed orders (events)": tally.failed,
        # A would-take refusal is a venue rejection too; every other kind stays an error.
        "rejected by venue (but would-take)": max(0, oc.rejected - tally.would_take),
        "placement outcome unknown": oc.unknown,
        "refused locally": oc.refused_locally,
        "cancel failures": oc.cancel_failures,
        "refused updates (tracker)": (tc.unknown_order + tc.illegal_transition + tc.id_conflict
                                      + tc.pair_mismatch + tc.fill_conflict),
        "fills released with a gap": tc.released_with_gap,
        "orders ending with excess fills": sum(o.excess_fill for o in conn.in_flight_orders().values()),
        "429 / 418 answers": http.get("RateLimited", 0) + http.get("IpBanned", 0),
        # A cancel that met a fill gets one "not found" answer, then a query finds the order
        # filled (``cancel_races``, reported apart): those answers are the race, not errors.
        "other HTTP errors": max(0, sum(v for k, v in http.items() if k not in ("RateLimited", "IpBanned"))
                                 - oc.cancel_races),
        "user stream reconnects": max(0, us.connections - 1) + us.ended_by_venue,
        "market stream reconnects": max(0, md.connects - 1),
        "book resyncs": sum(md.resyncs.values()),
        "malformed / failed messages": us.malformed + us.sink_errors + md.malformed + md.errors + md.rejected,
        "lost orders": tally.lost,
        "reconciler errors": rc.errors + rc.vanished + rc.contradictions + rc.released,
        "strategy callback errors": runner.errors,
        "events dropped": conn.bus.stats.dropped_total,
        "journal write retries, duplicate fills": journal_stats.write_retries + journal_stats.duplicate_fills,
        "task restarts": restarts,
        "errors logged": logs.errors,
    }


# -- baseline: a bare signed loop ----------------------------------------------------------------------------


def signed_url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    signature = hmac.new(API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{base}{path}?{query}&signature={signature}"


async def baseline(base_url: str, pairs: int) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, pairs done) for ``pairs`` place + cancel pairs."""
    headers = {"X-MBX-APIKEY": API_KEY}
    share, extra = divmod(pairs, BASELINE_LOOPS)
    per_loop = [share + (1 if i < extra else 0) for i in range(BASELINE_LOOPS)]

    async def loop(session: aiohttp.ClientSession, n: int, tag: int) -> int:
        done = 0
        for i in range(n):
            cid = f"base{tag}n{i}"
            ts = str(time.time_ns() // 1_000_000)
            place = [
                ("symbol", SYMBOL), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
                ("quantity", "0.00100"), ("price", "30000.00"), ("newClientOrderId", cid),
                ("newOrderRespType", "FULL"), ("recvWindow", "5000"), ("timestamp", ts),
            ]
            async with session.post(signed_url(base_url, "/api/v3/order", place), headers=headers) as r:
                body = orjson.loads(await r.read())
            if r.status != 200 or body.get("status") != "NEW":
                raise AssertionError(f"baseline place: {r.status} {body}")
            cancel = [
                ("symbol", SYMBOL), ("origClientOrderId", cid), ("recvWindow", "5000"), ("timestamp", ts),
            ]
            async with session.delete(signed_url(base_url, "/api/v3/order", cancel), headers=headers) as r:
                body = orjson.loads(await r.read())
            if r.status != 200 or body.get("status") != "CANCELED":
                raise AssertionError(f"baseline cancel: {r.status} {body}")
            done += 1
        return done

    async with aiohttp.ClientSession() as session:
        await loop(session, 50, 99)  # warm-up: connections, first-call costs
        gc.collect()
        cpu0, t0 = time.process_time(), time.monotonic()
        done = sum(await asyncio.gather(*(loop(session, n, k) for k, n in enumerate(per_loop))))
        return time.process_time() - cpu0, time.monotonic() - t0, done


# -- report ------------------------------------------------------------------------------------------------


def check_phase(name: str, res: dict[str, Any]) -> list[str]:
    """Print one phase's correctness checks; returns what failed."""
    problems: list[str] = []
    print(f"  {name}: errors (all must be 0):")
    for what, value in (*res["errors"].items(), ("sandbox errors (flow, front-end)", res["sandbox_errors"])):
        print(f"    {what:<34}{value:>6}")
        if value:
            problems.append(f"{name}: {what}: {value}")
    print(f"    maker-only quotes refused because they would take (expected, not an error): "
          f"{res['would_take']}")
    print(f"    orders cancelled while they waited behind the rate limits, never sent (expected, not "
          f"an error): {res['withdrawn']}")
    print(f"    cancels that met a fill, answered 'not found' and settled by a query "
          f"(expected, not an error): {res['cancel_races']}")
    for line in res["failure_reasons"]:
        print(f"      failed: {line}")
    if res["http_errors"] or res["refusals"]:
        print(f"    error answers by kind: {res['http_errors']}; tracker refusals by kind: {res['refusals']}")
    print(f"    warnings logged: {res['warnings']}; fills that briefly overtook their order's status "
          f"(transient, not an error): {res['transient_excess']}")
    for line in res["first_logs"]:
        print(f"      {line}")
    venue_fills, stored = res["venue_fills"], res["stored_fills"]
    fills_ok = venue_fills == stored and len(set(stored)) == len(stored)
    print(f"    fills: journal {len(stored)}, venue trades {len(venue_fills)}, events {res['fills_seen']}: "
          f"{'equal' if fills_ok else 'DIFFERENT'}")
    if not fills_ok:
        problems.append(f"{name}: journal fills differ from the venue's trades")
    print(f"    balances equal the venue's: {res['balances_ok']} ({res['balances_text']})")
    if not res["balances_ok"]:
        problems.append(f"{name}: balances differ")
    print(f"    left open: ours {len(res['left_open'])}, at the venue {res['venue_open']}")
    if res["left_open"] or res["venue_open"]:
        problems.append(f"{name}: orders left open")
    return problems


def rates(res: dict[str, Any]) -> tuple[float, float]:
    created, cancelled = res["created"], res["cancelled"]
    return (
        statistics.median(created) if created else 0.0, statistics.median(cancelled) if cancelled else 0.0,
    )


def slope_text(samples: list[tuple[float, int]], since: float) -> str:
    slope, kept = slope_kb_per_min(samples, since)
    return "n/a" if slope is None else f"{slope:+.1f} KB/min ({kept} samples)"


def print_memory(res: dict[str, Any]) -> None:
    """RSS and SQLite's share of it, with slopes after the warm-up and over the last half: a
    creep that levels off shows a last-half slope near 0."""
    rss = [(t, kb) for t, kb, _, _ in res["rss"]]
    lite = [(t, kb) for t, _, kb, _ in res["rss"]]
    blocks = [(t, n) for t, _, _, n in res["rss"]]
    warmup = min(WARMUP_S, res["duration"] / 3)
    half = res["duration"] / 2
    first, last = rss[0][1] if rss else 0, rss[-1][1] if rss else 0
    after = [kb for t, kb in rss if t >= warmup]
    low, high = min(after, default=0) / 1024, max(after, default=0) / 1024
    print(f"  RSS every {RSS_EVERY_S:.0f} s: {first / 1024:.1f} MB at start, {last / 1024:.1f} MB at end, "
          f"after {warmup:.0f} s warm-up {low:.1f} .. {high:.1f} MB")
    print(f"    slope after the warm-up {slope_text(rss, warmup)}; "
          f"over the last half {slope_text(rss, half)}")
    if lite and lite[0][1] >= 0:
        print(f"  SQLite heap (sqlite3_memory_used, page caches included): "
              f"{lite[0][1] / 1024:.2f} MB at start, "
              f"{lite[-1][1] / 1024:.2f} MB at end; slope after the warm-up {slope_text(lite, warmup)}, "
              f"last half {slope_text(lite, half)}")
    if blocks:
        overall, last_half = (slope_text(blocks, since).replace("KB", "blocks") for since in (warmup, half))
        print(f"  Python allocated blocks (sys.getallocatedblocks): {blocks[0][1]} at start, "
              f"{blocks[-1][1]} at end; slope after the warm-up {overall}, last half {last_half}")
    if res["trimmed_kb"] is not None:
        print(f"  malloc_trim(0) after the soak gave back {res['trimmed_kb'] / 1024:.2f} MB of RSS "
              f"(free memory glibc's arenas held)")


def report(res: dict[str, Any], mem: dict[str, Any] | None, base: tuple[float, float, int],
           args: argparse.Namespace) -> int:
    problems: list[str] = []
    med_created, med_cancelled = rates(res)
    created, cancelled = res["created"], res["cancelled"]
    print(f"\nfast-refresh soak: {res['duration']:.1f} s, {args.levels} levels a side, "
          f"refresh {args.refresh} s, tick {args.tick} s, tolerance 0, "
          f"ORDERS limit {args.order_limit}/s (venue {2 * args.order_limit}/s)")
    print(f"  python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"  orders placed (acknowledged) {res['created_total']:>7}   median {med_created:6.1f}/s per 10 s "
          f"window (min {min(created, default=0):.1f}, max {max(created, default=0):.1f})")
    print(f"  orders cancelled             {res['cancelled_total']:>7}   "
          f"median {med_cancelled:6.1f}/s per 10 s "
          f"window (min {min(cancelled, default=0):.1f}, max {max(cancelled, default=0):.1f})")
    print(f"  ladders placed {res['cycles']}, refreshes kept (no price change) {res['kept']}, "
          f"fills {res['fills_seen']}")
    if min(med_created, med_cancelled) < TARGET_PER_SECOND:
        problems.append(f"median rate below {TARGET_PER_SECOND:.0f}/s")
    problems += check_phase("timed soak", res)

    placed = max(1, res["placed"])
    cpu_per_order = res["cpu"] / placed
    net = (res["cpu"] - res["idle_cpu_per_s"] * res["duration"]) / placed
    base_cpu, base_wall, base_pairs = base
    base_per_pair = base_cpu / max(1, base_pairs)
    share = 100 * res["cpu"] / res["duration"]
    print(f"  client CPU: {res['cpu']:.1f} s in {res['duration']:.0f} s ({share:.0f} % "
          f"of a core) for {res['placed']} orders: {1e3 * cpu_per_order:.2f} ms per order")
    print("    (an order: its placement, its cancel or fills, the market data and the journal meanwhile)")
    print(f"  idle connector (streams only): {1e3 * res['idle_cpu_per_s']:.1f} ms CPU per second; "
          f"net of it: {1e3 * net:.2f} ms per order")
    print(f"  baseline, bare signed aiohttp loop: {base_pairs} place + cancel pairs in {base_wall:.1f} s, "
          f"{1e3 * base_per_pair:.3f} ms CPU per pair")
    print(f"  engine / baseline CPU per order: x{cpu_per_order / base_per_pair:.1f} "
          f"(net of idle streams: x{net / base_per_pair:.1f})")

    print_memory(res)
    print(f"  tracker at the end: {res['tracked_now']} orders held, {res['tracker_evicted']} evicted")
    if mem is not None:
        med_c, med_x = rates(mem)
        print(f"\nmemory phase (tracemalloc on from before the connector was built; a fresh connector, "
              f"journal bot and strategy): {mem['duration']:.0f} s, {mem['created_total']} orders placed "
              f"({med_c:.1f}/s), {mem['cancelled_total']} cancelled ({med_x:.1f}/s)")
        print(f"  tracemalloc: peak {mem['traced_peak'] / 2**20:.2f} MB, "
              f"at the end {mem['traced_end'] / 2**20:.2f} MB")
        print("  heap growth over the last two thirds of the phase, by source line (top):")
        for line in mem["heap_growth"] or ["none"]:
            print("    " + line)
        problems += check_phase("memory phase", mem)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  ru_maxrss of the client process (whole run): {peak_rss_mb:.1f} MB")
    print("\nRESULT: " + ("clean" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


async def main_async(args: argparse.Namespace) -> int:
    server = ServerProcess(args.seed, 2 * args.order_limit)
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
            journal = Journal.open(Path(tmp) / "journal.sqlite")
            try:
                res = await soak(server, args, journal, bot="soak", duration=args.duration, idle=args.idle,
                                 traced=False, earlier_trades=frozenset())
                base = await baseline(server.quiet_url, res["placed"])
                mem = None
                if args.memory_duration > 0:
                    mem = await soak(server, args, journal, bot="soak-memory", duration=args.memory_duration,
                                     idle=0.0, traced=True, earlier_trades=res["trade_ids"])
            finally:
                journal.close()
        print(f"  (sandbox process CPU over the whole run: {await server.command('cpu'):.1f} s)")
        return report(res, mem, base, args)
    finally:
        server.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=180.0, help="soak length in seconds")
    parser.add_argument("--quick", action="store_true", help="30 s soak, 5 s idle phase")
    parser.add_argument("--idle", type=float, default=10.0, help="idle phase before the strategy (s)")
    parser.add_argument("--levels", type=int, default=5, help="order levels a side")
    parser.add_argument("--refresh", type=float, default=0.2, help="order_refresh_time (s)")
    parser.add_argument("--tick", type=float, default=0.1, help="runner tick interval (s)")
    parser.add_argument("--order-limit", type=int, default=50, help="connector's new orders a second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--memory-duration", type=float, default=60.0,
                        help="length of the tracemalloc phase after the timed soak (0: skip it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.idle, args.memory_duration = 30.0, 5.0, 15.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
