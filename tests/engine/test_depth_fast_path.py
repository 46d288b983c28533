"""The depth fast path against the checked path, on random frames: speed may differ, meaning never.

Each frame is fed to two books already holding the same snapshot: one through
``decode_market`` (typed structs, the skeleton proof, ``checked`` diffs) and one through plain
JSON and the book's own checks. Strings are drawn from good decimals as Binance writes them and
from what a broken or hostile feed might send instead (signs, exponents, spaces, underscores,
non-ASCII digits, JSON escapes, empty strings, lone dots); both books must answer alike, end
alike, and a bad string must be refused by both.
"""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.book import BookDataError, DiffResult, OrderBook
from marketlink.core.market import DepthUpdate
from marketlink.net import jsoncodec
from marketlink.venues.binance import VENUE

codec = VENUE.codec
SYMBOLS = {"BTCUSDT": "BTC-USDT"}
SNAPSHOT_BIDS = [[f"{100 - i}.00000000", "1.00000000"] for i in range(10)]
SNAPSHOT_ASKS = [[f"{101 + i}.00000000", "1.00000000"] for i in range(10)]



def good_price(lo: int, hi: int) -> st.SearchStrategy[str]:
    """A price of ``lo..hi`` hundredths, with or without trailing zeros."""
    ticks, zeros = st.integers(lo, hi), st.integers(0, 6)
    return st.builds(lambda t, z: f"{t // 100}.{t % 100:02d}" + "0" * z, ticks, zeros)


good_size = st.one_of(
    st.builds(lambda n: f"{n // 10**8}.{n % 10**8:08d}", st.integers(0, 10**12)),  # Binance's way
    st.sampled_from(["0", "5", "10", "0.0", "7.", ".5", "00.10"]),  # plain, if unusual
)
bad = st.sampled_from([
    "", ".", "-1.0", "+1.0", "1e5", "1E-2", " 1.0", "1.0 ", "1_0.0", "1.2.3", "NaN", "Infinity", "0x1",
    "\u0661.0", "\uff11.0", "1" * 31, "1.0\n", "ESC",
])
size = st.integers(0, 8).flatmap(lambda k: bad if k == 0 else good_size)  # 1 in 9 bad


def side(lo: int, hi: int) -> st.SearchStrategy[list[tuple[str, str]]]:
    price = st.integers(0, 8).flatmap(lambda k: bad if k == 0 else good_price(lo, hi))
    return st.lists(st.tuples(price, size), max_size=6)




def frame(bids: list[tuple[str, str]], asks: list[tuple[str, str]], u: int) -> bytes:
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": u, "u": u, "b": bids, "a": asks}
    text = json.dumps({"stream": "btcusdt@depth@100ms", "data": data}, separators=(",", ":"))
    return text.replace('"ESC"', '"\\u0031.0"').encode()  # an escaped "1": plain once decoded


def fed(book: OrderBook, update: DepthUpdate) -> DiffResult | str:
    try:
        return book.apply_diff(
            update.bids, update.asks, update.first_id, update.final_id, None, update.checked
        )
    except BookDataError:
        return "refused"


def snapshot_book(update_id: int = 100) -> OrderBook:
    book = OrderBook(8, "binance_spot", "BTC-USDT")
    book.apply_snapshot(SNAPSHOT_BIDS, SNAPSHOT_ASKS, update_id)
    return book


@settings(max_examples=300, deadline=None, derandomize=True)
@given(diffs=st.lists(st.tuples(side(100, 10_050), side(10_000, 30_000)), min_size=1, max_size=8))
def test_the_fast_path_changes_speed_never_meaning(diffs: list[tuple[list[tuple[str, str]], ...]]) -> None:
    fast_book, slow_book = snapshot_book(), snapshot_book()
    for n, (bids, asks) in enumerate(diffs, start=101):
        raw = frame(bids, asks, n)
        fast = codec.parse_market_message(codec.decode_market(raw), SYMBOLS)
        slow = codec.parse_market_message(jsoncodec.decode(raw), SYMBOLS)
        assert isinstance(fast, DepthUpdate) and isinstance(slow, DepthUpdate) and not slow.checked
        assert (fast.bids, fast.asks) == (slow.bids, slow.asks) or not fast.checked
        if fast.checked:  # vouched for: every string must really be a plain decimal
            strings = [t for level in fast.bids + fast.asks for t in level]
            assert all(t.isascii() and t.replace(".", "", 1).isdigit() and 2 <= len(t) <= 30 for t in strings)
        assert fed(fast_book, fast) == fed(slow_book, slow)
        assert fast_book.in_sync == slow_book.in_sync
        assert fast_book.to_dict() == slow_book.to_dict()
        assert (fast_book.best_bid(), fast_book.best_ask()) == (slow_book.best_bid(), slow_book.best_ask())
        if not fast_book.in_sync:  # both refused or crossed: resync both, as the engine would
            fast_book, slow_book = snapshot_book(n), snapshot_book(n)


def test_the_strategy_reaches_both_paths() -> None:
    good = codec.parse_market_message(codec.decode_market(frame([("1.00", "2.00")], [], 101)), SYMBOLS)
    escaped = codec.parse_market_message(codec.decode_market(frame([("1.00", "ESC")], [], 101)), SYMBOLS)
    assert isinstance(good, DepthUpdate) and good.checked
    assert isinstance(escaped, DepthUpdate) and not escaped.checked and escaped.bids == [("1.00", "1.0")]
    assert Decimal(escaped.bids[0][1]) == 1
