"""OrderBook: venue strings in, exact levels and answers out.

In h11's manner the same recorded stream is fed whole, one diff at a time, duplicated, and with
a gap, and each way must end in the state (or the refusal) the venue's rule demands.
"""

from __future__ import annotations

from decimal import Context
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core import book as book_module
from marketlink.core.book import (
    BookDataError,
    DiffResult,
    OrderBook,
    PrecisionError,
    from_units,
    scale_of,
    size_is_zero,
    stored_size,
    to_units,
)
from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError, MarketlinkError
from marketlink.core.rules import TradingRule
from marketlink.core.sequence import SEQUENCE_RULES, Check, Verdict

BUY, SELL = Side.BUY, Side.SELL
R = DiffResult

# A Binance spot stream, strings as Binance writes them (8 decimals on a 0.01 tick).
SNAPSHOT: dict[str, Any] = {
    "lastUpdateId": 100,
    "bids": [["100.00000000", "1.00000000"], ["99.50000000", "2.00000000"], ["99.00000000", "3.00000000"]],
    "asks": [["101.00000000", "1.50000000"], ["101.50000000", "2.50000000"], ["102.00000000", "4.00000000"]],
}
DIFFS: list[dict[str, Any]] = [
    {"U": 95, "u": 100, "b": [["98.00000000", "9.00000000"]], "a": []},  # inside the snapshot: stale
    {"U": 99, "u": 103, "b": [["100.00000000", "0.50000000"]], "a": [["101.00000000", "0.00000000"]]},
    {"U": 104, "u": 104, "b": [["100.50000000", "1.25000000"]], "a": [["100.75000000", "0.40000000"]]},
    {"U": 105, "u": 107, "b": [["99.00000000", "0"], ["42.00000000", "0"]], "a": [["103.00000000", "7"]]},
]
FINAL = {
    "bids": {D("100.5"): D("1.25"), D("100"): D("0.5"), D("99.5"): D("2")},
    "asks": {D("100.75"): D("0.4"), D("101.5"): D("2.5"), D("102"): D("4"), D("103"): D("7")},
}


def spot_book() -> OrderBook:
    book = OrderBook(2, "binance_spot", "BTC-USDT")
    assert book.apply_snapshot(SNAPSHOT["bids"], SNAPSHOT["asks"], SNAPSHOT["lastUpdateId"]) is R.APPLIED
    return book


def feed(book: OrderBook, diffs: list[dict[str, Any]]) -> list[DiffResult]:
    return [book.apply_diff(d["b"], d["a"], d["U"], d["u"]) for d in diffs]


# -- the same stream, four ways -------------------------------------------------------------------


def test_one_diff_at_a_time() -> None:
    book = spot_book()
    assert feed(book, DIFFS[:1]) == [R.STALE]
    assert book.to_dict()["bids"][D("99")] == D("3") and book.update_id == 100
    assert feed(book, DIFFS[1:2]) == [R.APPLIED]
    assert (book.best_bid(), book.best_ask(), book.update_id) == (D("100"), D("101.5"), 103)
    assert feed(book, DIFFS[2:3]) == [R.APPLIED]
    assert (book.best_bid(), book.best_ask()) == (D("100.5"), D("100.75"))
    assert feed(book, DIFFS[3:]) == [R.APPLIED]
    assert book.to_dict() == FINAL
    assert book.in_sync and book.out_of_sync_reason == "" and book.update_id == 107


def test_whole_stream_as_one_merged_diff() -> None:
    """A diff spanning U..u is the union of the ones it covers, later values winning."""
    merged: dict[str, dict[str, str]] = {"b": {}, "a": {}}
    for d in DIFFS[1:]:
        for side in ("b", "a"):
            merged[side].update((p, q) for p, q in d[side])
    book = spot_book()
    result = book.apply_diff(
        [list(x) for x in merged["b"].items()], [list(x) for x in merged["a"].items()], 99, 107
    )
    assert result is R.APPLIED
    assert book.to_dict() == FINAL


def test_every_diff_duplicated_is_harmless() -> None:
    book = spot_book()
    results = feed(book, [d for d in DIFFS for _ in range(2)])
    assert results == [R.STALE, R.STALE, R.APPLIED, R.STALE, R.APPLIED, R.STALE, R.APPLIED, R.STALE]
    assert book.to_dict() == FINAL and book.in_sync


def test_a_missing_diff_stops_the_book_until_a_snapshot() -> None:
    book = spot_book()
    assert feed(book, [DIFFS[1], DIFFS[3]]) == [R.APPLIED, R.GAP]
    assert not book.in_sync
    assert "U=105" in book.out_of_sync_reason and "104" in book.out_of_sync_reason
    before = book.to_dict()
    assert feed(book, DIFFS) == [R.NOT_SYNCED] * 4  # refused, even the one that would fit
    assert book.to_dict() == before and book.update_id == 103
    # A fresh snapshot heals it; the stream then continues from the snapshot.
    assert book.apply_snapshot([["100.00", "1"]], [["101.00", "1"]], 104) is R.APPLIED
    assert book.in_sync and book.out_of_sync_reason == ""
    assert feed(book, DIFFS[3:]) == [R.APPLIED]
    assert book.to_dict() == {"bids": {D("100"): D("1")}, "asks": {D("101"): D("1"), D("103"): D("7")}}


