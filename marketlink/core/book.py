"""The local order book: exact levels, kept in step with a venue's depth stream.

Prices are exact integers, counts of ``10**-price_scale`` (the scale comes from the market's
tick). Integers hash and compare faster than ``Decimal`` and, unlike floats, two spellings of one
price ("0.10", "0.1000") are one key. A price finer than the tick is refused
(``PrecisionError``), never rounded: it means our trading rule is out of date, and the engine
must reload it and resync rather than guess. Sizes are kept as the exact ``Decimal`` the venue
sent: a book never rounds a size, so the step plays no part here, and C ``Decimal`` parses a size
string about twice as fast as our validated integer parser (see bench/README.md).

Per side, a dict maps price units to size, and a plain list holds the prices sorted with the
*best level at the end* (asks stored negated). Depth updates cluster at the top of the book, so
inserting or removing a price moves only the few list slots behind it, and the best level is
``keys[-1]``. Only a level appearing or disappearing touches the list. Prices near the top recur
in almost every diff, so each side memoizes price string -> units in a small bounded dict.

Whether a diff may be applied is decided by a ``SequenceRule`` (``marketlink.core.sequence``).
A gap or a crossed book sets ``in_sync`` false with a reason; diffs are then refused until a new
snapshot. Queries keep answering from the last state even when out of sync (so a resync can be
diagnosed); callers that trade gate on ``in_sync``. Everything handed out is an exact
``Decimal``, except a VWAP, which is a quotient and is rounded to 34 significant digits.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import MAX_PREC, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation
from enum import StrEnum
from typing import Final, NamedTuple

from marketlink.core.enums import Side
from marketlink.core.errors import MarketlinkError
from marketlink.core.rules import TradingRule
from marketlink.core.sequence import APPLY, Check, SequenceRule, Verdict, get_rule

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
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(64))
#: Price string -> units entries kept per side. Diffs hit a few hundred prices near the top over
#: and over; the bound keeps a deep, drifting book from growing the memo without limit.
_CACHE_LIMIT: Final = 2048
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


def _size(text: str) -> Decimal:
    """A venue size string as an exact Decimal; zero allowed (it deletes a level)."""
    try:
        if text.__class__ is str:  # a float here would be stored as its binary expansion
            size = Decimal(text)
            if not size or _ZERO < size < _SIZE_LIMIT:
                return size
    except _MALFORMED:
        pass
    raise BookDataError(f"not a valid size: {text!r:.40}")


def _positive(value: Decimal, what: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be a positive finite Decimal, got {value!r}")
    return value


class OrderBook:
    """One market's book. Not thread-safe; one owner (the engine's market-data task) mutates it."""

    __slots__ = (
        "_ask_cache",
        "_ask_keys",
        "_asks",
        "_bid_cache",
        "_bid_keys",
        "_bids",
        "_fresh",
        "_last_trade",
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
        self._bids: dict[int, Decimal] = {}
        self._asks: dict[int, Decimal] = {}  # keyed by negated price units
        self._bid_keys: list[int] = []  # ascending: best bid last
        self._ask_keys: list[int] = []  # ascending negated prices: best ask last
        self._bid_cache: dict[str, int] = {}
        self._ask_cache: dict[str, int] = {}
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

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], update_id: int) -> DiffResult:
        """Replace the whole book (never merge); zero sizes are skipped.

        Returns APPLIED, or CROSSED (installed but out of sync). On bad data the old book is
        dropped too, the book is left empty and out of sync, and the error propagates.
        """
        return self._replace(bids, asks, update_id, DiffResult.APPLIED)

    def apply_diff(
        self,
        bids: Iterable[Level],
        asks: Iterable[Level],
        first_id: int,
        final_id: int,
        prev_final_id: int | None = None,
    ) -> DiffResult:
        """Apply a depth diff if it continues the sequence; sizes are absolute, zero deletes
        (deleting an absent level is normal). Bybit passes its ``u`` as both ids.

        On bad data the diff may be half applied, so the book is marked out of sync before the
        error propagates.
        """
        check = self._rule.check(self._update_id, self._fresh, first_id, final_id, prev_final_id)
        if (check is not APPLY and check.verdict is not Verdict.APPLY) or not self._synced:
            return self._not_applied(check, bids, asks, final_id)
        bid_keys, ask_keys = self._bid_keys, self._ask_keys
        try:
            self._apply_side(bids, self._bids, bid_keys, self._bid_cache, 1)
            self._apply_side(asks, self._asks, ask_keys, self._ask_cache, -1)
        except BookDataError as exc:
            self.mark_out_of_sync(f"bad level in diff u={final_id}: {exc}")
            raise
        self._update_id = final_id
        self._fresh = False
        if bid_keys and ask_keys and bid_keys[-1] >= -ask_keys[-1]:
            self.mark_out_of_sync(f"crossed after diff u={final_id}: {self._crossing()}")
            return DiffResult.CROSSED
        return DiffResult.APPLIED

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
        self, bids: Iterable[Level], asks: Iterable[Level], update_id: int, result: DiffResult
    ) -> DiffResult:
        try:
            new_bids = self._parse_side(bids, 1)
            new_asks = self._parse_side(asks, -1)
        except BookDataError as exc:
            self._bids, self._asks, self._bid_keys, self._ask_keys = {}, {}, [], []
            self.mark_out_of_sync(f"bad level in snapshot {update_id}: {exc}")
            raise
        self._bids, self._asks = new_bids, new_asks
        self._bid_keys, self._ask_keys = sorted(new_bids), sorted(new_asks)
        self._update_id = update_id
        self._fresh = True
        self._synced = True
        self._reason = ""
        if self._bid_keys and self._ask_keys and self._bid_keys[-1] >= -self._ask_keys[-1]:
            self.mark_out_of_sync(f"crossed snapshot {update_id}: {self._crossing()}")
            return DiffResult.CROSSED
        return result

    def _parse_side(self, levels: Iterable[Level], sign: int) -> dict[int, Decimal]:
        ps = self.price_scale
        out: dict[int, Decimal] = {}
        try:
            for text, size_text in levels:
                price = to_units(text, ps)
                if not price:
                    raise BookDataError(f"zero price {text!r}")
                size = _size(size_text)
                if size:
                    out[sign * price] = size
                else:
                    out.pop(sign * price, None)  # a later zero for a price cancels an earlier one
        except BookDataError:
            raise
        except _MALFORMED as exc:
            raise BookDataError(f"malformed level list: {exc!r:.80}") from exc
        return out

    def _apply_side(
        self,
        levels: Iterable[Level],
        book: dict[int, Decimal],
        keys: list[int],
        cache: dict[str, int],
        sign: int,
    ) -> None:
        # The hot path, so _size() is inlined and the price memo is read through a bound method.
        get = cache.get
        try:
            for text, size_text in levels:
                key = get(text)
                if key is None:
                    key = self._new_key(text, cache, sign)
                if size_text.__class__ is not str:
                    raise BookDataError(f"not a valid size: {size_text!r:.40}")
                size = Decimal(size_text)
                if size:
                    if not _ZERO < size < _SIZE_LIMIT:
                        raise BookDataError(f"not a valid size: {size_text!r:.40}")
                    if key not in book:
                        insort(keys, key)
                    book[key] = size
                elif book.pop(key, None) is not None:
                    del keys[bisect_left(keys, key)]
        except BookDataError:
            raise
        except _MALFORMED as exc:
            raise BookDataError(f"malformed level list: {exc!r:.80}") from exc

    def _new_key(self, text: str, cache: dict[str, int], sign: int) -> int:
        price = to_units(text, self.price_scale)
        if not price:
            raise BookDataError(f"zero price {text!r}")
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        key = cache[text] = sign * price
        return key

    def _crossing(self) -> str:
        return f"best bid {self.best_bid()} >= best ask {self.best_ask()}"

    # -- top of book ------------------------------------------------------------------------------

    def best_bid_units(self) -> int | None:
        """Best bid in units of ``10**-price_scale``: the cheap read for hot loops."""
        keys = self._bid_keys
        return keys[-1] if keys else None

    def best_ask_units(self) -> int | None:
        keys = self._ask_keys
        return -keys[-1] if keys else None

    def best_bid(self) -> Decimal | None:
        keys = self._bid_keys
        return from_units(keys[-1], self.price_scale) if keys else None

    def best_ask(self) -> Decimal | None:
        keys = self._ask_keys
        return from_units(-keys[-1], self.price_scale) if keys else None

    def mid(self) -> Decimal | None:
        """Exact midpoint of best bid and ask; ``None`` if either side is empty."""
        bk, ak = self._bid_keys, self._ask_keys
        if not bk or not ak:
            return None
        return from_units((bk[-1] - ak[-1]) * 5, self.price_scale + 1)

    def level_count(self, side: Side) -> int:
        """Levels on a resting side: ``Side.BUY`` is the bids, ``Side.SELL`` the asks."""
        return len(self._bids if side is Side.BUY else self._asks)

    def rows_units(self, side: Side, n: int | None = None) -> list[tuple[int, Decimal]]:
        """Top ``n`` levels (all if ``None``) of a resting side, best first, prices in units."""
        if n is not None and n <= 0:
            return []
        if side is Side.BUY:
            keys, book = self._bid_keys, self._bids
            top = keys if n is None else keys[-n:]
            return [(k, book[k]) for k in reversed(top)]
        keys, book = self._ask_keys, self._asks
        top = keys if n is None else keys[-n:]
        return [(-k, book[k]) for k in reversed(top)]

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
        if is_buy:
            book = self._asks
            for k in reversed(self._ask_keys):
                yield -k, book[k]
        else:
            book = self._bids
            for k in reversed(self._bid_keys):
                yield k, book[k]

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
            f"bids={len(self._bids)} asks={len(self._asks)} best={self.best_bid()}/{self.best_ask()}>"
        )
