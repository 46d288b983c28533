"""Binance's published signing examples, checked by the sandbox's own checker and over the wire.

The vectors are the ones in ``/work/shared/reference/exchange-protocols.md`` section 1: those
Binance publishes (#1-#5, verified there byte for byte) and the few derived there with the same
algorithm (#6b, #6c, #7-#9). Each is checked twice:

* by the checker itself (``auth.rest_payload`` / ``auth.wsapi_payload`` then ``Verifier.verify``):
  the bytes it signs must be exactly the documented string, and the documented signature must
  pass while one changed digit must not;
* over HTTP and the WebSocket API against a sandbox whose clock stands at the example's
  timestamp and whose demo key is the example's key, sending the documented request verbatim.

Bybit's vectors (#10-#13) wait for the Bybit front-end; #6 is the futures docs' typo (a stray
space inside the signed string) and cannot be sent as a real request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from faithfulness_support import WAIT, assert_no_internal_errors, offline_session
from yarl import URL

from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.context import ApiCredential
from marketlink.sandbox.server import Sandbox
from marketlink.sandbox.venues.binance import auth
from marketlink.sandbox.venues.binance.errors import BinanceError

SPOT_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SPOT_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
FUTURES_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
FUTURES_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
FULLWIDTH_123456 = "\uff11\uff12\uff13\uff14\uff15\uff16"  # the docs' non-ASCII symbol
T_REST = 1499827319559
T_WSAPI = 1645423376532
T_SUBSCRIBE = 1747385641636


@dataclass(frozen=True)
class RestVector:
    name: str
    secret: str
    query: str  # as sent, without the signature
    body: str
    signature: str


REST_VECTORS = [
    RestVector(
        "#1 spot order, query string", SPOT_SECRET,
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
        "&timestamp=1499827319559", "",
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
    ),
    RestVector(
        "#1 spot order, request body", SPOT_SECRET, "",
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
        "&timestamp=1499827319559",
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
    ),
    RestVector(
        "#2 spot order, non-ASCII symbol percent-encoded", SPOT_SECRET,
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC"
        "&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559", "",
        "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
    ),
    RestVector(
        "#5 USD-M order", FUTURES_SECRET,
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000"
        "&timestamp=1591702613943", "",
        "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9",
    ),
    RestVector(
        "#6b USD-M order, query then body", FUTURES_SECRET,
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC",
        "quantity=1&price=9000&recvWindow=5000&timestamp=1591702613943",
        "30baaf0fab549bbeda7f5ef201898b34122da25fd23c646cac2c529aebe670a4",
    ),
    RestVector(
        "#6c USD-M order, Example 3's parameter order", FUTURES_SECRET,
        "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=9000&recvWindow=5000"
        "&timestamp=1591702613943", "",
        "ec11dcc17e67e47f0d3c3f513dfe9062307e37619c5c82ebaa8fe0bdf3d59519",
    ),
    RestVector(
        "#7 spot account, timestamp only", SPOT_SECRET, "timestamp=1499827319559", "",
        "2222d49722f6af5da13f6da6bfc0d7de19ca2815ebc98bbc49e4942268472f3f",
    ),
    RestVector(
        "#8 spot cancel", SPOT_SECRET, "symbol=LTCBTC&orderId=4&recvWindow=5000&timestamp=1499827319559", "",
        "dce5c7acb3375587e7db55cae77d0e328aabe084ff52ccb81e2b05ed748aeab4",
    ),
]


def ws_order(symbol: str, side: str, price: str, quantity: str, recv_window: int) -> dict[str, Any]:
    """``order.place`` params as the docs' frames write them (numbers as JSON numbers)."""
    return {
        "symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC", "price": price,
        "quantity": quantity, "recvWindow": recv_window, "timestamp": T_WSAPI, "apiKey": SPOT_KEY,
    }


@dataclass(frozen=True)
class WsVector:
    name: str
    method: str
    params: dict[str, Any]  # without the signature
    signed: str  # the documented string-to-sign
    signature: str