def test_first_diff_must_reach_the_snapshot() -> None:
    book = spot_book()
    assert book.apply_diff([], [], 102, 105) is R.GAP
    assert "snapshot id 100" in book.out_of_sync_reason


def test_diffs_before_any_snapshot_are_refused() -> None:
    book = OrderBook(2, "binance_spot")
    assert not book.in_sync and book.out_of_sync_reason == "no snapshot yet"
    assert feed(book, DIFFS) == [R.NOT_SYNCED] * 4
    assert book.best_bid() is None and book.best_ask() is None and book.mid() is None


# -- snapshots ------------------------------------------------------------------------------------


def test_snapshot_replaces_never_merges() -> None:
    book = spot_book()
    assert book.apply_snapshot([["98.00", "1"]], [["103.00", "2"], ["104.00", "0"]], 200) is R.APPLIED
    assert book.to_dict() == {"bids": {D("98"): D("1")}, "asks": {D("103"): D("2")}}  # zero skipped
    assert book.update_id == 200


def test_snapshot_with_a_price_twice_keeps_the_last_word() -> None:
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot([["1.00", "1"], ["1.0", "2"], ["2.00", "3"], ["2", "0"]], [], 1)
    assert book.to_dict()["bids"] == {D("1"): D("2")}


def test_crossed_snapshot_is_installed_but_not_trusted() -> None:
    book = OrderBook(2, "binance_spot")
    assert book.apply_snapshot([["101.00", "1"]], [["100.00", "1"]], 5) is R.CROSSED
    assert not book.in_sync
    assert "crossed snapshot 5" in book.out_of_sync_reason and "101.00 >= best ask 100.00" in (
        book.out_of_sync_reason
    )
    assert book.best_bid() == D("101")  # still there, for diagnosis


def test_locked_book_counts_as_crossed() -> None:
    book = spot_book()
    assert book.apply_diff([["101.00", "1"]], [], 101, 101) is R.CROSSED
    assert not book.in_sync and "crossed after diff u=101" in book.out_of_sync_reason
    assert book.apply_diff([], [], 102, 102) is R.NOT_SYNCED


# -- levels and spellings ---------------------------------------------------------------------------


def test_spellings_of_one_price_are_one_level() -> None:
    book = spot_book()
    book.apply_diff([["100.1", "1"], ["100.10000000", "2"], ["100.10", "3"]], [], 101, 101)
    assert book.rows(BUY, 1) == [(D("100.10"), D("3"))]
    assert book.apply_diff([["100.100", "0"]], [], 102, 102) is R.APPLIED
    assert book.best_bid() == D("100")


def test_deleting_an_absent_level_is_normal() -> None:
    book = spot_book()
    assert book.apply_diff([["50.00", "0"]], [["500.00", "0.00000000"]], 101, 101) is R.APPLIED
    assert book.level_count(BUY) == 3 and book.level_count(SELL) == 3 and book.in_sync


def test_sizes_are_kept_exactly_as_sent() -> None:
    book = spot_book()
    book.apply_diff([["100.00", "0.123456789012345678901234567890"]], [], 101, 101)
    assert book.rows(BUY, 1)[0][1] == D("0.123456789012345678901234567890")


def test_inserts_and_deletes_keep_the_order() -> None:
    book = OrderBook(0, "binance_spot")
    book.apply_snapshot([], [], 0)
    bids = [["5", "1"], ["1", "1"], ["9", "1"], ["3", "1"], ["7", "1"]]
    asks = [["15", "1"], ["11", "1"], ["19", "1"], ["13", "1"]]
    book.apply_diff(bids, asks, 1, 1)
    book.apply_diff([["9", "0"], ["4", "2"]], [["11", "0"], ["12", "2"]], 2, 2)
    assert [p for p, _ in book.rows(BUY)] == [7, 5, 4, 3, 1]
    assert [p for p, _ in book.rows(SELL)] == [12, 13, 15, 19]
    assert book.rows_units(SELL, 2) == [(12, D("2")), (13, D("1"))]
    assert book.rows_units(BUY, 2) == [(7, D("1")), (5, D("1"))]


def test_deleted_levels_wait_as_tombstones_and_are_compacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module, "_COMPACT_SLACK", 4)
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot([], [["1000.00", "1"]], 0)
    for i in range(1, 40):  # a level appears, and the one before it goes
        bids = [[f"{i}.00", str(i)]] + ([[f"{i - 2}.00", "0"]] if i > 2 else [])
        assert book.apply_diff(bids, [], i, i) is R.APPLIED
        assert len(book._bid.keys) <= 2 * 2 + 4 + 1  # compacted whenever it outgrew 2 x live + slack
    assert book.level_count(BUY) == 2
    assert book.rows(BUY) == [(D("39"), D("39")), (D("38"), D("38"))]
    # A tombstone that comes back to life is a level again, in its place.
    book.apply_diff([["30.00", "0"], ["20.00", "5"]], [], 40, 40)
    assert book.apply_diff([["37.00", "7"]], [], 41, 41) is R.APPLIED
    assert [p for p, _ in book.rows(BUY)] == [D("39"), D("38"), D("37"), D("20")]
    assert book.level_count(BUY) == 4


