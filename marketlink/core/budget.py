"""Budget checks: does an order fit what we can really spend, and if not, how small must it be?

What an order needs (its *collateral*) is the cost side of ``TradeFee.cost_and_returns``, so the
fee rules live in one place:

* a buy needs quote (its notional), plus the fee when it is added to cost;
* a sell needs base; a fee deducted from the quote it returns needs nothing up front;
* a fee charged in a third token (BNB) needs that token, whichever the side: the fee is paid
  from it even when the venue books it as deducted. (A venue that falls back to charging base
  or quote when the third token runs out is not modelled: we refuse instead of guessing.)
* fixed fees (gas, flat charges) need their token and do not shrink with the order.

The budget for a token is ``available - locked``: ``available`` is what the venue reports as
free, ``locked`` what our own orders already sent (or accepted earlier in the same batch) will
consume but the venue does not show yet. Returns of an order are never counted as budget for
another: they only exist once it fills.

Every cost is linear in the amount (``fixed + per_unit * amount`` per token), so the largest
affordable amount is a division per token, floored, then floored again to the rule's step. Costs
are computed with upward rounding at 60 digits, so the check errs on the safe side. A market
order has no limit price: its candidate carries a *reference* price, which should be the worst
price it may fill at (the book's price for its volume), not the mid, or a buy may overspend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from enum import StrEnum
from types import MappingProxyType

from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import MarketlinkError, RuleViolation
from marketlink.core.fees import RateFn, TokenAmount, TradeFee, TradeFeeSchema
from marketlink.core.pairs import TradingPair
from marketlink.core.rules import TradingRule, floor_to

__all__ = [
    "BudgetAccepted",
    "BudgetChecker",
    "BudgetRejectReason",
    "BudgetRejection",
    "BudgetResult",
    "InvalidBalance",
    "OrderCandidate",
]

_ZERO = Decimal(0)
_NO_BALANCES: Mapping[str, Decimal] = MappingProxyType({})
_PREC = 60
#: Without a trading rule, a shrunk amount keeps the requested amount's decimals, at least these.
_MIN_DECIMALS_WITHOUT_RULE = 8


class InvalidBalance(MarketlinkError, ValueError):
    """A balance handed to the checker is not a finite Decimal."""


@dataclass(frozen=True, slots=True)
class OrderCandidate:
    """An order a strategy would like to place. ``price`` is the limit price, or for a market
    order the reference price its cost is judged at (``None``: the checker refuses it)."""

    trading_pair: str
    side: Side
    order_type: OrderType
    amount: Decimal
    price: Decimal | None
    is_maker: bool = False

    def __post_init__(self) -> None:
        TradingPair.parse(self.trading_pair)  # raises InvalidTradingPair
        _require_decimal("amount", self.amount)
        if not self.amount.is_finite() or self.amount <= 0:
            raise RuleViolation(
                "amount_positive", self.amount, _ZERO, f"amount {self.amount} is not positive"
            )
        if self.price is not None:
            _require_decimal("price", self.price)
        if (self.order_type.is_limit and self.price is None) or (
            self.price is not None and (not self.price.is_finite() or self.price <= 0)
        ):
            raise RuleViolation("price_positive", self.price, _ZERO, f"price {self.price} is not positive")

    @property
    def pays_maker_fee(self) -> bool:
        """A market order always takes; a post-only order always makes; a limit order says."""
        if self.order_type is OrderType.LIMIT_MAKER:
            return True
        return self.is_maker and self.order_type is OrderType.LIMIT


class BudgetRejectReason(StrEnum):
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    RULE_VIOLATION = "RULE_VIOLATION"


@dataclass(frozen=True, slots=True)
class BudgetAccepted:
    """The order to place: ``candidate`` (possibly smaller than ``requested``, and quantized when
    a rule was given) and the ``collateral`` it will consume, fees added to cost included."""

    candidate: OrderCandidate
    requested: OrderCandidate
    collateral: tuple[TokenAmount, ...]
    fee: TradeFee
    limited_by: str | None = None  # the token that forced the amount down, if any

    @property
    def ok(self) -> bool:
        return True

    @property
    def resized(self) -> bool:
        return self.candidate.amount != self.requested.amount


@dataclass(frozen=True, slots=True)
class BudgetRejection:
    """Why an order cannot be placed. For a balance shortfall, ``token`` is short by
    ``shortfall``: ``required`` for the whole requested order against ``available - locked``.
    A rule broken only because the order had to shrink counts as a shortfall (``violation``
    then says which rule the shrunk order broke)."""

    candidate: OrderCandidate
    reason: BudgetRejectReason
    token: str | None = None
    required: Decimal | None = None
    available: Decimal | None = None
    locked: Decimal | None = None
    violation: RuleViolation | None = None

    @property
    def ok(self) -> bool:
        return False

    @property
    def shortfall(self) -> Decimal | None:
        if self.required is None or self.available is None or self.locked is None:
            return None
        return self.required - (self.available - self.locked)


BudgetResult = BudgetAccepted | BudgetRejection


class BudgetChecker:
    """Sizes order candidates against balances; pure, so one instance serves every call.

    ``rate(from_token, to_token)`` converts a percent fee charged in a third token; without it
    such a fee is costed in quote (see ``TradeFee.amounts``).
    """

    __slots__ = ("fee_schema", "rate")

    def __init__(self, fee_schema: TradeFeeSchema, *, rate: RateFn | None = None) -> None:
        self.fee_schema = fee_schema
        self.rate = rate

    def estimate_fee(self, candidate: OrderCandidate) -> TradeFee:
        return TradeFee.estimate_spot(self.fee_schema, candidate.side, candidate.pays_maker_fee)

    def collateral(
        self, candidate: OrderCandidate, fee: TradeFee | None = None
    ) -> dict[str, Decimal]:
        """What ``candidate`` consumes per token (rebates are not credited). Needs a price."""
        if candidate.price is None:
            raise RuleViolation("price_positive", None, _ZERO, "a market order needs a reference price")
        if fee is None:
            fee = self.estimate_fee(candidate)
        cost = self._cost(candidate, fee, candidate.price, candidate.amount)
        return {t: v for t, v in cost.items() if v > 0}

    def adjust(
        self,
        candidate: OrderCandidate,
        available: Mapping[str, Decimal],
        locked: Mapping[str, Decimal] = _NO_BALANCES,
        rule: TradingRule | None = None,
        all_or_none: bool = False,
        fee: TradeFee | None = None,
    ) -> BudgetResult:
        """Shrink ``candidate`` to what the budget allows, or say why it cannot be placed.

        With ``all_or_none`` an order that does not fit whole is rejected instead of shrunk.
        With a ``rule``, amount and (limit) price are quantized first, the shrunk amount is
        floored to the step, and the result must pass ``rule.check``.
        """
        if candidate.price is None:
            return BudgetRejection(candidate, BudgetRejectReason.NO_REFERENCE_PRICE)
        if fee is None:
            fee = self.estimate_fee(candidate)
        price, amount = candidate.price, candidate.amount
        if rule is not None:
            amount = rule.quantize_amount(amount, candidate.order_type)
            if candidate.order_type.is_limit:
                price = rule.quantize_price(price, candidate.side)
            # An order that breaks a rule at full size is refused for that, whatever the budget.
            violation = rule.check(candidate.order_type, candidate.side, amount, price)
            if violation is not None:
                return BudgetRejection(candidate, BudgetRejectReason.RULE_VIOLATION, violation=violation)
        full = self._cost(candidate, fee, price, amount)
        budget = {t: _balance(available, t) - _balance(locked, t) for t in full}

        def short(token: str, violation: RuleViolation | None = None) -> BudgetRejection:
            return BudgetRejection(
                candidate, BudgetRejectReason.INSUFFICIENT_BALANCE, token, full[token],
                _balance(available, token), _balance(locked, token), violation,
            )

        bound = self._max_affordable(candidate, fee, price, budget)
        limited_by: str | None = None
        if bound is not None and bound[0] < amount:
            limit, limited_by = bound
            if all_or_none:
                return short(limited_by)
            amount = self._floor(limit, candidate, rule)
            if amount <= 0:
                return short(limited_by)
        if rule is not None and limited_by is not None:
            violation = rule.check(candidate.order_type, candidate.side, amount, price)
            if violation is not None:
                return short(limited_by, violation=violation)  # broken only because it shrank
        cost = self._cost(candidate, fee, price, amount)
        for token, value in cost.items():  # belt and braces: whatever the rounding, never overspend
            if value > 0 and value > budget[token]:  # pragma: no cover - the bound above prevents it
                return short(token)
        accepted = replace(candidate, amount=amount, price=price)
        collateral = tuple(TokenAmount(t, v) for t, v in cost.items() if v > 0)
        return BudgetAccepted(accepted, candidate, collateral, fee, limited_by)

    def adjust_many(
        self,
        candidates: Iterable[OrderCandidate],
        available: Mapping[str, Decimal],
        locked: Mapping[str, Decimal] = _NO_BALANCES,
        rules: Mapping[str, TradingRule] | None = None,
        all_or_none: bool = False,
    ) -> list[BudgetResult]:
        """Adjust candidates in order; each accepted one locks its collateral for the next."""
        running = dict(locked)
        results: list[BudgetResult] = []
        for candidate in candidates:
            rule = rules.get(candidate.trading_pair) if rules is not None else None
            result = self.adjust(candidate, available, running, rule, all_or_none)
            if isinstance(result, BudgetAccepted):
                for part in result.collateral:
                    running[part.token] = _balance(running, part.token) + part.amount
            results.append(result)
        return results

    # -- arithmetic ---------------------------------------------------------------------------

    def _cost(
        self, candidate: OrderCandidate, fee: TradeFee, price: Decimal, amount: Decimal
    ) -> dict[str, Decimal]:
        with localcontext() as ctx:
            ctx.prec, ctx.rounding = _PREC, ROUND_CEILING  # never under-estimate what we spend
            cost, _ = fee.cost_and_returns(candidate.trading_pair, candidate.side, price, amount, self.rate)
        return cost

    def _max_affordable(
        self, candidate: OrderCandidate, fee: TradeFee, price: Decimal, budget: Mapping[str, Decimal]
    ) -> tuple[Decimal, str] | None:
        """The largest affordable amount and the token that bounds it; ``None`` if unbounded.

        A negative amount means nothing fits, e.g. a fixed fee alone exceeds its token's budget.
        """
        fixed = self._cost(candidate, fee, price, _ZERO)
        per_unit = self._cost(candidate, fee, price, Decimal(1))
        best: tuple[Decimal, str] | None = None
        for token, unit_total in per_unit.items():
            base = fixed.get(token, _ZERO)
            room = budget[token] - base
            slope = unit_total - base
            if slope <= 0:  # costs nothing more as the order grows (a rebate): only fixed costs
                most = Decimal(-1) if room < 0 else None
            else:
                with localcontext() as ctx:
                    ctx.prec, ctx.rounding = _PREC, ROUND_FLOOR
                    most = room / slope
            if most is not None and (best is None or most < best[0]):
                best = (most, token)
        return best

    @staticmethod
    def _floor(amount: Decimal, candidate: OrderCandidate, rule: TradingRule | None) -> Decimal:
        if amount <= 0:
            return _ZERO
        if rule is not None:
            return rule.quantize_amount(amount, candidate.order_type)
        exponent = candidate.amount.as_tuple().exponent
        places = max(-exponent if isinstance(exponent, int) else 0, _MIN_DECIMALS_WITHOUT_RULE)
        return floor_to(amount, Decimal(1).scaleb(-places))


def _require_decimal(name: str, value: object) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal (money is never a float), got {value!r}")


def _balance(balances: Mapping[str, Decimal], token: str) -> Decimal:
    value = balances.get(token, _ZERO)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidBalance(f"balance of {token} must be a finite Decimal, got {value!r}")
    return value