WS_VECTORS = [
    WsVector(
        "#3 order.place", "order.place", ws_order("BTCUSDT", "SELL", "52000.00", "0.01000000", 100),
        f"apiKey={SPOT_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT"
        "&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
        "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24",
    ),
    WsVector(
        "#4 order.place, non-ASCII symbol as raw UTF-8", "order.place",
        ws_order(FULLWIDTH_123456, "BUY", "0.10000000", "1.00000000", 5000),
        f"apiKey={SPOT_KEY}&price=0.10000000&quantity=1.00000000&recvWindow=5000&side=BUY"
        f"&symbol={FULLWIDTH_123456}&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
        "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd",
    ),
    WsVector(
        "#9 userDataStream.subscribe.signature", "userDataStream.subscribe.signature",
        {"apiKey": SPOT_KEY, "timestamp": T_SUBSCRIBE},
        f"apiKey={SPOT_KEY}&timestamp=1747385641636",
        "681110a6057ad58657af22f5640fab9dd17418834cdfccdc81be8b0f7b2cde3e",
    ),
]


def other_digit(signature: str) -> str:
    """The same signature with its last hex digit changed."""
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


def verifier(secret: str) -> tuple[auth.Verifier, ApiCredential]:
    cred = ApiCredential(api_key="docKey", account="doc", secret=secret)
    return auth.Verifier({cred.api_key: cred}.get), cred


# -- the checker ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", REST_VECTORS, ids=lambda v: v.name)
def test_rest_checker_signs_the_documented_bytes(v: RestVector) -> None:
    check, cred = verifier(v.secret)
    signed_part = f"signature={v.signature}"
    query = f"{v.query}&{signed_part}" if v.query and not v.body else v.query
    body = f"{v.body}&{signed_part}" if v.body else v.body
    payload, signature = auth.rest_payload(query, body)
    assert payload == (v.query + v.body).encode()
    assert signature == v.signature
    check.verify(cred, payload, signature, encoded=True)
    check.verify(cred, payload, signature.upper(), encoded=True)  # hex is case-insensitive
    with pytest.raises(BinanceError) as refused:
        check.verify(cred, payload, other_digit(signature), encoded=True)
    assert refused.value.code == -1022


@pytest.mark.parametrize("v", WS_VECTORS, ids=lambda v: v.name)
def test_wsapi_checker_signs_the_documented_string(v: WsVector) -> None:
    check, cred = verifier(SPOT_SECRET)
    params = {**v.params, "signature": v.signature}
    payload = auth.wsapi_payload(params)
    assert payload == v.signed.encode("utf-8")
    check.verify(cred, payload, v.signature, encoded=False)
    with pytest.raises(BinanceError) as refused:
        check.verify(cred, payload, other_digit(v.signature), encoded=False)
    assert refused.value.code == -1022


# -- over the wire ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class Venue:
    sb: Sandbox
    clock: Clock
    http: aiohttp.ClientSession

    async def rest(
        self, method: str, query: str, body: str = "", path: str = "/api/v3/order"
    ) -> tuple[int, Any]:
        """The request exactly as written: the query is sent undecoded, byte for byte."""
        url = URL(f"{self.sb.base_url}{path}" + (f"?{query}" if query else ""), encoded=True)
        headers = {"X-MBX-APIKEY": SPOT_KEY}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        async with self.http.request(method, url, data=body.encode() or None, headers=headers) as r:
            return r.status, json.loads(await r.read())

    async def wsapi(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        frame = {"id": "4885f793-e5ad-4c3b-8f6c-55d891472b71", "method": method, "params": params}
        async with self.http.ws_connect(f"{self.sb.ws_url}/ws-api/v3") as ws:
            await ws.send_str(json.dumps(frame, ensure_ascii=False))
            reply = await ws.receive_json(timeout=WAIT)
        assert isinstance(reply, dict) and reply["id"] == frame["id"]
        return reply


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    """The docs' key and secret as the demo account's; no market flow, so books start empty and
    the documented orders rest; the clock is set by each test."""
    clock = Clock(T_REST)
    config = SandboxConfig(
        markets=("LTC-BTC", "BTC-USDT"), flow=False, api_key=SPOT_KEY, api_secret=SPOT_SECRET
    )
    async with Sandbox(config, autotick=False, wall_ms=clock) as sb:
        http = offline_session()
        try:
            yield Venue(sb, clock, http)
        finally:
            await http.close()
        assert_no_internal_errors(sb)


def signed(query: str, signature: str) -> str:
    return f"{query}&signature={signature}"


async def test_published_order_is_accepted_as_query_and_as_body(venue: Venue) -> None:
    vector = REST_VECTORS[0]
    venue.clock.now_ms = T_REST + 40  # 40 ms after the client's timestamp
    status, order = await venue.rest("POST", signed(vector.query, vector.signature))
    assert status == 200, order
    assert (order["symbol"], order["status"], order["price"], order["origQty"]) == (
        "LTCBTC", "NEW", "0.10000000", "1.00000000",
    )
    status, again = await venue.rest("POST", "", body=signed(vector.query, vector.signature))
    assert status == 200, again
    assert again["orderId"] == order["orderId"] + 1


async def test_published_order_with_one_digit_changed_is_refused(venue: Venue) -> None:
    vector = REST_VECTORS[0]
    venue.clock.now_ms = T_REST + 40
    status, body = await venue.rest("POST", signed(vector.query, other_digit(vector.signature)))
    assert (status, body) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})


