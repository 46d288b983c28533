"""Trading pairs (``BASE-QUOTE`` everywhere above the codec) and per-venue symbol maps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import NamedTuple

from marketlink.core.errors import InvalidTradingPair, UnknownSymbol

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline, which let "BTC\n-USDT" through.
_ASSET = re.compile(r"^[A-Z0-9][A-Z0-9._]{0,31}\Z")


class TradingPair(NamedTuple):
    base: str
    quote: str

    @classmethod
    def parse(cls, text: str) -> TradingPair:
        if not isinstance(text, str):
            raise InvalidTradingPair(f"not a BASE-QUOTE trading pair: {text!r}")
        return _parse(text) if cls is TradingPair else cls(*_parse(text))

    def __str__(self) -> str:
        return f"{self.base}-{self.quote}"


@lru_cache(maxsize=4096)
def _parse(text: str) -> TradingPair:
    """Cached: an order's path splits its pair several times (fees, balances, budget), and a
    connector trades a handful of pairs; the result is an immutable tuple, safe to share. A
    malformed text raises every time (exceptions are not cached)."""
    base, sep, quote = text.strip().upper().partition("-")
    if not sep or not _ASSET.match(base) or not _ASSET.match(quote) or "-" in quote:
        raise InvalidTradingPair(f"not a BASE-QUOTE trading pair: {text!r}")
    return TradingPair(base, quote)


def split_pair(pair: str) -> tuple[str, str]:
    """Base and quote of a ``BASE-QUOTE`` string; raises ``InvalidTradingPair``."""
    p = TradingPair.parse(pair)
    return p.base, p.quote


class SymbolMap(Mapping[str, str]):
    """Bidirectional map venue symbol <-> trading pair; one per venue.

    It behaves as a read-only mapping from venue symbol to pair. Both directions are dict
    lookups (O(1)); an unknown key raises ``UnknownSymbol`` naming the venue, so callers never
    see a bare ``KeyError``. Building it refuses a symbol or pair that appears twice, which
    would otherwise silently route one market's data to another.
    """

    __slots__ = ("_to_pair", "_to_symbol", "venue")

    def __init__(self, venue: str, items: Iterable[tuple[str, str]] = ()) -> None:
        self.venue = venue
        self._to_pair: dict[str, str] = {}
        self._to_symbol: dict[str, str] = {}
        for symbol, pair in items:
            self.add(symbol, pair)

    def add(self, symbol: str, pair: str) -> None:
        pair = str(TradingPair.parse(pair))
        if self._to_pair.get(symbol, pair) != pair or self._to_symbol.get(pair, symbol) != symbol:
            raise InvalidTradingPair(f"{self.venue}: {symbol!r} <-> {pair!r} conflicts with the map")
        self._to_pair[symbol] = pair
        self._to_symbol[pair] = symbol

    def pair(self, symbol: str) -> str:
        try:
            return self._to_pair[symbol]
        except KeyError:
            raise UnknownSymbol(self.venue, symbol) from None

    def symbol(self, pair: str) -> str:
        try:
            return self._to_symbol[pair]
        except KeyError:
            raise UnknownSymbol(self.venue, pair) from None

    def has_pair(self, pair: str) -> bool:
        return pair in self._to_symbol

    def pairs(self) -> list[str]:
        return list(self._to_symbol)

    def __getitem__(self, symbol: str) -> str:
        return self.pair(symbol)

    def __iter__(self) -> Iterator[str]:
        return iter(self._to_pair)

    def __len__(self) -> int:
        return len(self._to_pair)

    def __repr__(self) -> str:
        return f"SymbolMap({self.venue!r}, {len(self)} symbols)"