def test_deleting_the_top_walks_down_past_tombstones() -> None:
    book = spot_book()  # bids 100, 99.5, 99
    book.apply_diff([["99.50000000", "0"]], [], 101, 101)  # deep: a tombstone below the top
    assert book.best_bid() == D("100") and book.level_count(BUY) == 2
    book.apply_diff([["100.00000000", "0"]], [], 102, 102)
    assert book.best_bid() == D("99") and book.best_bid_units() == 9900
    assert book._bid.keys == [9900]  # the tombstones above the new top are gone
    assert book.rows(BUY) == [(D("99"), D("3"))]


@pytest.mark.parametrize("checked", [False, True])
def test_two_spellings_of_one_price_in_one_diff_apply_in_their_order(checked: bool) -> None:
    book = spot_book()
    book.apply_diff([["100.0", "5.00"], ["100.00000000", "7.00"]], [], 101, 101, checked=checked)
    assert book.rows(BUY, 1) == [(D("100"), D("7"))]
    book.apply_diff([["100.00000000", "8.00"], ["100.0", "6.00"]], [], 102, 102, checked=checked)
    assert book.rows(BUY, 1) == [(D("100"), D("6"))]
    book.apply_diff([["100.00", "0.00"]], [], 103, 103, checked=checked)  # deleted by a third spelling
    assert book.best_bid() == D("99.5") and book.level_count(BUY) == 2
    assert set(book._bid.sizes) == {"99.50000000", "99.00000000"}


def test_a_diff_that_fails_half_way_leaves_no_stray_entries() -> None:
    book = spot_book()
    with pytest.raises(PrecisionError):
        book.apply_diff([["100.50", "1.00"], ["100.00000000", "0.00"], ["100.555", "1.00"]], [], 101, 101)
    assert not book.in_sync
    # The book is out of sync, waiting for a snapshot. Known prices keep what the diff gave them
    # (100 deleted); unknown strings are all parsed before any registers, so 100.50 never does;
    # no stray entry is left, and the top is live.
    assert set(book._bid.sizes) <= set(book._bid.known)
    assert book.best_bid() == D("99.5") and book.rows(BUY)[0] == (D("99.5"), D("2"))
    # A level list that breaks dict.update itself half way is cleaned up the same way.
    assert book.apply_snapshot([["1.00", "1"]], [["2.00", "1"]], 300) is R.APPLIED
    with pytest.raises(BookDataError, match="malformed level list"):
        book.apply_diff([["1.50", "1"], [["unhashable"], "1"]], [], 301, 301, checked=True)
    assert book.level_count(BUY) == 1 and set(book._bid.sizes) == {"1.00"}


def test_a_snapshot_keeps_no_tombstones() -> None:
    book = spot_book()
    book.apply_diff([["99.50000000", "0"]], [], 101, 101)
    book.apply_snapshot([["98.00", "2"], ["100.00000000", "1"]], [["101.00", "1"]], 200)
    assert book._bid.sizes == {"98.00": "2", "100.00000000": "1"}
    assert book._bid.known == {"98.00": 9800, "100.00000000": 10000}
    assert book.apply_diff([["98.00", "0"]], [], 201, 201) is R.APPLIED and book.level_count(BUY) == 1


# -- bad data -------------------------------------------------------------------------------------


BAD_LEVELS = [
    ["1.001", "1"],  # finer than the tick
    ["-1.00", "1"],
    ["1e2", "1"],
    [" 1.00", "1"],
    ["1_0.00", "1"],
    ["0.00", "1"],  # zero price
    ["1.00", "-1"],
    ["1.00", "NaN"],
    ["1.00", "Infinity"],
    ["1.00", "1e31"],
    ["1.00", "abc"],
    ["1.00", 1.5],  # a float would be stored as its binary expansion
    ["1.00", None],
    [1.0, "1"],
    ["1.00"],
    ["1.00", "1", "extra"],
    "1.00",
    None,
]


@pytest.mark.parametrize("level", BAD_LEVELS)
def test_bad_level_in_a_diff_raises_and_unsyncs(level: object) -> None:
    book = spot_book()
    with pytest.raises(BookDataError) as info:
        book.apply_diff([level], [], 101, 101)  # type: ignore[list-item]
    assert isinstance(info.value, MarketlinkError) and isinstance(info.value, ValueError)
    assert not book.in_sync and "bad level in diff u=101" in book.out_of_sync_reason
    assert book.apply_diff([], [], 102, 102) is R.NOT_SYNCED


def test_precision_error_is_typed() -> None:
    book = spot_book()
    with pytest.raises(PrecisionError, match="3 decimals; this market allows 2"):
        book.apply_diff([], [["101.005", "1"]], 101, 101)


@pytest.mark.parametrize("level", BAD_LEVELS)
def test_bad_level_in_a_snapshot_raises(level: object) -> None:
    book = spot_book()
    with pytest.raises(BookDataError):
        book.apply_snapshot([["1.00", "1"]], [level], 300)  # type: ignore[list-item]
    assert not book.in_sync and book.level_count(BUY) == 0


def test_bad_snapshot_leaves_an_empty_unsynced_book() -> None:
    book = spot_book()
    with pytest.raises(PrecisionError):
        book.apply_snapshot([["1.00", "1"]], [["2.001", "1"]], 300)
    assert book.level_count(BUY) == 0 and book.level_count(SELL) == 0
    assert not book.in_sync and "bad level in snapshot 300" in book.out_of_sync_reason
    with pytest.raises(BookDataError):
        book.apply_snapshot(None, [], 301)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", ["-1", "NaN", "Infinity", "abc", "", ".", "0.0.0", "-0", " 0", "٠"])
