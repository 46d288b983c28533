"""A minimal sandbox harness for the Binance front-end tests, and a tiny signed-request client.

The exchange, the context and the front-end are the real ones; the clock is a settable wall so
timestamps, rate-limit windows, pings and lifetimes move only when a test moves them. The server
binds 127.0.0.1 on a free port. Requests are signed here from scratch (HMAC-SHA256 hex over the
exact query string and body, or Ed25519), independently of the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from marketlink.sandbox.context import ApiCredential, SandboxClock, SandboxContext
from marketlink.sandbox.exchange import Exchange, MarketSpec
from marketlink.sandbox.faults import Faults
from marketlink.sandbox.venues.binance import BinanceSpotConfig, BinanceSpotFrontend

# The documented example key pair (BSD rest-api.md "SIGNED Endpoint Examples").
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
MAKER_KEY = "makerKey0001"
MAKER_SECRET = "makerSecret0001"
ED_KEY = "edKey0001"
READONLY_KEY = "readOnlyKey0001"
READONLY_SECRET = "readOnlySecret0001"
T0 = 1_700_000_000_000
Params = Sequence[tuple[str, str]] | Mapping[str, str]


def hmac_hex(secret: str, payload: str | bytes) -> str:
    data = payload.encode() if isinstance(payload, str) else payload
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def btc_spec(**overrides: object) -> MarketSpec:
    raw: dict[str, object] = {
        "symbol": "BTCUSDT",
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "0.01",
        "step_size": "0.00001",
        "min_qty": "0.00001",
        "max_qty": "9000",
        "min_price": "0.01",
        "max_price": "1000000",
        "min_notional": "5",
        "maker_fee": "0.001",
        "taker_fee": "0.001",
    }
    raw.update(overrides)
    return MarketSpec.from_config(raw)


def eth_spec() -> MarketSpec:
    return MarketSpec.from_config(
        {
            "symbol": "ETHUSDT",
            "base": "ETH",
            "quote": "USDT",
            "tick_size": "0.01",
            "step_size": "0.0001",
            "min_qty": "0.0001",
            "min_notional": "5",
            "notional_filter": "MIN_NOTIONAL",
        }
    )


class Wall:
    """The wall clock the sandbox reads; tests set it."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass
class Harness:
    exchange: Exchange
    faults: Faults
    wall: Wall
    ctx: SandboxContext
    frontend: BinanceSpotFrontend
    server: TestServer
    http: aiohttp.ClientSession
    ed_private: Ed25519PrivateKey
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    @property
    def now(self) -> int:
        return self.ctx.clock.now_ms()

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def ws_url(self, path: str) -> str:
        return self.url(path).replace("http://", "ws://", 1)

    async def tick(self, advance_ms: int = 0) -> None:
        self.wall.now += advance_ms
        await self.frontend.on_tick(self.now)

    # -- HTTP -----------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        url = self.url(path) + (f"?{query}" if query else "")
        hdrs = dict(headers or {})
        data = None
        if body:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
            data = body.encode()
        async with self.http.request(
            method, aiohttp.client.URL(url, encoded=True), data=data, headers=hdrs
        ) as resp:
            raw = await resp.read()
            try:
                parsed: Any = json.loads(raw, parse_float=Decimal)
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Reply(resp.status, parsed, resp.headers)

    async def public(self, path: str, params: Params = ()) -> Reply:
        return await self.call("GET", path, query=urlencode(list(_items(params))))

    async def signed(
        self,
        method: str,
        path: str,
        params: Params = (),
        *,
        key: str = API_KEY,
        secret: str | None = SECRET,
        ed25519: Ed25519PrivateKey | None = None,
        in_body: bool = False,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Reply:
        items = list(_items(params))
        if not any(k == "timestamp" for k, _ in items):
            items.append(("timestamp", str(self.now if timestamp is None else timestamp)))
        text = urlencode(items)
        if signature is None:
            if ed25519 is not None:
                signature = quote(base64.b64encode(ed25519.sign(text.encode())).decode(), safe="")
            else:
                assert secret is not None
                signature = hmac_hex(secret, text)
        full = f"{text}&signature={signature}"
        headers = {"X-MBX-APIKEY": key}
        if in_body:
            return await self.call(method, path, body=full, headers=headers)
        return await self.call(method, path, query=full, headers=headers)

    async def order(self, params: Params, **kw: Any) -> Reply:
        return await self.signed("POST", "/api/v3/order", params, **kw)

    # -- WebSockets ---------------------------------------------------------------------------------

    async def ws(self, path: str, **kw: Any) -> aiohttp.ClientWebSocketResponse:
        sock = await self.http.ws_connect(self.ws_url(path), **kw)
        self.sockets.append(sock)
        return sock


def _items(params: Params) -> list[tuple[str, str]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


def ed25519_pair() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # fixed: deterministic tests
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return private, pem


async def start_harness(
    config: BinanceSpotConfig | None = None, *, specs: Sequence[MarketSpec] = ()
) -> Harness:
    exchange = Exchange(specs or (btc_spec(), eth_spec()))
    for account in ("alice", "bob", "carol", "maker"):
        exchange.open_account(account, balances={"BTC": "10", "ETH": "100", "USDT": "1000000"}, now_ms=T0)
    faults = Faults(seed=7)
    faults.hang_seconds = 5.0
    wall = Wall()
    private, pem = ed25519_pair()
    creds = {
        API_KEY: ApiCredential(API_KEY, "alice", secret=SECRET),
        MAKER_KEY: ApiCredential(MAKER_KEY, "maker", secret=MAKER_SECRET),
        ED_KEY: ApiCredential(ED_KEY, "bob", ed25519_public_key_pem=pem),
        READONLY_KEY: ApiCredential(READONLY_KEY, "carol", secret=READONLY_SECRET, can_trade=False),
    }
    ctx = SandboxContext(exchange, faults, SandboxClock(faults, wall), creds)
    frontend = BinanceSpotFrontend(ctx, config or BinanceSpotConfig(stream_max_incoming_per_s=0))
    app = web.Application()
    frontend.install(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    http = aiohttp.ClientSession()
    return Harness(exchange, faults, wall, ctx, frontend, server, http, private)


async def stop_harness(h: Harness) -> None:
    for sock in h.sockets:
        await sock.close()
    await h.http.close()
    await h.frontend.close()
    await h.server.close()


async def recv_json(sock: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    """The next text frame as JSON (Decimal for reals); pings and pongs are skipped."""
    while True:
        msg = await sock.receive(timeout=timeout)
        if msg.type is aiohttp.WSMsgType.TEXT:
            return json.loads(msg.data, parse_float=Decimal)
        if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            continue
        raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")
