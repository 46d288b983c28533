"""Exact Decimal arithmetic for the sandbox ledger and book.

Python's default Decimal context keeps 28 significant digits and rounds silently beyond that; a
price times a quantity can need more. Every sum and product that moves money goes through a
wide context that *traps* inexact results, so a rounding we did not ask for is a loud bug, never
a quietly wrong balance. Rounding happens only where a venue rounds (commissions, display
statistics), through ``round_places`` with an explicit rounding mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

ZERO = Decimal(0)

_EXACT = Context(prec=90, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ROUNDING = Context(prec=90, traps=[InvalidOperation, DivisionByZero, Overflow])

# Inputs outside these magnitudes are refused before they reach arithmetic, which keeps every
# product within the exact context's 90 digits.
MAX_ADJUSTED_EXPONENT = 30
MIN_EXPONENT = -30


def add(a: Decimal, b: Decimal) -> Decimal:
    return _EXACT.add(a, b)


def sub(a: Decimal, b: Decimal) -> Decimal:
    return _EXACT.subtract(a, b)


def mul(a: Decimal, b: Decimal) -> Decimal:
    return _EXACT.multiply(a, b)


def total(values: Iterable[Decimal]) -> Decimal:
    out = ZERO
    for v in values:
        out = _EXACT.add(out, v)
    return out


def units(value: Decimal, unit: Decimal) -> int:
    """How many whole ``unit`` fit in ``value`` (both positive): the floor of the quotient."""
    return int(_EXACT.divide_int(value, unit))


def units_ceil(value: Decimal, unit: Decimal) -> int:
    n = units(value, unit)
    return n if _EXACT.remainder(value, unit) == 0 else n + 1


def floor_to(value: Decimal, unit: Decimal) -> Decimal:
    """Largest multiple of ``unit`` not above ``value`` (both non-negative)."""
    return mul(Decimal(units(value, unit)), unit)


def is_multiple(value: Decimal, unit: Decimal) -> bool:
    return _EXACT.remainder(value, unit) == 0


def canonical(value: Decimal, unit: Decimal) -> Decimal:
    """``value`` (a multiple of ``unit``) written with ``unit``'s exponent, e.g. 1.5 -> 1.50.

    Book keys and reports then print one way for one price, whatever digits the client sent.
    """
    return _EXACT.quantize(value, unit) if value.as_tuple().exponent != unit.as_tuple().exponent else value


def round_places(value: Decimal, places: int, rounding: str = ROUND_HALF_UP) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=rounding, context=_ROUNDING)


def divide(a: Decimal, b: Decimal, places: int) -> Decimal:
    """``a / b`` rounded half-up to ``places`` decimals; only for reported statistics."""
    return round_places(_ROUNDING.divide(a, b), places)


def in_range(value: Decimal) -> bool:
    """Finite and of a magnitude the exact context can always multiply without rounding."""
    if not value.is_finite():
        return False
    if value.is_zero():
        return True
    return value.adjusted() <= MAX_ADJUSTED_EXPONENT and int(value.as_tuple().exponent) >= MIN_EXPONENT