def test_a_bad_size_for_a_known_price_is_refused_on_arrival(size: str) -> None:
    # Nothing that could read as zero, or that does not start like a positive number, is stored.
    book = spot_book()
    with pytest.raises(BookDataError, match="not a valid size"):
        book.apply_diff([["100.00000000", size]], [], 101, 101)
    assert not book.in_sync


@pytest.mark.parametrize("size", ["1e31", "1.2.3", "9abc", "1_0", "5 ", "1" * 31, "\u0661"])
def test_a_malformed_size_for_a_known_level_is_refused_on_arrival(size: str) -> None:
    # Even the fast path (a price already in the book) checks the size in full: bad venue data
    # is refused where it enters and the book goes out of sync for a resync.
    book = spot_book()
    with pytest.raises(BookDataError, match="not a valid size"):
        book.apply_diff([["99.50000000", size]], [], 101, 101)
    assert not book.in_sync and "bad level in diff" in book.out_of_sync_reason


def test_a_bad_size_already_stored_is_still_refused_when_read() -> None:
    # Reads check again: a size that got into the book by any other route never becomes an answer.
    book = spot_book()
    book._bid.sizes["99.50000000"] = "9abc"  # only reachable by tampering
    assert book.rows(BUY, 1) == [(D("100"), D("1"))]  # levels above it still read fine
    with pytest.raises(BookDataError, match="not a valid size"):
        book.rows(BUY, 2)
    assert not book.in_sync and "bad size in the book" in book.out_of_sync_reason


def test_sizes_read_back_exactly_whatever_their_spelling() -> None:
    book = spot_book()
    updates = [["100.00000000", "0.00012000"], ["99.50000000", "7."], ["99.00000000", ".25"]]
    assert book.apply_diff(updates, [["101.50", "0000003"]], 101, 101) is R.APPLIED
    assert book.rows(BUY) == [(D("100"), D("0.00012")), (D("99.5"), D("7")), (D("99"), D("0.25"))]
    assert book.rows(SELL, 2) == [(D("101"), D("1.5")), (D("101.5"), D("3"))]
    assert stored_size("12.3400") == D("12.34")
    with pytest.raises(BookDataError, match="zero size stored"):
        stored_size("0.000")  # zeros delete, so a stored zero would be a bug


def test_size_is_zero() -> None:
    assert size_is_zero("0") and size_is_zero("0.00000000") and size_is_zero("00.") and size_is_zero(".0")
    assert not size_is_zero("0.00000001") and not size_is_zero("10") and not size_is_zero(".5")
    assert size_is_zero("0." + "0" * 40) and not size_is_zero("0." + "0" * 40 + "1")  # long: via Decimal
    assert not size_is_zero("9" * 30)
    for bad in ("1" + "0" * 30, "-0", "+1", "1e5", "1.2.3", "", ".", " 1", "١", 1.5, None, b"1"):
        with pytest.raises(BookDataError):
            size_is_zero(bad)  # type: ignore[arg-type]


def test_the_best_price_follows_the_top() -> None:
    book = spot_book()
    assert (book.best_bid(), book.best_ask()) == (D("100"), D("101"))
    book.apply_diff([["100.25", "1"]], [["100.75", "1"]], 101, 101)  # new tops
    assert (book.best_bid(), book.best_ask()) == (D("100.25"), D("100.75"))
    book.apply_diff([["100.25", "0"]], [["100.75", "0"]], 102, 102)  # and back
    assert (book.best_bid(), book.best_ask()) == (D("100"), D("101"))
    book.apply_diff([["100.00", "0"], ["99.50", "0"], ["99.00", "0"]], [], 103, 103)
    assert book.best_bid() is None and book.best_bid_units() is None and book.mid() is None


# -- other venues' rules through the book ---------------------------------------------------------


def test_binance_usdm_stream() -> None:
    book = OrderBook(1, "binance_usdm")
    book.apply_snapshot([["100.0", "1"]], [["101.0", "1"]], 1000)
    assert book.apply_diff([["99.0", "1"]], [], 980, 999, 970) is R.STALE
    assert book.apply_diff([["99.5", "1"]], [], 990, 1000, 985) is R.APPLIED  # u == id counts
    assert book.apply_diff([["99.5", "2"]], [], 1001, 1010, 1000) is R.APPLIED
    assert book.apply_diff([["99.5", "2"]], [], 1001, 1010, 1000) is R.STALE  # replay
    assert book.apply_diff([], [["100.5", "3"]], 1020, 1030, 1010) is R.APPLIED
    assert book.to_dict() == {
        "bids": {D("100"): D("1"), D("99.5"): D("2")},
        "asks": {D("100.5"): D("3"), D("101"): D("1")},
    }
    assert book.apply_diff([], [], 1040, 1050, 1035) is R.GAP
    assert "pu=1035" in book.out_of_sync_reason


