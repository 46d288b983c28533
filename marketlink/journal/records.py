"""The journal's values: rows going in (``*Row``) and records coming out (``*Record``).

Rows are built on the event loop from events and tracker orders (cheap, no I/O) and handed to
a writer; records are what readers (``marketlink history``, ``status``, a strategy restoring
itself) get back. Both are plain frozen values with Decimals, so nothing about SQLite leaks out
and a writer thread can take a row without sharing any mutable object with the loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from marketlink.core.enums import Side
from marketlink.core.fees import TokenAmount
from marketlink.core.orders import InFlightOrder

__all__ = [
    "BalanceRecord",
    "BalanceRow",
    "BotRecord",
    "FillRecord",
    "FillRow",
    "FundingRow",
    "OrderRecord",
    "OrderRow",
    "PositionRow",
    "Row",
    "StateRecord",
    "StateRow",
]


@dataclass(frozen=True, slots=True)
class BotRecord:
    """A bot's identity in the journal. ``client_id_instance`` is drawn once and kept, so a
    restarted bot makes ids that its own id factory recognises (it may cancel and adopt them)."""

    bot_id: int
    name: str
    venue: str
    prefix: str | None
    client_id_instance: str
    created: float


# -- rows (writes) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRow:
    """The latest known picture of one order: the columns readers filter on, plus the full
    ``InFlightOrder.to_dict()`` that ``restore_orders`` rebuilds it from."""

    bot_id: int
    venue: str
    client_order_id: str
    exchange_order_id: str | None
    trading_pair: str
    side: str
    order_type: str
    time_in_force: str
    amount: str
    price: str | None
    state: str
    executed_base: str
    executed_quote: str
    missing_fill: bool
    created: float
    updated: float
    data: str

    @classmethod
    def of(cls, bot_id: int, venue: str, order: InFlightOrder, *, held: bool | None = None) -> OrderRow:
        """Snapshot ``order`` now: the tracker keeps mutating it after this returns.

        ``missing_fill`` is what ``restore_orders`` selects terminal orders by, so it must mean
        "its terminal event has not gone out yet" (the tracker holds it for its fills). An order
        the tracker *released* with a gap keeps ``order.missing_fill`` true for good; a recorder
        passes ``held=False`` for it, so it is not restored (and ended again) at every start."""
        d = order.to_dict()
        return cls(
            bot_id=bot_id,
            venue=venue,
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            trading_pair=order.trading_pair,
            side=order.side.value,
            order_type=order.order_type.value,
            time_in_force=order.time_in_force.value,
            amount=d["amount"],
            price=d["price"],
            state=order.state.value,
            executed_base=d["executed_base"],
            executed_quote=d["executed_quote"],
            missing_fill=order.missing_fill if held is None else held and order.missing_fill,
            created=order.creation_timestamp,
            updated=order.last_update_timestamp,
            data=json.dumps(d, separators=(",", ":")),
        )


@dataclass(frozen=True, slots=True)
class StateRow:
    """One entry of an order's append-only history: the state it reached and what said so."""

    bot_id: int
    venue: str
    client_order_id: str
    state: str
    event: str
    reason: str | None
    timestamp: float


@dataclass(frozen=True, slots=True)
class FillRow:
    bot_id: int
    venue: str
    client_order_id: str
    trade_id: str
    exchange_order_id: str | None
    trading_pair: str
    side: str
    price: str
    amount: str
    quote_amount: str
    fees: str  # JSON [[token, amount], ...] of what the fee took
    is_taker: bool
    late: bool
    timestamp: float


@dataclass(frozen=True, slots=True)
class BalanceRow:
    bot_id: int
    venue: str
    asset: str
    total: str | None
    available: str | None
    timestamp: float


@dataclass(frozen=True, slots=True)
class PositionRow:
    bot_id: int
    venue: str
    trading_pair: str
    position_side: str
    amount: str
    entry_price: str
    unrealized_pnl: str
    leverage: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class FundingRow:
    bot_id: int
    venue: str
    trading_pair: str
    asset: str
    amount: str
    funding_rate: str
    timestamp: float


Row = OrderRow | StateRow | FillRow | BalanceRow | PositionRow | FundingRow


def fees_json(fees: tuple[TokenAmount, ...]) -> str:
    return json.dumps([[f.token, str(f.amount)] for f in fees], separators=(",", ":"))


def fees_from_json(text: str) -> tuple[TokenAmount, ...]:
    raw: Any = json.loads(text)
    return tuple(TokenAmount(str(token), Decimal(str(amount))) for token, amount in raw)


# -- records (reads) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRecord:
    bot_id: int
    venue: str
    client_order_id: str
    exchange_order_id: str | None
    trading_pair: str
    side: Side
    order_type: str
    time_in_force: str
    amount: Decimal
    price: Decimal | None
    state: str
    executed_base: Decimal
    executed_quote: Decimal
    created: float
    updated: float
    data: str

    def to_order(self) -> InFlightOrder:
        """The full order as last recorded (``InvalidOrderData`` if the record is corrupt)."""
        return InFlightOrder.from_dict(json.loads(self.data))


@dataclass(frozen=True, slots=True)
class StateRecord:
    client_order_id: str
    state: str
    event: str
    reason: str | None
    timestamp: float


@dataclass(frozen=True, slots=True)
class FillRecord:
    bot_id: int
    venue: str
    client_order_id: str
    trade_id: str
    exchange_order_id: str | None
    trading_pair: str
    side: Side
    price: Decimal
    amount: Decimal
    quote_amount: Decimal
    fees: tuple[TokenAmount, ...]
    is_taker: bool
    late: bool
    timestamp: float


@dataclass(frozen=True, slots=True)
class BalanceRecord:
    asset: str
    total: Decimal | None
    available: Decimal | None
    timestamp: float
