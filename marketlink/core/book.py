"""The local order book: exact levels, kept in step with a venue's depth stream.

Prices are exact integers, counts of ``10**-price_scale`` (the scale comes from the market's
tick). Integers hash and compare faster than ``Decimal`` and, unlike floats, two spellings of one
price ("0.10", "0.1000") are one level. A price finer than the tick is refused
(``PrecisionError``), never rounded: it means our trading rule is out of date, and the engine
must reload it and resync rather than guess.

Sizes are kept as the very strings the venue sent and become exact ``Decimal``s only when a
query reads them: a depth stream rewrites sizes far more often than anyone reads them, so no
number is parsed on the way in. Every size is still checked in full before it is stored (a plain
ASCII decimal below 1e30), because malformed venue data must be refused where it enters, with
the book put out of sync for a resync, not discovered later inside a strategy's query. The
check is either ours (``apply_diff`` runs it over the diff before changing anything) or the
codec's, when it can prove it cheaper over the raw frame (``checked=True``; the Binance codec
does it with one byte translation of the frame). A book never rounds a size, so the step plays
no part here.

Per side, a dict maps each price string, as spelled when its level appeared, to its size. The
strings msgspec decodes for a diff mostly repeat the spellings already in the book, so a diff is
applied with one C-level ``dict.update`` per side, deletions included: a deleted level keeps its
entry with a zero size (a *tombstone*) until the top of the book reaches it or the side is
compacted. Python code runs only for a price string the side did not know (a new level, another
spelling of a known price, a deletion of an absent level: ``_Side.admit``, which parses the
price to its integer units) and when the top's size changed (``_Side.refresh``, which drops
tombstones off the top). Per-level Python work was what kept a pure-Python book at the speed of
a float-keyed one (bench/README.md, depth pipeline).

A plain list holds the units sorted with the *best level at the end* (asks stored negated):
depth updates cluster at the top, so inserting a price moves only the few list slots behind it,
the best level is ``keys[-1]`` (always a live level once a diff is applied), and only a price
appearing for the first time touches the list. Queries skip tombstones. Best prices'
``Decimal``s are remembered per side.

Whether a diff may be applied is decided by a ``SequenceRule`` (``marketlink.core.sequence``).
A gap or a crossed book sets ``in_sync`` false with a reason; diffs are then refused until a new
snapshot. Queries keep answering from the last state even when out of sync (so a resync can be
diagnosed); callers that trade gate on ``in_sync``. Everything handed out is an exact
``Decimal``, except a VWAP, which is a quotient and is rounded to 34 significant digits.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import MAX_PREC, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation
from enum import StrEnum
from itertools import islice
from typing import Final, NamedTuple

from marketlink.core.enums import Side
from marketlink.core.errors import MarketlinkError
from marketlink.core.numbers import is_plain_decimal
from marketlink.core.rules import TradingRule
from marketlink.core.sequence import APPLY, Check, Link, SequenceRule, Verdict, get_rule

__all__ = [
    "BookDataError",
    "BookLevels",
    "DiffResult",
    "Level",
    "OrderBook",
    "PrecisionError",
    "Trade",
    "from_units",
    "scale_of",
    "size_is_zero",
    "to_units",
]

#: One ``[price, size]`` pair exactly as decoded from the venue's JSON.
Level = Sequence[str]


class BookDataError(MarketlinkError, ValueError):
    """A level or trade the book cannot take as it is (malformed, negative, zero price, absurd
    size). The engine counts the message as dropped and resyncs the book."""


class PrecisionError(BookDataError):
    """A price has more significant decimals than the market's tick allows."""


class DiffResult(StrEnum):
    APPLIED = "APPLIED"
    #: The message was a full book (Bybit ``u == 1``) and replaced ours.
    RESET = "RESET"
    #: Already contained in the book (duplicate or older than the snapshot); nothing changed.
    STALE = "STALE"
    #: Updates were missed; the book is out of sync until the next snapshot.
    GAP = "GAP"
    #: No snapshot yet, or out of sync since a gap or a crossing; nothing changed.
    NOT_SYNCED = "NOT_SYNCED"
    #: Applied, but the best bid now meets or passes the best ask; out of sync.
    CROSSED = "CROSSED"
    #: Applied, but a side lost every level inside its snapshot's horizon: its top is unknown;
    #: out of sync.
    HORIZON = "HORIZON"


