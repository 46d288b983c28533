"""The interim main job: a simulated market mirrored through marketlink's own order book.

Until the Binance connector and the sandbox's wire front-end are wired together, this runs what
already exists end to end, in-process: the sandbox's exchange engine with its seeded market flow,
and a client-side ``OrderBook`` kept in sync from the engine's depth diffs under the Binance spot
sequence rule. Every second it compares the mirrored book with the exchange's ground truth; any
disagreement is a bug, reported and counted (exit status 1).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from decimal import Decimal

from rich.console import Console
from rich.live import Live
from rich.table import Table

from marketlink.core.book import DiffResult, OrderBook
from marketlink.core.enums import Side
from marketlink.core.rules import TradingRule
from marketlink.sandbox.exchange import Exchange, FlowConfig, MarketFlow, MarketSpec

SYMBOL = "BTCUSDT"
PAIR = "BTC-USDT"


@dataclass
class DemoStats:
    steps: int = 0
    diffs: int = 0
    level_updates: int = 0
    trades: int = 0
    checks: int = 0
    mismatches: int = 0
    resyncs: int = 0


def _levels(levels: tuple[tuple[Decimal, Decimal], ...]) -> list[tuple[str, str]]:
    # The venue sends strings; feed the book exactly what a wire codec would hand it.
    return [(str(p), str(q)) for p, q in levels]


def _build(seed: int) -> tuple[Exchange, MarketFlow, OrderBook, TradingRule]:
    spec = MarketSpec(
        symbol=SYMBOL, base="BTC", quote="USDT", tick_size=Decimal("0.01"),
        step_size=Decimal("0.00001"), min_qty=Decimal("0.00001"), max_qty=Decimal("9000"),
        min_notional=Decimal("5"),
    )
    exchange = Exchange([spec])
    flow = MarketFlow(exchange, FlowConfig.for_prices({SYMBOL: "30000"}, seed=seed))
    rule = TradingRule(PAIR, tick_size=spec.tick_size, step_size=spec.step_size,
                       min_order_size=spec.min_qty, min_notional=spec.min_notional)
    book = OrderBook.for_rule(rule, "binance_spot")
    return exchange, flow, book, rule


def _snapshot(exchange: Exchange, book: OrderBook, stats: DemoStats) -> None:
    snap = exchange.depth(SYMBOL, None)
    book.apply_snapshot(_levels(snap.bids), _levels(snap.asks), snap.last_update_id)
    stats.resyncs += 1


def _agrees(exchange: Exchange, book: OrderBook) -> bool:
    truth = exchange.depth(SYMBOL, None)
    mine = book.to_dict()
    return (
        {p: q for p, q in truth.bids} == mine["bids"] and {p: q for p, q in truth.asks} == mine["asks"]
    )


def step(exchange: Exchange, flow: MarketFlow, book: OrderBook, stats: DemoStats, now_ms: int) -> None:
    """One 100 ms tick: the market moves, the mirrored book follows, and trades are counted."""
    flow.step(now_ms)
    stats.steps += 1
    diff = exchange.drain_depth_changes(SYMBOL)
    if diff is not None:
        stats.diffs += 1
        stats.level_updates += len(diff.bids) + len(diff.asks)
        result = book.apply_diff(
            _levels(diff.bids), _levels(diff.asks), diff.first_update_id, diff.last_update_id
        )
        if result in (DiffResult.GAP, DiffResult.CROSSED, DiffResult.NOT_SYNCED):
            _snapshot(exchange, book, stats)
    stats.trades = len(exchange.recent_trades(SYMBOL, 1000))


def _table(book: OrderBook, stats: DemoStats, elapsed: float) -> Table:
    table = Table(title=f"marketlink · sandbox {PAIR} mirrored through OrderBook ({elapsed:.0f}s)")
    table.add_column("bid size", justify="right")
    table.add_column("bid", justify="right", style="green")
    table.add_column("ask", justify="right", style="red")
    table.add_column("ask size", justify="right")
    for (bp, bq), (ap, aq) in zip(book.rows(Side.BUY, 5), book.rows(Side.SELL, 5), strict=False):
        table.add_row(str(bq), str(bp), str(ap), str(aq))
    table.caption = (
        f"update id {book.update_id} · in sync {book.in_sync} · diffs {stats.diffs} · "
        f"level updates {stats.level_updates} · checks {stats.checks} · mismatches {stats.mismatches}"
    )
    return table


def run_demo(duration: float, seed: int, *, realtime: bool = True, console: Console | None = None) -> int:
    """Run for ``duration`` seconds of market time; returns the process exit status."""
    console = console or Console()
    exchange, flow, book, _ = _build(seed)
    stats = DemoStats()
    start_ms = 1_700_000_000_000
    _snapshot(exchange, book, stats)
    steps = max(1, int(duration * 10))
    live = console.is_terminal and realtime
    wall0 = time.monotonic()
    view = Live(_table(book, stats, 0), console=console, refresh_per_second=10) if live else None
    if view is not None:
        view.start()
    else:
        console.print("interim main job: sandbox market flow mirrored through marketlink's OrderBook")
    try:
        for i in range(1, steps + 1):
            now_ms = start_ms + i * 100
            step(exchange, flow, book, stats, now_ms)
            if i % 10 == 0:
                stats.checks += 1
                if not _agrees(exchange, book):
                    stats.mismatches += 1
                if view is not None:
                    view.update(_table(book, stats, i / 10))
                else:
                    console.print(
                        f"t={i / 10:5.1f}s bid={book.best_bid()} ask={book.best_ask()} "
                        f"update_id={book.update_id} in_sync={book.in_sync} diffs={stats.diffs} "
                        f"trades={stats.trades} mismatches={stats.mismatches}"
                    )
            if realtime:
                delay = wall0 + i / 10 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.stop()
    verdict = "agrees with" if stats.mismatches == 0 else "DISAGREES with"
    console.print(
        f"done: {stats.steps} steps, {stats.diffs} diffs, {stats.level_updates} level updates, "
        f"{stats.checks} checks; the mirrored book {verdict} the exchange "
        f"({stats.mismatches} mismatches, {stats.resyncs} snapshots)"
    )
    return 0 if stats.mismatches == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(10.0, 7))
