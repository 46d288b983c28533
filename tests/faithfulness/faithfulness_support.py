"""Shared pieces of the faithfulness suite: outside clients pointed at a sandbox on 127.0.0.1.

The clients (ccxt, ccxt pro, Binance's own ``binance-sdk-spot``) are used exactly as their users
use them against Binance; only their base URLs change, plus ccxt options that switch off calls
outside the spot API (margin pairs, currencies, futures markets). Two guards keep the suite
offline and make a leak fail at once instead of hanging on a timeout:

* every URL a client holds is checked to point at the sandbox; the spot ones at Binance's own
  paths, every other one at ``/not-spot/...``, which the sandbox answers with 404;
* ccxt gets an aiohttp session whose resolver refuses every host name, so a URL we missed
  (``api.binance.com``) errors on its first lookup instead of reaching the internet.

Numbers from ccxt are floats; they are compared through ``Decimal(str(x))``, which gives back the
venue's digits exactly (``str`` of a float is the shortest text that reads back to it, and the
sandbox's prices and sizes have far fewer than 15 significant digits).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from marketlink.sandbox.server import Sandbox
from marketlink.sandbox.venues.binance import BinanceSpotFrontend

WAIT = 10.0  # a bound on every wait for a client or a message
CCXT_TIMEOUT_MS = 5_000

# Options that only keep ccxt inside the spot API: no futures/options exchangeInfo, no margin
# pair lists (sapi), no currency list (sapi /capital/config/getall).
SPOT_ONLY = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
}


class OfflineResolver(AbstractResolver):
    """Refuses every name: the sandbox is reached by IP literal, which aiohttp never resolves."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(f"faithfulness tests are offline: refused to resolve {host!r}")

    async def close(self) -> None:
        return None


def offline_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=OfflineResolver()))


def dec(value: object) -> Decimal:
    """A client's number (float, int or string) as the exact decimal it was parsed from."""
    if value is None:
        raise AssertionError("expected a number, got None")
    return Decimal(str(value))


def levels(rows: object) -> list[tuple[Decimal, Decimal]]:
    """``[[price, amount], ...]`` from a client as exact (price, amount) pairs."""
    assert isinstance(rows, list)
    return [(dec(row[0]), dec(row[1])) for row in rows]


def assert_no_internal_errors(sb: Sandbox) -> None:
    """Whatever the clients did, nothing inside the sandbox may have failed quietly."""
    health = sb.health()
    assert health["errors"] == {"flow": 0, "frontend": 0, "listener": 0}, health
    for frontend in sb.frontends:
        if isinstance(frontend, BinanceSpotFrontend):
            counters = {
                "handlers": frontend.ops.unexpected_errors,
                "ws-api": frontend.wsapi.unexpected_errors,
                "stream control": frontend.streams.control_errors,
                "user events": frontend.user_streams.render_errors,
            }
            assert not any(counters.values()), counters


# -- ccxt -------------------------------------------------------------------------------------------


def point_ccxt_at(exchange: Any, sb: Sandbox) -> None:
    """Every REST and WebSocket URL of a ccxt ``binance`` at the sandbox (spot at Binance's own
    paths, everything else at a path the sandbox refuses)."""
    api: dict[str, Any] = exchange.urls["api"]
    for name, url in list(api.items()):
        if isinstance(url, str):
            api[name] = f"{sb.base_url}/not-spot/{name}"
    api["public"] = f"{sb.base_url}/api/v3"
    api["private"] = f"{sb.base_url}/api/v3"
    ws = api.get("ws")
    if isinstance(ws, dict):  # ccxt pro
        for name, url in list(ws.items()):
            if isinstance(url, str):
                ws[name] = f"{sb.ws_url}/not-spot/{name}"
            elif isinstance(url, dict):
                ws[name] = {k: f"{sb.ws_url}/not-spot/{name}/{k}" for k in url}
        ws["spot"] = f"{sb.ws_url}/ws"
        ws["ws-api"]["spot"] = f"{sb.ws_url}/ws-api/v3"
    assert_local(exchange.urls["api"], sb)


def assert_local(urls: Mapping[str, Any], sb: Sandbox) -> None:
    """Fail loudly, before any request, if a client still holds a URL outside the sandbox."""
    for name, url in urls.items():
        if isinstance(url, Mapping):
            assert_local(url, sb)
        else:
            assert isinstance(url, str) and url.startswith((sb.base_url + "/", sb.ws_url + "/")), (name, url)


def ccxt_config(sb: Sandbox, session: aiohttp.ClientSession, *, secret: str | None = None) -> dict[str, Any]:
    creds = sb.demo_credentials
    return {
        "apiKey": creds.api_key,
        "secret": creds.api_secret if secret is None else secret,
        "timeout": CCXT_TIMEOUT_MS,
        "session": session,
        "options": {k: (dict(v) if isinstance(v, dict) else v) for k, v in SPOT_ONLY.items()},
    }
