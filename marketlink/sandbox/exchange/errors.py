"""The sandbox engine's refusals, each with a machine reason a front-end maps to venue codes.

A front-end never parses ``message``: it looks at ``reason`` (and ``filter`` for filter
failures) and answers with its venue's code and wording, e.g. Binance's ``-1013 Filter failure:
LOT_SIZE`` or ``-2010 Account has insufficient balance for requested action.``
"""

from __future__ import annotations

from enum import StrEnum

from marketlink.core.errors import MarketlinkError


class Reason(StrEnum):
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    FILTER_FAILURE = "FILTER_FAILURE"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    WOULD_TAKE = "WOULD_TAKE"  # a LIMIT_MAKER that would immediately match
    STP_MODE_NOT_ALLOWED = "STP_MODE_NOT_ALLOWED"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"


class FilterType(StrEnum):
    """Binance's filter names; the sandbox reports the one an order broke."""

    PRICE_FILTER = "PRICE_FILTER"
    LOT_SIZE = "LOT_SIZE"
    MARKET_LOT_SIZE = "MARKET_LOT_SIZE"
    NOTIONAL = "NOTIONAL"
    MIN_NOTIONAL = "MIN_NOTIONAL"
    MAX_NUM_ORDERS = "MAX_NUM_ORDERS"


class ExchangeRejection(MarketlinkError):
    """The sandbox refused a request; nothing changed in its state."""

    def __init__(self, reason: Reason, message: str, *, filter: FilterType | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.filter = filter
        self.message = message

    def __repr__(self) -> str:
        extra = f", filter={self.filter.value}" if self.filter else ""
        return f"ExchangeRejection({self.reason.value}{extra}: {self.message})"


def filter_failure(filter: FilterType, message: str) -> ExchangeRejection:
    return ExchangeRejection(Reason.FILTER_FAILURE, message, filter=filter)


def invalid(message: str) -> ExchangeRejection:
    return ExchangeRejection(Reason.INVALID_PARAMETER, message)
