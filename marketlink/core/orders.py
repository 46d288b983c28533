"""Orders: their states, the one transition table, the update values that drive them, and the
in-flight order that applies them.

Like h11's ``_state.py``, everything that decides a state change lives in this file: the table
``TRANSITIONS`` maps (current state, trigger) to the next state, where a trigger is either a state
the venue (or the engine) reports, or a fill. A pair missing from the table is refused: the state
stays as it was and the caller gets a verdict to count and log, never an exception in the engine
loop. The few rules that need more than the pair sit right below the table with their reason.

Money is ``Decimal`` throughout. Sums are kept exact (a context wide enough that no realistic
amount, price or fee is ever rounded); only the average price is a quotient, to 28 digits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, TypeAlias, TypeVar

from marketlink.core.enums import OrderType, PositionAction, Side, TimeInForce
from marketlink.core.errors import MarketlinkError
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.core.pairs import TradingPair

__all__ = [
    "LIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "FillKind",
    "InFlightOrder",
    "InvalidOrderData",
    "OrderState",
    "OrderUpdate",
    "TradeUpdate",
    "Trigger",
    "Verdict",
    "next_state",
]

_T = TypeVar("_T")
_ZERO = Decimal(0)
# 120 digits: a sum or product of venue numbers (at most ~40 significant digits each, e.g. an
# 18-decimal token amount of 10^12) is never rounded, so executed totals are exact.
_EXACT = Context(prec=120, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
_AVERAGE = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])


class InvalidOrderData(MarketlinkError, ValueError):
    """An order, update or journal record is malformed (float money, negative amount, missing
    ids, unknown enum value). Raised where the value is built, so bad data never reaches state."""


class OrderState(StrEnum):
    PENDING_CREATE = "PENDING_CREATE"  # placement sent, no answer yet
    OPEN = "OPEN"  # the venue holds it, nothing traded
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"  # our marker: a cancel request is in flight
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"  # the venue refused it; nothing traded
    UNKNOWN = "UNKNOWN"  # placement timed out or broke in transport; a query settles it
    LOST = "LOST"  # the venue said "not found" N times in a row; still fillable and cancellable

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


class FillKind(StrEnum):
    """A fill as a trigger: whether it leaves some of the order or completes it."""

    PARTIAL = "FILL_PARTIAL"
    COMPLETE = "FILL_COMPLETE"


Trigger: TypeAlias = OrderState | FillKind

TERMINAL_STATES: Final = frozenset(
    {OrderState.FILLED, OrderState.CANCELED, OrderState.EXPIRED, OrderState.FAILED}
)
LIVE_STATES: Final = frozenset(OrderState) - TERMINAL_STATES

# Reports that are our own markers, not the venue speaking: they never reset the not-found count.
_OWN_MARKERS: Final = frozenset({OrderState.PENDING_CANCEL, OrderState.UNKNOWN, OrderState.LOST})
# Reports proving the venue holds or held the order (it acked, traded, cancelled or expired it).
_VENUE_HELD: Final = frozenset(
    {
        OrderState.OPEN,
        OrderState.PARTIALLY_FILLED,
        OrderState.FILLED,
        OrderState.CANCELED,
        OrderState.EXPIRED,
    }
)

_S = OrderState
_F = FillKind

#: (current state, trigger) -> next state. Next == current is an accepted no-op (a repeat or a
#: stale answer); a missing pair is an illegal transition, refused with the state untouched.
TRANSITIONS: Final[Mapping[tuple[OrderState, Trigger], OrderState]] = MappingProxyType(
    {
        # -- placement sent, no answer yet --------------------------------------------------
        (_S.PENDING_CREATE, _S.PENDING_CREATE): _S.PENDING_CREATE,  # venue: "pending new"
        (_S.PENDING_CREATE, _S.OPEN): _S.OPEN,
        (_S.PENDING_CREATE, _S.PARTIALLY_FILLED): _S.PARTIALLY_FILLED,
        (_S.PENDING_CREATE, _S.FILLED): _S.FILLED,
        (_S.PENDING_CREATE, _S.PENDING_CANCEL): _S.PENDING_CANCEL,
        (_S.PENDING_CREATE, _S.CANCELED): _S.CANCELED,
        (_S.PENDING_CREATE, _S.EXPIRED): _S.EXPIRED,  # IOC/FOK that found nothing to trade
        (_S.PENDING_CREATE, _S.FAILED): _S.FAILED,
        (_S.PENDING_CREATE, _S.UNKNOWN): _S.UNKNOWN,
        (_S.PENDING_CREATE, _S.LOST): _S.LOST,
        (_S.PENDING_CREATE, _F.PARTIAL): _S.PARTIALLY_FILLED,
        (_S.PENDING_CREATE, _F.COMPLETE): _S.FILLED,
        # -- working, nothing traded ----------------------------------------------------------
        (_S.OPEN, _S.OPEN): _S.OPEN,
        (_S.OPEN, _S.PARTIALLY_FILLED): _S.PARTIALLY_FILLED,
        (_S.OPEN, _S.FILLED): _S.FILLED,
        (_S.OPEN, _S.PENDING_CANCEL): _S.PENDING_CANCEL,
        (_S.OPEN, _S.CANCELED): _S.CANCELED,
        (_S.OPEN, _S.EXPIRED): _S.EXPIRED,
        (_S.OPEN, _S.LOST): _S.LOST,
        (_S.OPEN, _F.PARTIAL): _S.PARTIALLY_FILLED,
        (_S.OPEN, _F.COMPLETE): _S.FILLED,
        # -- working, partly traded -----------------------------------------------------------
        (_S.PARTIALLY_FILLED, _S.OPEN): _S.PARTIALLY_FILLED,  # stale answer: a fill is known
        (_S.PARTIALLY_FILLED, _S.PARTIALLY_FILLED): _S.PARTIALLY_FILLED,
        (_S.PARTIALLY_FILLED, _S.FILLED): _S.FILLED,
        (_S.PARTIALLY_FILLED, _S.PENDING_CANCEL): _S.PENDING_CANCEL,
        (_S.PARTIALLY_FILLED, _S.CANCELED): _S.CANCELED,
        (_S.PARTIALLY_FILLED, _S.EXPIRED): _S.EXPIRED,
        (_S.PARTIALLY_FILLED, _S.LOST): _S.LOST,
        (_S.PARTIALLY_FILLED, _F.PARTIAL): _S.PARTIALLY_FILLED,
        (_S.PARTIALLY_FILLED, _F.COMPLETE): _S.FILLED,
        # -- cancel request in flight ---------------------------------------------------------
        # The venue saying the order still works (the cancel failed, or the answer predates it)
        # brings it back; a fill alone does not, the cancel may still land.
        (_S.PENDING_CANCEL, _S.OPEN): _S.OPEN,
        (_S.PENDING_CANCEL, _S.PARTIALLY_FILLED): _S.PARTIALLY_FILLED,
        (_S.PENDING_CANCEL, _S.FILLED): _S.FILLED,  # it traded before the cancel arrived
        (_S.PENDING_CANCEL, _S.PENDING_CANCEL): _S.PENDING_CANCEL,
        (_S.PENDING_CANCEL, _S.CANCELED): _S.CANCELED,
        (_S.PENDING_CANCEL, _S.EXPIRED): _S.EXPIRED,
        (_S.PENDING_CANCEL, _S.FAILED): _S.FAILED,  # cancel sent before the placement was refused
        (_S.PENDING_CANCEL, _S.LOST): _S.LOST,
        (_S.PENDING_CANCEL, _F.PARTIAL): _S.PENDING_CANCEL,
        (_S.PENDING_CANCEL, _F.COMPLETE): _S.FILLED,
        # -- placement outcome unknown: only the venue's answer settles it ----------------------
        (_S.UNKNOWN, _S.PENDING_CREATE): _S.UNKNOWN,  # held but undecided: still unknown
        (_S.UNKNOWN, _S.OPEN): _S.OPEN,
        (_S.UNKNOWN, _S.PARTIALLY_FILLED): _S.PARTIALLY_FILLED,
        (_S.UNKNOWN, _S.FILLED): _S.FILLED,
        (_S.UNKNOWN, _S.PENDING_CANCEL): _S.UNKNOWN,  # a cancel "to be safe" teaches us nothing
        (_S.UNKNOWN, _S.CANCELED): _S.CANCELED,
        (_S.UNKNOWN, _S.EXPIRED): _S.EXPIRED,
        (_S.UNKNOWN, _S.FAILED): _S.FAILED,
        (_S.UNKNOWN, _S.UNKNOWN): _S.UNKNOWN,
        (_S.UNKNOWN, _S.LOST): _S.LOST,
        (_S.UNKNOWN, _F.PARTIAL): _S.PARTIALLY_FILLED,
        (_S.UNKNOWN, _F.COMPLETE): _S.FILLED,
        # -- lost: a status from the venue settles it; a fill proves it existed, not that the
        #    venue will answer for it, so it stays lost until a status or the last fill ------
        (_S.LOST, _S.OPEN): _S.OPEN,
        (_S.LOST, _S.PARTIALLY_FILLED): _S.PARTIALLY_FILLED,
        (_S.LOST, _S.FILLED): _S.FILLED,
        (_S.LOST, _S.PENDING_CANCEL): _S.LOST,  # cancellable, but still lost until answered
        (_S.LOST, _S.CANCELED): _S.CANCELED,
        (_S.LOST, _S.EXPIRED): _S.EXPIRED,
        (_S.LOST, _S.FAILED): _S.FAILED,
        (_S.LOST, _S.LOST): _S.LOST,
        (_S.LOST, _F.PARTIAL): _S.LOST,
        (_S.LOST, _F.COMPLETE): _S.FILLED,
        # -- terminal: a repeated report (REST answer and stream both) is accepted, nothing else
        (_S.FILLED, _S.FILLED): _S.FILLED,
        (_S.CANCELED, _S.CANCELED): _S.CANCELED,
        (_S.EXPIRED, _S.EXPIRED): _S.EXPIRED,
        (_S.FAILED, _S.FAILED): _S.FAILED,
    }
)

# Special cases beside the table (they need more than the (state, trigger) pair):
#
# 1. FAILED is refused for an order the venue acknowledged, or that traded (a fill, or a
#    cumulative quantity above zero). FAILED means "never accepted, nothing traded"; calling an
#    accepted order failed is how peers left untracked exposure after network errors. A venue
#    ending a live order reports CANCELED or EXPIRED, and codecs map it so.
# 2. A report of OPEN for an order holding fills means PARTIALLY_FILLED (a stale or coarse status).
# 3. A fill on a terminal order has no row: it is still recorded (money moved) and the state
#    stays terminal. The tracker decides how the events stay consistent.


def next_state(state: OrderState, trigger: Trigger) -> OrderState | None:
    """The table alone: the next state, or ``None`` when the pair is illegal."""
    return TRANSITIONS.get((state, trigger))


class Verdict(StrEnum):
    """What applying one update did, so the caller can count and log without exceptions."""

    CHANGED = "changed"  # accepted; the state moved (or, for a trade, a new fill was recorded)
    ACCEPTED = "accepted"  # accepted; the state stayed (a repeat or a stale answer)
    ILLEGAL = "illegal"  # refused by the transition rules; nothing changed
    DUPLICATE = "duplicate"  # a fill with a trade id already recorded; nothing changed
    ID_CONFLICT = "id_conflict"  # the update names another order; nothing changed
    PAIR_MISMATCH = "pair_mismatch"  # the update is for another trading pair; nothing changed


# -- inputs -------------------------------------------------------------------------------------


def _is_amount(v: object, *, positive: bool) -> bool:
    return isinstance(v, Decimal) and v.is_finite() and (v > 0 if positive else v >= 0)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A status for one order, from the venue (REST answer, stream event) or the engine (cancel
    requested, placement timed out). ``cumulative_filled`` is the venue's total traded base, used
    to cross-check the fills we hold; give it whenever the venue does."""

    trading_pair: str
    timestamp: float
    new_state: OrderState
    client_order_id: str | None = None
    exchange_order_id: str | None = None
    cumulative_filled: Decimal | None = None
    reason: str | None = None
    #: When the venue created the order, if this message says (a query's creation time, a
    #: placement's transaction time): the order's funds were locked then, not at ``timestamp``.
    created_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.new_state, OrderState):
            raise InvalidOrderData(f"new_state must be an OrderState, got {self.new_state!r}")
        if not self.client_order_id and not self.exchange_order_id:
            raise InvalidOrderData("an order update needs a client or an exchange order id")
        cum = self.cumulative_filled
        if cum is not None and not _is_amount(cum, positive=False):
            raise InvalidOrderData(f"cumulative_filled must be a Decimal >= 0, got {cum!r}")


