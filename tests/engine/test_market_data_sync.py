"""BookSync: the pure per-pair sync machine, fed diffs and snapshots, asserting steps and books.

In h11's manner one recorded Binance-spot stream is fed whole (buffered, then bridged by a
snapshot), one diff at a time, duplicated, with a gap, and against a snapshot older than the
buffer; each way must end in the book (or the refusal) the venue's recipe demands. A property
test then cuts a random stream at random places and checks the synced book equals the truth.
"""

from __future__ import annotations

import random
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.book import OrderBook
from marketlink.core.market import DepthSnapshot, DepthUpdate
from marketlink.engine.book_sync import BookSync, Phase, Step

PAIR = "BTC-USDT"

# Snapshot at 100; diffs 101..112 (U == previous u + 1), prices on a 0.01 tick.
SNAP_BIDS = [["100.00", "1"], ["99.00", "2"]]
SNAP_ASKS = [["101.00", "1"], ["102.00", "2"]]


def diff(first: int, final: int, bids: Any = (), asks: Any = (), pu: int | None = None) -> DepthUpdate:
    return DepthUpdate(PAIR, first, final, [list(b) for b in bids], [list(a) for a in asks], prev_final_id=pu)


def snapshot(update_id: int, bids: Any = None, asks: Any = None) -> DepthSnapshot:
    return DepthSnapshot(
        PAIR, update_id, SNAP_BIDS if bids is None else bids, SNAP_ASKS if asks is None else asks
    )


STREAM = [
    diff(95, 100, [("98.00", "9")]),  # entirely inside the snapshot: stale
    diff(101, 103, [("100.00", "0.5")], [("101.00", "0")]),
    diff(104, 104, [("100.50", "1.25")], [("100.75", "0.4")]),
    diff(105, 107, [("99.00", "0")], [("103.00", "7")]),
]
FINAL = {
    "bids": {D("100.5"): D("1.25"), D("100"): D("0.5")},
    "asks": {D("100.75"): D("0.4"), D("102"): D("2"), D("103"): D("7")},
}


def new_sync(rule: str = "binance_spot", **kw: Any) -> BookSync:
    return BookSync(OrderBook(2, rule, PAIR), **kw)


def synced(rule: str = "binance_spot") -> BookSync:
    sync = new_sync(rule)
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.SYNCED
    return sync


# -- the same stream, several ways -----------------------------------------------------------


def test_buffered_whole_then_bridged_by_the_snapshot() -> None:
    sync = new_sync()
    assert not sync.in_sync and sync.phase is Phase.WAITING
    assert [sync.on_diff(d) for d in STREAM] == [Step.BUFFERED] * 4
    assert sync.buffered == 4 and not sync.book.in_sync
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.SYNCED
    assert sync.in_sync and sync.book.in_sync and sync.reason == "" and sync.buffered == 0
    assert sync.book.to_dict() == FINAL and sync.book.update_id == 107
    assert sync.take_recovery() is None  # the first sync is not a recovery


def test_one_diff_at_a_time_after_the_snapshot() -> None:
    sync = synced()
    assert [sync.on_diff(d) for d in STREAM] == [Step.STALE, Step.APPLIED, Step.APPLIED, Step.APPLIED]
    assert sync.book.to_dict() == FINAL


def test_snapshot_in_the_middle_of_the_buffer_drops_what_it_contains() -> None:
    sync = new_sync()
    for d in STREAM:
        sync.on_diff(d)
    # The venue's book as of 104: the first three diffs are in it already.
    book_104 = snapshot(104, [["100.50", "1.25"], ["100.00", "0.5"], ["99.00", "2"]],
                        [["100.75", "0.4"], ["102.00", "2"]])
    assert sync.on_snapshot(book_104, sync.generation) is Step.SYNCED
    assert sync.book.to_dict() == FINAL and sync.book.update_id == 107


def test_duplicates_are_dropped_in_the_buffer_and_live() -> None:
    sync = new_sync()
    steps = [sync.on_diff(d) for d in (STREAM[1], STREAM[1], STREAM[2], STREAM[2], STREAM[3])]
    assert steps == [Step.BUFFERED, Step.STALE, Step.BUFFERED, Step.STALE, Step.BUFFERED]
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.SYNCED
    assert [sync.on_diff(d) for d in STREAM] == [Step.STALE] * 4
    assert sync.book.to_dict() == FINAL


