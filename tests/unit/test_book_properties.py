"""The book against a plain dict-of-Decimal reference, under random snapshots, diffs and gaps.

The reference is the dumbest thing that could work: one dict per side keyed by ``Decimal``
price, the sequence rules written out again from the venues' pages, best prices by ``max`` and
``min``, depth answers from ``Fraction``s. Every operation is fed to both and every observable
(result, sync state, update id, each level, the top of the book) must agree after each step.
Prices are spelled with random trailing zeros, and bids and asks overlap a little, so
crossings happen too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, InvalidOperation
from decimal import Decimal as D
from fractions import Fraction
from typing import Any
from unittest import mock

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
    size_is_zero,
    to_units,
)
from marketlink.core.enums import Side

R = DiffResult
SCALE = 2  # a 0.01 tick


@dataclass
class Reference:
    rule: str
    bids: dict[D, D] = field(default_factory=dict)
    asks: dict[D, D] = field(default_factory=dict)
    synced: bool = False
    fresh: bool = False
    last: int = 0

    def crossed(self) -> bool:
        return bool(self.bids) and bool(self.asks) and max(self.bids) >= min(self.asks)

    def replace(self, bids: list[list[str]], asks: list[list[str]], uid: int, result: R) -> R:
        self.bids, self.asks = {}, {}
        self._merge(bids, asks)
        self.synced, self.fresh, self.last = True, True, uid
        if self.crossed():
            self.synced = False
            return R.CROSSED
        return result

    def _merge(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for levels, side in ((bids, self.bids), (asks, self.asks)):
            for p, q in levels:
                if D(q) == 0:
                    side.pop(D(p), None)
                else:
                    side[D(p)] = D(q)

    def judge(self, first: int, final: int, pu: int | None) -> str:
        last = self.last
        if self.rule == "binance_spot":
            if final <= last:
                return "stale"
            ok = first <= last + 1 if self.fresh else first == last + 1
            return "apply" if ok else "gap"
        if self.rule == "binance_usdm":
            if self.fresh:
                if final < last:
                    return "stale"
                return "apply" if first <= last <= final else "gap"
            if final <= last:
                return "stale"
            return "apply" if pu == last else "gap"
        if self.rule == "bybit":
            if final == 1:
                return "reset"
            return "stale" if final <= last else "apply"
        assert self.rule == "bybit_full"
        if final == 1 and last != 1:
            return "gap"
        if final <= last:
            return "stale"
        return "apply" if final == last + 1 else "gap"

    def diff(self, bids: list[list[str]], asks: list[list[str]], first: int, final: int, pu: int | None) -> R:
        verdict = self.judge(first, final, pu)
        if verdict == "reset":
            return self.replace(bids, asks, final, R.RESET)
        if not self.synced:
            return R.NOT_SYNCED
        if verdict == "stale":
            return R.STALE
        if verdict == "gap":
            self.synced = False
            return R.GAP
        self._merge(bids, asks)
        self.last, self.fresh = final, False
        if self.crossed():
            self.synced = False
            return R.CROSSED
        return R.APPLIED


def spell(ticks: int, zeros: int) -> str:
    """A price of ``ticks`` hundredths, written the many ways venues write it."""
    text = f"{ticks // 100}.{ticks % 100:02d}" + "0" * zeros
    return text.rstrip("0").rstrip(".") if zeros == 0 and ticks % 100 == 0 else text


sizes = st.one_of(
    st.sampled_from(["0", "0.00000000", "0.0", "00.000", "0." + "0" * 25]),  # the last two: no shortcut
    st.builds(lambda n, s: format(D(n).scaleb(-s), "f"), st.integers(1, 10**9), st.integers(0, 8)),
    st.builds(lambda n: f"0{n}.000", st.integers(1, 99)),  # a leading zero on a whole number
)


def side_levels(lo: int, hi: int) -> st.SearchStrategy[list[list[str]]]:
    level = st.builds(lambda t, z, q: [spell(t, z), q], st.integers(lo, hi), st.integers(0, 6), sizes)
    return st.lists(level, max_size=8)


# bids live in 0.01..0.25 and asks in 0.22..0.50: a crossing is possible but not the rule
levels = st.tuples(side_levels(1, 25), side_levels(22, 50))
snapshot_op = st.tuples(st.just("snapshot"), levels, st.integers(0, 60))
# ids relative to the reference's last id: mostly continuing, sometimes stale, overlapping or gapped
diff_op = st.tuples(
    st.just("diff"),
    levels,
    st.sampled_from([1, 1, 1, 1, 0, -1, -3, 2, 3]),  # U - last
    st.integers(0, 3),  # u - U
    st.sampled_from([0, 0, 0, 0, -1, 1]),  # pu - last
    st.sampled_from([False] * 7 + [True]),  # for Bybit: a u == 1 restart
)
op = st.integers(0, 5).flatmap(lambda k: snapshot_op if k == 0 else diff_op)  # diffs 5:1
ops = st.lists(op, min_size=1, max_size=30)


def assert_same(book: OrderBook, ref: Reference) -> None:
    assert book.in_sync == ref.synced
    assert book.update_id == ref.last
    assert book.to_dict() == {"bids": ref.bids, "asks": ref.asks}
    assert book.best_bid() == (max(ref.bids) if ref.bids else None)
    assert book.best_ask() == (min(ref.asks) if ref.asks else None)
    assert [p for p, _ in book.rows(Side.BUY)] == sorted(ref.bids, reverse=True)
    assert [p for p, _ in book.rows(Side.SELL)] == sorted(ref.asks)
    if ref.bids and ref.asks:
        assert book.mid() == (max(ref.bids) + min(ref.asks)) / 2
    assert (book.out_of_sync_reason == "") == ref.synced


@pytest.mark.parametrize("checked", [False, True], ids=["sizes-checked-by-book", "checked-by-codec"])
@pytest.mark.parametrize("rule", ["binance_spot", "binance_usdm", "bybit", "bybit_full"])
@settings(max_examples=80, deadline=None, derandomize=True)
@given(script=ops)
def test_book_matches_reference(rule: str, checked: bool, script: list[tuple[Any, ...]]) -> None:
    # A slack of 2 compacts the tombstones of deleted levels every few diffs, so compaction runs
    # inside these scripts too.
    with mock.patch.object(book_module, "_COMPACT_SLACK", 2):
        run_script(rule, checked, script)


def run_script(rule: str, checked: bool, script: list[tuple[Any, ...]]) -> None:
    book, ref = OrderBook(SCALE, rule), Reference(rule)
    for op in script:
        if op[0] == "snapshot":
            _, (bids, asks), uid = op
            assert book.apply_snapshot(bids, asks, uid) is ref.replace(bids, asks, uid, R.APPLIED)
        else:
            _, (bids, asks), d_first, span, d_pu, restart = op
            # USD-M's first diff after a snapshot normally starts at or before the snapshot id
            first = ref.last + d_first - (1 if rule == "binance_usdm" and ref.fresh else 0)
            final = first + span
            pu: int | None = ref.last + d_pu
            if rule.startswith("bybit"):  # one id, u
                first = final = 1 if restart else max(first, 2)
                pu = None
            got = book.apply_diff(bids, asks, first, final, pu, checked=checked)
            assert got is ref.diff(bids, asks, first, final, pu)
            if got is R.NOT_SYNCED:  # refused; resync as the engine would, from a new snapshot
                assert_same(book, ref)
                uid = max(final, 0)
                assert book.apply_snapshot(bids, asks, uid) is ref.replace(bids, asks, uid, R.APPLIED)
        assert_same(book, ref)


# -- depth answers against Fractions ------------------------------------------------------------

Q34 = Context(prec=34)


def walk(ref_side: dict[D, D], is_buy: bool) -> list[tuple[Fraction, Fraction]]:
    prices = sorted(ref_side) if is_buy else sorted(ref_side, reverse=True)
    return [(Fraction(p), Fraction(ref_side[p])) for p in prices]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    book_levels=levels,
    is_buy=st.booleans(),
    amount=st.builds(lambda n, s: D(n).scaleb(-s), st.integers(1, 10**10), st.integers(0, 10)),
    limit_ticks=st.integers(1, 55),
)
def test_depth_queries_match_fractions(
    book_levels: tuple[list[list[str]], list[list[str]]], is_buy: bool, amount: D, limit_ticks: int
) -> None:
    bids, asks = book_levels
    book, ref = OrderBook(SCALE, "bybit"), Reference("bybit")
    book.apply_snapshot(bids, asks, 5)
    ref.replace(bids, asks, 5, R.APPLIED)
    levels_ = walk(ref.asks if is_buy else ref.bids, is_buy)
    vol = Fraction(amount)

    # price_for_volume / vwap_for_volume
    cum, quote, filled, reach = Fraction(0), Fraction(0), Fraction(0), None
    for price, size in levels_:
        take = min(size, vol - filled)
        quote += take * price
        filled += take
        cum += size
        if reach is None and cum >= vol:
            reach = price
        if filled == vol:
            break
    got_price = book.price_for_volume(is_buy, amount)
    assert (None if got_price is None else Fraction(got_price)) == reach
    vwap, got_filled = book.vwap_for_volume(is_buy, amount)
    assert Fraction(got_filled) == filled
    if filled:
        exact = quote / filled
        assert vwap == Q34.divide(D(exact.numerator), D(exact.denominator))
    else:
        assert vwap is None

    # volume_for_price / quote_volume_for_price
    limit = Fraction(limit_ticks, 100)
    inside = [(p, s) for p, s in levels_ if (p <= limit if is_buy else p >= limit)]
    limit_d = D(limit_ticks) / 100
    assert Fraction(book.volume_for_price(is_buy, limit_d)) == sum(s for _, s in inside)
    assert Fraction(book.quote_volume_for_price(is_buy, limit_d)) == sum(p * s for p, s in inside)

    # price_for_quote_volume
    cum = Fraction(0)
    reach = None
    for price, size in levels_:
        cum += price * size
        if cum >= vol:
            reach = price
            break
    got_price = book.price_for_quote_volume(is_buy, amount)
    assert (None if got_price is None else Fraction(got_price)) == reach


# -- the number parser ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, derandomize=True)
@given(units=st.integers(0, 10**30), scale=st.integers(0, 18), zeros=st.integers(0, 5))
def test_units_round_trip_whatever_the_trailing_zeros(units: int, scale: int, zeros: int) -> None:
    text = format(from_units(units, scale), "f")
    if "." not in text and zeros:
        text += "."
    text += "0" * zeros
    assert to_units(text, scale) == units


@settings(max_examples=200, deadline=None, derandomize=True)
@given(units=st.integers(0, 10**20), scale=st.integers(0, 12), extra=st.integers(1, 9))
def test_a_digit_past_the_scale_is_refused_never_rounded(units: int, scale: int, extra: int) -> None:
    text = format(from_units(units, scale), "f")
    text = (text if "." in text else text + ".") + str(extra)
    with pytest.raises(PrecisionError):
        to_units(text, scale)


# -- the size tests -----------------------------------------------------------------------------------


def plainly_not_zero(text: str) -> bool:
    """The book's hot-path test (``OrderBook.apply_diff``), spelled out."""
    return "1" <= text.lstrip("0.") < ":"


