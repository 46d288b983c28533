"""Depth pipeline throughput: raw stream bytes -> decode -> codec -> book sync -> best bid/ask.

Run (not part of CI):  python bench/bench_depth_pipeline.py [--messages 200000] [--runs 5] [--seed 7]
                       [--breakdown]

The stream is bench_book.py's seeded synthetic Binance-spot depth stream (a 5000-level-per-side
snapshot, then diffs of 10-20 level changes clustered near the top), each diff wrapped as Binance's
combined stream sends it, ``{"stream":"btcusdt@depth@100ms","data":{...}}``, and fed as raw
bytes. Encoding the frames is not timed; everything after the bytes is.

* marketlink: the engine's own hot path, message by message: the WebSocket client's decoder
  (the codec's ``decode_market`` if it has one, else ``jsoncodec.decode``), the subscription key
  (``codec.market_message_key``, which the client computes per frame for staleness), then
  ``MarketData._on_message`` (``codec.parse_market_message``, ``BookSync.on_diff``, the exact
  integer-keyed ``OrderBook``), then the best bid and ask read as ``Decimal``.
* reference (typed): what the brief names: a msgspec typed decode straight from the bytes with
  float levels, into a dict of float price -> float size per side plus a ``SortedList`` of
  prices, with the ``U == last_u + 1`` check, best bid and ask read from the ``SortedList``.
* reference (typed, float()): a msgspec typed decode into a struct with string levels, each
  level turned to float by ``float()`` in Python, then the same book. The issue's description of
  its reference ("msgspec typed decode with float levels", "about 67k msgs/s on this machine
  class") fits this one: the typed reference above, where msgspec parses the floats itself, runs
  at twice that figure here.
* reference (untyped): the same book after an untyped msgspec decode and ``float()`` of every
  level string, as connectors that decode to dicts first do it.

Reported: messages/s and level updates/s (median of the runs, process CPU time), the ratios, and
a check that the marketlink book ends exactly equal to a string-keyed reference of the stream.
With ``--breakdown``, also marketlink's loop cut after each stage (decode; key and ``WsMessage``;
parse; ``_on_message``; best reads), so the differences say where its time goes, and the *floor*:
the pipeline's C calls alone (msgspec decode, the byte check, one ``dict.update`` per side) with
no Python between them, which bounds from above the ratio any glue around them can reach.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from sortedcontainers import SortedList

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_book import generate

from marketlink.core.events import Event
from marketlink.core.market import DepthSnapshot
from marketlink.core.pairs import SymbolMap
from marketlink.core.rules import TradingRule
from marketlink.core.tracker import OrderTracker
from marketlink.engine.balances import Balances
from marketlink.engine.book_sync import Step
from marketlink.engine.bus import EventBus
from marketlink.engine.context import ConnectorConfig, ConnectorContext, Markets
from marketlink.engine.market_data import MarketData, _Stream
from marketlink.engine.status import StatusBoard
from marketlink.engine.supervisor import Supervisor
from marketlink.net import jsoncodec
from marketlink.net.clock import VirtualClock
from marketlink.net.throttler import Throttler
from marketlink.net.timesync import TimeSync
from marketlink.net.ws import Heartbeat, WsClient, WsMessage
from marketlink.venues.binance import VENUE
from marketlink.venues.binance.schemas import DepthFrame
from marketlink.venues.skeleton import DIGITS

PAIR, SYMBOL, STREAM = "BTC-USDT", "BTCUSDT", "btcusdt@depth@100ms"
MARKETLINK = "marketlink (codec + BookSync + OrderBook)"
TYPED = "reference: msgspec typed float + SortedList"
TYPED_PY = "reference: typed decode + float() + SortedList"
UNTYPED = "reference: untyped decode + float() + SortedList"


# -- marketlink --------------------------------------------------------------------------------


def _context() -> ConnectorContext:
    clock = VirtualClock()
    bus: EventBus[Event] = EventBus(name="bench")
    return ConnectorContext(
        venue=VENUE, endpoints=VENUE.spec.endpoints("local"), config=ConnectorConfig(), clock=clock,
        bus=bus, status=StatusBoard("bench", ("order_books",), bus.publish, clock.time),
        supervisor=Supervisor(clock), throttler=Throttler((), clock=clock), time_sync=TimeSync(),
        http=None,  # type: ignore[arg-type]  # no snapshot is fetched: the bench installs it
        auth=None, markets=Markets(SymbolMap("binance", [(SYMBOL, PAIR)]),
                                   {PAIR: TradingRule(PAIR, Decimal("0.01"), Decimal("0.00001"))}),
        trading_pairs=(PAIR,), tracker=OrderTracker(), balances=Balances(bus.publish), now=clock.time,
    )


def decoder() -> Callable[[bytes], Any]:
    """The decoder the engine hands the WebSocket client."""
    return getattr(VENUE.codec, "decode_market", jsoncodec.decode)  # type: ignore[no-any-return]


def _market_data(snapshot: dict[str, Any]) -> tuple[MarketData, _Stream]:
    """The engine's market data for one pair, its book synced from ``snapshot``."""
    ctx = _context()
    md = MarketData(ctx)
    md._create_books()
    ws = WsClient("ws://127.0.0.1:9/stream", heartbeat=Heartbeat.server_pings(60.0))  # never started
    stream = _Stream(0, ws, (PAIR,), connected=True, live=True)
    sync = md.sync(PAIR)
    snap = DepthSnapshot(PAIR, snapshot["lastUpdateId"], snapshot["bids"], snapshot["asks"])
    if sync.on_snapshot(snap, sync.generation) is not Step.SYNCED:
        raise SystemExit("snapshot not installed")
    return md, stream


