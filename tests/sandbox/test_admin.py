"""The admin routes: off by default, token-guarded, every fault armed through them reaches Faults,
bad requests arm nothing, and the ground truth comes back with exact Decimal strings.

A real sandbox on 127.0.0.1 with no venue front-end, ticked by hand on a fixed clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from marketlink.sandbox.admin import FAULT_NAMES, AdminRequestError, arm, to_json
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.faults import Faults, RestAction, RestDecision, StreamKind
from marketlink.sandbox.server import Sandbox

T0 = 1_700_000_000_000
TOKEN = "admin-token-for-tests"
HEADERS = {"X-Admin-Token": TOKEN}


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    cfg = SandboxConfig(markets=("BTC-USDT", "ETH-USDT"), admin_token=TOKEN, seed=5)
    async with Sandbox(cfg, [], autotick=False, wall_ms=lambda: T0) as sandbox:
        yield sandbox


async def call(
    sb: Sandbox, method: str, path: str, *, headers: dict[str, str] | None = HEADERS, **kw: Any
) -> tuple[int, Any]:
    url = sb.base_url + path
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, **kw) as r:
        if r.content_type != "application/json":
            return r.status, await r.text()
        return r.status, await r.json()


def armed_state(f: Faults) -> dict[str, object]:
    """Everything a request could arm (the seeded rng and the fired counters aside)."""
    return {k: v for k, v in dataclasses.asdict(f).items() if k not in ("rng", "fired")}


# -- access ---------------------------------------------------------------------------------------


async def test_admin_routes_are_off_by_default() -> None:
    async with Sandbox(SandboxConfig(markets=("BTC-USDT",)), [], autotick=False) as sb:
        for method, path in (
            ("GET", "/admin/health"), ("POST", "/admin/faults"), ("GET", "/admin/ground-truth")
        ):
            status, _ = await call(sb, method, path, json={"fault": "expire_listen_keys"})
            assert status == 404
        assert sb.faults.listen_key_generation == 0


@pytest.mark.parametrize(
    ("headers", "error"),
    [(None, "missing X-Admin-Token header"), ({"X-Admin-Token": "wrong-token"}, "bad admin token"),
     ({"X-Admin-Token": TOKEN + "x"}, "bad admin token"), ({"X-Admin-Token": ""}, "bad admin token")],
)
async def test_a_missing_or_bad_token_is_refused_and_arms_nothing(
    sb: Sandbox, headers: dict[str, str] | None, error: str
) -> None:
    before = armed_state(sb.faults)
    for method, path in (
        ("POST", "/admin/faults"), ("POST", "/admin/faults/clear"),
        ("GET", "/admin/health"), ("GET", "/admin/ground-truth"),
    ):
        status, body = await call(sb, method, path, headers=headers, json={"fault": "shift_clock", "ms": 5})
        assert (status, body) == (401, {"error": error})
    assert armed_state(sb.faults) == before


# -- every fault reaches Faults -------------------------------------------------------------------


def _fail(f: Faults) -> None:
    order = "/api/v3/order"
    assert f.take_rest("/api/v3/depth") is None
    assert [f.take_rest(order), f.take_rest(order + "/test"), f.take_rest(order)] == [
        RestDecision(RestAction.ERROR, 502), RestDecision(RestAction.ERROR, 502), None,
    ]


def _timeout(f: Faults) -> None:
    assert f.take_rest("/anything") == RestDecision(RestAction.TIMEOUT)
    assert f.take_rest("/anything") is None


def _delay(f: Faults) -> None:
    assert f.take_rest("/api/v3/account") == RestDecision(RestAction.DELAY, seconds=0.25)
    assert f.take_rest("/api/v3/account") == RestDecision(RestAction.DELAY, seconds=0.25)
    assert f.take_rest("/api/v3/account") is None


def _lose(f: Faults) -> None:
    assert [f.take_lost_order_response() for _ in range(3)] == [True, True, False]


def _skip(f: Faults) -> None:
    assert not f.take_depth_skip("ETHUSDT")
    assert [f.take_depth_skip("BTCUSDT") for _ in range(4)] == [True, True, True, False]


def _duplicate(f: Faults) -> None:
    assert not f.take_duplicate(StreamKind.MARKET)
    assert f.take_duplicate(StreamKind.USER) and not f.take_duplicate(StreamKind.USER)


def _reorder(f: Faults) -> None:
    assert not f.take_reorder(StreamKind.API)
    assert f.take_reorder(StreamKind.MARKET) and f.take_reorder(StreamKind.MARKET)
    assert not f.take_reorder(StreamKind.MARKET)


def _drop(f: Faults) -> None:
    assert (f.drop_generation(StreamKind.API), f.drop_generation(StreamKind.MARKET)) == (1, 0)


def _drop_all(f: Faults) -> None:
    assert [f.drop_generation(k) for k in (StreamKind.MARKET, StreamKind.USER, StreamKind.API)] == [1, 1, 1]


def _stall(f: Faults) -> None:
    assert f.stalled(StreamKind.USER, T0 + 4_999) and not f.stalled(StreamKind.USER, T0 + 5_000)
    assert not f.stalled(StreamKind.MARKET, T0)


def _stall_until(f: Faults) -> None:
    assert f.stalled(StreamKind.MARKET, T0 + 10) and not f.stalled(StreamKind.MARKET, T0 + 11)


def _expire(f: Faults) -> None:
    assert f.listen_key_generation == 1


def _shift(f: Faults) -> None:
    assert f.clock_shift_ms == -1500


CASES: list[tuple[dict[str, object], dict[str, object], Callable[[Faults], None]]] = [
    ({"fault": "fail_requests", "n": 2, "status": 502, "path_prefix": "/api/v3/order"}, {}, _fail),
    ({"fault": "timeout_requests", "n": 1}, {}, _timeout),
    ({"fault": "delay_responses", "n": 2, "seconds": "0.25"}, {}, _delay),
    ({"fault": "lose_order_responses", "n": 2}, {}, _lose),
    ({"fault": "skip_update_ids", "symbol": "btc-usdt", "n": 3}, {"symbol": "BTCUSDT"}, _skip),
    ({"fault": "duplicate_messages", "n": 1, "kind": "USER"}, {}, _duplicate),
    ({"fault": "reorder_messages", "n": 2, "kind": "market"}, {}, _reorder),
    ({"fault": "drop_streams", "kind": "api"}, {}, _drop),
    ({"fault": "drop_streams"}, {}, _drop_all),
    ({"fault": "stall_streams", "kind": "user", "duration_ms": 5000}, {"until_ms": T0 + 5000}, _stall),
    ({"fault": "stall_streams", "until_ms": T0 + 11}, {"until_ms": T0 + 11}, _stall_until),
    ({"fault": "expire_listen_keys"}, {}, _expire),
    ({"fault": "shift_clock", "ms": -1500}, {"clock_shift_ms": -1500}, _shift),
]


def test_the_cases_cover_every_fault() -> None:
    assert {c[0]["fault"] for c in CASES} == set(FAULT_NAMES)


@pytest.mark.parametrize(
    ("payload", "report", "check"), CASES, ids=[f"{c[0]['fault']}-{i}" for i, c in enumerate(CASES)]
)
async def test_each_fault_armed_through_the_route_reaches_faults(
    sb: Sandbox, payload: dict[str, object], report: dict[str, object], check: Callable[[Faults], None]
) -> None:
    status, body = await call(sb, "POST", "/admin/faults", json=payload)
    assert status == 200, body
    assert body == {"ok": True, "fault": payload["fault"], **report, "fired": body["fired"]}
    check(sb.faults)


async def test_shift_clock_moves_the_sandbox_clock_and_clear_disarms(sb: Sandbox) -> None:
    await call(sb, "POST", "/admin/faults", json={"fault": "shift_clock", "ms": 2500})
    await call(sb, "POST", "/admin/faults", json={"fault": "fail_requests", "n": 5})
    assert sb.context.clock.now_ms() == T0 + 2500
    status, body = await call(sb, "POST", "/admin/faults/clear")
    assert (status, body) == (200, {"ok": True})
    assert sb.context.clock.now_ms() == T0
    assert sb.faults.take_rest("/api/v3/order") is None


async def test_fired_counters_come_back(sb: Sandbox) -> None:
    await call(sb, "POST", "/admin/faults", json={"fault": "lose_order_responses"})
    assert sb.faults.take_lost_order_response()
    _, body = await call(sb, "POST", "/admin/faults", json={"fault": "expire_listen_keys"})
    assert body["fired"] == {"lost_order_response": 1, "expire_listen_keys": 1}


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ([1, 2], "must be a JSON object"),
        ({}, "'fault' must be one of"),
        ({"fault": "explode"}, "'fault' must be one of fail_requests"),
        ({"fault": "fail_requests"}, "'n' is required"),
        ({"fault": "fail_requests", "n": 0}, "'n' must be an integer in [1, 1000000]"),
        ({"fault": "fail_requests", "n": "2"}, "'n' must be an integer"),
        ({"fault": "fail_requests", "n": True}, "'n' must be an integer"),
        ({"fault": "fail_requests", "n": 1, "status": 200}, "'status' must be an integer in [500, 599]"),
        ({"fault": "fail_requests", "n": 1, "path_prefix": "api"}, "'path_prefix' must start with '/'"),
        ({"fault": "fail_requests", "n": 1, "count": 3}, "unknown field(s) for fail_requests: count"),
        ({"fault": "delay_responses", "n": 1}, "'seconds' must be a number of seconds"),
        ({"fault": "delay_responses", "n": 1, "seconds": 0}, "'seconds' must be"),
        ({"fault": "delay_responses", "n": 1, "seconds": "soon"}, "'seconds' must be"),
        ({"fault": "delay_responses", "n": 1, "seconds": 1e9}, "'seconds' must be"),
        ({"fault": "duplicate_messages", "n": 1, "kind": "bogus"}, "'kind' must be one of market, user, api"),
        ({"fault": "skip_update_ids"}, "'symbol' is required"),
        ({"fault": "skip_update_ids", "symbol": "DOGEUSDT"}, "is not a market of this sandbox"),
        ({"fault": "skip_update_ids", "symbol": "BTC--USDT"}, "neither a symbol nor a pair"),
        ({"fault": "stall_streams"}, "exactly one of 'until_ms' and 'duration_ms'"),
        ({"fault": "stall_streams", "until_ms": 5, "duration_ms": 5}, "exactly one of"),
        ({"fault": "stall_streams", "duration_ms": -5}, "'duration_ms' must be an integer"),
        ({"fault": "shift_clock"}, "'ms' is required"),
        ({"fault": "shift_clock", "ms": 1.5}, "'ms' must be an integer"),
        ({"fault": "expire_listen_keys", "n": 1}, "unknown field(s) for expire_listen_keys: n"),
    ],
)
async def test_bad_fault_requests_get_a_clear_400_and_arm_nothing(
    sb: Sandbox, payload: object, error: str
) -> None:
    before = armed_state(sb.faults)
    status, body = await call(sb, "POST", "/admin/faults", json=payload)
    assert status == 400
    assert error in body["error"]
    assert armed_state(sb.faults) == before


async def test_a_body_that_is_not_json_is_a_400(sb: Sandbox) -> None:
    status, body = await call(sb, "POST", "/admin/faults", data=b"fault=x")
    assert (status, body) == (400, {"error": "the body must be a JSON object"})
    status, _ = await call(sb, "POST", "/admin/faults", data=b"\xff\xfe")
    assert status == 400


def test_arm_refuses_non_string_field_names(sb: Sandbox) -> None:
    with pytest.raises(AdminRequestError, match="JSON object"):
        arm(sb.context, {"fault": "expire_listen_keys", 1: 2})


# -- views ----------------------------------------------------------------------------------------


async def test_ground_truth_json_has_exact_strings(sb: Sandbox) -> None:
    ex = sb.exchange
    placed = ex.place_order("demo", "BTCUSDT", "BUY", "LIMIT", quantity="0.5", price="1000.00",
                            time_in_force="GTC", now_ms=T0)
    status, truth = await call(sb, "GET", "/admin/ground-truth")
    assert status == 200
    assert set(truth) == {"balances", "open_orders", "books", "recent_trades", "fees_collected", "deposited"}
    usdt = truth["balances"]["demo"]["USDT"]
    assert (Decimal(usdt["free"]), Decimal(usdt["locked"])) == (Decimal(999_500), Decimal(500))
    assert usdt["locked"] == format(ex.balance("demo", "USDT").locked, "f")
    (order,) = truth["open_orders"]["demo"]
    assert order["order_id"] == placed.order.order_id
    assert (order["price"], order["orig_qty"]) == ("1000.00", "0.50000")
    assert (order["side"], order["status"], order["time_in_force"]) == ("BUY", "NEW", "GTC")
    book = truth["books"]["BTCUSDT"]
    depth = ex.depth("BTCUSDT", None)
    assert book["last_update_id"] == depth.last_update_id
    assert [(Decimal(p), Decimal(q)) for p, q in book["bids"]] == list(depth.bids)
    assert ["1000.00", "0.50000"] in book["bids"]
    assert set(truth["books"]) == {"BTCUSDT", "ETHUSDT"}
    assert truth["deposited"]["BTC"] == format(ex.ledger.deposited["BTC"], "f")


async def test_health_reports_counters(sb: Sandbox) -> None:
    await sb.tick(T0 + 100)
    sb.faults.lose_order_responses(1)
    sb.faults.take_lost_order_response()
    status, health = await call(sb, "GET", "/admin/health")
    assert status == 200
    assert health["running"] is True
    assert health["ticks"] == 2
    assert health["errors"] == {"flow": 0, "frontend": 0, "listener": 0}
    assert health["flow"]["enabled"] is True and health["flow"]["orders"] > 0
    assert health["faults"] == {"fired": {"lost_order_response": 1}, "clock_shift_ms": 0}
    assert health["markets"] == ["BTC-USDT", "ETH-USDT"]


def test_to_json_writes_plain_decimals() -> None:
    assert to_json({"a": (Decimal("1E+2"), Decimal("0.00000001"))}) == {"a": ["100", "0.00000001"]}
    assert to_json(StreamKind.USER) == "user"
    assert to_json([None, True, 3]) == [None, True, 3]


async def test_a_fault_armed_through_the_route_hits_the_binance_front_end() -> None:
    cfg = SandboxConfig(markets=("BTC-USDT",), admin_token=TOKEN, flow=False)
    async with Sandbox(cfg, autotick=False, wall_ms=lambda: T0) as sb:
        fault = {"fault": "fail_requests", "n": 1, "status": 502}
        assert (await call(sb, "POST", "/admin/faults", json=fault))[0] == 200
        assert (await call(sb, "GET", "/admin/health"))[0] == 200  # admin routes never consume REST faults
        assert (await call(sb, "GET", "/api/v3/ping", headers=None))[0] == 502
        assert await call(sb, "GET", "/api/v3/ping", headers=None) == (200, {})