@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade. ``side`` is the taker's side (the aggressor)."""

    price: Decimal
    size: Decimal
    side: Side
    trade_id: str | int
    timestamp: float


class BookLevels(NamedTuple):
    """Every level, best first, as exact ``(price, size)`` pairs."""

    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]


#: Exact arithmetic (sums, products, rescaling): it never rounds, it raises instead.
_EXACT: Final = Context(prec=MAX_PREC, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Inexact])
#: Quotients (VWAP) only: 34 digits is far finer than any tick.
_QUOTIENT: Final = Context(prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
_ZERO: Final = Decimal(0)
#: No venue quotes a level this large; anything above is garbage (and "Infinity"/NaN fail too).
_SIZE_LIMIT: Final = Decimal("1e30")
#: A plain decimal of at most this many characters is below ``_SIZE_LIMIT``; longer sizes are
#: compared as ``Decimal``.
_SHORT_SIZE: Final = 30
#: Zero as venues spell it ("0", "0.00000000"): a known spelling needs no further check.
_ZERO_SIZES: Final = frozenset(["0", *("0." + "0" * n for n in range(1, 19))])
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(64))
#: Best prices' ``Decimal``s remembered per side.
_PRICES_KEPT: Final = 256
#: Tombstones a side may gather beyond twice its live levels before it is compacted.
_COMPACT_SLACK: Final = 1024
#: Tombstones a walk may skip (when it skips more than it yields) before it asks for compaction.
_WALK_SLACK: Final = 64
#: ``_Side.admit``/``refresh`` results, or-ed together over a diff: a level appeared (the book may now be
#: crossed); a side has no level left inside its horizon (its top is unknown).
_GREW: Final = 1
_EXHAUSTED: Final = 2
#: What a malformed level can raise on its way through unpacking, parsing and comparing.
_MALFORMED: Final = (TypeError, ValueError, IndexError, KeyError, AttributeError, ArithmeticError)


def scale_of(step: Decimal) -> int:
    """Decimals needed to write every multiple of ``step`` (tick 0.01 -> 2, "0.00001000" -> 5)."""
    if not isinstance(step, Decimal) or not step.is_finite() or step <= 0:
        raise ValueError(f"tick or step must be a positive finite Decimal, got {step!r}")
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite, so never 'n'/'N'/'F'
    return max(0, -exponent)


def to_units(text: str, scale: int) -> int:
    """``text`` ("123.4500") as an integer count of ``10**-scale``, exactly.

    Only plain ASCII ``digits[.digits]`` is accepted, as venues send it: no sign, exponent,
    whitespace or underscores (``int()`` alone would read "1_0" as ten).
    """
    try:
        int_part, _, frac = text.partition(".")
        frac = frac.rstrip("0")
        digits = int_part + frac
        if digits.isascii() and digits.isdigit():
            n = len(frac)
            if n > scale:
                raise PrecisionError(f"{text!r} has {n} decimals; this market allows {scale}")
            return int(digits) * _POW10[scale - n]
    except BookDataError:
        raise
    except _MALFORMED:
        pass
    raise BookDataError(f"not a plain non-negative decimal: {text!r:.40}")


def from_units(units: int, scale: int) -> Decimal:
    """The exact ``Decimal`` for ``units * 10**-scale``."""
    return Decimal(units).scaleb(-scale, _EXACT)


def size_is_zero(text: str) -> bool:
    """Check a size string and say whether it is zero (which deletes a level).

    Only plain ASCII ``digits[.digits]`` below ``1e30`` is a size: a float would be stored as
    its binary expansion, and "NaN", "-1" or "1e5" are nobody's way of writing a quantity. For
    such a string the value is zero exactly when every character is "0" or ".".
    """
    if is_plain_decimal(text) and (len(text) <= _SHORT_SIZE or Decimal(text) < _SIZE_LIMIT):
        return not text.lstrip("0.")
    raise BookDataError(f"not a valid size: {text!r:.40}")


