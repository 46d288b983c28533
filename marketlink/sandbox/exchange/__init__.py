"""The sandbox's venue-neutral exchange engine: pure, deterministic, exact.

``Exchange`` is the whole public surface a front-end needs; ``MarketFlow`` keeps its books
moving. Everything else here is a value type those two hand out.
"""

from marketlink.sandbox.exchange.engine import Exchange, GroundTruth
from marketlink.sandbox.exchange.errors import ExchangeRejection, FilterType, Reason
from marketlink.sandbox.exchange.events import (
    AccountEvent,
    AssetBalance,
    BalanceDelta,
    BookTop,
    CancelResult,
    DepthDiff,
    DepthSnapshot,
    Fill,
    OrderEvent,
    OrderResult,
    OwnTrade,
    PreventedMatch,
    PrivateEvent,
    PublicEvent,
    TradeEvent,
)
from marketlink.sandbox.exchange.flow import FlowConfig, FlowMarket, MarketFlow
from marketlink.sandbox.exchange.markets import BINANCE_DEFAULT_STP, MarketSpec, StpMode
from marketlink.sandbox.exchange.orders import ExecutionType, OrderStatus, OrderView
from marketlink.sandbox.exchange.stats import Ticker24h

__all__ = [
    "BINANCE_DEFAULT_STP",
    "AccountEvent",
    "AssetBalance",
    "BalanceDelta",
    "BookTop",
    "CancelResult",
    "DepthDiff",
    "DepthSnapshot",
    "Exchange",
    "ExchangeRejection",
    "ExecutionType",
    "Fill",
    "FilterType",
    "FlowConfig",
    "FlowMarket",
    "GroundTruth",
    "MarketFlow",
    "MarketSpec",
    "OrderEvent",
    "OrderResult",
    "OrderStatus",
    "OrderView",
    "OwnTrade",
    "PreventedMatch",
    "PrivateEvent",
    "PublicEvent",
    "Reason",
    "StpMode",
    "Ticker24h",
    "TradeEvent",
]
