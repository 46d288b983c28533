"""Events: what happened, as immutable values handed from the engine to strategies and the journal.

They are plain frozen values, not callbacks, so the code that decides *what* happened (the order
tracker, the book sync) stays pure and testable, and the bus that delivers them is someone else's
job. Timestamps are float seconds in the clock of whoever produced the input (the venue's time for
venue reports); money is ``Decimal``.

Order events promise, per order (ARCHITECTURE §3): ``OrderCreated`` before any ``OrderFilled``;
``OrderCompleted`` after its last fill; exactly one ``TerminalOrderEvent``. ``OrderLost`` and
``OrderUnknown`` are warnings, not endings: the order may still fill or be settled later.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketlink.core.enums import OrderType, PositionAction, PositionSide, Side, TimeInForce
from marketlink.core.fees import TokenAmount, TradeFee

__all__ = [
    "WITHDRAWN_PREFIX",
    "BalanceUpdated",
    "BookResynced",
    "ConnectorStatusChanged",
    "Event",
    "FundingPayment",
    "OrderCancelled",
    "OrderCompleted",
    "OrderCreated",
    "OrderEvent",
    "OrderExpired",
    "OrderFailed",
    "OrderFilled",
    "OrderLost",
    "OrderUnknown",
    "PositionUpdated",
    "RateLimitNear",
    "TerminalOrderEvent",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Root of every event, so a bus can subscribe by type and a journal can store any of them."""

    timestamp: float


# -- orders -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderEvent(Event):
    """Something happened to one of our orders. Side and type ride along so a strategy never has
    to look the order up to interpret the event (it may already be gone from the tracker)."""

    client_order_id: str
    exchange_order_id: str | None
    trading_pair: str
    side: Side
    order_type: OrderType


@dataclass(frozen=True, slots=True)
class OrderCreated(OrderEvent):
    """The venue showed it holds the order (an ack, a status, or a fill that proves it)."""

    amount: Decimal
    price: Decimal | None
    creation_timestamp: float
    time_in_force: TimeInForce
    position_action: PositionAction
    leverage: int


@dataclass(frozen=True, slots=True)
class OrderFilled(OrderEvent):
    """One fill, counted once. ``late`` marks a fill that arrived after the order's terminal event:
    the venue's terminal report did not account for it, but money moved, so it is still reported."""

    trade_id: str
    price: Decimal
    amount: Decimal
    quote_amount: Decimal
    fee: TradeFee
    fee_amounts: tuple[TokenAmount, ...]
    is_taker: bool
    position_action: PositionAction
    leverage: int
    late: bool = False


@dataclass(frozen=True, slots=True)
class OrderLost(OrderEvent):
    """The venue answered "not found" too many times in a row. Not an ending: the order is still
    polled for fills, can be cancelled, and a later status from the venue settles it."""

    not_found_count: int


#: How the reason of an order withdrawn before it was sent begins (``OrderFailed.withdrawn``).
WITHDRAWN_PREFIX = "withdrawn:"


@dataclass(frozen=True, slots=True)
class OrderUnknown(OrderEvent):
    """Placement timed out or broke in transport: the venue may or may not hold the order. Never
    a failure; a query by client order id settles it."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class TerminalOrderEvent(OrderEvent):
    """The order's one and only ending, with its final accounts.

    ``missing_base`` is what the venue says traded beyond the fills we hold; it is zero unless the
    engine gave up waiting for those fills (``OrderTracker.release``), so a consumer can see that
    the totals here are a lower bound.
    """

    executed_base: Decimal
    executed_quote: Decimal
    average_price: Decimal | None
    fees: tuple[TokenAmount, ...]
    missing_base: Decimal
    reason: str | None


@dataclass(frozen=True, slots=True)
class OrderCompleted(TerminalOrderEvent):
    """Fully filled; emitted only after the fill that completed it."""


@dataclass(frozen=True, slots=True)
class OrderCancelled(TerminalOrderEvent):
    """Cancelled (by us or the venue), possibly after partial fills."""


@dataclass(frozen=True, slots=True)
class OrderExpired(TerminalOrderEvent):
    """Ended by its time in force (IOC/FOK remainder, GTD) or a venue rule, possibly after fills."""


@dataclass(frozen=True, slots=True)
class OrderFailed(TerminalOrderEvent):
    """The venue never accepted the order; nothing traded.

    ``withdrawn``: it never left this process, because its cancel came while it waited behind
    the rate limits: the outcome a cancel asked for, not an error."""

    @property
    def withdrawn(self) -> bool:
        return (self.reason or "").startswith(WITHDRAWN_PREFIX)


# -- account, market, connector -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceUpdated(Event):
    """``None`` means "not part of this update", never zero: some streams carry only one side."""

    asset: str
    total: Decimal | None
    available: Decimal | None


@dataclass(frozen=True, slots=True)
class PositionUpdated(Event):
    """A perpetual position as the venue (or local accounting) now sees it; ``amount`` is signed:
    negative is short, zero means the position is closed."""

    trading_pair: str
    position_side: PositionSide
    amount: Decimal
    entry_price: Decimal
    unrealized_pnl: Decimal
    leverage: int


@dataclass(frozen=True, slots=True)
class FundingPayment(Event):
    """A settled funding payment; ``amount`` is signed from our side: positive received, negative
    paid, so sums over payments are the funding PnL without sign conventions per venue."""

    trading_pair: str
    asset: str
    amount: Decimal
    funding_rate: Decimal


@dataclass(frozen=True, slots=True)
class ConnectorStatusChanged(Event):
    """Readiness changed. ``not_ready`` names each part still missing and why, so a user sees
    "user_stream: reconnecting" instead of a bare False."""

    connector: str
    ready: bool
    not_ready: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class BookResynced(Event):
    """A book was rebuilt from a snapshot after a gap, a crossed book or a stale stream."""

    trading_pair: str
    update_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class RateLimitNear(Event):
    """A throttler pool is close to its limit; ``fraction`` is the used share of it (0..1+).
    A ratio, not money, so float is the right type here."""

    pool: str
    fraction: float