def test_bybit_stream_with_a_restart() -> None:
    book = OrderBook(2, "bybit")
    assert book.apply_diff([["1.00", "1"]], [], 7, 7) is R.NOT_SYNCED
    book.apply_snapshot([["16493.50", "0.006"]], [["16611.00", "0.029"]], 18521288)
    assert book.apply_diff([["16493.50", "0"]], [["16600.00", "1"]], 18521290, 18521290) is R.APPLIED
    assert book.apply_diff([["16000.00", "1"]], [], 18521290, 18521290) is R.STALE
    # u == 1: the service restarted and this "delta" is the whole book.
    assert book.apply_diff([["20.00", "1"]], [["21.00", "2"]], 1, 1) is R.RESET
    assert book.to_dict() == {"bids": {D("20"): D("1")}, "asks": {D("21"): D("2")}}
    assert book.update_id == 1 and book.in_sync
    assert book.apply_diff([["20.00", "5"]], [], 2, 2) is R.APPLIED


def test_bybit_restart_heals_an_unsynced_book() -> None:
    book = OrderBook(2, "bybit")
    assert book.apply_diff([["1.00", "1"]], [["2.00", "1"]], 1, 1) is R.RESET
    assert book.in_sync and book.best_bid() == D("1")
    book.mark_out_of_sync("stream silent for 30 s")
    assert book.out_of_sync_reason == "stream silent for 30 s"
    assert book.apply_diff([], [], 5, 5) is R.NOT_SYNCED
    assert book.apply_diff([["1.50", "1"]], [["2.00", "1"]], 1, 1) is R.RESET and book.in_sync


def test_bybit_full_gap_and_restart() -> None:
    book = OrderBook(4, "bybit_full")
    book.apply_snapshot([["0.4758", "2342.47"]], [["0.4760", "10"]], 278546)
    assert book.apply_diff([["0.4757", "1735.35"]], [], 278547, 278547) is R.APPLIED
    assert book.apply_diff([], [], 278549, 278549) is R.GAP
    book.apply_snapshot([["0.4758", "1"]], [["0.4760", "1"]], 300000)
    assert book.apply_diff([], [], 1, 1) is R.GAP and "u=1" in book.out_of_sync_reason


def test_a_rule_may_answer_with_its_own_check_objects() -> None:
    class Custom:
        name = "custom"

        def check(self, book_id: int, fresh: bool, first: int, final: int, pu: int | None) -> Check:
            if final % 2:
                return Check(Verdict.APPLY)
            return Check(Verdict.GAP, "")

    book = OrderBook(0, Custom())
    book.apply_snapshot([["1", "1"]], [["3", "1"]], 0)
    assert book.apply_diff([["2", "1"]], [], 1, 1) is R.APPLIED and book.best_bid() == D("2")
    assert book.apply_diff([], [], 2, 2) is R.GAP and book.out_of_sync_reason == "sequence gap"


def test_construction() -> None:
    rule = TradingRule("ETH-USDT", tick_size=D("0.01"), step_size=D("0.00010000"))
    book = OrderBook.for_rule(rule, "binance_spot")
    assert book.price_scale == 2 and book.trading_pair == "ETH-USDT"
    assert book.sequence is SEQUENCE_RULES["binance_spot"]
    with pytest.raises(ConfigError):
        OrderBook(2, "nope")
    for bad in (-1, 64, 2.0):
        with pytest.raises(ValueError, match="price_scale"):
            OrderBook(bad, "bybit")  # type: ignore[arg-type]
    assert "out of sync: no snapshot yet" in repr(OrderBook(2, "bybit"))
    assert "in sync" in repr(spot_book()) and "best=100.00/101.00" in repr(spot_book())


# -- numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scale", "units"),
    [
        ("123.45", 2, 12345),
        ("0.00240000", 4, 24),
        ("5", 2, 500),
        ("5.", 2, 500),
        (".5", 1, 5),
        ("0", 3, 0),
        ("16493.50", 1, 164935),
        ("100", 0, 100),
        ("1.10", 1, 11),
    ],
)
def test_to_units(text: str, scale: int, units: int) -> None:
    assert to_units(text, scale) == units
    assert from_units(units, scale) == D(text)


@pytest.mark.parametrize("text", ["", ".", "-1", "+1", "1e5", "1.2.3", " 1", "1 ", "1_0", "١", "²", "abc"])
def test_to_units_refuses_anything_but_plain_decimals(text: str) -> None:
    with pytest.raises(BookDataError) as info:
        to_units(text, 2)
    assert not isinstance(info.value, PrecisionError)


def test_to_units_refuses_non_strings_and_absurd_lengths() -> None:
    for bad in (None, 1.5, b"1.5", "9" * 5000):
        with pytest.raises(BookDataError):
            to_units(bad, 2)  # type: ignore[arg-type]


def test_from_units_is_exact_at_any_size() -> None:
    big = 10**60 + 1
    assert str(from_units(big, 8)) == "1" + "0" * 52 + ".00000001"  # 61 digits, none rounded
    assert str(from_units(12345, 2)) == "123.45"


@pytest.mark.parametrize(
    ("step", "scale"),
    [("0.01", 2), ("0.00001000", 5), ("1", 0), ("10", 0), ("0.5", 1), ("1E-8", 8), ("0.10", 1)],
)
def test_scale_of(step: str, scale: int) -> None:
    assert scale_of(D(step)) == scale


@pytest.mark.parametrize("step", [D(0), D(-1), D("NaN"), D("Infinity"), 0.01])
def test_scale_of_refuses_non_steps(step: object) -> None:
    with pytest.raises(ValueError):
        scale_of(step)  # type: ignore[arg-type]


