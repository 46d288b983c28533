"""Binance answers to the typed error set, and usage headers to throttler calibrations.

The table covers every code and status the issue lists. Classification reads the HTTP status and
Binance's code; only -2010, whose code Binance shares between several causes, reads the message.
"""

from __future__ import annotations

from typing import Any

import pytest
from binance_fixtures import load_fixture
from multidict import CIMultiDict

from marketlink.net.errors import (
    AuthError,
    ClockSkew,
    DuplicateOrder,
    FilterRejected,
    InsufficientFunds,
    IpBanned,
    OrderNotFound,
    OrderRateLimited,
    RateLimited,
    Rejected,
    ServerError,
    VenueError,
)
from marketlink.net.throttler import ThrottleState, Usage
from marketlink.venues.binance import SPEC
from marketlink.venues.binance.codec import BinanceSpotCodec

codec = BinanceSpotCodec()


def body(code: int, msg: str = "some text") -> dict[str, Any]:
    return {"code": code, "msg": msg}


CASES: list[tuple[str, int, dict[str, str], Any, type[VenueError]]] = [
    (
        "clock skew",
        400,
        {},
        body(-1021, "Timestamp for this request is outside of the recvWindow."),
        ClockSkew,
    ),
    ("weight exceeded code", 400, {}, body(-1003, "Too many requests queued."), RateLimited),
    ("order count exceeded code", 400, {}, body(-1015, "Too many new orders."), OrderRateLimited),
    ("429", 429, {"Content-Type": "application/json", "Retry-After": "7"}, body(-1003), RateLimited),
    # The order count's 429: only new orders must wait, not the cancels that pull orders.
    ("429 order count", 429, {"Retry-After": "7"}, body(-1015, "Too many new orders."), OrderRateLimited),
    ("429 without a body", 429, {}, None, RateLimited),
    (
        "418 ban",
        418,
        {"Retry-After": "120"},
        body(-1003, "Way too much request weight used; IP banned"),
        IpBanned,
    ),
    ("query: no such order", 400, {}, body(-2013, "Order does not exist."), OrderNotFound),
    ("cancel: unknown order", 400, {}, body(-2011, "Unknown order sent."), OrderNotFound),
    (
        "insufficient balance",
        400,
        {},
        body(-2010, "Account has insufficient balance for requested action."),
        InsufficientFunds,
    ),
    ("duplicate", 400, {}, body(-2010, "Duplicate order sent."), DuplicateOrder),
    ("would take", 400, {}, body(-2010, "Order would immediately match and take."), Rejected),
    ("market closed", 400, {}, body(-2010, "Market is closed."), Rejected),
    ("filter", 400, {}, body(-1013, "Filter failure: LOT_SIZE"), FilterRejected),
    ("bad key format", 401, {}, body(-2014, "API-key format invalid."), AuthError),
    ("rejected key", 401, {}, body(-2015, "Invalid API-key, IP, or permissions for action."), AuthError),
    ("bad signature", 400, {}, body(-1022, "Signature for this request is not valid."), AuthError),
    ("unauthorized", 401, {}, body(-1002), AuthError),
    (
        "timeout: outcome unknown",
        408,
        {},
        body(-1007, "Timeout waiting for response from backend server."),
        ServerError,
    ),
    ("5xx", 503, {}, body(-1008, "Service Unavailable."), ServerError),
    ("5xx without a body", 502, {}, None, ServerError),
    ("unknown code", 400, {}, body(-1121, "Invalid symbol."), Rejected),
    ("no code", 403, {}, "<html>WAF</html>", Rejected),
    ("code of the wrong type", 400, {}, {"code": "-2013", "msg": 5}, Rejected),
]


@pytest.mark.parametrize(("case", "status", "headers", "payload", "kind"), CASES, ids=[c[0] for c in CASES])
def test_classification(
    case: str, status: int, headers: dict[str, str], payload: Any, kind: type[VenueError]
) -> None:
    err = codec.classify_error(status, headers, payload)
    assert type(err) is kind
    assert err.status == status and err.venue == "binance"
    expected_code = payload.get("code") if isinstance(payload, dict) else None
    assert err.code == (expected_code if isinstance(expected_code, int) else None)
    if isinstance(payload, dict) and isinstance(payload.get("msg"), str):
        assert err.message == payload["msg"]  # kept for humans and logs
    else:
        assert err.message == f"HTTP {status}"