def test_gap_when_live_loses_sync_and_buffers_the_diff_after_the_hole() -> None:
    sync = synced()
    assert sync.on_diff(STREAM[1]) is Step.APPLIED
    assert sync.on_diff(STREAM[3]) is Step.LOST  # 104 is missing
    assert not sync.in_sync and not sync.book.in_sync and sync.losses == 1
    assert sync.reason.startswith("gap: diff U=105 does not continue last u=103")
    assert sync.buffered == 1 and sync.first_buffered() is STREAM[3]
    assert sync.on_diff(diff(108, 108, [("99.50", "3")])) is Step.BUFFERED
    # A new snapshot at 104 bridges the buffered 105..108.
    book_104 = snapshot(104, [["100.50", "1.25"], ["100.00", "0.5"], ["99.00", "2"]],
                        [["100.75", "0.4"], ["102.00", "2"]])
    assert sync.on_snapshot(book_104, sync.generation) is Step.SYNCED
    assert sync.book.update_id == 108 and sync.book.to_dict()["bids"][D("99.5")] == D("3")
    assert sync.take_recovery() is not None
    assert sync.take_recovery() is None  # once per recovery


def test_snapshot_older_than_the_buffer_is_refused_then_a_newer_one_syncs() -> None:
    sync = new_sync()
    for d in STREAM[2:]:  # buffer starts at U=104
        sync.on_diff(d)
    generation = sync.generation
    assert sync.on_snapshot(snapshot(100), generation) is Step.RETRY
    assert "snapshot 100 does not reach the buffered diffs (first U=104" in sync.reason
    assert not sync.in_sync and not sync.book.in_sync and sync.buffered == 2  # the buffer is kept
    # A snapshot at 103 (U == id + 1) bridges it.
    assert sync.on_snapshot(snapshot(103, [["100.00", "0.5"], ["99.00", "2"]], [["102.00", "2"]]),
                            generation) is Step.SYNCED
    assert sync.book.to_dict() == FINAL


def test_snapshot_requested_before_a_resync_is_outdated() -> None:
    sync = new_sync()
    generation = sync.generation
    assert sync.lose("stream reconnected") is False  # was not in sync: no new recovery
    assert sync.on_snapshot(snapshot(100), generation) is Step.OUTDATED
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.SYNCED
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.OUTDATED  # already live


def test_crossed_diff_loses_sync() -> None:
    sync = synced()
    assert sync.on_diff(diff(101, 101, [("101.50", "1")])) is Step.LOST
    assert "crossed after diff u=101" in sync.reason and not sync.book.in_sync
    assert sync.buffered == 0


def test_crossed_snapshot_and_crossed_replay_are_retried() -> None:
    sync = new_sync()
    assert sync.on_snapshot(snapshot(100, [["101.00", "1"]], [["100.00", "1"]]), 0) is Step.RETRY
    assert "crossed snapshot 100" in sync.reason
    sync.on_diff(diff(101, 101, [("101.50", "1")]))
    assert sync.on_snapshot(snapshot(100), 0) is Step.RETRY
    assert "crossed after diff u=101" in sync.reason and sync.buffered == 1


def test_resynced_once_per_recovery_even_with_several_losses() -> None:
    sync = synced()
    assert sync.lose("stale: no depth update for 30.0s") is True
    assert sync.lose("stream disconnected") is False  # the same recovery
    assert sync.losses == 1
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.SYNCED
    assert sync.take_recovery() == "stale: no depth update for 30.0s"
    assert sync.take_recovery() is None


# -- bad data --------------------------------------------------------------------------------


def test_malformed_live_diff_loses_sync() -> None:
    sync = synced()
    assert sync.on_diff(diff(101, 101, [("100.001", "1")])) is Step.MALFORMED  # finer than the tick
    assert "bad diff u=101" in sync.reason and not sync.book.in_sync and sync.losses == 1
    assert sync.on_diff(diff(102, 102, [("abc", "1")])) is Step.BUFFERED  # buffered, checked later


def test_malformed_buffered_diff_is_cut_out_with_everything_before_it() -> None:
    sync = new_sync()
    sync.on_diff(STREAM[1])
    sync.on_diff(diff(104, 104, [("bad", "1")]))
    sync.on_diff(diff(105, 105, [("99.50", "1")]))
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.MALFORMED
    assert "bad buffered diff u=104" in sync.reason and sync.buffered == 1
    assert sync.on_snapshot(snapshot(104), sync.generation) is Step.SYNCED
    assert sync.book.update_id == 105


