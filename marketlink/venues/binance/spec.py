"""Binance Spot as data: where it lives, what it lets us spend, what it charges.

Everything here is a fact from Binance's spot docs (exchange-protocols.md §2), kept on one screen
so a reader checks a number against the docs without reading code. A variant domain is another
``Endpoints`` value, never a subclass.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final
from urllib.parse import urlsplit

from marketlink.core.client_ids import ALNUM_DASH_UNDERSCORE
from marketlink.core.errors import ConfigError
from marketlink.core.fees import TradeFeeSchema
from marketlink.net.throttler import Cost, RateLimit, Window
from marketlink.venues.base import ClientIdRules, Endpoints, HeartbeatSpec, VenueSpec

NAME: Final = "binance"

# -- rate limits (BSD rest-api.md "LIMITS", enums.md; live values come in exchangeInfo) ----------
REQUEST_WEIGHT: Final = "REQUEST_WEIGHT"  # per IP, shared by REST and the WebSocket API
ORDERS: Final = "ORDERS"  # new orders per account: two windows on one pool
RAW_REQUESTS: Final = "RAW_REQUESTS"  # every request counts once, whatever its weight

RATE_LIMITS: Final = (
    RateLimit.simple(REQUEST_WEIGHT, 6_000, 60),
    RateLimit(ORDERS, (Window(50, 10), Window(160_000, 86_400))),
    RateLimit.simple(RAW_REQUESTS, 61_000, 300),
)
#: Windows per pool, for reading ``X-MBX-*`` usage headers back onto them.
WINDOWS: Final = {limit.id: frozenset(w.seconds for w in limit.windows) for limit in RATE_LIMITS}

#: name -> (method, path, request weight). openOrders is 6 for one symbol, 80 for all; myTrades
#: is 5 with ``orderId`` (how we call it), 20 without.
REST: Final = {
    "ping": ("GET", "/api/v3/ping", 1),
    "time": ("GET", "/api/v3/time", 1),
    "exchange_info": ("GET", "/api/v3/exchangeInfo", 20),
    "last_prices": ("GET", "/api/v3/ticker/price", 4),
    "depth": ("GET", "/api/v3/depth", 0),  # weight by limit: DEPTH_WEIGHTS
    "place": ("POST", "/api/v3/order", 1),
    "cancel": ("DELETE", "/api/v3/order", 1),
    "query": ("GET", "/api/v3/order", 4),
    "open_orders": ("GET", "/api/v3/openOrders", 6),
    "open_orders_all": ("GET", "/api/v3/openOrders", 80),
    "my_trades": ("GET", "/api/v3/myTrades", 5),
    "account": ("GET", "/api/v3/account", 20),
}
#: (largest ``limit`` of the tier, weight) for GET /api/v3/depth.
DEPTH_WEIGHTS: Final = ((100, 5), (500, 25), (1_000, 50), (5_000, 250))


def costs(weight: int, *, order: bool = False) -> tuple[Cost, ...]:
    """What one request charges: its weight, one raw request, and one order for a placement."""
    base = (Cost(REQUEST_WEIGHT, weight), Cost(RAW_REQUESTS, 1))
    return (*base, Cost(ORDERS, 1)) if order else base


def depth_weight(limit: int) -> int:
    for largest, weight in DEPTH_WEIGHTS:
        if 1 <= limit <= largest:
            return weight
    raise ConfigError(f"{NAME}: depth limit must be 1..{DEPTH_WEIGHTS[-1][0]}, got {limit}")


# -- market streams: our channel -> Binance's stream suffix (cryptofeed-style channel map) --------
CHANNELS: Final = {"depth": "depth@100ms", "trade": "trade", "ticker": "bookTicker"}


# -- domains ------------------------------------------------------------------------------------
LOCAL_URL: Final = "http://127.0.0.1:8765"  # the sandbox when started with --port 8765


def local_endpoints(base_url: str) -> Endpoints:
    """The sandbox serves REST, ``/ws``, ``/stream`` and ``/ws-api/v3`` on one ``http://host:port``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(f"{NAME}: local base URL must be http(s)://host:port, got {base_url!r}")
    rest = f"{parts.scheme}://{parts.netloc}"
    ws = ("wss" if parts.scheme == "https" else "ws") + f"://{parts.netloc}"
    return Endpoints(rest=rest, ws_market=ws, ws_user=f"{ws}/ws-api/v3")


DOMAINS: Final = {
    "com": Endpoints(
        rest="https://api.binance.com",
        ws_market="wss://stream.binance.com:9443",
        ws_user="wss://ws-api.binance.com:443/ws-api/v3",
    ),
    "testnet": Endpoints(
        rest="https://testnet.binance.vision",
        ws_market="wss://stream.testnet.binance.vision",
        ws_user="wss://ws-api.testnet.binance.vision/ws-api/v3",
    ),
    "local": local_endpoints(LOCAL_URL),
}

SPEC: Final = VenueSpec(
    name=NAME,
    domains=DOMAINS,
    rate_limits=RATE_LIMITS,
    # newClientOrderId: ^[a-zA-Z0-9-_]{1,36}$, in spot's own -1100 answer (binance-spot-api-docs
    # PR #34: "dot(.) is not allowed") and fix-api.md. The ".:/" alphabet is USD-M futures'.
    client_ids=ClientIdRules(max_length=36, alphabet=ALNUM_DASH_UNDERSCORE, default_prefix="ml"),
    # Base tier 0.1 %; a buy's fee comes out of the base asset received (unless paid in BNB,
    # which the reported commission asset of each fill then says).
    fees=TradeFeeSchema(
        maker_percent=Decimal("0.001"),
        taker_percent=Decimal("0.001"),
        buy_percent_fee_deducted_from_returns=True,
    ),
    sequence_rule="binance_spot",
    snapshot_depth=1_000,  # weight 50; 5000 costs 250
    probe_depth=5,  # the smallest limit; 1-100 levels cost weight 5
    # The server pings every 20 s and drops us after a minute without a pong (both sockets).
    market_heartbeat=HeartbeatSpec("server", timeout=60.0),
    user_heartbeat=HeartbeatSpec("server", timeout=60.0),
    max_streams_per_connection=1_024,
    recv_window_ms=5_000,
    extra={"channels": CHANNELS, "ws_messages_per_second": 5},
)