def run_marketlink(snapshot: dict[str, Any], frames: list[bytes], check: bool = False) -> float:
    md, stream = _market_data(snapshot)
    sync = md.sync(PAIR)
    book = sync.book
    decode, key_of, on_message = decoder(), VENUE.codec.market_message_key, md._on_message
    bid, ask = book.best_bid, book.best_ask
    t0 = time.process_time()
    for raw in frames:
        data = decode(raw)
        on_message(stream, WsMessage(data, key_of(data), 0.0))
        bid()
        ask()
    elapsed = time.process_time() - t0
    if md.stats.diffs_applied != len(frames) or not book.in_sync:
        raise SystemExit(f"marketlink applied {md.stats.diffs_applied}/{len(frames)}: {sync.reason}")
    if check:
        _check_exact(book.to_dict(), snapshot, frames)
    return elapsed


def _check_exact(
    got: dict[str, dict[Decimal, Decimal]], snapshot: dict[str, Any], frames: list[bytes]
) -> None:
    """The book must equal a string-keyed replay of the stream, or the speed means nothing."""
    ref: dict[str, dict[str, str]] = {"b": dict(snapshot["bids"]), "a": dict(snapshot["asks"])}
    for raw in frames:
        data = msgspec.json.decode(raw)["data"]
        for key in ("b", "a"):
            for p, q in data[key]:
                if Decimal(q):
                    ref[key][p] = q
                else:
                    ref[key].pop(p, None)
    for key, side in (("b", "bids"), ("a", "asks")):
        if {Decimal(p): Decimal(q) for p, q in ref[key].items()} != got[side]:
            raise SystemExit(f"marketlink book differs from the exact replay on {side}")


STAGES = (
    "decode (decode_market)",
    "+ subscription key and WsMessage",
    "+ parse_market_message (DepthUpdate)",
    "+ MarketData._on_message (BookSync, OrderBook)",
    "+ best bid and ask as Decimal",
)


def run_stage(snapshot: dict[str, Any], frames: list[bytes], stage: int) -> float:
    """marketlink's loop cut after ``STAGES[stage]``: the differences between stages say where
    the time goes. Stage 4 is ``run_marketlink``'s loop."""
    md, stream = _market_data(snapshot)
    book = md.sync(PAIR).book
    decode, key_of, parse, on_message = (
        decoder(), VENUE.codec.market_message_key, VENUE.codec.parse_market_message, md._on_message
    )
    symbols = md._symbols
    bid, ask = book.best_bid, book.best_ask
    t0 = time.process_time()
    if stage == 0:
        for raw in frames:
            decode(raw)
    elif stage == 1:
        for raw in frames:
            data = decode(raw)
            WsMessage(data, key_of(data), 0.0)
    elif stage == 2:
        for raw in frames:
            data = decode(raw)
            parse(WsMessage(data, key_of(data), 0.0).data, symbols)
    elif stage == 3:
        for raw in frames:
            data = decode(raw)
            on_message(stream, WsMessage(data, key_of(data), 0.0))
    else:
        for raw in frames:
            data = decode(raw)
            on_message(stream, WsMessage(data, key_of(data), 0.0))
            bid()
            ask()
    elapsed = time.process_time() - t0
    if stage >= 3 and md.stats.diffs_applied != len(frames):
        raise SystemExit(f"stage {stage} applied {md.stats.diffs_applied}/{len(frames)}")
    return elapsed


