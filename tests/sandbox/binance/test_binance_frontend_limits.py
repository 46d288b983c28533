"""Server-side rate limits (fixed windows, headers, 429 with Retry-After, then the 418 ban) and the
REST faults (5xx, hang, delay, lost order response)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from binance_frontend_support import MAKER_KEY, MAKER_SECRET, T0, Harness, start_harness, stop_harness
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.errors import ConfigError
from marketlink.sandbox.venues.binance import BinanceSpotConfig
from marketlink.sandbox.venues.binance.limits import (
    Interval,
    LimitType,
    RateLimit,
    RateLimiter,
    depth_weight,
    order_headers,
    ticker_24h_weight,
    weight_headers,
)

WEIGHT = RateLimit(LimitType.REQUEST_WEIGHT, Interval.MINUTE, 1, 10)
RAW = RateLimit(LimitType.RAW_REQUESTS, Interval.MINUTE, 5, 100)
ORDERS = RateLimit(LimitType.ORDERS, Interval.SECOND, 10, 2)
DAILY = RateLimit(LimitType.ORDERS, Interval.DAY, 1, 3)


def test_limit_tags_and_json() -> None:
    assert (WEIGHT.tag, WEIGHT.per, ORDERS.tag, DAILY.tag) == ("1M", "1 MINUTE", "10S", "1D")
    assert RateLimit(LimitType.RAW_REQUESTS, Interval.HOUR, 2, 5).tag == "2H"
    assert ORDERS.as_json() == {
        "rateLimitType": "ORDERS",
        "interval": "SECOND",
        "intervalNum": 10,
        "limit": 2,
    }
    with pytest.raises(ConfigError):
        RateLimit(LimitType.ORDERS, Interval.SECOND, 0, 1)
    with pytest.raises(ConfigError):
        RateLimiter((WEIGHT,), violations_before_ban=0)


def test_fixed_windows_reset_on_the_interval_boundary() -> None:
    lim = RateLimiter((WEIGHT, RAW), violations_before_ban=2, ban_ms=120_000)
    minute = 1_700_000_040_000  # a whole minute
    assert lim.admit("ip", 6, minute + 59_000).ok
    v = lim.admit("ip", 4, minute + 59_999)
    assert v.ok and weight_headers(v.usage) == {"X-MBX-USED-WEIGHT": "10", "X-MBX-USED-WEIGHT-1M": "10"}
    over = lim.admit("ip", 1, minute + 59_999)
    assert (over.status, over.retry_after_s, over.broken) == (429, 1, WEIGHT)
    fresh = lim.admit("ip", 1, minute + 60_000)  # the next minute starts from zero
    assert fresh.ok and fresh.usage[0].count == 1
    assert lim.admit("other-ip", 10, minute + 60_000).ok  # per IP


def test_ignoring_429s_earns_a_ban_that_expires() -> None:
    lim = RateLimiter((WEIGHT,), violations_before_ban=2, ban_ms=120_000)
    t = T0
    assert lim.admit("ip", 10, t).ok
    assert lim.admit("ip", 1, t).status == 429
    assert lim.admit("ip", 1, t).status == 429
    ban = lim.admit("ip", 1, t + 500)
    assert (ban.status, ban.banned_until_ms, ban.retry_after_s) == (418, t + 120_500, 120)
    assert lim.is_banned("ip", t + 120_499)
    still = lim.admit("ip", 1, t + 60_000)
    assert (still.status, still.retry_after_s) == (418, 61)
    after = lim.admit("ip", 1, t + 120_500)
    assert after.ok and not lim.is_banned("ip", t + 120_500)


def test_violations_are_counted_per_window() -> None:
    lim = RateLimiter((WEIGHT,), violations_before_ban=1, ban_ms=1000)
    t = T0
    lim.admit("ip", 11, t)  # one violation in this minute
    assert lim.admit("ip", 11, t + 60_000).status == 429  # a new window: counting starts again
    assert lim.admit("ip", 1, t + 60_000).status == 418


def test_order_counts_per_account_and_headers() -> None:
    lim = RateLimiter((WEIGHT, ORDERS, DAILY))
    t = T0 - T0 % 10_000
    assert lim.admit_order("a", t).ok
    second = lim.admit_order("a", t + 1)
    assert order_headers(second.usage) == {"X-MBX-ORDER-COUNT-10S": "2", "X-MBX-ORDER-COUNT-1D": "2"}
    refused = lim.admit_order("a", t + 2)
    assert (refused.status, refused.broken, refused.retry_after_s) == (429, ORDERS, 10)
    assert lim.order_usage("a", t + 2)[0].count == 2  # a refused order does not count
    assert lim.admit_order("b", t + 2).ok
    assert lim.admit_order("a", t + 10_000).ok
    daily = lim.admit_order("a", t + 20_000)
    assert (daily.status, daily.broken) == (429, DAILY)
    assert lim.order_limits == [ORDERS, DAILY]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200_000), st.integers(1, 7)), min_size=1, max_size=40))
def test_weight_count_matches_a_reference_model(requests: list[tuple[int, int]]) -> None:
    lim = RateLimiter((WEIGHT,), violations_before_ban=1000, ban_ms=1)
    counts: dict[int, int] = {}
    now = T0
    for gap, weight in requests:
        now += gap
        window = now // 60_000
        counts[window] = counts.get(window, 0) + weight
        v = lim.admit("ip", weight, now)
        assert v.usage[0].count == counts[window]
        assert v.ok == (counts[window] <= 10)


def test_endpoint_weight_tables() -> None:
    assert [depth_weight(n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000, 9999)] == [
        5,
        5,
        25,
        25,
        50,
        50,
        250,
        250,
        250,
    ]
    assert [ticker_24h_weight(n) for n in (None, 1, 20, 21, 100, 101)] == [80, 2, 2, 40, 40, 80]


def test_config_validation_and_options() -> None:
    cfg = BinanceSpotConfig.from_options(
        {
            "rate_limits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 5}
            ],
            "ban_ms": 1000,
            "unbounded_display": "1000",
            "depth_weight_tiers": [[10, 1], [20, 2]],
        }
    )
    assert cfg.rate_limits == (RateLimit(LimitType.REQUEST_WEIGHT, Interval.MINUTE, 1, 5),)
    assert cfg.depth_weight_tiers == ((10, 1), (20, 2))
    assert BinanceSpotConfig.from_options({"rate_limits": (WEIGHT,)}).rate_limits == (WEIGHT,)
    for bad in (
        {"nope": 1},
        {"ban_ms": 0},
        {"ban_ms": True},
        {"stream_max_incoming_per_s": -1},
        {"default_recv_window_ms": 70_000},
        {"rate_limits": [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 1, "limit": 1}]},
        {"rate_limits": "6000"},
        {"rate_limits": [5]},
        {"rate_limits": [{"rateLimitType": "X"}]},
        {"depth_weight_tiers": []},
        {"depth_weight_tiers": 5},
    ):
        with pytest.raises(ConfigError):
            BinanceSpotConfig.from_options(bad)


# -- over HTTP --------------------------------------------------------------------------------------


@pytest.fixture
async def tight() -> AsyncIterator[Harness]:
    cfg = BinanceSpotConfig(
        rate_limits=(WEIGHT, ORDERS, DAILY),
        violations_before_ban=1,
        ban_ms=120_000,
        stream_max_incoming_per_s=0,
    )
    harness = await start_harness(cfg)
    harness.wall.now = T0 - T0 % 60_000 + 1_000  # early in a minute
    yield harness
    await stop_harness(harness)


async def test_http_429_then_418(tight: Harness) -> None:
    h = tight
    for expected in range(1, 11):
        r = await h.public("/api/v3/ping")
        assert (r.status, r.headers["X-MBX-USED-WEIGHT-1M"]) == (200, str(expected))
    r = await h.public("/api/v3/ping")
    assert (r.status, r.headers["Retry-After"], r.headers["X-MBX-USED-WEIGHT-1M"]) == (429, "59", "11")
    assert r.body == {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 10 request weight per "
        "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
    }
    r = await h.public("/api/v3/ping")
    assert (r.status, r.headers["Retry-After"]) == (418, "120")
    assert r.body["code"] == -1003 and r.body["msg"].startswith(
        f"Way too much request weight used; IP banned until {h.now + 120_000}."
    )
    h.wall.now += 60_000
    r = await h.public("/api/v3/time")
    assert (r.status, r.headers["Retry-After"]) == (418, "60")
    h.wall.now += 60_000
    assert (await h.public("/api/v3/time")).status == 200


async def test_http_order_count_limit(tight: Harness) -> None:
    h = tight
    h.wall.now = T0 - T0 % 60_000 + 1_000
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.1",
        "price": "100",
    }
    for n in (1, 2):
        r = await h.order(order)
        assert (r.status, r.headers["X-MBX-ORDER-COUNT-10S"]) == (200, str(n))
    r = await h.order(order)
    assert (r.status, r.body["code"], r.headers["Retry-After"]) == (429, -1015, "9")
    assert r.body["msg"] == "Too many new orders; current limit is 2 orders per 10 SECOND."
    assert "X-MBX-ORDER-COUNT-10S" not in r.headers
    r = await h.order(order, key=MAKER_KEY, secret=MAKER_SECRET)  # another account has its own count
    assert r.status == 200


async def test_rest_error_fault(h: Harness) -> None:
    h.faults.fail_requests(2, status=503, path_prefix="/api/v3/order")
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.1",
        "price": "100",
    }
    for _ in range(2):
        r = await h.order(order)
        assert (r.status, r.body["code"]) == (503, -1001)
    assert (await h.public("/api/v3/ping")).status == 200  # other paths are untouched
    assert h.exchange.open_orders("alice") == []  # nothing executed
    assert (await h.order(order)).status == 200


async def test_rest_delay_fault_executes_then_answers(h: Harness) -> None:
    h.faults.delay_responses(0.05, 1, path_prefix="/api/v3/order")
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.1",
        "price": "100",
    }
    r = await h.order(order)
    assert r.status == 200 and r.body["status"] == "NEW"
    assert h.faults.fired["rest_delay"] == 1


async def test_rest_timeout_fault_holds_and_never_executes(h: Harness) -> None:
    h.faults.hang_seconds = 0.05
    h.faults.timeout_requests(1, path_prefix="/api/v3/order")
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.1",
        "price": "100",
    }
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await h.order(order)
    assert h.exchange.open_orders("alice") == []


async def test_lost_order_response_executes_the_order(h: Harness) -> None:
    h.faults.lose_order_responses(1)
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.1",
        "price": "100",
        "newClientOrderId": "lost-1",
    }
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await h.order(order)
    assert h.frontend.rest.lost_responses == 1
    r = await h.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost-1"})
    assert r.body["status"] == "NEW"