plain_decimals = st.builds(
    lambda whole, dot, frac: whole + ("." if dot else "") + frac,
    st.text(st.sampled_from("00000000123456789"), max_size=6),
    st.booleans(),
    st.text(st.sampled_from("00000000123456789"), max_size=6),
).filter(lambda text: any(c.isdigit() for c in text))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=plain_decimals)
def test_both_zero_tests_are_exact_on_plain_decimals(text: str) -> None:
    zero = D(text) == 0
    assert size_is_zero(text) is zero
    assert plainly_not_zero(text) is not zero


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(st.sampled_from("0123456789.-+eE _nNaIifty\u0660\u0661\uff10"), max_size=8))
def test_no_string_that_reads_as_zero_passes_for_a_size(text: str) -> None:
    # The hot path decides a level's existence from ``plainly_not_zero`` alone: whatever else the
    # string holds, if Decimal can read it at all, it is not zero.
    try:
        value: D | None = D(text)
    except InvalidOperation:
        value = None
    if plainly_not_zero(text) and value is not None:
        assert value != 0
    # The full check accepts plain ASCII decimals only, and then agrees with Decimal.
    try:
        zero = size_is_zero(text)
    except BookDataError:
        return
    assert text.isascii() and text.replace(".", "", 1).isdigit() and value is not None
    assert zero is (value == 0)
