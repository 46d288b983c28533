"""Binance request builders and spec: one table of (intent, exact request), as h11's test_io does.

Each row names what the codec must send: method, path, parameters in order, signing, and what it
costs against Binance's limits. The spec is checked against the numbers in Binance's docs.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import ConfigError
from marketlink.core.orders import InFlightOrder
from marketlink.core.sequence import get_rule
from marketlink.net.http import RestRequest, prepare_unsigned
from marketlink.net.throttler import Cost, ThrottleState
from marketlink.venues.base import Endpoints
from marketlink.venues.binance import SPEC, VENUE, local_endpoints
from marketlink.venues.binance.codec import BinanceSpotCodec

codec = BinanceSpotCodec()
WEIGHT, ORDERS, RAW = "REQUEST_WEIGHT", "ORDERS", "RAW_REQUESTS"


def cost(weight: int, order: bool = False) -> tuple[Cost, ...]:
    base = (Cost(WEIGHT, weight), Cost(RAW, 1))
    return (*base, Cost(ORDERS, 1)) if order else base


def order(
    order_type: OrderType, side: Side, amount: str, price: str | None, tif: TimeInForce = TimeInForce.GTC
) -> InFlightOrder:
    return InFlightOrder(
        client_order_id="ml-BBTCUSDT-0001",
        trading_pair="BTC-USDT",
        order_type=order_type,
        side=side,
        amount=Decimal(amount),
        price=None if price is None else Decimal(price),
        creation_timestamp=1_700_000_000.0,
        time_in_force=tif,
    )


PLACE = {"newClientOrderId": "ml-BBTCUSDT-0001", "newOrderRespType": "FULL"}

BUILDERS: list[tuple[str, Callable[[], RestRequest], RestRequest]] = [
    ("ping", codec.ping_request, RestRequest("GET", "/api/v3/ping", costs=cost(1))),
    ("time", codec.server_time_request, RestRequest("GET", "/api/v3/time", costs=cost(1))),
    ("exchangeInfo", codec.markets_request, RestRequest("GET", "/api/v3/exchangeInfo", costs=cost(20))),
    ("prices", codec.last_prices_request, RestRequest("GET", "/api/v3/ticker/price", costs=cost(4))),
    *[
        (
            f"depth {limit}",
            (lambda limit=limit: codec.depth_snapshot_request("BTCUSDT", limit)),
            RestRequest("GET", "/api/v3/depth", {"symbol": "BTCUSDT", "limit": limit}, costs=cost(weight)),
        )
        for limit, weight in [(1, 5), (100, 5), (101, 25), (500, 25), (1000, 50), (1001, 250), (5000, 250)]
    ],
    (
        "limit buy GTC",
        lambda: codec.place_order_request(order(OrderType.LIMIT, Side.BUY, "0.00100", "65000.10"), "BTCUSDT"),
        RestRequest(
            "POST",
            "/api/v3/order",
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.00100",
                "price": "65000.10",
                **PLACE,
            },
            signed=True,
            costs=cost(1, order=True),
            idempotent=False,
            is_order=True,
        ),
    ),
    (
        "limit sell IOC, tiny amount never in exponent form",
        lambda: codec.place_order_request(
            order(OrderType.LIMIT, Side.SELL, "1E-8", "7E+4", TimeInForce.IOC), "BTCUSDT"
        ),
        RestRequest(
            "POST",
            "/api/v3/order",
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "LIMIT",
                "timeInForce": "IOC",
                "quantity": "0.00000001",
                "price": "70000",
                **PLACE,
            },
            signed=True,
            costs=cost(1, order=True),
            idempotent=False,
            is_order=True,
        ),
    ),
    (
        "limit FOK",
        lambda: codec.place_order_request(
            order(OrderType.LIMIT, Side.BUY, "1", "2", TimeInForce.FOK), "BTCUSDT"
        ),
        RestRequest(
            "POST",
            "/api/v3/order",
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "FOK",
                "quantity": "1",
                "price": "2",
                **PLACE,
            },
            signed=True,
            costs=cost(1, order=True),
            idempotent=False,
            is_order=True,
        ),
    ),
    (
        "limit maker: no timeInForce",
        lambda: codec.place_order_request(order(OrderType.LIMIT_MAKER, Side.SELL, "0.5", "70000"), "BTCUSDT"),
        RestRequest(
            "POST",
            "/api/v3/order",
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "LIMIT_MAKER",
                "quantity": "0.5",
                "price": "70000",
                **PLACE,
            },
            signed=True,
            costs=cost(1, order=True),
            idempotent=False,
            is_order=True,
        ),
    ),
    (
        "market: quantity, no price, no timeInForce",
        lambda: codec.place_order_request(order(OrderType.MARKET, Side.BUY, "0.25", None), "BTCUSDT"),
        RestRequest(
            "POST",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.25", **PLACE},
            signed=True,
            costs=cost(1, order=True),
            idempotent=False,
            is_order=True,
        ),
    ),
    (
        "cancel by client id",
        lambda: codec.cancel_order_request("BTCUSDT", "ml-1"),
        RestRequest(
            "DELETE",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "origClientOrderId": "ml-1"},
            signed=True,
            costs=cost(1),
        ),
    ),
    (
        "query by client id",
        lambda: codec.order_status_request("BTCUSDT", "ml-1"),
        RestRequest(
            "GET",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "origClientOrderId": "ml-1"},
            signed=True,
            costs=cost(4),
        ),
    ),
    (
        "open orders of one symbol",
        lambda: codec.open_orders_request("BTCUSDT"),
        RestRequest("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, signed=True, costs=cost(6)),
    ),
    (
        "open orders of every symbol",
        lambda: codec.open_orders_request(None),
        RestRequest("GET", "/api/v3/openOrders", signed=True, costs=cost(80)),
    ),
    (  # the first page starts at trade id 0: without fromId Binance sends the most recent trades
        "my trades of one order",
        lambda: codec.order_trades_request("BTCUSDT", "28"),
        RestRequest(
            "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "orderId": "28", "fromId": "0", "limit": 1000},
            signed=True, costs=cost(5),
        ),
    ),
    (
        "my trades of one order, a later page",
        lambda: codec.order_trades_request("BTCUSDT", "28", from_trade_id="1501"),
        RestRequest(
            "GET",
            "/api/v3/myTrades",
            {"symbol": "BTCUSDT", "orderId": "28", "fromId": "1501", "limit": 1000},
            signed=True,
            costs=cost(5),
        ),
    ),
    (
        "account",
        codec.balances_request,
        RestRequest("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True, costs=cost(20)),
    ),
]


@pytest.mark.parametrize(("intent", "build", "expected"), BUILDERS, ids=[row[0] for row in BUILDERS])
def test_builder_produces_the_exact_request(
    intent: str, build: Callable[[], RestRequest], expected: RestRequest
) -> None:
    request = build()
    assert request == expected
    assert list((request.params or {}).items()) == list((expected.params or {}).items())  # order matters
    ThrottleState(SPEC.rate_limits).validate(request.costs)  # every pool it names exists


def test_only_the_placement_is_an_order_and_never_retried() -> None:
    place = codec.place_order_request(order(OrderType.LIMIT, Side.BUY, "1", "1"), "BTCUSDT")
    assert place.is_order and not place.is_idempotent
    assert not codec.cancel_order_request("BTCUSDT", "x").is_idempotent  # a repeat would read "unknown order"
    assert codec.order_status_request("BTCUSDT", "x").is_idempotent


@pytest.mark.parametrize("limit", [0, -1, 5001])
def test_depth_limit_outside_binance_tiers_is_refused(limit: int) -> None:
    with pytest.raises(ConfigError, match="depth limit"):
        codec.depth_snapshot_request("BTCUSDT", limit)


def test_unsigned_request_encodes_as_binance_expects() -> None:
    prepared = prepare_unsigned(codec.depth_snapshot_request("BTCUSDT", 1000))
    assert prepared.url_path_with_query == "/api/v3/depth?symbol=BTCUSDT&limit=1000"


# -- streams ---------------------------------------------------------------------------------------


def test_market_subscription_frames() -> None:
    streams = [
        "btcusdt@depth@100ms",
        "btcusdt@trade",
        "btcusdt@bookTicker",
        "ethbtc@depth@100ms",
        "ethbtc@trade",
        "ethbtc@bookTicker",
    ]
    assert codec.market_subscribe(["BTCUSDT", "ETHBTC"], 7) == {
        "method": "SUBSCRIBE",
        "params": streams,
        "id": 7,
    }
    assert codec.market_unsubscribe(["BTCUSDT", "ETHBTC"], 8) == {
        "method": "UNSUBSCRIBE",
        "params": streams,
        "id": 8,
    }


@pytest.mark.parametrize(
    ("domain", "market", "user"),
    [
        ("com", "wss://stream.binance.com:9443/stream", "wss://ws-api.binance.com:443/ws-api/v3"),
        (
            "testnet",
            "wss://stream.testnet.binance.vision/stream",
            "wss://ws-api.testnet.binance.vision/ws-api/v3",
        ),
    ],
)
def test_stream_urls_per_domain(domain: str, market: str, user: str) -> None:
    endpoints = SPEC.endpoints(domain)
    assert codec.market_stream_url(endpoints) == market
    assert codec.user_stream_url(endpoints) == user


def test_user_stream_subscribe_frame_is_signed_by_the_auth() -> None:
    class Signer:
        def sign_ws_params(self, params: dict[str, object], timestamp_ms: int) -> dict[str, object]:
            return {**params, "apiKey": "k", "timestamp": timestamp_ms, "signature": "s"}

    frame = codec.user_stream_subscribe(Signer(), 1747385641636, 3)
    assert frame == {
        "id": 3,
        "method": "userDataStream.subscribe.signature",
        "params": {"apiKey": "k", "timestamp": 1747385641636, "signature": "s"},
    }


# -- spec ------------------------------------------------------------------------------------------


def test_spec_domains() -> None:
    assert SPEC.endpoints("com") == Endpoints(
        "https://api.binance.com", "wss://stream.binance.com:9443", "wss://ws-api.binance.com:443/ws-api/v3"
    )
    assert SPEC.endpoints("testnet").rest == "https://testnet.binance.vision"
    assert SPEC.endpoints("local").rest.startswith("http://127.0.0.1:")
    with pytest.raises(ConfigError, match="unknown domain"):
        SPEC.endpoints("us")


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (
            "http://127.0.0.1:40123",
            Endpoints("http://127.0.0.1:40123", "ws://127.0.0.1:40123", "ws://127.0.0.1:40123/ws-api/v3"),
        ),
        (
            "http://127.0.0.1:40123/",
            Endpoints("http://127.0.0.1:40123", "ws://127.0.0.1:40123", "ws://127.0.0.1:40123/ws-api/v3"),
        ),
        (
            "https://sandbox.local:8443",
            Endpoints(
                "https://sandbox.local:8443", "wss://sandbox.local:8443", "wss://sandbox.local:8443/ws-api/v3"
            ),
        ),
    ],
)
def test_local_endpoints_serve_everything_on_one_host(base: str, expected: Endpoints) -> None:
    endpoints = local_endpoints(base)
    assert endpoints == expected
    assert codec.market_stream_url(endpoints) == f"{expected.ws_market}/stream"


@pytest.mark.parametrize(
    "base", ["127.0.0.1:8765", "ws://127.0.0.1:8765", "http://127.0.0.1:8765/api", "http://"]
)
def test_local_endpoints_refuse_what_is_not_a_base_url(base: str) -> None:
    with pytest.raises(ConfigError):
        local_endpoints(base)


def test_spec_limits_match_binance_docs() -> None:
    limits = {limit.id: {(w.capacity, w.seconds) for w in limit.windows} for limit in SPEC.rate_limits}
    assert limits == {WEIGHT: {(6000, 60)}, ORDERS: {(50, 10), (160_000, 86_400)}, RAW: {(61_000, 300)}}
    assert SPEC.client_ids.max_length == 36 and SPEC.client_ids.default_prefix
    assert set(SPEC.client_ids.default_prefix) <= set(SPEC.client_ids.alphabet)
    assert SPEC.fees.taker_percent == Decimal("0.001") and SPEC.fees.buy_percent_fee_deducted_from_returns
    assert get_rule(SPEC.sequence_rule).name == "binance_spot"
    assert set(SPEC.order_types) == set(OrderType) and set(SPEC.time_in_force) == set(TimeInForce)
    assert VENUE.name == "binance" and VENUE.spec is SPEC
