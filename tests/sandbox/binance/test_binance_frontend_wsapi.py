"""The WebSocket API ``/ws-api/v3`` and user data: requests and their envelopes, WS-API signing,
``userDataStream.subscribe.signature`` delivering wrapped ``executionReport`` and
``outboundAccountPosition``, legacy listen-key streams, expiry, and the faults on these sockets.

Synchronisation is by order: a ``ping`` request's answer travels the same outbox as everything
queued before it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from binance_frontend_support import (
    API_KEY,
    ED_KEY,
    MAKER_KEY,
    MAKER_SECRET,
    SECRET,
    T0,
    Harness,
    Wall,
    btc_spec,
    hmac_hex,
    recv_json,
    start_harness,
    stop_harness,
)

from marketlink.core.errors import ConfigError
from marketlink.sandbox.context import ApiCredential, SandboxClock, SandboxContext
from marketlink.sandbox.exchange import Exchange
from marketlink.sandbox.faults import Faults, StreamKind
from marketlink.sandbox.venues.binance import BinanceSpotConfig, BinanceSpotFrontend
from marketlink.sandbox.venues.binance.limits import Interval, LimitType, RateLimit

BTC = "BTCUSDT"
WS = aiohttp.ClientWebSocketResponse


def sign(params: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
    payload = "&".join(f"{k}={_text(params[k])}" for k in sorted(params))
    return {**params, "signature": hmac_hex(secret, payload)}


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


async def request(ws: WS, rid: Any, method: str, params: dict[str, Any] | None = None) -> Any:
    msg: dict[str, Any] = {"id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    await ws.send_str(json.dumps(msg))
    return await recv_json(ws)


async def barrier(ws: WS, rid: str = "sync") -> list[Any]:
    await ws.send_str(json.dumps({"id": rid, "method": "ping", "params": {"returnRateLimits": False}}))
    frames: list[Any] = []
    while True:
        msg = await recv_json(ws)
        if msg.get("id") == rid and "status" in msg:
            return frames
        frames.append(msg)


def signed_params(h: Harness, key: str = API_KEY, secret: str = SECRET, **extra: Any) -> dict[str, Any]:
    return sign({"apiKey": key, "timestamp": h.now, **extra}, secret)


async def maker_ask(h: Harness, price: str = "30000", qty: str = "0.5") -> None:
    r = await h.order(
        {
            "symbol": BTC,
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": qty,
            "price": price,
        },
        key=MAKER_KEY,
        secret=MAKER_SECRET,
    )
    assert r.status == 200


async def test_ping_time_and_rate_limits(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    assert await request(ws, 1, "ping") == {
        "id": 1,
        "status": 200,
        "result": {},
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
                "count": 3,
            }
        ],
    }
    assert await request(ws, "t", "v3/time", {"returnRateLimits": False}) == {
        "id": "t",
        "status": 200,
        "result": {"serverTime": T0},
    }
    quiet = await h.ws("/ws-api/v3?returnRateLimits=false")
    assert "rateLimits" not in await request(quiet, None, "time")
    assert "rateLimits" in await request(quiet, None, "time", {"returnRateLimits": True})


async def test_public_methods_share_rest_handlers(h: Harness) -> None:
    await maker_ask(h)
    ws = await h.ws("/ws-api/v3")
    depth = await request(ws, 1, "depth", {"symbol": BTC, "limit": 5})
    assert depth["result"] == {"lastUpdateId": 1, "bids": [], "asks": [["30000.00000000", "0.50000000"]]}
    assert depth["rateLimits"][0]["count"] == 1 + 2 + 5  # REST order, connection, depth
    info = await request(ws, 2, "exchangeInfo", {"symbols": ["BTCUSDT"]})
    assert [s["symbol"] for s in info["result"]["symbols"]] == [BTC]
    price = await request(ws, 3, "ticker.price", {"symbol": BTC})
    assert price["result"] == {"symbol": BTC, "price": "0.00000000"}


async def test_request_envelope_errors(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    await ws.send_str("{nope")
    bad = await recv_json(ws)
    assert (bad["id"], bad["status"], bad["error"]["code"]) == (None, 400, -1135)
    await ws.send_str("[]")
    assert (await recv_json(ws))["error"]["code"] == -1135
    await ws.send_str(json.dumps({"id": [1], "method": "ping"}))
    assert (await recv_json(ws))["error"]["code"] == -1100
    unknown = await request(ws, 5, "order.amend")
    assert (unknown["id"], unknown["status"], unknown["error"]["code"]) == (5, 400, -1020)
    assert "rateLimits" in unknown
    nomethod = await request(ws, 6, "")
    assert nomethod["error"]["code"] == -1102
    badparams = await request(ws, 7, "time")
    await ws.send_str(json.dumps({"id": 7, "method": "depth", "params": [1]}))
    assert (await recv_json(ws))["error"]["code"] == -1135
    assert badparams["status"] == 200
    badsym = await request(ws, 8, "depth", {"symbol": "NOPE"})
    assert badsym["error"] == {"code": -1121, "msg": "Invalid symbol."}
    badlimit = await request(ws, 9, "depth", {"symbol": BTC, "limit": "x"})
    assert badlimit["error"]["code"] == -1100


async def test_order_place_status_cancel(h: Harness) -> None:
    await maker_ask(h)
    ws = await h.ws("/ws-api/v3")
    placed = await request(
        ws,
        "p1",
        "order.place",
        signed_params(
            h,
            symbol=BTC,
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.1",
            price="29000",
            newClientOrderId="ws-1",
            recvWindow=5000,
        ),
    )
    assert placed["status"] == 200
    assert placed["result"] == {
        "symbol": BTC,
        "orderId": 2,
        "orderListId": -1,
        "clientOrderId": "ws-1",
        "transactTime": T0,
        "price": "29000.00000000",
        "origQty": "0.10000000",
        "executedQty": "0.00000000",
        "origQuoteOrderQty": "0.00000000",
        "cummulativeQuoteQty": "0.00000000",
        "status": "NEW",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
        "workingTime": T0,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "fills": [],
    }
    assert [(r["rateLimitType"], r["count"]) for r in placed["rateLimits"]] == [
        ("ORDERS", 1),
        ("ORDERS", 1),
        ("REQUEST_WEIGHT", 4),
    ]
    status = await request(ws, "s1", "order.status", signed_params(h, symbol=BTC, origClientOrderId="ws-1"))
    assert status["result"]["status"] == "NEW" and status["result"]["isWorking"] is True
    assert [r["rateLimitType"] for r in status["rateLimits"]] == ["REQUEST_WEIGHT"]
    cancel = await request(ws, "c1", "order.cancel", signed_params(h, symbol=BTC, orderId=2))
    assert cancel["result"]["status"] == "CANCELED" and cancel["result"]["origClientOrderId"] == "ws-1"
    again = await request(ws, "c2", "order.cancel", signed_params(h, symbol=BTC, orderId=2))
    assert (again["status"], again["error"]) == (400, {"code": -2011, "msg": "Unknown order sent."})
    missing = await request(ws, "s2", "order.status", signed_params(h, symbol=BTC, orderId=99))
    assert missing["error"] == {"code": -2013, "msg": "Order does not exist."}
    opened = await request(ws, "o", "openOrders.status", signed_params(h))
    assert opened["result"] == []
    account = await request(ws, "a", "account.status", signed_params(h))
    assert account["result"]["accountType"] == "SPOT"


async def test_wsapi_auth_refusals(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    params = signed_params(h, symbol=BTC, orderId=1)
    tampered = {**params, "orderId": 2}
    r = await request(ws, 1, "order.status", tampered)
    assert r["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
    r = await request(ws, 2, "order.status", {"symbol": BTC, "orderId": 1, "timestamp": h.now})
    assert (r["status"], r["error"]["code"]) == (401, -2014)
    stale = sign({"apiKey": API_KEY, "timestamp": h.now - 6000, "symbol": BTC, "orderId": 1})
    r = await request(ws, 3, "order.status", stale)
    assert r["error"]["code"] == -1021
    private = h.ed_private
    ed = {"apiKey": ED_KEY, "timestamp": h.now}
    payload = "&".join(f"{k}={ed[k]}" for k in sorted(ed))
    ed["signature"] = base64.b64encode(private.sign(payload.encode())).decode()
    r = await request(ws, 4, "account.status", ed)
    assert r["status"] == 200 and r["result"]["balances"]


async def test_wsapi_rate_limit_then_ban_disconnects() -> None:
    weight = RateLimit(LimitType.REQUEST_WEIGHT, Interval.MINUTE, 1, 5)
    h = await start_harness(BinanceSpotConfig(rate_limits=(weight,), violations_before_ban=1, ban_ms=60_000))
    try:
        h.wall.now = T0 - T0 % 60_000 + 1_000
        ws = await h.ws("/ws-api/v3")  # costs 2
        for rid in (1, 2, 3):
            assert (await request(ws, rid, "ping"))["status"] == 200
        limited = await request(ws, 4, "ping")
        assert limited["status"] == 429 and limited["error"]["code"] == -1003
        assert limited["error"]["data"] == {"serverTime": h.now, "retryAfter": h.now + 59_000}
        banned = await request(ws, 5, "ping")
        assert banned["status"] == 418
        assert banned["error"]["data"]["retryAfter"] == h.now + 60_000
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        async with h.http.get(h.ws_url("/ws-api/v3").replace("ws://", "http://")) as refused:
            assert refused.status == 418 and refused.headers["Retry-After"] == "60"
    finally:
        await stop_harness(h)


async def test_user_data_subscription_delivers_wrapped_events(h: Harness) -> None:
    await maker_ask(h)
    ws = await h.ws("/ws-api/v3")
    sub = await request(ws, "sub", "userDataStream.subscribe.signature", signed_params(h))
    assert sub == {
        "id": "sub",
        "status": 200,
        "result": {"subscriptionId": 0},
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
                "count": 5,
            }
        ],
    }
    await ws.send_str(
        json.dumps(
            {
                "id": "buy",
                "method": "order.place",
                "params": signed_params(
                    h, symbol=BTC, side="BUY", type="MARKET", quantity="0.1", newClientOrderId="m-1"
                ),
            }
        )
    )
    frames = await barrier(ws)
    assert frames[0]["id"] == "buy" and frames[0]["result"]["status"] == "FILLED"  # the answer comes first
    events = frames[1:]
    assert all(set(e) == {"subscriptionId", "event"} and e["subscriptionId"] == 0 for e in events)
    kinds = [(e["event"]["e"], e["event"].get("x")) for e in events]
    assert kinds == [
        ("executionReport", "NEW"),
        ("executionReport", "TRADE"),
        ("outboundAccountPosition", None),
    ]
    new, trade, position = (e["event"] for e in events)
    assert new == {
        "e": "executionReport",
        "E": T0,
        "s": BTC,
        "c": "m-1",
        "S": "BUY",
        "o": "MARKET",
        "f": "GTC",
        "q": "0.10000000",
        "p": "0.00000000",
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": "",
        "x": "NEW",
        "X": "NEW",
        "r": "NONE",
        "i": 2,
        "l": "0.00000000",
        "z": "0.00000000",
        "L": "0.00000000",
        "n": "0",
        "N": None,
        "T": T0,
        "t": -1,
        "I": new["I"],
        "w": True,
        "m": False,
        "M": False,
        "O": T0,
        "Z": "0.00000000",
        "Y": "0.00000000",
        "Q": "0.00000000",
        "W": T0,
        "V": "EXPIRE_MAKER",
    }
    assert "".join(new) == "eEscSofqpPFgCxXrilzLnNTtIwmMOZYQWV"  # Binance's field order
    assert {k: trade[k] for k in ("x", "X", "l", "z", "L", "n", "N", "t", "m", "Z", "Y")} == {
        "x": "TRADE",
        "X": "FILLED",
        "l": "0.10000000",
        "z": "0.10000000",
        "L": "30000.00000000",
        "n": "0.00010000",
        "N": "BTC",
        "t": 1,
        "m": False,
        "Z": "3000.00000000",
        "Y": "3000.00000000",
    }
    assert trade["I"] > new["I"]
    assert position == {
        "e": "outboundAccountPosition",
        "E": T0,
        "u": T0,
        "B": [
            {"a": "USDT", "f": "997000.00000000", "l": "0.00000000"},
            {"a": "BTC", "f": "10.09990000", "l": "0.00000000"},
        ],
    }
    # the maker's events go to nobody here; a REST order of the subscribed account is delivered too
    r = await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "100",
            "newClientOrderId": "rest-1",
        }
    )
    assert r.status == 200
    await h.signed(
        "DELETE", "/api/v3/order", {"symbol": BTC, "origClientOrderId": "rest-1", "newClientOrderId": "cxl-9"}
    )
    events = [f["event"] for f in await barrier(ws, "s2")]
    cancel = next(e for e in events if e.get("x") == "CANCELED")
    assert (cancel["c"], cancel["C"], cancel["X"], cancel["w"]) == ("cxl-9", "rest-1", "CANCELED", False)


async def test_subscription_management(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    assert (await request(ws, 1, "userDataStream.subscribe.signature", signed_params(h)))["result"] == {
        "subscriptionId": 0
    }
    dup = await request(ws, 2, "userDataStream.subscribe.signature", signed_params(h))
    assert dup["error"] == {"code": -2035, "msg": "User Data Stream subscription already active."}
    maker = await request(
        ws, 3, "userDataStream.subscribe.signature", signed_params(h, key=MAKER_KEY, secret=MAKER_SECRET)
    )
    assert maker["result"] == {"subscriptionId": 1}
    subs = await request(ws, 4, "session.subscriptions")
    assert subs["result"] == [{"subscriptionId": 0}, {"subscriptionId": 1}]
    status = await request(ws, 5, "session.status")
    assert status["result"]["userDataStream"] is True and status["result"]["connectedSince"] == T0
    await ws.send_str(
        json.dumps({"id": 6, "method": "userDataStream.unsubscribe", "params": {"subscriptionId": 0}})
    )
    ended = await recv_json(ws)
    assert ended == {"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": T0}}
    assert (await recv_json(ws))["result"] == {}
    unknown = await request(ws, 7, "userDataStream.unsubscribe", {"subscriptionId": 0})
    assert unknown["error"] == {"code": -2036, "msg": "User Data Stream subscription not active."}
    await ws.send_str(json.dumps({"id": 8, "method": "userDataStream.unsubscribe"}))
    assert (await recv_json(ws))["event"]["e"] == "eventStreamTerminated"
    assert (await recv_json(ws))["id"] == 8
    assert (await request(ws, 9, "session.subscriptions"))["result"] == []
    again = await request(ws, 10, "userDataStream.subscribe.signature", signed_params(h))
    assert again["result"] == {"subscriptionId": 2}  # ids are never reused in a session


async def test_expiry_fault_terminates_subscriptions(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    await request(ws, 1, "userDataStream.subscribe.signature", signed_params(h))
    h.faults.expire_listen_keys()
    await h.tick(100)
    assert await barrier(ws) == [
        {"subscriptionId": 0, "event": {"e": "eventStreamTerminated", "E": T0 + 100}}
    ]
    await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "100",
        }
    )
    assert await barrier(ws, "s2") == []
    assert (await request(ws, 2, "session.subscriptions"))["result"] == []


async def test_lost_order_response_on_wsapi(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    await request(ws, 1, "userDataStream.subscribe.signature", signed_params(h))
    h.faults.lose_order_responses(1)
    await ws.send_str(
        json.dumps(
            {
                "id": "lost",
                "method": "order.place",
                "params": signed_params(
                    h,
                    symbol=BTC,
                    side="BUY",
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity="0.1",
                    price="100",
                    newClientOrderId="lost-ws",
                ),
            }
        )
    )
    frames = await barrier(ws)
    assert all("id" not in f for f in frames)  # no answer, only the user events
    assert frames[0]["event"]["c"] == "lost-ws" and frames[0]["event"]["x"] == "NEW"
    assert h.frontend.wsapi.lost_responses == 1
    assert h.exchange.open_orders("alice")[0].client_order_id == "lost-ws"


async def test_wsapi_order_rate_limit() -> None:
    orders = RateLimit(LimitType.ORDERS, Interval.SECOND, 10, 1)
    weight = RateLimit(LimitType.REQUEST_WEIGHT, Interval.MINUTE, 1, 6000)
    h = await start_harness(BinanceSpotConfig(rate_limits=(weight, orders)))
    try:
        ws = await h.ws("/ws-api/v3")
        order = {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "100",
        }
        assert (await request(ws, 1, "order.place", signed_params(h, **order)))["status"] == 200
        refused = await request(ws, 2, "order.place", signed_params(h, **order))
        assert (refused["status"], refused["error"]["code"]) == (429, -1015)
    finally:
        await stop_harness(h)


async def test_api_faults_on_wsapi_sockets(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    h.faults.duplicate_messages(1, StreamKind.API)
    await ws.send_str(json.dumps({"id": "d", "method": "ping"}))
    first, second = await recv_json(ws), await recv_json(ws)
    assert first == second and first["id"] == "d"
    h.faults.drop_streams(StreamKind.API)
    await h.tick(100)
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)


async def test_user_drop_fault_reaches_subscribed_wsapi_sockets(h: Harness) -> None:
    plain = await h.ws("/ws-api/v3")
    subscribed = await h.ws("/ws-api/v3")
    await request(subscribed, 1, "userDataStream.subscribe.signature", signed_params(h))
    h.faults.drop_streams(StreamKind.USER)
    await h.tick(100)
    msg = await subscribed.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    assert (await request(plain, 2, "ping"))["status"] == 200
    assert len(h.frontend.user_streams._sinks) == 0


# -- legacy listen-key streams ----------------------------------------------------------------------


@pytest.fixture
async def short_keys() -> AsyncIterator[Harness]:
    harness = await start_harness(BinanceSpotConfig(listen_key_ttl_ms=10_000, stream_max_incoming_per_s=0))
    yield harness
    await stop_harness(harness)


async def listen_key(h: Harness, key: str = API_KEY) -> str:
    r = await h.call("POST", "/api/v3/userDataStream", headers={"X-MBX-APIKEY": key})
    value: str = r.body["listenKey"]
    return value


async def stream_barrier(ws: WS, rid: str = "sync") -> list[Any]:
    await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": rid}))
    frames: list[Any] = []
    while True:
        msg = await recv_json(ws)
        if msg.get("id") == rid and "result" in msg:
            return frames
        frames.append(msg)


async def test_listen_key_stream_raw_and_combined(short_keys: Harness) -> None:
    h = short_keys
    key = await listen_key(h)
    raw = await h.ws(f"/ws/{key}")
    combined = await h.ws(f"/stream?streams={key}/btcusdt@trade")
    await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "100",
            "newClientOrderId": "lk-1",
        }
    )
    events = await stream_barrier(raw)
    assert [e["e"] for e in events] == ["executionReport", "outboundAccountPosition"]
    assert events[0]["c"] == "lk-1" and events[1]["B"][0] == {
        "a": "USDT",
        "f": "999990.00000000",
        "l": "10.00000000",
    }
    wrapped = await stream_barrier(combined)
    assert [w["stream"] for w in wrapped] == [key, key]
    assert wrapped[0]["data"] == events[0]
    h.exchange.deposit("alice", "BTC", "1.5", now_ms=h.now)
    deposit = await stream_barrier(raw, "s2")
    assert deposit[0] == {"e": "balanceUpdate", "E": T0, "a": "BTC", "d": "1.50000000", "T": T0}


async def test_listen_key_expiry_sends_event_then_nothing(short_keys: Harness) -> None:
    h = short_keys
    key = await listen_key(h)
    ws = await h.ws(f"/ws/{key}")
    await h.tick(9_999)
    assert await stream_barrier(ws) == []
    await h.tick(1)
    assert await stream_barrier(ws, "s2") == [{"e": "listenKeyExpired", "E": T0 + 10_000, "listenKey": key}]
    await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "100",
        }
    )
    assert await stream_barrier(ws, "s3") == []  # nothing more on that key
    async with h.http.get(h.url(f"/ws/{key}")) as r:
        assert (r.status, (await r.json())["code"]) == (400, -1125)


async def test_keepalive_extends_and_fault_expires(short_keys: Harness) -> None:
    h = short_keys
    key = await listen_key(h)
    ws = await h.ws(f"/ws/{key}")
    h.wall.now += 9_000
    await h.call("PUT", "/api/v3/userDataStream", query=f"listenKey={key}", headers={"X-MBX-APIKEY": API_KEY})
    await h.tick(9_000)  # 18 s after creation, 9 s after the keep-alive
    assert await stream_barrier(ws) == []
    h.faults.expire_listen_keys()
    await h.tick(0)
    assert (await stream_barrier(ws, "s2"))[0]["e"] == "listenKeyExpired"


async def test_closing_the_key_closes_its_streams(short_keys: Harness) -> None:
    h = short_keys
    key = await listen_key(h)
    ws = await h.ws(f"/ws/{key}")
    r = await h.call(
        "DELETE", "/api/v3/userDataStream", query=f"listenKey={key}", headers={"X-MBX-APIKEY": API_KEY}
    )
    assert r.body == {}
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE


async def test_listen_key_via_wsapi(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    started = await request(ws, 1, "userDataStream.start", {"apiKey": API_KEY})
    key = started["result"]["listenKey"]
    pinged = await request(ws, 2, "userDataStream.ping", {"apiKey": API_KEY, "listenKey": key})
    assert pinged["result"] == {}
    stopped = await request(ws, 3, "userDataStream.stop", {"apiKey": API_KEY, "listenKey": key})
    assert stopped["result"] == {}
    gone = await request(ws, 4, "userDataStream.ping", {"apiKey": API_KEY, "listenKey": key})
    assert gone["error"]["code"] == -1125


async def test_handler_bugs_answer_minus_1000(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(call: Any) -> Any:
        raise RuntimeError("bug")

    op = h.frontend.ops.table["time"]
    monkeypatch.setitem(h.frontend.ops.table, "time", type(op)(op.name, op.security, op.weight, boom))
    ws = await h.ws("/ws-api/v3")
    answer = await request(ws, 1, "time")
    assert (answer["status"], answer["error"]["code"]) == (500, -1000)
    monkeypatch.setitem(h.frontend.wsapi._special, "session.status", (op.security, lambda s, c: boom(c)))
    answer = await request(ws, 2, "session.status")
    assert (answer["status"], answer["error"]["code"]) == (500, -1000)
    assert (await request(ws, 3, "ping"))["status"] == 200  # the connection survives
    assert h.frontend.ops.unexpected_errors == 1 and h.frontend.wsapi.unexpected_errors == 1


async def test_rest_handler_bug_and_unknown_account(h: Harness) -> None:
    op = h.frontend.ops.table["ping"]

    def boom(call: Any) -> Any:
        raise RuntimeError("bug")

    object.__setattr__(op, "handler", boom)  # the route holds this (frozen) operation
    r = await h.public("/api/v3/ping")
    assert (r.status, r.body["code"]) == (500, -1000)
    # a credential whose account the engine does not know
    h.ctx.credentials["ghostKey"] = ApiCredential("ghostKey", "ghost", secret="s")
    r = await h.signed("GET", "/api/v3/openOrders", key="ghostKey", secret="s")
    assert (r.status, r.body["code"]) == (401, -2015)


async def test_render_bug_is_counted_and_skipped(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = await h.ws("/ws-api/v3")
    await request(ws, 1, "userDataStream.subscribe.signature", signed_params(h))

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("marketlink.sandbox.venues.binance.messages.execution_report", boom)
    await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "100",
        }
    )
    frames = await barrier(ws)
    assert [f["event"]["e"] for f in frames] == ["outboundAccountPosition"]
    assert h.frontend.user_streams.render_errors == 1


async def test_frontend_reads_its_options_from_the_context() -> None:
    faults = Faults()
    ctx = SandboxContext(
        Exchange((btc_spec(),)),
        faults,
        SandboxClock(faults, Wall()),
        {},
        options={"binance": {"listen_key_ttl_ms": 1234}},
    )
    assert BinanceSpotFrontend(ctx).config.listen_key_ttl_ms == 1234
    ctx.options = {"binance": 5}
    with pytest.raises(ConfigError):
        BinanceSpotFrontend(ctx)


async def test_wsapi_heartbeat() -> None:
    h = await start_harness(BinanceSpotConfig(wsapi_ping_interval_ms=1_000, wsapi_pong_timeout_ms=2_000))
    try:
        ws = await h.ws("/ws-api/v3", autoping=False)
        await ws.ping(b"hi")
        assert (await ws.receive(timeout=5)).data == b"hi"
        await h.tick(1_000)
        ping = await ws.receive(timeout=5)
        assert ping.type is aiohttp.WSMsgType.PING
        await ws.pong(ping.data)
        assert (await request(ws, 1, "ping"))["status"] == 200  # the pong has been read by now
        await h.tick(2_000)
        assert (await request(ws, 2, "ping"))["status"] == 200
        session = next(iter(h.frontend.wsapi.sessions))
        assert session.socket._ping_payload is not None  # the second ping is outstanding
    finally:
        await stop_harness(h)


async def test_user_stall_holds_events_but_not_answers(h: Harness) -> None:
    ws = await h.ws("/ws-api/v3")
    await request(ws, 1, "userDataStream.subscribe.signature", signed_params(h))
    h.faults.stall_streams(h.now + 1_000, StreamKind.USER)
    await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "100",
        }
    )
    assert await barrier(ws) == []  # requests are answered, the events wait
    await h.tick(500)
    assert await barrier(ws, "s2") == []
    await h.tick(500)
    held = await barrier(ws, "s3")
    assert [f["event"]["e"] for f in held] == ["executionReport", "outboundAccountPosition"]