def test_malformed_snapshot() -> None:
    sync = new_sync()
    assert sync.on_snapshot(snapshot(100, [["-1", "1"]]), 0) is Step.MALFORMED
    assert sync.reason.startswith("bad snapshot 100") and not sync.in_sync


def test_missing_sequence_field_is_bad_data() -> None:
    sync = new_sync("binance_usdm")
    assert sync.on_diff(diff(10, 20, pu=9)) is Step.BUFFERED
    assert sync.on_diff(diff(21, 25)) is Step.MALFORMED  # USD-M needs pu
    assert sync.buffered == 0 and "pu" in sync.reason
    live = synced("binance_usdm")
    assert live.on_diff(diff(99, 101, pu=98)) is Step.APPLIED
    assert live.on_diff(diff(102, 103)) is Step.MALFORMED


def test_hole_in_the_buffer_keeps_only_what_follows_it() -> None:
    sync = new_sync()
    sync.on_diff(STREAM[1])
    assert sync.on_diff(STREAM[3]) is Step.BUFFERED  # 104 missing: 101..103 can never be bridged
    assert sync.buffered == 1 and sync.first_buffered() is STREAM[3]


def test_buffer_is_bounded_dropping_the_oldest() -> None:
    sync = new_sync(max_buffer=3)
    for i in range(101, 111):
        sync.on_diff(diff(i, i, [("99.00", str(i))]))
    assert sync.buffered == 3 and sync.first_buffered() is not None
    assert sync.first_buffered().first_id == 108  # type: ignore[union-attr]
    assert sync.on_snapshot(snapshot(100), sync.generation) is Step.RETRY  # now too old
    assert sync.on_snapshot(snapshot(107), sync.generation) is Step.SYNCED
    assert sync.book.update_id == 110
    with pytest.raises(ValueError):
        new_sync(max_buffer=0)


# -- pushed snapshots (Bybit) ------------------------------------------------------------------


def pushed(u: int, bids: Any, asks: Any) -> DepthUpdate:
    return DepthUpdate(PAIR, u, u, bids, asks, is_snapshot=True)


def test_pushed_snapshot_replaces_the_book_directly() -> None:
    sync = new_sync("bybit")
    sync.on_diff(diff(5, 5, [("1.00", "1")]))
    assert sync.on_diff(pushed(7, [["100.00", "1"]], [["101.00", "1"]])) is Step.SYNCED
    assert sync.in_sync and sync.buffered == 0 and sync.book.update_id == 7
    assert sync.on_diff(diff(8, 8, [("100.00", "0")])) is Step.APPLIED
    sync.lose("stream reconnected")
    assert sync.on_diff(pushed(9, [["99.00", "1"]], [["101.00", "1"]])) is Step.SYNCED
    assert sync.take_recovery() == "stream reconnected"
    assert sync.book.to_dict() == {"bids": {D("99"): D("1")}, "asks": {D("101"): D("1")}}


def test_bad_or_crossed_pushed_snapshot() -> None:
    sync = new_sync("bybit")
    assert sync.on_diff(pushed(3, [["x", "1"]], [])) is Step.MALFORMED
    assert sync.on_diff(pushed(4, [["102.00", "1"]], [["101.00", "1"]])) is Step.LOST
    assert "crossed snapshot 4" in sync.reason and not sync.in_sync


def test_repr_and_pre_synced_book() -> None:
    book = OrderBook(2, "binance_spot", PAIR)
    book.apply_snapshot([["1.00", "1"]], [], 1)
    sync = BookSync(book)
    assert not book.in_sync  # a sync machine never trusts a book it did not fill
    assert "waiting" in repr(sync)
    sync.on_snapshot(snapshot(100), sync.generation)
    assert "live" in repr(sync) and sync.pair == PAIR


# -- property: random cuts of a random stream always sync to the truth ---------------------------