# -- queries ----------------------------------------------------------------------------------------


def depth_book() -> OrderBook:
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot(
        [["100.00", "1"], ["99.00", "2"], ["98.00", "3"]],
        [["101.00", "1"], ["102.00", "2"], ["103.00", "3"]],
        1,
    )
    return book


def test_top_of_book() -> None:
    book = depth_book()
    assert (book.best_bid(), book.best_ask(), book.mid()) == (D("100"), D("101"), D("100.5"))
    assert (book.best_bid_units(), book.best_ask_units()) == (10000, 10100)
    assert str(book.best_bid()) == "100.00"
    book.apply_diff([["100.01", "1"]], [], 2, 2)
    assert book.mid() == D("100.505")  # exact, one digit finer than the tick


def test_rows_and_exports() -> None:
    book = depth_book()
    assert book.rows(BUY, 2) == [(D("100"), D("1")), (D("99"), D("2"))]
    assert book.rows(SELL, 10) == [(D("101"), D("1")), (D("102"), D("2")), (D("103"), D("3"))]
    assert book.rows(SELL, 0) == [] and book.rows(BUY, -1) == []
    levels = book.levels()
    assert levels.bids == book.rows(BUY) and levels.asks == book.rows(SELL)
    assert book.to_dict()["asks"] == {D("101"): D("1"), D("102"): D("2"), D("103"): D("3")}


def test_one_side_empty() -> None:
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot([["100.00", "1"]], [], 1)
    assert book.best_ask() is None and book.best_ask_units() is None and book.mid() is None
    assert book.price_for_volume(True, D("1")) is None
    assert book.price_for_quote_volume(True, D("1")) is None
    assert book.vwap_for_volume(True, D("1")) == (None, D(0))
    assert book.volume_for_price(True, D("1000")) == 0
    assert book.vwap_for_volume(False, D("0.5")) == (D("100"), D("0.5"))


@pytest.mark.parametrize(
    ("is_buy", "volume", "price"),
    [
        (True, "0.5", "101"),
        (True, "1", "101"),  # exactly the first level
        (True, "1.00000001", "102"),
        (True, "6", "103"),  # the whole side
        (True, "6.1", None),  # more than the side holds: no honest price
        (False, "3", "99"),
        (False, "3.5", "98"),
    ],
)
def test_price_for_volume(is_buy: bool, volume: str, price: str | None) -> None:
    expected = None if price is None else D(price)
    assert depth_book().price_for_volume(is_buy, D(volume)) == expected


def test_deepest_price_is_the_far_end_of_each_side() -> None:
    book = depth_book()
    # A taker sweeping a side reaches its last known level: the dearest ask, the cheapest bid.
    assert book.deepest_price(True) == D("103")
    assert book.deepest_price(False) == D("98")
    assert OrderBook(2, "binance_spot").deepest_price(True) is None


def test_vwap_for_volume() -> None:
    book = depth_book()
    q34 = Context(prec=34).divide  # a VWAP is a quotient, rounded half-even to 34 digits
    assert book.vwap_for_volume(True, D("1")) == (D("101"), D("1"))
    assert book.vwap_for_volume(True, D("3")) == (q34(D(305), 3), D("3"))  # (101 + 2*102) / 3
    assert str(book.vwap_for_volume(True, D("3"))[0]) == "101.6666666666666666666666666666667"
    assert book.vwap_for_volume(True, D("2")) == (D("101.5"), D("2"))  # half the second level
    vwap, filled = book.vwap_for_volume(True, D("1.5"))
    assert filled == D("1.5") and vwap == q34(D("152"), D("1.5"))  # (101 + 0.5*102) / 1.5
    assert book.vwap_for_volume(True, D("100")) == (q34(D(614), 6), D("6"))  # partial fill
    assert book.vwap_for_volume(False, D("5")) == (D("98.8"), D("5"))  # (100 + 2*99 + 2*98) / 5


def test_volume_for_price() -> None:
    book = depth_book()
    assert book.volume_for_price(True, D("100.99")) == 0
    assert book.volume_for_price(True, D("101")) == D("1")
    assert book.volume_for_price(True, D("102.5")) == D("3")
    assert book.volume_for_price(True, D("1000")) == D("6")
    assert book.volume_for_price(False, D("99")) == D("3")
    assert book.volume_for_price(False, D("99.000001")) == D("1")
    assert book.quote_volume_for_price(True, D("102")) == D("305")
    assert book.quote_volume_for_price(False, D("98")) == D("100") + D("198") + D("294")


def test_price_for_quote_volume() -> None:
    book = depth_book()
    assert book.price_for_quote_volume(True, D("101")) == D("101")
    assert book.price_for_quote_volume(True, D("101.01")) == D("102")
    assert book.price_for_quote_volume(False, D("592")) == D("98")
    assert book.price_for_quote_volume(False, D("592.01")) is None


@pytest.mark.parametrize("bad", [D(0), D(-1), D("NaN"), D("Infinity"), 1])
def test_queries_refuse_nonsense_amounts(bad: object) -> None:
    book = depth_book()
    for call in (
        book.price_for_volume,
        book.vwap_for_volume,
        book.price_for_quote_volume,
        book.volume_for_price,
        book.quote_volume_for_price,
    ):
        with pytest.raises(ValueError, match="positive finite Decimal"):
            call(True, bad)  # type: ignore[arg-type]


