"""An order inside the sandbox: its mutable record and the frozen view handed to the outside.

Only the engine mutates ``Order``; everything it gives away (results, events, queries) is an
``OrderView`` copy, so a front-end holding an old view never sees it change under its feet.
Statuses and execution types are Binance's (``enums.md``): an order expired by self-trade
prevention is ``EXPIRED_IN_MATCH`` and the report that says so has type ``TRADE_PREVENTION``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.markets import StpMode


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class ExecutionType(StrEnum):
    """What happened in one order event. The engine never emits REJECTED: a refused order
    raises ``ExchangeRejection`` before it exists, as Binance answers such requests with an error.
    """

    NEW = "NEW"
    TRADE = "TRADE"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    TRADE_PREVENTION = "TRADE_PREVENTION"


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as the venue reports it at one moment. ``price`` is ``None`` for MARKET."""

    symbol: str
    order_id: int
    account: str
    client_order_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    orig_qty: Decimal
    orig_quote_order_qty: Decimal
    executed_qty: Decimal
    cum_quote_qty: Decimal
    status: OrderStatus
    stp_mode: StpMode
    time: int
    update_time: int
    working_time: int
    is_working: bool  # resting on the book
    prevented_qty: Decimal
    prevented_match_id: int | None

    @property
    def remaining_qty(self) -> Decimal:
        return money.sub(money.sub(self.orig_qty, self.executed_qty), self.prevented_qty)


@dataclass(slots=True, eq=False)
class Order:
    """The engine's live record. ``locked`` is what this order still holds of ``lock_asset``."""

    symbol: str
    order_id: int
    account: str
    client_order_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    orig_qty: Decimal
    orig_quote_order_qty: Decimal
    stp_mode: StpMode
    time: int
    lock_asset: str
    update_time: int = 0
    working_time: int = 0
    status: OrderStatus = OrderStatus.NEW
    executed_qty: Decimal = money.ZERO
    cum_quote_qty: Decimal = money.ZERO
    prevented_qty: Decimal = money.ZERO
    prevented_match_id: int | None = None
    locked: Decimal = money.ZERO
    on_book: bool = False

    @property
    def remaining(self) -> Decimal:
        return money.sub(money.sub(self.orig_qty, self.executed_qty), self.prevented_qty)

    def view(self) -> OrderView:
        return OrderView(
            symbol=self.symbol,
            order_id=self.order_id,
            account=self.account,
            client_order_id=self.client_order_id,
            side=self.side,
            order_type=self.order_type,
            time_in_force=self.time_in_force,
            price=self.price,
            orig_qty=self.orig_qty,
            orig_quote_order_qty=self.orig_quote_order_qty,
            executed_qty=self.executed_qty,
            cum_quote_qty=self.cum_quote_qty,
            status=self.status,
            stp_mode=self.stp_mode,
            time=self.time,
            update_time=self.update_time,
            working_time=self.working_time,
            is_working=self.on_book,
            prevented_qty=self.prevented_qty,
            prevented_match_id=self.prevented_match_id,
        )
