"""The venue-neutral vocabulary every layer above the codecs speaks."""

from __future__ import annotations

from enum import StrEnum


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    LIMIT_MAKER = "LIMIT_MAKER"

    @property
    def is_limit(self) -> bool:
        return self is not OrderType.MARKET


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class PositionAction(StrEnum):
    OPEN = "OPEN"
    CLOSE = "CLOSE"
    NIL = "NIL"


class PositionSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    BOTH = "BOTH"


class PositionMode(StrEnum):
    ONEWAY = "ONEWAY"
    HEDGE = "HEDGE"


class PriceType(StrEnum):
    MID = "MID"
    BEST_BID = "BEST_BID"
    BEST_ASK = "BEST_ASK"
    LAST_TRADE = "LAST_TRADE"
    LAST_OWN_TRADE = "LAST_OWN_TRADE"
    CUSTOM = "CUSTOM"
