"""marketlink: exchange connectors with exact money, explicit state and a local sandbox.

The public API (docs/python-api.md) is importable from here. Names are loaded on first use
(PEP 562), so ``import marketlink`` (the CLI's ``--version``, ``--help``) does not import aiohttp,
the engine or the sandbox until something asks for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "connect": "marketlink.api",
    "Connecting": "marketlink.api",
    "known_venues": "marketlink.venues.registry",
    "SpotConnector": "marketlink.engine.connector",
    "ConnectorConfig": "marketlink.engine.context",
    "CancelOutcome": "marketlink.engine.orders",
    "CancelResult": "marketlink.engine.orders",
    "ForeignOrder": "marketlink.engine.orders",
    "ConnectorStopped": "marketlink.engine.orders",
    "Sandbox": "marketlink.sandbox.server",
    "SandboxConfig": "marketlink.sandbox.config",
    "OrderType": "marketlink.core.enums",
    "Side": "marketlink.core.enums",
    "TimeInForce": "marketlink.core.enums",
    "OrderState": "marketlink.core.orders",
    "InvalidOrderData": "marketlink.core.orders",
    "MarketlinkError": "marketlink.core.errors",
    "ConfigError": "marketlink.core.errors",
    "UnknownSymbol": "marketlink.core.errors",
    "InvalidTradingPair": "marketlink.core.errors",
    "VenueError": "marketlink.net.errors",
    "EventsDropped": "marketlink.engine.bus",
    "Subscription": "marketlink.engine.bus",
    **{
        name: "marketlink.core.events"
        for name in (
            "Event", "OrderEvent", "TerminalOrderEvent", "OrderCreated", "OrderFilled", "OrderCompleted",
            "OrderCancelled", "OrderExpired", "OrderFailed", "OrderLost", "OrderUnknown", "BalanceUpdated",
            "ConnectorStatusChanged", "BookResynced", "RateLimitNear",
        )
    },
}

# Kept literal so linters and type checkers read it; a test checks it against _EXPORTS.
__all__ = [
    "BalanceUpdated",
    "BookResynced",
    "CancelOutcome",
    "CancelResult",
    "ConfigError",
    "Connecting",
    "ConnectorConfig",
    "ConnectorStatusChanged",
    "ConnectorStopped",
    "Event",
    "EventsDropped",
    "ForeignOrder",
    "InvalidOrderData",
    "InvalidTradingPair",
    "MarketlinkError",
    "OrderCancelled",
    "OrderCompleted",
    "OrderCreated",
    "OrderEvent",
    "OrderExpired",
    "OrderFailed",
    "OrderFilled",
    "OrderLost",
    "OrderState",
    "OrderType",
    "OrderUnknown",
    "RateLimitNear",
    "Sandbox",
    "SandboxConfig",
    "Side",
    "SpotConnector",
    "Subscription",
    "TerminalOrderEvent",
    "TimeInForce",
    "UnknownSymbol",
    "VenueError",
    "__version__",
    "connect",
    "known_venues",
]

if TYPE_CHECKING:
    from marketlink.api import Connecting, connect
    from marketlink.core.enums import OrderType, Side, TimeInForce
    from marketlink.core.errors import ConfigError, InvalidTradingPair, MarketlinkError, UnknownSymbol
    from marketlink.core.events import (
        BalanceUpdated,
        BookResynced,
        ConnectorStatusChanged,
        Event,
        OrderCancelled,
        OrderCompleted,
        OrderCreated,
        OrderEvent,
        OrderExpired,
        OrderFailed,
        OrderFilled,
        OrderLost,
        OrderUnknown,
        RateLimitNear,
        TerminalOrderEvent,
    )
    from marketlink.core.orders import InvalidOrderData, OrderState
    from marketlink.engine.bus import EventsDropped, Subscription
    from marketlink.engine.connector import SpotConnector
    from marketlink.engine.context import ConnectorConfig
    from marketlink.engine.orders import CancelOutcome, CancelResult, ConnectorStopped, ForeignOrder
    from marketlink.net.errors import VenueError
    from marketlink.sandbox.config import SandboxConfig
    from marketlink.sandbox.server import Sandbox
    from marketlink.venues.registry import known_venues


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'marketlink' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