@dataclass(frozen=True, slots=True)
class TradeUpdate:
    """One fill of one order. ``trade_id`` identifies it within the order (a self-trade gives
    both our orders the same venue trade id, so identity is per order). ``quote_amount`` is the
    venue's own figure when it reports one, otherwise price times amount."""

    trade_id: str
    client_order_id: str | None
    exchange_order_id: str | None
    trading_pair: str
    timestamp: float
    price: Decimal
    amount: Decimal
    fee: TradeFee
    is_taker: bool
    quote_amount: Decimal | None = None
    #: When the venue created the order, if the fill's message says (Binance's executionReport
    #: does): a fill can be the first we hear of an order, and its funds were locked then.
    created_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.trade_id, str) or not self.trade_id:
            raise InvalidOrderData(f"trade_id must be a non-empty string, got {self.trade_id!r}")
        if not self.client_order_id and not self.exchange_order_id:
            raise InvalidOrderData("a trade update needs a client or an exchange order id")
        if not _is_amount(self.price, positive=True):
            raise InvalidOrderData(f"fill price must be a Decimal > 0, got {self.price!r}")
        if not _is_amount(self.amount, positive=True):
            raise InvalidOrderData(f"fill amount must be a Decimal > 0, got {self.amount!r}")
        if self.quote_amount is not None and not _is_amount(self.quote_amount, positive=False):
            raise InvalidOrderData(f"quote_amount must be a Decimal >= 0, got {self.quote_amount!r}")
        if not isinstance(self.fee, TradeFee):
            raise InvalidOrderData(f"fee must be a TradeFee, got {self.fee!r}")

    @property
    def quote(self) -> Decimal:
        if self.quote_amount is not None:
            return self.quote_amount
        return _EXACT.multiply(self.price, self.amount)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "client_order_id": self.client_order_id,
            "exchange_order_id": self.exchange_order_id,
            "trading_pair": self.trading_pair,
            "timestamp": self.timestamp,
            "price": str(self.price),
            "amount": str(self.amount),
            "quote_amount": None if self.quote_amount is None else str(self.quote_amount),
            "is_taker": self.is_taker,
            "fee": _fee_to_dict(self.fee),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TradeUpdate:
        return _parse(
            lambda: cls(
                trade_id=_str(d["trade_id"]),
                client_order_id=_opt_str(d.get("client_order_id")),
                exchange_order_id=_opt_str(d.get("exchange_order_id")),
                trading_pair=_str(d["trading_pair"]),
                timestamp=_num(d["timestamp"]),
                price=_dec(d["price"]),
                amount=_dec(d["amount"]),
                quote_amount=_opt_dec(d.get("quote_amount")),
                is_taker=_bool(d["is_taker"]),
                fee=_fee_from_dict(d["fee"]),
            )
        )