def random_stream(rng: random.Random, n: int) -> tuple[list[DepthUpdate], list[dict[str, dict[int, int]]]]:
    """Diffs of 1-3 level changes (ids 101..) and the true book after each one (index 0: at 100)."""
    bids = {9_000 + i: 1 + i for i in range(5)}
    asks = {10_000 + i: 1 + i for i in range(5)}
    truth = [{"b": dict(bids), "a": dict(asks)}]
    diffs: list[DepthUpdate] = []
    u = 100
    for _ in range(n):
        b, a = [], []
        for _ in range(rng.randint(1, 3)):
            side, levels, lo = (b, bids, 8_990) if rng.random() < 0.5 else (a, asks, 10_000)
            price = lo + rng.randint(0, 9)
            size = 0 if rng.random() < 0.3 else rng.randint(1, 50)
            if size:
                levels[price] = size
            else:
                levels.pop(price, None)
            side.append((f"{price / 100:.2f}", str(size)))
        width = rng.randint(1, 3)  # an update may span several ids
        diffs.append(diff(u + 1, u + width, b, a))
        u += width
        truth.append({"b": dict(bids), "a": dict(asks)})
    return diffs, truth


def as_snapshot(update_id: int, state: dict[str, dict[int, int]]) -> DepthSnapshot:
    return DepthSnapshot(
        PAIR, update_id,
        [[f"{p / 100:.2f}", str(s)] for p, s in state["b"].items()],
        [[f"{p / 100:.2f}", str(s)] for p, s in state["a"].items()],
    )


def expected(state: dict[str, dict[int, int]]) -> dict[str, dict[D, D]]:
    return {"bids": {D(p) / 100: D(s) for p, s in state["b"].items()},
            "asks": {D(p) / 100: D(s) for p, s in state["a"].items()}}


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 30), data=st.data())
def test_any_cut_of_the_stream_syncs_to_the_true_book(seed: int, n: int, data: st.DataObject) -> None:
    """Subscribed from diff ``first``; diffs up to ``k`` buffered before the snapshot (taken after
    diff ``snap_at``) answers; the rest arrive live, every one possibly twice."""
    rng = random.Random(seed)
    diffs, truth = random_stream(rng, n)
    first = data.draw(st.integers(0, n - 1), label="first diff received")
    k = data.draw(st.integers(first, n), label="diffs received before the snapshot")
    snap_at = data.draw(st.integers(0, n), label="snapshot taken after diff #")
    dup = data.draw(st.booleans(), label="duplicate every diff")
    sync = new_sync()
    for d in diffs[first:k]:
        assert sync.on_diff(d) is Step.BUFFERED
        if dup:
            assert sync.on_diff(d) is Step.STALE
    snap_id = 100 if snap_at == 0 else diffs[snap_at - 1].final_id
    step = sync.on_snapshot(as_snapshot(snap_id, truth[snap_at]), sync.generation)
    if snap_at < first:  # older than anything the stream will ever bring: never in sync
        if k > first:
            assert step is Step.RETRY
        else:
            assert step is Step.SYNCED and sync.on_diff(diffs[first]) is Step.LOST
        assert not sync.book.in_sync
        return
    assert step is Step.SYNCED
    for i, d in enumerate(diffs[k:], start=k):
        assert sync.on_diff(d) is (Step.STALE if i < snap_at else Step.APPLIED)
        if dup:
            assert sync.on_diff(d) is Step.STALE
    assert sync.book.in_sync and sync.book.to_dict() == expected(truth[-1])
    assert sync.book.update_id == diffs[-1].final_id


def test_a_side_emptied_to_the_snapshot_depth_loses_sync_live_and_in_the_buffer() -> None:
    # Snapshots are asked for 2 levels: a side that comes back with 2 was cut there.
    sync = new_sync(snapshot_depth=2)
    bids = [["100", "1"], ["99", "1"]]
    sync.on_diff(diff(11, 12, bids=[["100", "0"], ["99", "0"]]))  # buffered: empties the bids
    assert sync.on_snapshot(snapshot(10, bids=bids), sync.generation) is Step.RETRY
    assert "snapshot depth" in sync.reason and not sync.book.in_sync
    sync = new_sync(snapshot_depth=2)
    assert sync.on_snapshot(snapshot(10, bids=bids), sync.generation) is Step.SYNCED
    assert sync.on_diff(diff(11, 11, bids=[["100", "0"]])) is Step.APPLIED
    assert sync.on_diff(diff(12, 12, bids=[["99", "0"]])) is Step.LOST
    assert "snapshot depth" in sync.reason
