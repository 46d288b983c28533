"""Fees: what a venue charges (schema), what one fill was charged (``TradeFee``), and how a fee
changes an order's cost and returns.

Two kinds, as venues really charge them: *added to cost* (you pay the fee on top of what you give,
e.g. a buy charged in the quote asset or a third token such as BNB) and *deducted from returns*
(you receive less, e.g. Binance spot charging a buy's fee in the base asset it delivers). A rebate
is a negative amount, so sums stay right without special cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from marketlink.core.enums import PositionAction, Side
from marketlink.core.errors import ConfigError
from marketlink.core.pairs import split_pair

_ZERO = Decimal(0)

#: Rate lookup for fees paid in a third token: ``rate(from_token, to_token)`` or ``None``.
RateFn = Callable[[str, str], Decimal | None]


@dataclass(frozen=True, slots=True)
class TokenAmount:
    token: str
    amount: Decimal


class FeeKind(StrEnum):
    ADDED_TO_COST = "ADDED_TO_COST"
    DEDUCTED_FROM_RETURNS = "DEDUCTED_FROM_RETURNS"


@dataclass(frozen=True, slots=True)
class TradeFeeSchema:
    """A venue's fee terms. Percentages are fractions: ``Decimal("0.001")`` is 0.1 %."""

    maker_percent: Decimal = _ZERO
    taker_percent: Decimal = _ZERO
    percent_fee_token: str | None = None
    buy_percent_fee_deducted_from_returns: bool = False
    maker_fixed_fees: tuple[TokenAmount, ...] = ()
    taker_fixed_fees: tuple[TokenAmount, ...] = ()

    def __post_init__(self) -> None:
        if self.percent_fee_token is not None and self.buy_percent_fee_deducted_from_returns:
            raise ConfigError("a fee paid in a third token cannot be deducted from returns")
        for p in (self.maker_percent, self.taker_percent):
            if not isinstance(p, Decimal) or not p.is_finite() or not (Decimal(-1) < p < Decimal(1)):
                raise ConfigError(f"fee percent must be a Decimal fraction in (-1, 1), got {p!r}")


@dataclass(frozen=True, slots=True)
class TradeFee:
    """The fee of one fill or an estimate for an order.

    ``percent`` applies to the fill's notional; ``flat_fees`` are absolute amounts (a venue's
    reported commission is a flat fee: it already is the exact amount charged).
    """

    kind: FeeKind
    percent: Decimal = _ZERO
    percent_token: str | None = None
    flat_fees: tuple[TokenAmount, ...] = field(default=())

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def reported(cls, token: str, amount: Decimal, kind: FeeKind) -> TradeFee:
        """The exact commission a venue reported for a fill."""
        return cls(kind=kind, flat_fees=(TokenAmount(token, amount),) if amount != 0 else ())

    @classmethod
    def estimate_spot(cls, schema: TradeFeeSchema, side: Side, is_maker: bool) -> TradeFee:
        kind = FeeKind.DEDUCTED_FROM_RETURNS
        if side is Side.BUY and (
            not schema.buy_percent_fee_deducted_from_returns or schema.percent_fee_token is not None
        ):
            kind = FeeKind.ADDED_TO_COST
        return cls._from_schema(schema, kind, is_maker)

    @classmethod
    def estimate_perpetual(
        cls, schema: TradeFeeSchema, action: PositionAction, is_maker: bool
    ) -> TradeFee:
        opening = action is not PositionAction.CLOSE
        kind = (
            FeeKind.ADDED_TO_COST
            if opening or schema.percent_fee_token is not None
            else FeeKind.DEDUCTED_FROM_RETURNS
        )
        return cls._from_schema(schema, kind, is_maker)

    @classmethod
    def _from_schema(cls, schema: TradeFeeSchema, kind: FeeKind, is_maker: bool) -> TradeFee:
        return cls(
            kind=kind,
            percent=schema.maker_percent if is_maker else schema.taker_percent,
            percent_token=schema.percent_fee_token,
            flat_fees=schema.maker_fixed_fees if is_maker else schema.taker_fixed_fees,
        )

    # -- amounts ------------------------------------------------------------------------------

    def amounts(
        self, trading_pair: str, side: Side, price: Decimal, amount: Decimal, rate: RateFn | None = None
    ) -> list[TokenAmount]:
        """What this fee takes, token by token, for a fill of ``amount`` base at ``price``.

        The percent part is charged in the asset it naturally falls on: quote when added to a
        buy's cost or deducted from a sell's returns, base when deducted from a buy's returns.
        When the venue charges it in a third token, ``rate(quote, token)`` converts it; with no
        rate the percent part is reported in quote (its value), never silently dropped.
        """
        base, quote = split_pair(trading_pair)
        out: list[TokenAmount] = []
        if self.percent:
            if self.kind is FeeKind.DEDUCTED_FROM_RETURNS and side is Side.BUY:
                out.append(TokenAmount(base, amount * self.percent))
            else:
                value = price * amount * self.percent
                token = quote
                if self.percent_token is not None and self.percent_token != quote:
                    r = rate(quote, self.percent_token) if rate is not None else None
                    if r is not None:
                        value, token = value * r, self.percent_token
                out.append(TokenAmount(token, value))
        out.extend(self.flat_fees)
        return out

    def cost_and_returns(
        self, trading_pair: str, side: Side, price: Decimal, amount: Decimal, rate: RateFn | None = None
    ) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """What an order of this fee gives up and receives, per token, fees included.

        A buy gives quote and receives base; a sell the reverse. Added-to-cost fees grow the
        cost side; deducted-from-returns fees shrink the returns side (in the token they are
        charged in, which may be a third token when it is neither base nor quote).
        """
        base, quote = split_pair(trading_pair)
        notional = price * amount
        cost: dict[str, Decimal] = {quote: notional} if side is Side.BUY else {base: amount}
        returns: dict[str, Decimal] = {base: amount} if side is Side.BUY else {quote: notional}
        target = cost if self.kind is FeeKind.ADDED_TO_COST else returns
        for fee in self.amounts(trading_pair, side, price, amount, rate):
            if target is returns and fee.token in returns:
                returns[fee.token] -= fee.amount
            elif target is returns:
                # A deducted fee in a token we do not receive is still paid: it is a cost.
                cost[fee.token] = cost.get(fee.token, _ZERO) + fee.amount
            else:
                cost[fee.token] = cost.get(fee.token, _ZERO) + fee.amount
        return cost, returns

    def total_in(self, token: str, fees: Iterable[TokenAmount] | None = None) -> Decimal:
        """Sum of the flat parts charged in ``token`` (reported fees are all flat)."""
        source = self.flat_fees if fees is None else fees  # an explicit empty list means none
        return sum((f.amount for f in source if f.token == token), _ZERO)