# -- the order ----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class InFlightOrder:
    """One order and everything we know of it. Mutated only by the tracker (``apply_update``,
    ``apply_trade``, the not-found count); everyone else should treat it as read-only.

    ``venue_filled`` is the highest cumulative quantity the venue ever reported (a stale report
    can only be lower, so the maximum is the truth so far). ``acknowledged`` records that the venue
    showed it holds the order; it decides when ``OrderCreated`` is due and forbids FAILED after.
    """

    client_order_id: str
    trading_pair: str
    order_type: OrderType
    side: Side
    amount: Decimal
    price: Decimal | None
    creation_timestamp: float
    time_in_force: TimeInForce = TimeInForce.GTC
    position_action: PositionAction = PositionAction.NIL
    leverage: int = 1
    exchange_order_id: str | None = None
    state: OrderState = OrderState.PENDING_CREATE
    last_update_timestamp: float = field(init=False)
    fills: dict[str, TradeUpdate] = field(init=False, default_factory=dict)
    executed_base: Decimal = field(init=False, default=_ZERO)
    executed_quote: Decimal = field(init=False, default=_ZERO)
    fees: dict[str, Decimal] = field(init=False, default_factory=dict)
    venue_filled: Decimal | None = field(init=False, default=None)
    acknowledged: bool = field(init=False, default=False)
    not_found_count: int = field(init=False, default=0)
    reason: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.client_order_id, str) or not self.client_order_id:
            raise InvalidOrderData(f"client_order_id must be a non-empty string: {self.client_order_id!r}")
        try:
            canonical = str(TradingPair.parse(self.trading_pair))
        except (MarketlinkError, AttributeError) as e:
            raise InvalidOrderData(f"bad trading pair {self.trading_pair!r}") from e
        if canonical != self.trading_pair:  # updates must match it byte for byte
            raise InvalidOrderData(f"trading pair must be canonical: {self.trading_pair!r} vs {canonical!r}")
        for name, enum in (
            ("order_type", OrderType),
            ("side", Side),
            ("time_in_force", TimeInForce),
            ("position_action", PositionAction),
            ("state", OrderState),
        ):
            if not isinstance(getattr(self, name), enum):
                raise InvalidOrderData(f"{name} must be a {enum.__name__}, got {getattr(self, name)!r}")
        if not _is_amount(self.amount, positive=True):
            raise InvalidOrderData(f"amount must be a Decimal > 0, got {self.amount!r}")
        if self.price is not None and not _is_amount(self.price, positive=True):
            raise InvalidOrderData(f"price must be a Decimal > 0 or None, got {self.price!r}")
        if self.order_type.is_limit and self.price is None:
            raise InvalidOrderData(f"a {self.order_type} order needs a price")
        if isinstance(self.leverage, bool) or not isinstance(self.leverage, int) or self.leverage < 1:
            raise InvalidOrderData(f"leverage must be an int >= 1, got {self.leverage!r}")
        self.last_update_timestamp = self.creation_timestamp
        self.acknowledged = self.state in _VENUE_HELD

    # -- derived ------------------------------------------------------------------------------

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def remaining(self) -> Decimal:
        return max(_ZERO, self.amount - self.executed_base)

    @property
    def average_price(self) -> Decimal | None:
        if not self.executed_base:
            return None
        return _AVERAGE.divide(self.executed_quote, self.executed_base)

    @property
    def fill_target(self) -> Decimal:
        """How much base we should hold fills for: what the venue reported traded, and for a
        FILLED order at least its amount (FILLED is a claim about the whole order)."""
        venue = self.venue_filled if self.venue_filled is not None else _ZERO
        return max(venue, self.amount) if self.state is OrderState.FILLED else venue

    @property
    def open_at_venue(self) -> Decimal:
        """What of the order the venue has not traded, by the fills we hold or by its own word,
        whichever says more traded: the part whose funds its end unlocks. Fills we never got
        were still traded, so their funds are spent, not freed."""
        return max(_ZERO, self.amount - max(self.executed_base, self.fill_target))

    @property
    def fill_gap(self) -> Decimal:
        """Base the venue says traded that no fill we hold accounts for (zero when none)."""
        return max(_ZERO, self.fill_target - self.executed_base)

    @property
    def missing_fill(self) -> bool:
        """The cross-check failed low: fetch this order's trades."""
        return self.fill_target > self.executed_base

    @property
    def excess_fill(self) -> bool:
        """We hold more fills than the venue ever reported, or than the order's amount. Transient
        when a fill overtakes a status answer; persistent means a wrong fill or a venue fault."""
        over_venue = self.venue_filled is not None and self.executed_base > self.venue_filled
        return over_venue or self.executed_base > self.amount

    @property
    def base_asset(self) -> str:
        return self.trading_pair.partition("-")[0]

    @property
    def quote_asset(self) -> str:
        return self.trading_pair.partition("-")[2]

    def fee_totals(self) -> tuple[TokenAmount, ...]:
        return tuple(TokenAmount(token, amount) for token, amount in self.fees.items())

    # -- applying updates ---------------------------------------------------------------------

    def _check_ids(self, client_order_id: str | None, exchange_order_id: str | None) -> bool:
        if client_order_id is not None and client_order_id != self.client_order_id:
            return False
        return (
            exchange_order_id is None
            or self.exchange_order_id is None
            or exchange_order_id == self.exchange_order_id
        )

    def resolve(self, reported: OrderState, cumulative_filled: Decimal | None = None) -> OrderState | None:
        """The table plus the special cases: the state a report would lead to, or ``None``."""
        if reported is OrderState.OPEN and self.executed_base > 0:
            reported = OrderState.PARTIALLY_FILLED  # special case 2
        if reported is OrderState.FAILED and (
            self.acknowledged
            or self.executed_base > 0
            or (cumulative_filled is not None and cumulative_filled > 0)
            or (self.venue_filled is not None and self.venue_filled > 0)
        ):
            return None  # special case 1
        return TRANSITIONS.get((self.state, reported))

    def apply_update(self, u: OrderUpdate) -> Verdict:
        if not self._check_ids(u.client_order_id, u.exchange_order_id):
            return Verdict.ID_CONFLICT
        if u.trading_pair != self.trading_pair:
            return Verdict.PAIR_MISMATCH
        target = self.resolve(u.new_state, u.cumulative_filled)
        if target is None:
            return Verdict.ILLEGAL
        if self.exchange_order_id is None and u.exchange_order_id is not None:
            self.exchange_order_id = u.exchange_order_id
        if u.cumulative_filled is not None and (
            self.venue_filled is None or u.cumulative_filled > self.venue_filled
        ):
            self.venue_filled = u.cumulative_filled
        if u.new_state not in _OWN_MARKERS:
            self.not_found_count = 0  # the venue answered for the order
        if u.new_state in _VENUE_HELD:
            self.acknowledged = True
        self.last_update_timestamp = max(self.last_update_timestamp, u.timestamp)
        if target is self.state:
            return Verdict.ACCEPTED
        self.state = target
        self.reason = u.reason
        return Verdict.CHANGED

    def apply_trade(self, t: TradeUpdate) -> Verdict:
        """Record a fill once; a fill on a terminal order is recorded too (special case 3)."""
        if not self._check_ids(t.client_order_id, t.exchange_order_id):
            return Verdict.ID_CONFLICT
        if t.trading_pair != self.trading_pair:
            return Verdict.PAIR_MISMATCH
        if t.trade_id in self.fills:
            return Verdict.DUPLICATE
        self._record(t)
        if self.exchange_order_id is None and t.exchange_order_id is not None:
            self.exchange_order_id = t.exchange_order_id
        self.acknowledged = True
        self.last_update_timestamp = max(self.last_update_timestamp, t.timestamp)
        if not self.is_terminal:
            kind = FillKind.COMPLETE if self.executed_base >= self.amount else FillKind.PARTIAL
            target = TRANSITIONS[(self.state, kind)]  # every live state has both fill rows
            if target is not self.state:
                self.state = target
                self.reason = None
        return Verdict.CHANGED

    def fee_amounts(self, t: TradeUpdate) -> list[TokenAmount]:
        """What one fill's fee took, token by token (reported fees are flat; estimates carry a
        percent that falls on base or quote by the fee's kind)."""
        if not t.fee.percent:  # the common case, a venue-reported fee: skip re-parsing the pair
            return list(t.fee.flat_fees)
        return t.fee.amounts(self.trading_pair, self.side, t.price, t.amount)

    def _record(self, t: TradeUpdate) -> None:
        self.fills[t.trade_id] = t
        self.executed_base = _EXACT.add(self.executed_base, t.amount)
        self.executed_quote = _EXACT.add(self.executed_quote, t.quote)
        for fee in self.fee_amounts(t):
            self.fees[fee.token] = _EXACT.add(self.fees.get(fee.token, _ZERO), fee.amount)

    # -- journal ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record; Decimals as strings so nothing passes through float."""
        return {
            "client_order_id": self.client_order_id,
            "trading_pair": self.trading_pair,
            "order_type": self.order_type.value,
            "side": self.side.value,
            "amount": str(self.amount),
            "price": None if self.price is None else str(self.price),
            "creation_timestamp": self.creation_timestamp,
            "time_in_force": self.time_in_force.value,
            "position_action": self.position_action.value,
            "leverage": self.leverage,
            "exchange_order_id": self.exchange_order_id,
            "state": self.state.value,
            "last_update_timestamp": self.last_update_timestamp,
            "venue_filled": None if self.venue_filled is None else str(self.venue_filled),
            "acknowledged": self.acknowledged,
            "not_found_count": self.not_found_count,
            "reason": self.reason,
            "executed_base": str(self.executed_base),
            "executed_quote": str(self.executed_quote),
            "fees": {token: str(amount) for token, amount in self.fees.items()},
            "fills": [t.to_dict() for t in self.fills.values()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InFlightOrder:
        """Rebuild from ``to_dict``. Totals are recomputed from the fills and must match the
        stored ones: a journal that disagrees with itself is refused, not half-trusted."""
        order = _parse(lambda: cls._from_dict(d))
        stored = _parse(
            lambda: (
                _dec(d["executed_base"]),
                _dec(d["executed_quote"]),
                {_str(k): _dec(v) for k, v in dict(d["fees"]).items()},
            )
        )
        if stored != (order.executed_base, order.executed_quote, order.fees):
            raise InvalidOrderData(f"{order.client_order_id}: stored totals disagree with its fills")
        return order

    @classmethod
    def _from_dict(cls, d: Mapping[str, Any]) -> InFlightOrder:
        order = cls(
            client_order_id=_str(d["client_order_id"]),
            trading_pair=_str(d["trading_pair"]),
            order_type=OrderType(d["order_type"]),
            side=Side(d["side"]),
            amount=_dec(d["amount"]),
            price=_opt_dec(d.get("price")),
            creation_timestamp=_num(d["creation_timestamp"]),
            time_in_force=TimeInForce(d["time_in_force"]),
            position_action=PositionAction(d["position_action"]),
            leverage=d["leverage"],
            exchange_order_id=_opt_str(d.get("exchange_order_id")),
            state=OrderState(d["state"]),
        )
        for raw in d["fills"]:
            t = TradeUpdate.from_dict(raw)
            if t.trade_id in order.fills or t.trading_pair != order.trading_pair:
                raise InvalidOrderData(f"{order.client_order_id}: duplicate or foreign fill {t.trade_id}")
            order._record(t)
        order.last_update_timestamp = _num(d["last_update_timestamp"])
        order.venue_filled = _opt_dec(d.get("venue_filled"))
        order.acknowledged = _bool(d["acknowledged"]) or order.acknowledged or bool(order.fills)
        count = d["not_found_count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidOrderData(f"not_found_count must be an int >= 0, got {count!r}")
        order.not_found_count = count
        order.reason = _opt_str(d.get("reason"))
        return order


# -- record parsing helpers ---------------------------------------------------------------------


def _parse(build: Callable[[], _T]) -> _T:
    """Run a record parser, turning every way a record can be malformed into one typed error."""
    try:
        return build()
    except InvalidOrderData:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as e:
        raise InvalidOrderData(f"malformed order record: {e!r}") from e


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise InvalidOrderData(f"expected a string, got {v!r}")
    return v


def _opt_str(v: object) -> str | None:
    return None if v is None else _str(v)


def _dec(v: object) -> Decimal:
    if not isinstance(v, str):  # never via float: a float here already lost digits
        raise InvalidOrderData(f"money must be stored as a string, got {v!r}")
    return Decimal(v)


def _opt_dec(v: object) -> Decimal | None:
    return None if v is None else _dec(v)


def _num(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InvalidOrderData(f"expected a timestamp number, got {v!r}")
    return float(v)


def _bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise InvalidOrderData(f"expected a boolean, got {v!r}")
    return v


def _fee_to_dict(fee: TradeFee) -> dict[str, Any]:
    return {
        "kind": fee.kind.value,
        "percent": str(fee.percent),
        "percent_token": fee.percent_token,
        "flat_fees": [{"token": f.token, "amount": str(f.amount)} for f in fee.flat_fees],
    }


def _fee_from_dict(d: Mapping[str, Any]) -> TradeFee:
    return TradeFee(
        kind=FeeKind(d["kind"]),
        percent=_dec(d["percent"]),
        percent_token=_opt_str(d.get("percent_token")),
        flat_fees=tuple(TokenAmount(_str(f["token"]), _dec(f["amount"])) for f in d["flat_fees"]),
    )