def breakdown(snapshot: dict[str, Any], frames: list[bytes], runs: int) -> None:
    """Print each stage's cost per message (median of ``runs``, stages interleaved)."""
    seconds: list[list[float]] = [[] for _ in STAGES]
    typed: list[float] = []
    floor: list[float] = []
    for _ in range(runs):
        for stage in range(len(STAGES)):
            gc.collect()
            seconds[stage].append(run_stage(snapshot, frames, stage))
        gc.collect()
        typed.append(run_typed(snapshot, frames))
        gc.collect()
        floor.append(run_floor(snapshot, frames))
    n = len(frames)
    print(f"where marketlink's time goes, per message (median of {runs} runs, process CPU time):")
    previous = 0.0
    for name, runs_s in zip(STAGES, seconds, strict=True):
        us = statistics.median(runs_s) / n * 1e6
        print(f"  {name:50s} {us:6.2f} us  (+{us - previous:5.2f})")
        previous = us
    ref_us = statistics.median(typed) / n * 1e6
    floor_us = statistics.median(floor) / n * 1e6
    print(f"  {'reference (typed), all of it':50s} {ref_us:6.2f} us")
    print(f"  {'floor: our C calls alone (decode, translate, update)':50s} {floor_us:6.2f} us"
          f"  -> at most x{ref_us / floor_us:.2f} with no Python between them;"
          f" x1.5 leaves {ref_us / 1.5 - floor_us:.2f} us for it")


def run_floor(snapshot: dict[str, Any], frames: list[bytes]) -> float:
    """The C work no exact pipeline of this design avoids, and nothing else: msgspec's typed
    decode into level strings, the one byte translation that checks them, one ``dict.update``
    per side. No sequence check, no top of book, no reads: the time any Python glue adds is on
    top of this, so ``reference / floor`` bounds the ratio from above."""
    decode = msgspec.json.Decoder(DepthFrame).decode
    bids, asks = dict(snapshot["bids"]), dict(snapshot["asks"])
    t0 = time.process_time()
    for raw in frames:
        d = decode(raw).data
        raw.translate(None, DIGITS)
        bids.update(d.b)
        asks.update(d.a)
    return time.process_time() - t0


# -- references --------------------------------------------------------------------------------


class FloatDiff(msgspec.Struct):
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]


class FloatFrame(msgspec.Struct):
    stream: str
    data: FloatDiff


def _float_book(snapshot: dict[str, Any]) -> tuple[dict[float, float], dict[float, float], Any, Any]:
    bids = {float(p): float(q) for p, q in snapshot["bids"]}
    asks = {float(p): float(q) for p, q in snapshot["asks"]}
    return bids, asks, SortedList(bids), SortedList(asks)


def _apply(levels: Any, book: dict[float, float], keys: Any) -> None:
    for price, size in levels:
        if size == 0.0:
            if price in book:
                del book[price]
                keys.remove(price)
        else:
            if price not in book:
                keys.add(price)
            book[price] = size


def run_typed(snapshot: dict[str, Any], frames: list[bytes]) -> float:
    bids, asks, bid_keys, ask_keys = _float_book(snapshot)
    decode = msgspec.json.Decoder(FloatFrame, strict=False).decode  # strict=False: "1.5" -> 1.5
    last_u = snapshot["lastUpdateId"]
    t0 = time.process_time()
    for raw in frames:
        m = decode(raw).data
        if m.u <= last_u:
            continue
        if last_u + 1 != m.U:
            raise SystemExit("reference: gap")
        _apply(m.b, bids, bid_keys)
        _apply(m.a, asks, ask_keys)
        last_u = m.u
        _ = bid_keys[-1] if bid_keys else None
        _ = ask_keys[0] if ask_keys else None
    return time.process_time() - t0