def stored_size(text: str) -> Decimal:
    """A size from the book as an exact ``Decimal``.

    The hot path stores an update to a known level after checking only that it is not zero,
    so the full check happens here, whenever a size is read: a string that is not a plain
    decimal below ``1e30`` raises ``BookDataError`` rather than become an answer.
    """
    if size_is_zero(text):
        raise BookDataError(f"zero size stored: {text!r:.40}")  # never: zeros delete
    return Decimal(text)


def _positive(value: Decimal, what: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be a positive finite Decimal, got {value!r}")
    return value


class _Side:
    """One side's levels; see the module docstring.

    ``sizes`` maps each price string to its size string, zero sizes included: a level deleted
    below the top stays as a *tombstone* (a zero size) until the top reaches it or the side is
    compacted, so that a diff is one C-level ``dict.update`` whatever it deletes. ``known`` maps
    every price string in ``sizes`` to its signed units (``sign`` is -1 for asks, so the best
    level is always last) and ``spelling`` maps units back to that string. ``keys`` holds every
    key of ``sizes`` sorted; after each diff, ``keys[-1]`` is a live level (``top_text`` is its
    string and ``top_size`` the size object seen there), so the best price needs no search.
    """

    __slots__ = (
        "compact_at", "horizon", "keys", "known", "prices", "scale", "sign", "sizes", "spelling",
        "top_size", "top_text",
    )

    def __init__(self, sign: int, scale: int) -> None:
        self.sign = sign
        self.scale = scale
        self.sizes: dict[str, str] = {}
        self.known: dict[str, int] = {}
        self.spelling: dict[int, str] = {}
        self.keys: list[int] = []
        self.top_text: str | None = None
        self.top_size: str | None = None
        self.prices: dict[int, Decimal] = {}  # best prices lately, by key (bounded)
        #: The worst key of a snapshot that was cut at the venue's depth limit: past it, levels
        #: that never changed are unknown, so queries stop there (None: the snapshot was whole).
        self.horizon: int | None = None
        #: Entries (live or tombstones) past which the side is compacted.
        self.compact_at = _COMPACT_SLACK

    def parse_key(self, text: str) -> int:
        price = to_units(text, self.scale)
        if not price:
            raise BookDataError(f"zero price {text!r}")
        return self.sign * price

    def admit(self, levels: Sequence[Level]) -> int:
        """After ``sizes.update(levels)`` added entries: settle every price that a string
        ``sizes`` did not know names. Such a string is a new level, another spelling of a known
        price, or a deletion of an absent level; one diff may even name a price several ways.
        Each such price takes the size of its *last* level in the diff, whatever its spelling
        (one ordered pass: the venue's order is the truth); a new price is registered under
        that spelling, and one whose last word is zero is simply absent. Unknown strings are
        parsed once per diff, so even a diff spelled wholly unlike the book stays linear.

        Returns ``_GREW`` when a level appeared above the old top, ``_EXHAUSTED`` when a
        compaction left no level inside the horizon. On bad data the error propagates;
        ``apply_diff`` then takes the strings not registered out again (``forget``)."""
        sizes, known, spelling, keys = self.sizes, self.known, self.spelling, self.keys
        strays: dict[str, int] = {}  # unknown string -> its units
        for text, _ in levels:
            if text not in known and text not in strays:
                strays[text] = self.parse_key(text)
        targets = set(strays.values())
        last: dict[int, tuple[str, str]] = {}  # price -> (spelling, size) of its last level here
        for text, size in levels:
            key = strays.get(text)
            if key is None:
                key = known[text]
                if key not in targets:
                    continue
            last[key] = (text, size)
        for text in strays:
            del sizes[text]  # update() put them in; each price is settled below
        flags = 0
        for key, (text, size) in last.items():
            canon = spelling.get(key)
            if canon is not None:
                sizes[canon] = size  # a zero leaves a tombstone, as any deletion
            elif size.lstrip("0."):
                sizes[text] = size
                known[text] = key
                spelling[key] = text
                if not keys or key > keys[-1]:
                    keys.append(key)
                    self.top_text, self.top_size = text, size
                    flags = _GREW
                else:
                    insort(keys, key)
        if len(keys) > self.compact_at:
            flags |= self.compact()
        return flags

    def refresh(self) -> int:
        """The top's size changed: keep it, or drop the tombstones down to the next live level.
        Returns ``_EXHAUSTED`` when no level is left inside the horizon."""
        sizes, keys, spelling, known = self.sizes, self.keys, self.spelling, self.known
        while keys:
            key = keys[-1]
            text = spelling[key]
            size = sizes[text]
            if size.lstrip("0."):
                self.top_text, self.top_size = text, size
                break
            keys.pop()
            del spelling[key], sizes[text], known[text]
        else:
            self.top_text = self.top_size = None
        if len(keys) > self.compact_at:  # outgrown, or a walk found too many tombstones (see walk)
            self.compact()
        horizon = self.horizon
        if horizon is not None and (not keys or keys[-1] < horizon):
            return _EXHAUSTED
        return 0

    def compact(self) -> int:
        """Drop every tombstone. Called when the entries outgrow ``compact_at``, which is set
        from the live count, so the work is amortized over the levels that appeared meanwhile.
        Returns ``_EXHAUSTED`` when no level is left inside the horizon (mid-diff, the top may
        have been a fresh tombstone, compacted away here rather than by ``refresh``)."""
        sizes, known, spelling = self.sizes, self.known, self.spelling
        for text in [text for text, size in sizes.items() if not size.lstrip("0.")]:
            del sizes[text], spelling[known.pop(text)]
        keys = self.keys
        keys[:] = [key for key in keys if key in spelling]
        self.compact_at = 2 * len(keys) + _COMPACT_SLACK
        if keys:
            self.top_text = text = spelling[keys[-1]]
            self.top_size = sizes[text]
        else:
            self.top_text = self.top_size = None
        horizon = self.horizon
        if horizon is not None and (not keys or keys[-1] < horizon):
            return _EXHAUSTED
        return 0

    def load(self, levels: Iterable[Level], depth_limit: int | None = None) -> None:
        """Replace every level (a snapshot); a later entry for a price overrides an earlier one.
        A snapshot of ``depth_limit`` levels or more was cut by the venue: its worst level is
        the horizon. On bad data the side is left half built: the caller empties it."""
        self.horizon = None
        old = self.known  # the prices already known need no parsing again
        sizes: dict[str, str] = {}
        spelling: dict[int, str] = {}
        self.sizes, self.spelling, self.known, self.keys = sizes, spelling, {}, []
        self.top_text = self.top_size = None
        old_get, parse_key = old.get, self.parse_key
        try:
            for text, size in levels:
                key = old_get(text)
                if key is None:
                    key = parse_key(text)
                zero = size_is_zero(size)
                known = spelling.get(key)
                if zero:
                    if known is not None:
                        del sizes[known], spelling[key]
                elif known is None:
                    sizes[text] = size
                    spelling[key] = text
                else:
                    sizes[known] = size
        except BookDataError:
            raise
        except _MALFORMED as exc:
            raise BookDataError(f"malformed level list: {exc!r:.80}") from exc
        self.known = {text: key for key, text in spelling.items()}
        self.keys = keys = sorted(spelling)
        self.compact_at = 2 * len(keys) + _COMPACT_SLACK
        if keys:
            self.top_text = text = spelling[keys[-1]]
            self.top_size = sizes[text]
            if depth_limit is not None and len(keys) >= depth_limit:
                self.horizon = keys[0]

    def clear(self) -> None:
        self.sizes, self.known, self.spelling, self.keys, self.horizon = {}, {}, {}, [], None
        self.top_text = self.top_size = None

    def forget(self, levels: Iterable[Level]) -> None:
        """After a diff failed half way: take out the price strings it added that are not
        registered, and leave a live top, so the book reads as a consistent (if out of sync)
        state."""
        if isinstance(levels, list):
            sizes, known = self.sizes, self.known
            for level in levels:
                try:
                    text = level[0]
                    if text not in known:
                        sizes.pop(text, None)
                except _MALFORMED:
                    continue
        if self.top_text is not None and self.sizes.get(self.top_text) is not self.top_size:
            self.refresh()

    def live_count(self) -> int:
        return sum(1 for size in self.sizes.values() if size.lstrip("0."))

    def best(self, key: int) -> Decimal:
        """The price of ``key``, a best level. The top moves among a few prices near the spread,
        so their ``Decimal``s are remembered (bounded)."""
        prices = self.prices
        price = prices.get(key)
        if price is None:
            if len(prices) >= _PRICES_KEPT:
                prices.clear()
            price = prices[key] = from_units(self.sign * key, self.scale)
        return price

    def walk(self) -> Iterator[tuple[int, Decimal]]:
        """Every level, best first, as ``(price units, size)``.

        Tombstones are skipped. A book that thinned out without new prices arriving (so
        ``admit`` never compacted it) can make a walk pass many of them: a walk that skipped
        more than it yielded, and more than ``_WALK_SLACK``, has the side compacted by the next
        diff (its top's size is forgotten, so that diff calls ``refresh``), not here, in the
        middle of a caller's iteration."""
        sign, sizes, spelling, horizon = self.sign, self.sizes, self.spelling, self.horizon
        skipped = yielded = 0
        try:
            for key in reversed(self.keys):
                if horizon is not None and key < horizon:
                    return  # unknown country: levels past it that never changed are not here
                size = sizes[spelling[key]]
                if size.lstrip("0."):
                    yielded += 1
                    yield sign * key, stored_size(size)
                else:
                    skipped += 1
        finally:
            if skipped > _WALK_SLACK and skipped > yielded:
                self.compact_at = 0
                if self.top_text is not None:
                    self.top_size = None


def _check_sizes(levels: Iterable[Level]) -> list[Level]:
    """The levels as a list, each a price and a size, every size checked in full: what a codec
    vouches for with ``checked=True``."""
    out = list(levels)
    for _, size in out:
        if size not in _ZERO_SIZES:
            size_is_zero(size)
    return out


_APPLIED: Final = DiffResult.APPLIED
_NEXT_FIRST: Final = Link.NEXT_FIRST
_PREV_FINAL: Final = Link.PREV_FINAL


class OrderBook:
    """One market's book. Not thread-safe; one owner (the engine's market-data task) mutates it."""

    __slots__ = (
        "_ask",
        "_bid",
        "_check",
        "_fresh",
        "_last_trade",
        "_link",
        "_reason",
        "_rule",
        "_synced",
        "_update_id",
        "price_scale",
        "trading_pair",
    )

    def __init__(self, price_scale: int, sequence: SequenceRule | str, trading_pair: str = "") -> None:
        if not isinstance(price_scale, int) or not 0 <= price_scale < len(_POW10):
            raise ValueError(f"price_scale must be an int in [0, {len(_POW10)}), got {price_scale!r}")
        self.price_scale = price_scale
        self.trading_pair = trading_pair
        self._rule: SequenceRule = get_rule(sequence) if isinstance(sequence, str) else sequence
        self._check = self._rule.check
        self._link = getattr(self._rule, "link", None)  # a rule without one is always asked
        self._bid = _Side(1, price_scale)
        self._ask = _Side(-1, price_scale)
        self._synced = False
        self._fresh = False
        self._update_id = 0
        self._reason = "no snapshot yet"
        self._last_trade: Trade | None = None

    @classmethod
    def for_rule(cls, rule: TradingRule, sequence: SequenceRule | str) -> OrderBook:
        """A book whose price scale comes from the market's tick."""
        return cls(scale_of(rule.tick_size), sequence, rule.trading_pair)

    # -- state ----------------------------------------------------------------------------------

    @property
    def sequence(self) -> SequenceRule:
        return self._rule

    @property
    def in_sync(self) -> bool:
        return self._synced

    @property
    def update_id(self) -> int:
        return self._update_id

    @property
    def out_of_sync_reason(self) -> str:
        """Why the book is not in sync ("" while it is)."""
        return self._reason

    @property
    def last_trade(self) -> Trade | None:
        return self._last_trade

    def mark_out_of_sync(self, reason: str) -> None:
        """For the engine's own findings (a stale stream, a reconnect): refuse diffs until a
        snapshot, and say why."""
        self._synced = False
        self._reason = reason

    # -- updates --------------------------------------------------------------------------------

    def apply_snapshot(
        self, bids: Iterable[Level], asks: Iterable[Level], update_id: int, depth_limit: int | None = None
    ) -> DiffResult:
        """Replace the whole book (never merge); zero sizes are skipped.

        ``depth_limit``: the levels per side the snapshot was asked for. A side that came back
        that deep was cut by the venue, and levels past its worst one are unknown until they
        change: depth queries stop there (``price_for_volume`` answers ``None`` rather than a
        price from a hole), and a side emptied down to it is out of sync (its top is unknown).

        Returns APPLIED, or CROSSED (installed but out of sync). On bad data the old book is
        dropped too, the book is left empty and out of sync, and the error propagates.
        """
        return self._replace(bids, asks, update_id, DiffResult.APPLIED, depth_limit)

    def apply_diff(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        first_id: int,
        final_id: int,
        prev_final_id: int | None = None,
        checked: bool = False,
    ) -> DiffResult:
        """Apply a depth diff if it continues the sequence; sizes are absolute, zero deletes
        (deleting an absent level is normal). Bybit passes its ``u`` as both ids.

        ``checked``: the caller vouches that ``bids`` and ``asks`` are lists of ``(price,
        size)`` string pairs whose sizes are plain decimals of 2 to 30 characters (the Binance
        codec proves it over the raw frame, see ``DepthUpdate.checked``). Otherwise every size is
        checked here first, and a bad one changes nothing.

        On bad data the book is marked out of sync before the error propagates.
        """
        # The usual case is decided here without calling the rule: a book in sync, past its
        # first diff, and a diff that chains to it by the rule's link (``SequenceRule.link``).
        uid = self._update_id
        link = self._link
        if not (
            (first_id == uid + 1 if link is _NEXT_FIRST else link is _PREV_FINAL and prev_final_id == uid)
            and final_id > uid and self._synced and not self._fresh
        ):
            check = self._check(uid, self._fresh, first_id, final_id, prev_final_id)
            if (check is not APPLY and check.verdict is not Verdict.APPLY) or not self._synced:
                return self._not_applied(check, bids, asks, final_id)
        # The hot path, once per side: one C-level dict.update stores every level (a deletion
        # stores a zero, a tombstone). Only a price string the side did not know (a new level,
        # another spelling, a deletion of an absent level) grows the dict and takes the checked
        # path, admit(); only a change of the top's size object sends the side to refresh().
        changed = 0
        try:
            if not checked:
                bids, asks = _check_sizes(bids), _check_sizes(asks)
            side = self._bid
            sizes = side.sizes
            n = len(sizes)
            sizes.update(bids)  # type: ignore[arg-type]
            if len(sizes) != n:
                changed = side.admit(bids)  # type: ignore[arg-type]
            top = side.top_text
            if top is not None:
                size = sizes[top]
                if size is not side.top_size:
                    if side.top_size is not None and size.lstrip("0."):
                        side.top_size = size  # the top level changed size: still the top
                    else:  # deleted, or a walk asked for compaction (see _Side.walk)
                        changed |= side.refresh()
            side = self._ask
            sizes = side.sizes
            n = len(sizes)
            sizes.update(asks)  # type: ignore[arg-type]
            if len(sizes) != n:
                changed |= side.admit(asks)  # type: ignore[arg-type]
            top = side.top_text
            if top is not None:
                size = sizes[top]
                if size is not side.top_size:
                    if side.top_size is not None and size.lstrip("0."):
                        side.top_size = size
                    else:
                        changed |= side.refresh()
        except _MALFORMED as exc:
            error = exc if isinstance(exc, BookDataError) else BookDataError(
                f"malformed level list: {exc!r:.80}"
            )
            self._bid.forget(bids)
            self._ask.forget(asks)
            self.mark_out_of_sync(f"bad level in diff u={final_id}: {error}")
            if error is exc:
                raise
            raise error from exc
        self._update_id = final_id
        self._fresh = False
        if changed & _EXHAUSTED:
            self.mark_out_of_sync(f"a side emptied down to its snapshot depth after diff u={final_id}")
            return DiffResult.HORIZON
        # Only a level that appeared above a top can cross a book that was in sync.
        if changed:
            bid_keys, ask_keys = self._bid.keys, self._ask.keys
            if bid_keys and ask_keys and bid_keys[-1] >= -ask_keys[-1]:
                self.mark_out_of_sync(f"crossed after diff u={final_id}: {self._crossing()}")
                return DiffResult.CROSSED
        return _APPLIED

    def _not_applied(
        self, check: Check, bids: Iterable[Level], asks: Iterable[Level], final_id: int
    ) -> DiffResult:
        verdict = check.verdict
        if verdict is Verdict.RESET:
            return self._replace(bids, asks, final_id, DiffResult.RESET)
        if not self._synced:
            return DiffResult.NOT_SYNCED
        if verdict is Verdict.STALE:
            return DiffResult.STALE
        self.mark_out_of_sync(check.reason or "sequence gap")
        return DiffResult.GAP

    def record_trade(
        self, price: Decimal, size: Decimal, side: Side, trade_id: str | int, timestamp: float
    ) -> Trade:
        """Remember a public trade; ``last_trade`` keeps the latest by timestamp, so a late
        message never rolls it back."""
        for name, v in (("price", price), ("size", size)):
            if not isinstance(v, Decimal) or not v.is_finite() or v <= 0:
                raise BookDataError(f"trade {trade_id!r}: {name} must be a positive Decimal, got {v!r}")
        trade = Trade(price, size, side, trade_id, timestamp)
        last = self._last_trade
        if last is None or timestamp >= last.timestamp:
            self._last_trade = trade
        return trade

    def _replace(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        update_id: int,
        result: DiffResult,
        depth_limit: int | None = None,
    ) -> DiffResult:
        try:
            self._bid.load(bids, depth_limit)
            self._ask.load(asks, depth_limit)
        except BookDataError as exc:
            self._bid.clear()
            self._ask.clear()
            self.mark_out_of_sync(f"bad level in snapshot {update_id}: {exc}")
            raise
        self._update_id = update_id
        self._fresh = True
        self._synced = True
        self._reason = ""
        bid_keys, ask_keys = self._bid.keys, self._ask.keys
        if bid_keys and ask_keys and bid_keys[-1] >= -ask_keys[-1]:
            self.mark_out_of_sync(f"crossed snapshot {update_id}: {self._crossing()}")
            return DiffResult.CROSSED
        return result

    def _crossing(self) -> str:
        return f"best bid {self.best_bid()} >= best ask {self.best_ask()}"

    # -- top of book ------------------------------------------------------------------------------

    def best_bid_units(self) -> int | None:
        """Best bid in units of ``10**-price_scale``: the cheap read for hot loops."""
        keys = self._bid.keys
        return keys[-1] if keys else None

    def best_ask_units(self) -> int | None:
        keys = self._ask.keys
        return -keys[-1] if keys else None

    def best_bid(self) -> Decimal | None:
        side = self._bid
        keys = side.keys
        if not keys:
            return None
        key = keys[-1]
        price = side.prices.get(key)
        return price if price is not None else side.best(key)

    def best_ask(self) -> Decimal | None:
        side = self._ask
        keys = side.keys
        if not keys:
            return None
        key = keys[-1]
        price = side.prices.get(key)
        return price if price is not None else side.best(key)

    def mid(self) -> Decimal | None:
        """Exact midpoint of best bid and ask; ``None`` if either side is empty."""
        bk, ak = self._bid.keys, self._ask.keys
        if not bk or not ak:
            return None
        return from_units((bk[-1] - ak[-1]) * 5, self.price_scale + 1)

    def level_count(self, side: Side) -> int:
        """Levels on a resting side: ``Side.BUY`` is the bids, ``Side.SELL`` the asks."""
        return (self._bid if side is Side.BUY else self._ask).live_count()

    def rows_units(self, side: Side, n: int | None = None) -> list[tuple[int, Decimal]]:
        """Top ``n`` levels (all if ``None``) of a resting side, best first, prices in units."""
        if n is not None and n <= 0:
            return []
        levels = self._read(self._bid if side is Side.BUY else self._ask)
        return list(levels if n is None else islice(levels, n))

    def rows(self, side: Side, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        """Top ``n`` levels (all if ``None``) of a resting side as exact ``(price, size)``."""
        ps = self.price_scale
        return [(from_units(p, ps), s) for p, s in self.rows_units(side, n)]

    def levels(self) -> BookLevels:
        return BookLevels(self.rows(Side.BUY), self.rows(Side.SELL))

    def to_dict(self) -> dict[str, dict[Decimal, Decimal]]:
        """The exact state as ``{"bids": {price: size}, "asks": {...}}``, for comparing with the
        sandbox's book (``Decimal`` equality ignores trailing zeros)."""
        return {"bids": dict(self.rows(Side.BUY)), "asks": dict(self.rows(Side.SELL))}

    # -- depth queries ----------------------------------------------------------------------------
    # ``is_buy`` is the taker's side: a buy walks the asks from the best one up.

    def _walk(self, is_buy: bool) -> Iterator[tuple[int, Decimal]]:
        return self._read(self._ask if is_buy else self._bid)

    def _read(self, side: _Side) -> Iterator[tuple[int, Decimal]]:
        """``side.walk()``; a size that fails its check on the way puts the book out of sync."""
        try:
            yield from side.walk()
        except BookDataError as exc:
            self.mark_out_of_sync(f"bad size in the book: {exc}")
            raise

    def price_for_volume(self, is_buy: bool, volume: Decimal) -> Decimal | None:
        """Price of the deepest level a taker of ``volume`` reaches; ``None`` if the side holds
        less than ``volume`` (or is empty): there is no honest answer then."""
        target = _positive(volume, "volume")
        cum = _ZERO
        for price, size in self._walk(is_buy):
            cum = _EXACT.add(cum, size)
            if cum >= target:
                return from_units(price, self.price_scale)
        return None

    def deepest_price(self, is_buy: bool) -> Decimal | None:
        """The farthest known level a taker sweeping the side reaches (the highest ask for a
        buy, the lowest bid for a sell; at most the snapshot's horizon); ``None`` if empty."""
        last = None
        for price, _ in self._walk(is_buy):
            last = price
        return None if last is None else from_units(last, self.price_scale)

    def price_for_quote_volume(self, is_buy: bool, quote_volume: Decimal) -> Decimal | None:
        """Like ``price_for_volume`` with the amount in quote currency (price × size)."""
        target = _EXACT.scaleb(_positive(quote_volume, "quote volume"), self.price_scale)
        cum = _ZERO  # in units of 10**-price_scale quote
        for price, size in self._walk(is_buy):
            cum = _EXACT.add(cum, _EXACT.multiply(size, price))
            if cum >= target:
                return from_units(price, self.price_scale)
        return None

    def vwap_for_volume(self, is_buy: bool, volume: Decimal) -> tuple[Decimal | None, Decimal]:
        """``(vwap, filled)``: the average price a taker of ``volume`` would pay, and how much of
        ``volume`` the side can fill. With too little depth, ``filled < volume`` and the VWAP is
        over what is there; on an empty side, ``(None, 0)``. The last level used may be taken
        in part."""
        remaining = _positive(volume, "volume")
        quote = _ZERO  # sum of price units × size
        filled = _ZERO
        for price, size in self._walk(is_buy):
            take = size if size < remaining else remaining
            quote = _EXACT.add(quote, _EXACT.multiply(take, price))
            filled = _EXACT.add(filled, take)
            remaining = _EXACT.subtract(remaining, take)
            if not remaining:
                break
        if not filled:
            return None, _ZERO
        return _QUOTIENT.divide(quote, filled).scaleb(-self.price_scale, _QUOTIENT), filled

    def volume_for_price(self, is_buy: bool, price: Decimal) -> Decimal:
        """Base volume a taker could get at ``price`` or better (asks at or below it for a buy,
        bids at or above it for a sell); 0 when none."""
        return self._volume_to(is_buy, price, quote=False)

    def quote_volume_for_price(self, is_buy: bool, price: Decimal) -> Decimal:
        """Quote value (price × size) of ``volume_for_price``."""
        return _EXACT.scaleb(self._volume_to(is_buy, price, quote=True), -self.price_scale)

    def _volume_to(self, is_buy: bool, price: Decimal, quote: bool) -> Decimal:
        limit = _EXACT.scaleb(_positive(price, "price"), self.price_scale)
        total = _ZERO
        for p, size in self._walk(is_buy):
            if (p > limit) if is_buy else (p < limit):
                break
            total = _EXACT.add(total, _EXACT.multiply(size, p) if quote else size)
        return total

    def __repr__(self) -> str:
        state = "in sync" if self._synced else f"out of sync: {self._reason}"
        return (
            f"<OrderBook {self.trading_pair or '?'} id={self._update_id} {state} "
            f"bids={self._bid.live_count()} asks={self._ask.live_count()} "
            f"best={self.best_bid()}/{self.best_ask()}>"
        )