@pytest.mark.parametrize("status", [200, 201, 204, 304])
def test_success_is_not_an_error(status: int) -> None:
    assert codec.classify_error(status, {}, {"symbol": "BTCUSDT"}) is None


def test_fixture_error_payload() -> None:
    err = codec.classify_error(400, {}, load_fixture("rest_error_invalid_symbol.json"))
    assert isinstance(err, Rejected) and err.reason == "Invalid symbol." and err.code == -1121


def test_retry_after_comes_from_the_header_in_any_case() -> None:
    for headers, expected in [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ]:
        for status, payload in [(429, None), (418, None), (400, body(-1003))]:
            err = codec.classify_error(status, headers, payload)
            assert isinstance(err, RateLimited | IpBanned) and err.retry_after == expected


def test_filter_rule_is_named() -> None:
    for msg, rule in [
        ("Filter failure: PRICE_FILTER", "PRICE_FILTER"),
        ("Filter failure: NOTIONAL", "NOTIONAL"),
        ("Filter failure: MAX_NUM_ORDERS", "MAX_NUM_ORDERS"),
        ("Invalid quantity.", None),
    ]:
        err = codec.classify_error(400, {}, body(-1013, msg))
        assert isinstance(err, FilterRejected) and err.rule == rule


def test_the_message_decides_nothing_outside_2010() -> None:
    misleading = "Account has insufficient balance for requested action. Duplicate order sent."
    assert type(codec.classify_error(400, {}, body(-2013, misleading))) is OrderNotFound
    assert type(codec.classify_error(400, {}, body(-1121, misleading))) is Rejected


# -- usage headers -----------------------------------------------------------------------------------


def test_usage_headers_map_onto_pools_and_windows() -> None:
    headers = CIMultiDict(
        {
            "x-mbx-used-weight-1m": "321",
            "X-MBX-USED-WEIGHT": "321",  # no interval: not a usage header
            "X-MBX-ORDER-COUNT-10S": "3",
            "X-MBX-ORDER-COUNT-1D": "4043",
            "Content-Type": "application/json",
        }
    )
    usage = codec.usage_from_headers(headers)
    assert sorted(usage, key=lambda u: (u.limit_id, u.window_seconds or 0)) == [
        Usage("ORDERS", 3, 10.0),
        Usage("ORDERS", 4043, 86_400.0),
        Usage("REQUEST_WEIGHT", 321, 60.0),
    ]
    state = ThrottleState(SPEC.rate_limits)
    for u in usage:  # each one is a window the throttler holds
        state.calibrate(u.limit_id, u.used, 0.0, u.window_seconds)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-MBX-USED-WEIGHT-1S", "5"),  # a window we do not model
        ("X-MBX-USED-WEIGHT-2H", "5"),
        ("X-MBX-ORDER-COUNT-1M", "5"),
        ("X-MBX-USED-WEIGHT-1M", "-1"),
        ("X-MBX-USED-WEIGHT-1M", "12.5"),
        ("X-MBX-USED-WEIGHT-1M", "٣"),  # a non-ASCII digit
        ("X-MBX-USED-WEIGHT-1M", ""),
        ("X-MBX-USED-WEIGHT-1W", "5"),  # not an interval letter
    ],
)
def test_usage_headers_that_cannot_calibrate_are_left_out(name: str, value: str) -> None:
    assert list(codec.usage_from_headers({name: value})) == []


def test_interval_letters_are_read_generically() -> None:
    from marketlink.venues.binance import codec as module

    seconds = {"S": 1, "M": 60, "H": 3_600, "D": 86_400}
    for letter, unit in seconds.items():
        found = module._USAGE.fullmatch(f"X-MBX-USED-WEIGHT-3{letter.lower()}")
        assert (
            found is not None
            and int(found.group(2)) * module._UNIT_SECONDS[found.group(3).upper()] == 3 * unit
        )
