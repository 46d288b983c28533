"""Venue-neutral values a codec produces from market-data and account payloads.

Codecs turn venue bytes into these (and into ``OrderUpdate`` / ``TradeUpdate`` from
``core.orders``); the engine only ever sees these. Level lists stay as the venue's strings
(``[[price, size], ...]``) because the order book parses them exactly, once, on its hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.orders import OrderState, OrderUpdate
from marketlink.core.rules import TradingRule

Levels = Sequence[Sequence[str]]


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A full book as of ``update_id`` (REST snapshot, or a venue's pushed snapshot)."""

    trading_pair: str
    update_id: int
    bids: Levels
    asks: Levels
    timestamp: float | None = None


class DepthUpdate(msgspec.Struct, frozen=True, gc=False):
    """A diff (``is_snapshot`` False) or a pushed snapshot (True, e.g. Bybit) from a stream.

    ``first_id``/``final_id``/``prev_final_id`` are whatever the venue's sequence rule reads
    (Binance spot U/u, USD-M U/u/pu, Bybit u as both).

    One is built for every depth message, so it is a msgspec ``Struct`` rather than a frozen
    dataclass like its neighbours: as immutable, but built in C, over ten times cheaper (the
    generated ``__init__`` of a frozen dataclass sets each field through
    ``object.__setattr__``). ``gc=False``: it holds only ids, strings and level lists, which
    never refer back to it, so the collector need not track one per message.
    """

    trading_pair: str
    first_id: int
    final_id: int
    bids: Levels
    asks: Levels
    prev_final_id: int | None = None
    is_snapshot: bool = False
    timestamp: float | None = None
    #: The codec vouches that ``bids`` and ``asks`` are lists of ``(price, size)`` strings whose
    #: sizes are plain decimals of 2 to 30 characters, so the book need not check them one by
    #: one (``OrderBook.apply_diff(checked=True)``). False unless a codec proved it.
    checked: bool = False


@dataclass(frozen=True, slots=True)
class PublicTrade:
    trading_pair: str
    trade_id: str
    price: Decimal
    amount: Decimal
    taker_side: Side
    timestamp: float


@dataclass(frozen=True, slots=True)
class BookTicker:
    trading_pair: str
    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None
    update_id: int | None = None
    timestamp: float | None = None


MarketMessage = DepthUpdate | PublicTrade | BookTicker


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    total: Decimal
    available: Decimal


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    """Balances of some assets. ``complete`` means the venue listed every asset (a REST
    snapshot), so an asset missing from it is zero; a stream push lists only changed assets."""

    balances: tuple[Balance, ...]
    timestamp: float
    complete: bool = False


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the venue reports it in a query or an open-orders listing."""

    trading_pair: str
    client_order_id: str
    exchange_order_id: str
    side: Side
    order_type: OrderType
    amount: Decimal
    price: Decimal | None
    executed: Decimal
    state: OrderState
    timestamp: float
    time_in_force: TimeInForce | None = None
    executed_quote: Decimal | None = None
    #: When the venue created it; ``timestamp`` is its last change (a fill, a cancel).
    created_at: float | None = None

    def as_update(self) -> OrderUpdate:
        return OrderUpdate(
            trading_pair=self.trading_pair,
            timestamp=self.timestamp,
            new_state=self.state,
            client_order_id=self.client_order_id,
            exchange_order_id=self.exchange_order_id,
            cumulative_filled=self.executed,
            created_at=self.created_at,
        )


@dataclass(frozen=True, slots=True)
class PublishedLimit:
    """One rate-limit window as the venue publishes it with its markets: ``capacity`` units per
    ``seconds`` on the pool our spec calls ``limit_id``."""

    limit_id: str
    seconds: float
    capacity: int


@dataclass(frozen=True, slots=True)
class MarketsInfo:
    """Trading rules parsed from a venue's market listing.

    ``symbols`` maps venue symbol -> pair for every *trading* market; ``skipped`` names each
    market left out and why (not trading, malformed), so nothing disappears silently.
    ``rate_limits``: the windows the listing publishes, if the venue publishes any; an entry
    that cannot be read is named in ``skipped`` too, by its place (``rateLimits[2]``)."""

    rules: dict[str, TradingRule]
    symbols: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)
    rate_limits: list[PublishedLimit] = field(default_factory=list)
