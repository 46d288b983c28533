"""Binance Spot: spec (data), codec (pure functions), auth (signing). No I/O in this package.

``VENUE`` is what the engine takes; ``local_endpoints(base_url)`` points it at a running sandbox.
"""

from __future__ import annotations

from marketlink.core.credentials import Credentials
from marketlink.venues.base import Venue
from marketlink.venues.binance.auth import BinanceAuth
from marketlink.venues.binance.codec import BinanceSpotCodec
from marketlink.venues.binance.spec import SPEC, local_endpoints


def make_auth(credentials: Credentials) -> BinanceAuth:
    return BinanceAuth(credentials, SPEC.recv_window_ms)


VENUE = Venue(spec=SPEC, codec=BinanceSpotCodec(), make_auth=make_auth)

__all__ = ["SPEC", "VENUE", "BinanceAuth", "BinanceSpotCodec", "local_endpoints", "make_auth"]
