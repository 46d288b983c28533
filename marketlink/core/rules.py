"""Trading rules: side-aware quantization, then validation after rounding.

Rounding always moves an order toward the safe side: amounts down (never trade more than asked),
buy prices down and sell prices up (never cross further than asked, never pay more). Validation
runs on the rounded values, because a venue judges what it receives, not what we meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import ConfigError, RuleViolation

_ZERO = Decimal(0)


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of ``step`` not above ``value`` (exact; ``step`` > 0)."""
    return _to_multiple(value, step, ROUND_FLOOR)


def ceil_to(value: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of ``step`` not below ``value`` (exact; ``step`` > 0)."""
    return _to_multiple(value, step, ROUND_CEILING)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """Whether ``value`` is an exact multiple of ``step`` (finite values, ``step`` > 0)."""
    vn, vd = value.as_integer_ratio()
    sn, sd = step.as_integer_ratio()
    return (vn * sd) % (vd * sn) == 0


def exact_mul(a: Decimal, b: Decimal) -> Decimal:
    """``a * b`` without rounding, whatever the context precision.

    The default 28 digits round a notional such as 18-decimal amount times a 12-digit price, and
    a rounded notional can pass a minimum the exact one fails.
    """
    if not (a.is_finite() and b.is_finite()):
        return a * b
    with localcontext() as ctx:
        ctx.prec = len(a.as_tuple().digits) + len(b.as_tuple().digits)  # a product never has more
        return a * b


def _to_multiple(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    # Integer arithmetic on exact ratios: a Decimal division at any fixed precision fails
    # (DivisionImpossible) or rounds once value/step has more digits than the context holds,
    # e.g. a 12-digit amount of an 18-decimal token on the gateway.
    if not value.is_finite():
        return value  # NaN/Infinity pass through; check() reports them as a rule violation
    vn, vd = value.as_integer_ratio()
    sn, sd = step.as_integer_ratio()
    num, den = vn * sd, vd * sn
    n = num // den if rounding == ROUND_FLOOR else -(-num // den)
    _, digits, exp = step.as_tuple()
    coefficient = int("".join(map(str, digits)))
    return Decimal(f"{n * coefficient}E{exp}")  # string construction is exact, never rounded


@dataclass(frozen=True, slots=True)
class TradingRule:
    """What a venue accepts for one trading pair. ``None`` bounds mean "no limit"."""

    trading_pair: str
    tick_size: Decimal
    step_size: Decimal
    min_order_size: Decimal = _ZERO
    max_order_size: Decimal | None = None
    min_notional: Decimal = _ZERO
    max_notional: Decimal | None = None
    market_step_size: Decimal | None = None
    market_min_order_size: Decimal | None = None
    market_max_order_size: Decimal | None = None
    supports_limit_orders: bool = True
    supports_market_orders: bool = True
    supports_limit_maker_orders: bool = True
    apply_min_notional_to_market: bool = True
    #: Whether ``max_notional`` binds market orders; ``None``: as ``apply_min_notional_to_market``
    #: (one switch for both, as before Binance split its NOTIONAL filter's flags).
    apply_max_notional_to_market: bool | None = None

    def __post_init__(self) -> None:
        for name in ("tick_size", "step_size"):
            v = getattr(self, name)
            if not isinstance(v, Decimal) or not v.is_finite() or v <= 0:
                raise ConfigError(f"{self.trading_pair}: {name} must be a positive Decimal, got {v!r}")
        m = self.market_step_size
        if m is not None and (not isinstance(m, Decimal) or not m.is_finite() or m <= 0):
            raise ConfigError(f"{self.trading_pair}: market_step_size must be a positive Decimal, got {m!r}")
        # A NaN bound would make every later comparison raise instead of answering.
        for name in (
            "min_order_size", "max_order_size", "min_notional", "max_notional",
            "market_min_order_size", "market_max_order_size",
        ):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, Decimal) or not v.is_finite() or v < 0):
                raise ConfigError(f"{self.trading_pair}: {name} must be a Decimal >= 0, got {v!r}")

    # -- quantization -------------------------------------------------------------------------

    def quantize_amount(self, amount: Decimal, order_type: OrderType = OrderType.LIMIT) -> Decimal:
        step = self.step_size
        if order_type is OrderType.MARKET and self.market_step_size is not None:
            step = self.market_step_size
        return floor_to(amount, step)

    def quantize_price(self, price: Decimal, side: Side) -> Decimal:
        """Toward the passive side: a buy never bids higher, a sell never asks lower."""
        if side is Side.BUY:
            return floor_to(price, self.tick_size)
        return ceil_to(price, self.tick_size)

    # -- validation ---------------------------------------------------------------------------

    def check(
        self,
        order_type: OrderType,
        side: Side,
        amount: Decimal,
        price: Decimal | None,
    ) -> RuleViolation | None:
        """The first rule a (quantized) order breaks, or ``None``.

        ``price`` is the limit price, or for a market order a reference price (best opposite
        quote) used for the notional check; ``None`` skips the notional check for market orders.
        """
        pair = self.trading_pair
        if order_type is OrderType.MARKET and not self.supports_market_orders:
            return RuleViolation("order_type", None, None, f"{pair}: market orders not supported")
        if order_type is OrderType.LIMIT and not self.supports_limit_orders:
            return RuleViolation("order_type", None, None, f"{pair}: limit orders not supported")
        if order_type is OrderType.LIMIT_MAKER and not self.supports_limit_maker_orders:
            return RuleViolation("order_type", None, None, f"{pair}: limit maker not supported")
        if not amount.is_finite() or amount <= 0:
            return RuleViolation(
                "amount_positive", amount, _ZERO,
                f"{pair}: amount {amount} is not positive after rounding to step",
            )
        # A market order's reference price must be sane too: a NaN would make the notional
        # comparison raise instead of answering.
        if (order_type.is_limit and price is None) or (
            price is not None and (not price.is_finite() or price <= 0)
        ):
            return RuleViolation("price_positive", price, _ZERO, f"{pair}: price {price} is not positive")
        lo, hi, step = self.min_order_size, self.max_order_size, self.step_size
        if order_type is OrderType.MARKET:
            lo = self.market_min_order_size if self.market_min_order_size is not None else lo
            hi = self.market_max_order_size if self.market_max_order_size is not None else hi
            step = self.market_step_size or step
        if amount < lo:
            return RuleViolation("min_order_size", amount, lo, f"{pair}: amount {amount} < minimum {lo}")
        if hi is not None and amount > hi:
            return RuleViolation("max_order_size", amount, hi, f"{pair}: amount {amount} > maximum {hi}")
        if not is_multiple(amount, step):
            return RuleViolation(
                "step_size", amount, step, f"{pair}: amount {amount} not a multiple of {step}"
            )
        if price is not None and order_type.is_limit and not is_multiple(price, self.tick_size):
            return RuleViolation(
                "tick_size", price, self.tick_size,
                f"{pair}: price {price} not a multiple of {self.tick_size}",
            )
        if price is None:
            return None
        judge_min = judge_max = True
        if order_type is OrderType.MARKET:
            judge_min = self.apply_min_notional_to_market
            apply_max = self.apply_max_notional_to_market
            judge_max = judge_min if apply_max is None else apply_max
        if not (judge_min or judge_max):
            return None
        notional = exact_mul(amount, price)
        if judge_min and notional < self.min_notional:
            return RuleViolation(
                "min_notional", notional, self.min_notional,
                f"{pair}: notional {notional} < minimum {self.min_notional}",
            )
        if judge_max and self.max_notional is not None and notional > self.max_notional:
            return RuleViolation(
                "max_notional", notional, self.max_notional,
                f"{pair}: notional {notional} > maximum {self.max_notional}",
            )
        return None

    def prepare(
        self,
        order_type: OrderType,
        side: Side,
        amount: Decimal,
        price: Decimal | None,
    ) -> tuple[Decimal, Decimal | None]:
        """Quantize then validate; returns the values to send or raises ``RuleViolation``."""
        q_amount = self.quantize_amount(amount, order_type)
        q_price = price
        if price is not None and price.is_finite() and price > 0:
            q_price = self.quantize_price(price, side) if order_type.is_limit else price
        violation = self.check(order_type, side, q_amount, q_price)
        if violation is not None:
            raise violation
        return q_amount, (q_price if order_type.is_limit else None)