class StrDiff(msgspec.Struct):
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]


class StrFrame(msgspec.Struct):
    stream: str
    data: StrDiff


def run_typed_py(snapshot: dict[str, Any], frames: list[bytes]) -> float:
    bids, asks, bid_keys, ask_keys = _float_book(snapshot)
    decode = msgspec.json.Decoder(StrFrame).decode
    last_u = snapshot["lastUpdateId"]
    t0 = time.process_time()
    for raw in frames:
        m = decode(raw).data
        if m.u <= last_u:
            continue
        if last_u + 1 != m.U:
            raise SystemExit("reference: gap")
        _apply([(float(p), float(q)) for p, q in m.b], bids, bid_keys)
        _apply([(float(p), float(q)) for p, q in m.a], asks, ask_keys)
        last_u = m.u
        _ = bid_keys[-1] if bid_keys else None
        _ = ask_keys[0] if ask_keys else None
    return time.process_time() - t0


def run_untyped(snapshot: dict[str, Any], frames: list[bytes]) -> float:
    bids, asks, bid_keys, ask_keys = _float_book(snapshot)
    decode = msgspec.json.decode
    last_u = snapshot["lastUpdateId"]
    t0 = time.process_time()
    for raw in frames:
        m = decode(raw)["data"]
        if m["u"] <= last_u:
            continue
        if m["U"] != last_u + 1:
            raise SystemExit("reference: gap")
        _apply([(float(p), float(q)) for p, q in m["b"]], bids, bid_keys)
        _apply([(float(p), float(q)) for p, q in m["a"]], asks, ask_keys)
        last_u = m["u"]
        _ = bid_keys[-1] if bid_keys else None
        _ = ask_keys[0] if ask_keys else None
    return time.process_time() - t0


# -- main --------------------------------------------------------------------------------------


def frames_of(diffs_json: bytes) -> list[bytes]:
    prefix = b'{"stream":"' + STREAM.encode() + b'","data":'
    return [prefix + msgspec.json.encode(d) + b"}" for d in msgspec.json.decode(diffs_json)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--breakdown", action="store_true",
                    help="also time marketlink's loop stage by stage (where the time goes)")
    args = ap.parse_args(argv)
    random.seed(args.seed)

    print(f"generating {args.messages} diffs (seed {args.seed}) ...", flush=True)
    snap_json, diffs_json, changes = generate(args.messages, args.seed)
    snapshot = msgspec.json.decode(snap_json)
    frames = frames_of(diffs_json)
    run_marketlink(snapshot, frames, check=True)
    name = getattr(decoder(), "__qualname__", "?")
    print(f"{changes} level changes, {changes / args.messages:.1f} per message; decoder: {name}; "
          "marketlink book equals the exact replay", flush=True)

    impls: dict[str, Callable[[], float]] = {
        MARKETLINK: lambda: run_marketlink(snapshot, frames),
        TYPED: lambda: run_typed(snapshot, frames),
        TYPED_PY: lambda: run_typed_py(snapshot, frames),
        UNTYPED: lambda: run_untyped(snapshot, frames),
    }
    seconds: dict[str, list[float]] = {n: [] for n in impls}
    for _ in range(args.runs):  # round-robin, so a noisy neighbour slows every contender alike
        for n, fn in impls.items():
            gc.collect()
            seconds[n].append(fn())
    msgs = {n: args.messages / statistics.median(s) for n, s in seconds.items()}
    print(f"python {sys.version.split()[0]}, {args.runs} runs each (median, process CPU time):")
    for n, rate in msgs.items():
        print(f"  {n:50s} {rate:>10,.0f} msgs/s {rate * changes / args.messages:>12,.0f} levels/s   "
              f"x{rate / msgs[TYPED]:.2f} / x{rate / msgs[TYPED_PY]:.2f} / x{rate / msgs[UNTYPED]:.2f}")
    print("  (ratios: vs typed, vs typed + float(), vs untyped)")
    if args.breakdown:
        breakdown(snapshot, frames, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
