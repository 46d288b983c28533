"""Signing and timing, as Binance checks them: the published known-answer vectors, then the checker
and the REST gate end to end (HMAC and Ed25519 keys, -2014/-2015/-1022/-1021)."""

from __future__ import annotations

import base64
from decimal import Decimal
from urllib.parse import quote

import pytest
from binance_frontend_support import (
    API_KEY,
    ED_KEY,
    READONLY_KEY,
    READONLY_SECRET,
    SECRET,
    Harness,
    ed25519_pair,
    hmac_hex,
)

from marketlink.sandbox.context import ApiCredential
from marketlink.sandbox.venues.binance import auth
from marketlink.sandbox.venues.binance.errors import BinanceError

ORDER = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
    "&timestamp=1499827319559"
)

# (string signed, expected hex): exchange-protocols.md §1.1 #1, #2, §1.2 #7, #8, #9, BSD example 3.
REST_VECTORS = [
    (ORDER, "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"),
    (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC"
        "&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
    ),
    ("timestamp=1499827319559", "2222d49722f6af5da13f6da6bfc0d7de19ca2815ebc98bbc49e4942268472f3f"),
    (
        "symbol=LTCBTC&orderId=4&recvWindow=5000&timestamp=1499827319559",
        "dce5c7acb3375587e7db55cae77d0e328aabe084ff52ccb81e2b05ed748aeab4",
    ),
    (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=0.1&recvWindow=5000"
        "&timestamp=1499827319559",
        "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
    ),
]


@pytest.mark.parametrize(("payload", "expected"), REST_VECTORS)
def test_published_hmac_vectors(payload: str, expected: str) -> None:
    assert auth.hmac_hex(SECRET, payload.encode()) == expected


def test_rest_payload_is_query_then_body_without_signature() -> None:
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=abc"
    payload, sig = auth.rest_payload(query, body)
    assert payload == REST_VECTORS[4][0].encode()
    assert sig == "abc"
    assert auth.split_signature("a=1&signature=x&b=2") == ("a=1&b=2", "x")
    assert auth.split_signature("a=1") == ("a=1", None)


