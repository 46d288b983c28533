"""Turning a new-order request into a validated ``NewOrder``: parameters, then Binance's filters.

Pure: the only market state it needs (a reference price for a MARKET order's notional) is passed
in. Order of checks follows what Binance reports first: missing or contradictory parameters,
then the STP mode, then PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE and the notional filter. Prices
and quantities come back in canonical form (the tick's and step's exponent), so equal values are
equal everywhere after this point.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TypeVar

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.errors import ExchangeRejection, Reason, invalid
from marketlink.sandbox.exchange.markets import (
    MarketSpec,
    StpMode,
    check_lot,
    check_market_lot,
    check_notional,
    check_price,
)

Amount = Decimal | str | int
_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")  # Binance's newClientOrderId rule
_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A request that passed every check. ``qty`` is ``None`` only for a quote-quantity MARKET."""

    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    qty: Decimal | None
    quote_qty: Decimal | None
    stp: StpMode


def parse_amount(value: Amount | None, name: str) -> Decimal | None:
    """A non-negative, finite, sanely sized Decimal from a Decimal, int or string; never a float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise invalid(f"{name} must be a Decimal or a decimal string, got {type(value).__name__}")
    try:
        d = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise invalid(f"{name} is not a number: {value!r}") from None
    if not money.in_range(d) or d < 0:
        raise invalid(f"{name} is out of range: {value!r}")
    return d


def parse_enum(enum: type[_E], value: object, name: str) -> _E:
    try:
        return enum(str(value))
    except ValueError:
        raise invalid(f"invalid {name}: {value!r}") from None


def check_client_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not _CLIENT_ID.match(value):
        raise invalid(f"{name} must match {_CLIENT_ID.pattern}, got {value!r}")
    return value


def normalize(
    spec: MarketSpec,
    *,
    side: Side | str,
    order_type: OrderType | str,
    time_in_force: TimeInForce | str | None,
    quantity: Amount | None,
    quote_order_qty: Amount | None,
    price: Amount | None,
    stp_mode: StpMode | str | None,
    reference_price: Callable[[Side], Decimal | None],
) -> NewOrder:
    """Validate a new order. ``reference_price(side)`` stands in for a MARKET order's price in the
    notional check (``None`` skips that check: nothing to trade against)."""
    side_ = parse_enum(Side, side, "side")
    type_ = parse_enum(OrderType, order_type, "order type")
    tif = TimeInForce.GTC if time_in_force is None else parse_enum(TimeInForce, time_in_force, "timeInForce")
    qty = parse_amount(quantity, "quantity")
    quote = parse_amount(quote_order_qty, "quoteOrderQty")
    px = parse_amount(price, "price")

    if type_ is OrderType.MARKET:
        if (qty is None) == (quote is None):
            raise invalid("MARKET needs exactly one of quantity and quoteOrderQty")
        if px is not None:
            raise invalid("MARKET takes no price")
    else:
        if qty is None or px is None:
            raise invalid(f"{type_} needs quantity and price")
        if quote is not None:
            raise invalid(f"{type_} takes no quoteOrderQty")
    if type_ is not OrderType.LIMIT and tif is not TimeInForce.GTC:
        raise invalid(f"{type_} takes no timeInForce")

    stp = spec.default_stp if stp_mode is None else parse_enum(StpMode, stp_mode, "selfTradePreventionMode")
    if stp not in spec.allowed_stp:
        raise ExchangeRejection(
            Reason.STP_MODE_NOT_ALLOWED, f"{spec.symbol} does not allow self-trade prevention mode {stp}"
        )

    if type_ is OrderType.MARKET:
        if qty is not None:
            check_market_lot(spec, qty)
            qty = money.canonical(qty, spec.step_size)
            ref = reference_price(side_)
            if ref is not None:
                check_notional(spec, money.mul(ref, qty), is_market=True)
        else:
            assert quote is not None
            if quote <= 0:
                raise invalid("quoteOrderQty must be positive")
            check_notional(spec, quote, is_market=True)
        return NewOrder(side_, type_, tif, None, qty, quote, stp)

    assert qty is not None and px is not None
    check_price(spec, px)
    check_lot(spec, qty)
    px = money.canonical(px, spec.tick_size)
    qty = money.canonical(qty, spec.step_size)
    check_notional(spec, money.mul(px, qty), is_market=False)
    return NewOrder(side_, type_, tif, px, qty, None, stp)
