"""The sandbox's Binance Spot front-end (REST ``/api/v3``, WebSocket API ``/ws-api/v3``, market and
user data streams), faithful enough that Binance clients run against it with only base URLs changed."""

from marketlink.sandbox.venues.binance.config import BinanceSpotConfig
from marketlink.sandbox.venues.binance.frontend import BinanceSpotFrontend

__all__ = ["BinanceSpotConfig", "BinanceSpotFrontend"]
