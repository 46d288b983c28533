"""Plain values the engine hands out: events to listeners, results to callers, market data.

Each private event carries everything a venue front-end needs to render its own message, so a
front-end formats and never queries back (Binance's ``executionReport`` from ``OrderEvent``,
``outboundAccountPosition`` from ``AccountEvent``, ``balanceUpdate`` from ``BalanceDelta``,
``trade`` from ``TradeEvent``, ``bookTicker`` from ``BookTop``, ``depthUpdate`` from
``DepthDiff``). All money is Decimal; all times are epoch milliseconds supplied by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.money import ZERO
from marketlink.sandbox.exchange.orders import ExecutionType, OrderView

Level = tuple[Decimal, Decimal]  # (price, quantity)


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade from one order's point of view."""

    trade_id: int
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    is_maker: bool


@dataclass(frozen=True, slots=True)
class PreventedMatch:
    """A match self-trade prevention stopped; quantities are what each side lost to it."""

    prevented_match_id: int
    taker_order_id: int
    maker_order_id: int
    price: Decimal
    taker_prevented_qty: Decimal | None
    maker_prevented_qty: Decimal | None


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One change of one order: the order's state after it plus what this change was.

    ``client_order_id`` is Binance's ``c`` (on a cancel, the cancel request's own id) and
    ``orig_client_order_id`` its ``C`` (the canceled order's id on a cancel, else "").
    """

    order: OrderView
    execution_type: ExecutionType
    event_time: int
    transaction_time: int
    execution_id: int
    client_order_id: str
    orig_client_order_id: str = ""
    last_qty: Decimal = ZERO
    last_price: Decimal = ZERO
    last_quote_qty: Decimal = ZERO
    commission: Decimal = ZERO
    commission_asset: str | None = None
    trade_id: int = -1
    is_maker: bool = False
    last_prevented_qty: Decimal = ZERO
    prevented_match_id: int | None = None
    reject_reason: str = "NONE"

    @property
    def account(self) -> str:
        return self.order.account

    @property
    def symbol(self) -> str:
        return self.order.symbol


@dataclass(frozen=True, slots=True)
class AssetBalance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return money.add(self.free, self.locked)


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """Balances of the assets one operation changed, after it (Binance's account position)."""

    account: str
    event_time: int
    balances: tuple[AssetBalance, ...]


@dataclass(frozen=True, slots=True)
class BalanceDelta:
    """A deposit or withdrawal outside trading (Binance's ``balanceUpdate``)."""

    account: str
    asset: str
    delta: Decimal
    event_time: int


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """A public trade. ``buyer_is_maker`` is Binance's ``m``."""

    symbol: str
    trade_id: int
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    buyer_order_id: int
    seller_order_id: int
    buyer_is_maker: bool
    time: int


@dataclass(frozen=True, slots=True)
class BookTop:
    """Best bid and ask with the book's update id; ``None`` prices mean an empty side."""

    symbol: str
    update_id: int
    bid_price: Decimal | None
    bid_qty: Decimal
    ask_price: Decimal | None
    ask_qty: Decimal


@dataclass(frozen=True, slots=True)
class OwnTrade:
    """One account's side of a trade (Binance's ``myTrades`` element)."""

    symbol: str
    trade_id: int
    order_id: int
    account: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    symbol: str
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """Levels changed by updates ``first_update_id..last_update_id``, as absolute quantities
    (0 = the level is gone). Consecutive diffs are contiguous: next first = last + 1."""

    symbol: str
    first_update_id: int
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class OrderResult:
    """What placing an order did, for the venue's synchronous answer."""

    order: OrderView
    fills: tuple[Fill, ...]
    prevented_matches: tuple[PreventedMatch, ...]
    transact_time: int


@dataclass(frozen=True, slots=True)
class CancelResult:
    order: OrderView
    cancel_client_order_id: str
    transact_time: int


PrivateEvent = OrderEvent | AccountEvent | BalanceDelta
PublicEvent = TradeEvent | BookTop