# -- trades -----------------------------------------------------------------------------------------


def test_last_trade_is_the_latest_by_time() -> None:
    book = OrderBook(2, "bybit")
    assert book.last_trade is None
    t1 = book.record_trade(D("100.5"), D("0.1"), BUY, "a1", 1000.0)
    assert book.last_trade is t1 and t1.side is BUY and t1.price == D("100.5")
    late = book.record_trade(D("99"), D("1"), SELL, "a0", 999.0)
    assert late.trade_id == "a0" and book.last_trade is t1  # a late message never rolls back
    t2 = book.record_trade(D("101"), D("2"), SELL, 7, 1000.0)
    assert book.last_trade is t2


@pytest.mark.parametrize(
    ("price", "size"), [(D(0), D(1)), (D(1), D(-1)), (D("NaN"), D(1)), (1.5, D(1)), (D(1), "1")]
)
def test_bad_trade_is_refused(price: object, size: object) -> None:
    book = OrderBook(2, "bybit")
    with pytest.raises(BookDataError):
        book.record_trade(price, size, BUY, "x", 1.0)  # type: ignore[arg-type]
    assert book.last_trade is None


# -- a snapshot cut at the venue's depth limit ----------------------------------------------------


def cut_book() -> OrderBook:
    """Bids at 100, 99, 98 from a snapshot asked for 3 levels (so cut: 97 and below are unknown),
    asks at 101, 102 from the same request (whole: fewer than 3)."""
    book = OrderBook(2, "binance_spot")
    bids, asks = [["100", "1"], ["99", "2"], ["98", "3"]], [["101", "1"], ["102", "1"]]
    book.apply_snapshot(bids, asks, 10, depth_limit=3)
    return book


def test_queries_stop_at_the_depth_a_cut_snapshot_reached() -> None:
    book = cut_book()
    # A deep level changes: the book holds it, but levels between 98 and 90 are unknown.
    assert book.apply_diff([["90", "50"]], [], 11, 11) is R.APPLIED
    assert [p for p, _ in book.rows(Side.BUY)] == [D(100), D(99), D(98)]
    assert book.price_for_volume(False, D("6")) == D(98)
    assert book.price_for_volume(False, D("7")) is None  # no honest answer: never 90
    assert book.vwap_for_volume(False, D("60"))[1] == D("6")
    assert book.volume_for_price(False, D("90")) == D("6")
    # The ask side came back whole: every level it holds counts.
    assert book.apply_diff([], [["150", "5"]], 12, 12) is R.APPLIED
    assert book.price_for_volume(True, D("7")) == D(150)
    # A new snapshot that is whole lifts the horizon.
    book.apply_snapshot([["100", "1"], ["90", "50"]], [["101", "1"]], 20, depth_limit=3)
    assert book.price_for_volume(False, D("7")) == D(90)


def test_a_side_emptied_down_to_its_horizon_is_out_of_sync() -> None:
    book = cut_book()
    assert book.apply_diff([["100", "0"], ["99", "0"]], [], 11, 11) is R.APPLIED
    assert book.in_sync
    assert book.apply_diff([["98", "0"]], [], 12, 12) is R.HORIZON
    assert not book.in_sync and "snapshot depth" in book.out_of_sync_reason


def test_is_plain_decimal_is_the_one_rule_for_venue_numbers() -> None:
    from marketlink.core.numbers import is_plain_decimal

    assert all(is_plain_decimal(t) for t in ("12", "0.0100", "5.", ".5", "0"))
    assert not any(is_plain_decimal(t) for t in ("", ".", "-5", " 1", "1_0", "1e5", "NaN", "1.2.3", "١", 5))


def test_a_thinned_out_book_is_compacted_after_a_walk_wades_through_tombstones() -> None:
    # 200 levels, then all but the best two deleted deep down: no new price arrives, so nothing
    # grows and nothing compacts, and every walk past the top skips the tombstones...
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot([[f"{i}.00", "1"] for i in range(1, 201)], [["1000.00", "1"]], 0)
    book.apply_diff([[f"{i}.00", "0"] for i in range(1, 199)], [], 1, 1)
    assert book.level_count(BUY) == 2 and len(book._bid.keys) == 200
    assert [p for p, _ in book.rows(BUY)] == [D("200"), D("199")]
    # ... until the walk asks for compaction, done at the next change of the top.
    book.apply_diff([["200.00", "0"]], [], 2, 2)
    assert book._bid.keys == [19900] and book.best_bid() == D("199")
    assert book.rows(BUY) == [(D("199"), D("1"))]


def test_a_short_walk_past_a_few_tombstones_asks_for_nothing() -> None:
    book = spot_book()
    book.apply_diff([["99.50000000", "0"]], [], 101, 101)
    assert [p for p, _ in book.rows(BUY)] == [D("100"), D("99")]
    assert book._bid.compact_at > 0


# -- several spellings of one price in one diff (audit G) -----------------------------------------


