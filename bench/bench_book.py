"""Order book throughput: marketlink's exact integer book against the usual pure-Python book.

Run (not part of CI):  python bench/bench_book.py [--messages 200000] [--runs 5] [--seed 7]

A seeded synthetic Binance-spot-like depth stream (a 5000-level-per-side snapshot, then diffs of
10-20 level changes, about 10 % deletions and 10 % new levels, clustered near the top, strings
formatted as Binance sends them) is decoded from JSON before each timed run, so every run sees
fresh string objects, as a live feed would. Each diff is applied and the best bid and ask are
read after it. The baseline is a dict of float price -> float size plus a ``SortedList`` of
prices per side, best read from the ``SortedList``, with the same ``U == last_u + 1`` check.
Reported: level updates per second, median of the runs, and the ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from sortedcontainers import SortedList

from marketlink.core.book import DiffResult, OrderBook

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a test dependency
    _loads = json.loads

LEVELS = 5000
BASELINE = "baseline dict+SortedList"
TOP_BID = 3_000_000  # in ticks of 0.01: 30000.00


def _price(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}000000"  # Binance: "30000.01000000"


def _size(units: int) -> str:
    return f"{units // 100_000}.{units % 100_000:05d}000"  # step 0.00001, 8 decimals written


def generate(messages: int, seed: int, top_mean: float = 16.0) -> tuple[bytes, bytes, int]:
    """(snapshot JSON, diff stream JSON, level changes). The generator keeps its own book so the
    stream stays valid: deletions hit existing levels, new levels never cross the spread."""
    rng = random.Random(seed)
    bids = SortedList(TOP_BID - 2 * i - rng.randint(0, 1) for i in range(LEVELS))
    asks = SortedList(TOP_BID + 1 + 2 * i + rng.randint(0, 1) for i in range(LEVELS))

    def new_size() -> int:
        return rng.randint(1, 5_000_000)

    snapshot = {
        "lastUpdateId": 1000,
        "bids": [[_price(p), _size(new_size())] for p in reversed(bids)],
        "asks": [[_price(p), _size(new_size())] for p in asks],
    }
    diffs: list[dict[str, Any]] = []
    changes = 0
    u = 1000
    expo = rng.expovariate
    for _ in range(messages):
        b: list[list[str]] = []
        a: list[list[str]] = []
        touched: set[tuple[bool, int]] = set()
        wanted = rng.randint(10, 20)
        for _ in range(10 * wanted):  # bounded; a repeat of a price in one message is redrawn
            if len(touched) == wanted:
                break
            is_bid = rng.random() < 0.5
            side = bids if is_bid else asks
            depth = min(int(expo(1 / top_mean)), len(side) - 1)
            best_idx = -1 - depth if is_bid else depth
            r = rng.random()
            # ~10 % deletions; new levels ~10 %, nudged so each side stays near LEVELS deep
            p_new = 0.20 + min(0.05, max(-0.05, (LEVELS - len(side)) / 2000))
            if r < 0.10:
                price, size = side[best_idx], 0
            elif r < p_new:
                spread = asks[0] - bids[-1]
                step = int(expo(0.15)) - (1 if spread > 1 else 0)
                price, away = (bids[-1] - step, -1) if is_bid else (asks[0] + step, 1)
                while price in side or (is_bid, price) in touched:  # first free tick, away from the top
                    price += away
                size = new_size()
            else:
                price, size = side[best_idx], new_size()
            if (is_bid, price) in touched:  # one entry per price per message, as Binance sends
                continue
            touched.add((is_bid, price))
            if size == 0:
                side.remove(price)
            elif price not in side:
                side.add(price)
            (b if is_bid else a).append([_price(price), _size(size)])
        changes += len(b) + len(a)
        diffs.append({"e": "depthUpdate", "E": 0, "s": "BTCUSDT", "U": u + 1, "u": u + len(b) + len(a),
                      "b": b, "a": a})
        u += len(b) + len(a)
    return json.dumps(snapshot).encode(), json.dumps(diffs).encode(), changes


def run_marketlink(snapshot: dict[str, Any], diffs: list[dict[str, Any]], decimal_reads: bool) -> float:
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot(snapshot["bids"], snapshot["asks"], snapshot["lastUpdateId"])
    apply = book.apply_diff
    bid, ask = (book.best_bid, book.best_ask) if decimal_reads else (book.best_bid_units, book.best_ask_units)
    applied = DiffResult.APPLIED
    t0 = time.process_time()
    for m in diffs:
        if apply(m["b"], m["a"], m["U"], m["u"]) is not applied:
            raise RuntimeError(f"diff {m['U']} not applied: {book.out_of_sync_reason}")
        bid()
        ask()
    return time.process_time() - t0


def run_baseline(snapshot: dict[str, Any], diffs: list[dict[str, Any]]) -> float:
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for src, dst in ((snapshot["bids"], bids), (snapshot["asks"], asks)):
        for p, q in src:
            dst[float(p)] = float(q)
    bid_keys, ask_keys = SortedList(bids), SortedList(asks)
    last_u = snapshot["lastUpdateId"]
    t0 = time.process_time()
    for m in diffs:
        if m["u"] <= last_u:
            continue
        if m["U"] != last_u + 1:
            raise RuntimeError("gap")
        for levels, book, keys in ((m["b"], bids, bid_keys), (m["a"], asks, ask_keys)):
            for p, q in levels:
                price, size = float(p), float(q)
                if size == 0.0:
                    if price in book:
                        del book[price]
                        keys.remove(price)
                else:
                    if price not in book:
                        keys.add(price)
                    book[price] = size
        last_u = m["u"]
        _ = bid_keys[-1] if bid_keys else None
        _ = ask_keys[0] if ask_keys else None
    return time.process_time() - t0


def check_same_result(snapshot: dict[str, Any], diffs: list[dict[str, Any]]) -> None:
    """Both books must end identical, or the comparison means nothing."""
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot(snapshot["bids"], snapshot["asks"], snapshot["lastUpdateId"])
    ref: dict[str, dict[str, str]] = {"b": {}, "a": {}}
    for src, key in ((snapshot["bids"], "b"), (snapshot["asks"], "a")):
        ref[key].update((p, q) for p, q in src)
    for m in diffs:
        book.apply_diff(m["b"], m["a"], m["U"], m["u"])
        for key in ("b", "a"):
            for p, q in m[key]:
                if float(q) == 0:
                    ref[key].pop(p, None)
                else:
                    ref[key][p] = q
    got = book.to_dict()
    from decimal import Decimal

    for key, side in (("b", "bids"), ("a", "asks")):
        want = {Decimal(p): Decimal(q) for p, q in ref[key].items()}
        if want != got[side]:
            raise SystemExit(f"marketlink book differs from the reference on {side}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--top-mean", type=float, default=16.0,
                    help="mean distance from the top, in levels, of a changed level (default 16)")
    args = ap.parse_args(argv)

    print(f"generating {args.messages} diffs (seed {args.seed}) ...", flush=True)
    snap_json, diffs_json, changes = generate(args.messages, args.seed, args.top_mean)
    snapshot = _loads(snap_json)
    check_same_result(snapshot, _loads(diffs_json))
    print(f"{changes} level changes, {changes / args.messages:.1f} per diff; books agree", flush=True)

    impls: dict[str, Callable[[list[dict[str, Any]]], float]] = {
        "marketlink, int best reads": lambda d: run_marketlink(snapshot, d, decimal_reads=False),
        "marketlink, Decimal reads": lambda d: run_marketlink(snapshot, d, decimal_reads=True),
        BASELINE: lambda d: run_baseline(snapshot, d),
    }
    rates: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(args.runs):  # round-robin, so a noisy neighbour slows every contender alike
        for name, fn in impls.items():
            diffs = _loads(diffs_json)  # fresh strings each run, as a live feed gives
            gc.collect()
            rates[name].append(changes / fn(diffs))
    base = statistics.median(rates[BASELINE])
    print(f"python {sys.version.split()[0]}, {args.runs} runs each, median level updates/s:")
    for name, runs in rates.items():
        med = statistics.median(runs)
        print(f"  {name:28s} {med:>12,.0f}   x{med / base:.2f} vs baseline   "
              f"(runs: {', '.join(f'{r / 1e6:.2f}M' for r in runs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