def test_wsapi_vectors_sort_params_and_sign_raw_utf8() -> None:
    params: dict[str, object] = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": API_KEY,
        "signature": "ignored",
    }
    assert auth.hmac_hex(SECRET, auth.wsapi_payload(params)) == (
        "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    )
    params["newOrderRespType"] = "ACK"
    assert auth.hmac_hex(SECRET, auth.wsapi_payload(params)) == (
        "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"
    )
    unicode: dict[str, object] = {
        "symbol": "１２３４５６",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1.00000000",
        "price": "0.10000000",
        "recvWindow": 5000,
        "timestamp": 1645423376532,
        "apiKey": API_KEY,
    }
    assert auth.hmac_hex(SECRET, auth.wsapi_payload(unicode)) == (
        "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"
    )
    subscribe: dict[str, object] = {"apiKey": API_KEY, "timestamp": 1747385641636}
    assert auth.hmac_hex(SECRET, auth.wsapi_payload(subscribe)) == (
        "681110a6057ad58657af22f5640fab9dd17418834cdfccdc81be8b0f7b2cde3e"
    )


def test_wsapi_values_render_as_json_text() -> None:
    assert auth.wsapi_value(True) == "true"
    assert auth.wsapi_value(Decimal("0.10")) == "0.10"
    assert auth.wsapi_value(["A", "B"]) == '["A","B"]'


def test_verifier_hmac_is_case_insensitive_and_rejects_tampering() -> None:
    cred = ApiCredential(API_KEY, "alice", secret=SECRET)
    v = auth.Verifier({API_KEY: cred}.get)
    good = REST_VECTORS[0][1]
    v.verify(cred, ORDER.encode(), good.upper(), encoded=True)
    with pytest.raises(BinanceError) as bad:
        v.verify(cred, (ORDER + "0").encode(), good, encoded=True)
    assert (bad.value.code, bad.value.msg) == (-1022, "Signature for this request is not valid.")
    with pytest.raises(BinanceError) as missing:
        v.verify(cred, ORDER.encode(), None, encoded=True)
    assert missing.value.code == -1102


def test_verifier_ed25519_signs_and_verifies() -> None:
    private, pem = ed25519_pair()
    cred = ApiCredential(ED_KEY, "bob", ed25519_public_key_pem=pem)
    v = auth.Verifier({ED_KEY: cred}.get)
    payload = b"symbol=BTCUSDT&timestamp=1"
    sig = base64.b64encode(private.sign(payload)).decode()
    v.verify(cred, payload, quote(sig, safe=""), encoded=True)  # REST: percent-encoded
    v.verify(cred, payload, sig, encoded=False)  # WS-API: raw
    v.verify(cred, payload, sig, encoded=False)  # the parsed key is cached
    for wrong in (base64.b64encode(private.sign(b"other")).decode(), "not base64!", ""):
        with pytest.raises(BinanceError):
            v.verify(cred, payload, wrong, encoded=False)


def test_verifier_refuses_a_key_without_any_secret() -> None:
    cred = ApiCredential("k", "alice")
    with pytest.raises(BinanceError) as exc:
        auth.Verifier({"k": cred}.get).verify(cred, b"x", "00", encoded=False)
    assert exc.value.code == -1022


def test_api_key_format_and_lookup() -> None:
    v = auth.Verifier({API_KEY: ApiCredential(API_KEY, "alice", secret=SECRET)}.get)
    for bad in (None, "", "has space", "x" * 300):
        with pytest.raises(BinanceError) as exc:
            v.credential(bad)
        assert (exc.value.code, exc.value.status) == (-2014, 401)
    with pytest.raises(BinanceError) as unknown:
        v.credential("unknownKey")
    assert (unknown.value.code, unknown.value.msg) == (
        -2015,
        "Invalid API-key, IP, or permissions for action.",
    )


@pytest.mark.parametrize(
    ("timestamp", "window", "code", "msg"),
    [
        ("1000", None, None, None),  # exactly now
        ("999", None, None, None),
        ("1999", None, None, None),  # 999 ms ahead is still fine
        ("2000", None, -1021, "Timestamp for this request was 1000ms ahead of the server's time."),
        ("-5", None, -1100, None),
        (None, None, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."),
        ("1000000", None, -1021, "Timestamp for this request was 1000ms ahead of the server's time."),
    ],
)
def test_timestamp_rule(timestamp: str | None, window: str | None, code: int | None, msg: str | None) -> None:
    if code is None:
        auth.check_timestamp(timestamp, window, 1000)
        return
    with pytest.raises(BinanceError) as exc:
        auth.check_timestamp(timestamp, window, 1000)
    assert exc.value.code == code
    if msg is not None:
        assert exc.value.msg == msg


def test_recv_window_rules() -> None:
    now = 1_700_000_010_000
    auth.check_timestamp(str(now - 5000), None, now)
    with pytest.raises(BinanceError) as stale:
        auth.check_timestamp(str(now - 5001), None, now)
    assert stale.value.msg == "Timestamp for this request is outside of the recvWindow."
    auth.check_timestamp(str(now - 10_000), "10000", now)
    auth.check_timestamp(str((now - 5) * 1000 + 500), "5.5", now)  # microsecond timestamp and window
    with pytest.raises(BinanceError):
        auth.check_timestamp(str((now - 6) * 1000), "5.5", now)
    with pytest.raises(BinanceError) as big:
        auth.check_timestamp(str(now), "60001", now)
    assert (big.value.code, big.value.msg) == (
        -1102,
        "'recvWindow' contains unexpected value. Cannot be greater than '60000'.",
    )
    with pytest.raises(BinanceError) as bad:
        auth.check_timestamp(str(now), "5.1234", now)
    assert bad.value.code == -1100


# -- end to end over HTTP ---------------------------------------------------------------------------


async def test_signed_get_with_the_documented_key(h: Harness) -> None:
    r = await h.signed("GET", "/api/v3/account")
    assert r.status == 200 and r.body["accountType"] == "SPOT"


async def test_signature_in_body_and_mixed_query_body(h: Harness) -> None:
    r = await h.signed("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert r.status == 200 and r.body == []
    # POST with every parameter in the body
    r = await h.signed(
        "POST",
        "/api/v3/order/test",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
        in_body=True,
    )
    assert (r.status, r.body) == (200, {})
    # Example 3's shape: part in the query, the rest and the signature in the body, no separator signed
    query = "symbol=BTCUSDT&side=BUY&type=MARKET"
    body = f"quantity=0.001&recvWindow=5000&timestamp={h.now}"
    sig = hmac_hex(SECRET, query + body)
    r = await h.call(
        "POST",
        "/api/v3/order/test",
        query=query,
        body=f"{body}&signature={sig}",
        headers={"X-MBX-APIKEY": API_KEY},
    )
    assert (r.status, r.body) == (200, {})
    # signing with a "&" between query and body is what clients get wrong: -1022
    bad = hmac_hex(SECRET, query + "&" + body)
    r = await h.call(
        "POST",
        "/api/v3/order/test",
        query=query,
        body=f"{body}&signature={bad}",
        headers={"X-MBX-APIKEY": API_KEY},
    )
    assert (r.status, r.body["code"]) == (400, -1022)


async def test_percent_encoded_values_are_signed_as_sent(h: Harness) -> None:
    # The signature covers the encoded bytes; decoding before hashing would break this.
    query = f"symbol=BTCUSDT&newClientOrderId=a%2Fb&timestamp={h.now}"
    r = await h.call(
        "GET",
        "/api/v3/order",
        query=f"{query}&signature={hmac_hex(SECRET, query)}",
        headers={"X-MBX-APIKEY": API_KEY},
    )
    assert (r.status, r.body["code"]) == (400, -1102)  # reached the handler: orderId or origClientOrderId


async def test_auth_refusals_over_http(h: Harness) -> None:
    r = await h.call("GET", "/api/v3/account", query=f"timestamp={h.now}&signature=00")
    assert (r.status, r.body) == (401, {"code": -2014, "msg": "API-key format invalid."})
    r = await h.signed("GET", "/api/v3/account", key="nobodysKey")
    assert (r.status, r.body["code"]) == (401, -2015)
    r = await h.signed("GET", "/api/v3/account", signature="0" * 64)
    assert (r.status, r.body) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    r = await h.signed("GET", "/api/v3/account", timestamp=h.now + 1000)
    assert r.body == {
        "code": -1021,
        "msg": "Timestamp for this request was 1000ms ahead of the server's time.",
    }
    r = await h.signed("GET", "/api/v3/account", timestamp=h.now - 5001)
    assert r.body == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    r = await h.call("GET", "/api/v3/account", query="timestamp=1", headers={"X-MBX-APIKEY": API_KEY})
    assert r.body["code"] == -1102 and "'signature'" in r.body["msg"]


async def test_clock_shift_fault_moves_server_time(h: Harness) -> None:
    h.faults.shift_clock(10_000)
    r = await h.signed("GET", "/api/v3/account", timestamp=h.wall.now)
    assert r.body["code"] == -1021
    r = await h.public("/api/v3/time")
    assert r.body == {"serverTime": h.wall.now + 10_000}


async def test_ed25519_key_over_http(h: Harness) -> None:
    r = await h.signed("GET", "/api/v3/account", key=ED_KEY, secret=None, ed25519=h.ed_private)
    assert r.status == 200 and r.body["balances"]
    r = await h.signed(
        "GET", "/api/v3/account", key=ED_KEY, signature=quote(base64.b64encode(b"x" * 64).decode())
    )
    assert r.body["code"] == -1022


async def test_read_only_key_cannot_trade(h: Harness) -> None:
    r = await h.signed("GET", "/api/v3/account", key=READONLY_KEY, secret=READONLY_SECRET)
    assert r.status == 200 and r.body["canTrade"] is False
    r = await h.order(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
        key=READONLY_KEY,
        secret=READONLY_SECRET,
    )
    assert (r.status, r.body["code"]) == (401, -2015)
