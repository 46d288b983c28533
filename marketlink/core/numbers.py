"""How a venue writes a number, as we accept it: the one rule for every price, size and balance.

Python's ``Decimal`` reads far more than any venue writes ("-5", " 1 ", "1_000", "1E+1000000",
"NaN"); none of those is a quantity or a price a venue sends, so each is malformed input, caught
where it enters rather than turned into a value. Plain ASCII digits with at most one "." carry no
sign, so no negative amount can get in either.
"""

from __future__ import annotations

__all__ = ["is_plain_decimal"]


def is_plain_decimal(text: object) -> bool:
    """``digits[.digits]`` in ASCII ("12", "0.0100", "5.", ".5"), nothing else."""
    return isinstance(text, str) and text.isascii() and text.replace(".", "", 1).isdigit()