async def test_published_order_outside_its_recv_window_is_refused(venue: Venue) -> None:
    vector = REST_VECTORS[0]
    venue.clock.now_ms = T_REST + 5_001  # recvWindow=5000
    status, body = await venue.rest("POST", signed(vector.query, vector.signature))
    assert (status, body) == (
        400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    )


async def test_non_ascii_vector_passes_the_signature_and_fails_on_the_symbol(venue: Venue) -> None:
    vector = REST_VECTORS[2]
    status, body = await venue.rest("POST", signed(vector.query, vector.signature))
    assert status == 400 and body["code"] not in (-1022, -1021), body
    assert body["code"] == -1100 and "symbol" in body["msg"]


async def test_account_and_cancel_vectors(venue: Venue) -> None:
    account, cancel = REST_VECTORS[6], REST_VECTORS[7]
    status, body = await venue.rest("GET", signed(account.query, account.signature), path="/api/v3/account")
    assert status == 200 and body["accountType"] == "SPOT", body
    status, body = await venue.rest("DELETE", signed(cancel.query, cancel.signature))
    assert (status, body) == (400, {"code": -2011, "msg": "Unknown order sent."})  # signed fine; no order 4


async def test_wsapi_order_place_vector(venue: Venue) -> None:
    vector = WS_VECTORS[0]
    venue.clock.now_ms = T_WSAPI + 60  # the example's recvWindow is 100 ms
    reply = await venue.wsapi(vector.method, {**vector.params, "signature": vector.signature})
    assert reply["status"] == 200, reply
    order = reply["result"]
    assert (order["symbol"], order["side"], order["status"], order["price"]) == (
        "BTCUSDT", "SELL", "NEW", "52000.00000000",
    )

    venue.clock.now_ms = T_WSAPI + 101
    late = await venue.wsapi(vector.method, {**vector.params, "signature": vector.signature})
    assert (late["status"], late["error"]["code"]) == (400, -1021)


async def test_wsapi_non_ascii_vector_passes_the_signature_and_fails_on_the_symbol(venue: Venue) -> None:
    vector = WS_VECTORS[1]
    venue.clock.now_ms = T_WSAPI + 60
    reply = await venue.wsapi(vector.method, {**vector.params, "signature": vector.signature})
    assert reply["status"] == 400 and reply["error"]["code"] == -1100, reply
    tampered = await venue.wsapi(vector.method, {**vector.params, "signature": other_digit(vector.signature)})
    assert tampered["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}


async def test_wsapi_user_data_subscription_vector(venue: Venue) -> None:
    vector = WS_VECTORS[2]
    venue.clock.now_ms = T_SUBSCRIBE + 60
    reply = await venue.wsapi(vector.method, {**vector.params, "signature": vector.signature})
    assert (reply["status"], reply["result"]) == (200, {"subscriptionId": 0}), reply