@pytest.mark.parametrize("checked", [False, True])
@pytest.mark.parametrize(
    ("known", "levels", "want"),
    [
        (False, [["50.0", "3"], ["50.00", "3"], ["50.0", "0"]], None),  # the last word deletes
        (True, [["50.0", "3"], ["50.00", "3"], ["50.0", "0"]], None),
        (True, [["50.0", "2"], ["50.00", "3"], ["50.0", "7"]], D("7")),
        (False, [["50.0", "0"], ["50.00", "4"]], D("4")),  # a first word of zero, then a level
        (True, [["50.00000000", "5"], ["50.0", "6"], ["50.00000000", "0"]], None),
    ],
)
def test_the_last_level_of_a_price_wins_whatever_its_spellings(
    checked: bool, known: bool, levels: list[list[str]], want: D | None
) -> None:
    book = OrderBook(2, "binance_spot")
    asks = [["60.00", "1"]] + ([["50.00000000", "1"]] if known else [])
    book.apply_snapshot([["10.00", "1"]], asks, 0)
    assert book.apply_diff([], levels, 1, 1, checked=checked) is R.APPLIED
    got = dict(book.rows(SELL))
    assert got.get(D("50")) == want and got[D("60")] == D("1")
    assert book.best_ask() == (D("50") if want is not None else D("60"))


prices3 = st.builds(lambda t, z: f"5{t}." + "0" * z, st.integers(0, 2), st.integers(1, 4))
sizes3 = st.sampled_from(["0", "0.00", "1", "2.5", "3.000"])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    start=st.lists(st.tuples(prices3, sizes3), max_size=4),
    diffs=st.lists(st.lists(st.tuples(prices3, sizes3), max_size=8), min_size=1, max_size=4),
    checked=st.booleans(),
)
def test_dense_respellings_match_a_dict_model(
    start: list[tuple[str, str]], diffs: list[list[tuple[str, str]]], checked: bool
) -> None:
    # Three prices, each in four spellings, repeated at will: every collision admit must settle.
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot([["1.00", "1"]], start, 0)
    model: dict[D, D] = {}

    def merge(levels: list[tuple[str, str]]) -> None:  # in order: the last word on a price wins
        for p, q in levels:
            if D(q):
                model[D(p)] = D(q)
            else:
                model.pop(D(p), None)

    merge(start)
    assert dict(book.rows(SELL)) == model
    for n, levels in enumerate(diffs, start=1):
        assert book.apply_diff([], levels, n, n, checked=checked) is R.APPLIED
        merge(levels)
        assert dict(book.rows(SELL)) == model
        assert book.best_ask() == (min(model) if model else None)


def test_a_diff_spelled_unlike_the_book_parses_each_string_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A venue whose stream spells prices unlike its snapshot: every level is another spelling.
    # Settling them stays linear: each unknown string is parsed once per diff.
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot([["1.00", "1"]], [[f"{100 + i}.00000000", "1"] for i in range(500)], 0)
    calls: list[str] = []
    parse = book_module._Side.parse_key

    def counted(self: Any, text: str) -> int:
        calls.append(text)
        return parse(self, text)

    monkeypatch.setattr(book_module._Side, "parse_key", counted)
    levels = [[f"{100 + i}.0", "2"] for i in range(500)]
    assert book.apply_diff([], levels + levels[:10], 1, 1, checked=True) is R.APPLIED
    assert len(calls) == 500 and book.rows(SELL, 1) == [(D("100"), D("2"))]
    assert set(book._ask.sizes) == {f"{100 + i}.00000000" for i in range(500)}  # the book's spelling


# -- compaction and the horizon (audit G) ----------------------------------------------------------


def test_a_top_compacted_away_mid_diff_still_reports_the_horizon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module, "_COMPACT_SLACK", 4)
    book = OrderBook(0, "binance_spot")
    book.apply_snapshot([[str(9000 - i), "1"] for i in range(5)], [["20000", "1"]], 10, depth_limit=5)
    # Every level inside the cut deleted, and enough new deep levels to compact in admit.
    levels = [[str(9000 - i), "0"] for i in range(5)] + [[str(5000 - i), "1"] for i in range(30)]
    assert book.apply_diff(levels, [], 11, 11, checked=True) is R.HORIZON and not book.in_sync


def test_a_walk_asks_and_the_next_diff_compacts_even_if_only_a_size_changes() -> None:
    book = OrderBook(2, "binance_spot")
    book.apply_snapshot([[f"{i}.00", "1"] for i in range(1, 201)], [["1000.00", "1"]], 0)
    book.apply_diff([[f"{i}.00", "0"] for i in range(1, 199)], [], 1, 1)
    assert len(book.rows(BUY)) == 2 and len(book._bid.keys) == 200  # the walk waded through 198
    book.apply_diff([["200.00", "5"]], [], 2, 2)  # the top only changes size
    assert book._bid.keys == [19900, 20000] and book.rows(BUY, 1) == [(D("200"), D("5"))]


def test_a_walk_request_with_a_cut_snapshot_ends_in_horizon_not_a_blind_book() -> None:
    book = OrderBook(0, "binance_spot")
    book.apply_snapshot([[str(1000 - i), "1"] for i in range(100)], [["2000", "1"]], 10, depth_limit=100)
    book.apply_diff([[str(p), "0"] for p in range(999, 901, -1)], [], 11, 11, checked=True)
    assert book.price_for_volume(False, D("100")) is None  # walks past 98 tombstones
    result = book.apply_diff([["1000", "0"], ["901", "0"], ["800", "5"]], [], 12, 12, checked=True)
    assert result is R.HORIZON and not book.in_sync
