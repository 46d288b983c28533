"""Errors raised by pure core logic.

Following h11's split of local versus remote faults: these are *our* refusals, raised before
anything reaches a venue. Errors that come back from a venue live in ``marketlink.net.errors``
and share the ``MarketlinkError`` root so callers can catch everything of ours at once.
"""

from __future__ import annotations

from decimal import Decimal


class MarketlinkError(Exception):
    """Root of every error marketlink raises on purpose."""


class ConfigError(MarketlinkError, ValueError):
    """A configuration value is wrong; raised at configuration time, never mid-trade."""


class InvalidTradingPair(MarketlinkError, ValueError):
    """A string is not a well-formed ``BASE-QUOTE`` pair."""


class UnknownSymbol(MarketlinkError, KeyError):
    """A venue symbol or a trading pair the venue's symbol map does not hold."""

    def __init__(self, venue: str, symbol: str) -> None:
        super().__init__(f"{venue}: unknown symbol {symbol!r}")
        self.venue = venue
        self.symbol = symbol

    def __str__(self) -> str:  # KeyError would quote the whole message again
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[UnknownSymbol], tuple[str, str]]:
        # args holds only the message; without this, unpickling (multiprocessing, executors)
        # calls __init__ with one argument and fails.
        return type(self), (self.venue, self.symbol)


class RuleViolation(MarketlinkError):
    """An order breaks a trading rule after quantization; it never left the process.

    ``rule`` names the rule (e.g. ``min_notional``), ``value`` is what the order had and
    ``limit`` the bound it broke, so a strategy can react without parsing text.
    """

    def __init__(self, rule: str, value: Decimal | None, limit: Decimal | None, message: str):
        super().__init__(message)
        self.rule = rule
        self.value = value
        self.limit = limit

    def __reduce__(
        self,
    ) -> tuple[type[RuleViolation], tuple[str, Decimal | None, Decimal | None, str]]:
        # Same reason as UnknownSymbol: args is only the message, __init__ needs all four.
        return type(self), (self.rule, self.value, self.limit, str(self.args[0]))
