"""The market-stream host's connection-attempt limit (audit E, finding 4) and the fault that
refuses SUBSCRIBE frames (audit E, finding 1).

Binance allows 300 connection attempts per 5 minutes per IP (BSD web-socket-streams.md). The
sandbox counts every upgrade request to the stream paths in fixed windows of sandbox time and
refuses the ones past the limit at the handshake, as its REST limits do: HTTP 429, code -1003,
Retry-After. Small limits here make the edge reachable in a few calls; time is the sandbox's
settable wall clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from binance_frontend_support import Harness, recv_json, start_harness, stop_harness

from marketlink.core.errors import ConfigError
from marketlink.sandbox.venues.binance import BinanceSpotConfig

WINDOW = 10_000


@pytest.fixture
async def limited() -> AsyncIterator[Harness]:
    harness = await start_harness(BinanceSpotConfig(
        stream_max_incoming_per_s=0, stream_connection_attempts=3, stream_connection_window_ms=WINDOW,
    ))
    harness.wall.now -= harness.wall.now % WINDOW  # at the start of a window
    yield harness
    await stop_harness(harness)


async def attempt(h: Harness, path: str = "/ws/btcusdt@trade") -> aiohttp.ClientResponse:
    """One upgrade request expected to be refused; its body is read for the caller."""
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    resp = await h.http.get(h.url(path), headers=headers)
    await resp.read()
    return resp


async def test_connection_attempts_past_the_limit_are_refused_until_the_window_ends(limited: Harness) -> None:
    h = limited
    await h.ws("/ws/btcusdt@trade")
    await h.ws("/stream?streams=btcusdt@depth")  # every stream path counts
    await h.ws("/ws")
    h.wall.now += 4_000
    refused = await attempt(h)
    assert refused.status == 429 and refused.headers["Retry-After"] == "6"
    assert await refused.json() == {
        "code": -1003,
        "msg": "Too many connection attempts; current limit is 3 connection attempts per 10 seconds.",
    }
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:  # a WebSocket client sees the same
        await h.ws("/stream?streams=ethusdt@trade")
    assert info.value.status == 429
    assert h.frontend.streams.refused_connections == 2 and len(h.frontend.streams.conns) == 3
    h.wall.now += 5_999
    assert (await attempt(h)).status == 429
    h.wall.now += 1  # the next window: counted afresh
    sock = await h.ws("/ws/btcusdt@trade")
    await sock.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
    assert await recv_json(sock) == {"result": ["btcusdt@trade"], "id": 1}
    assert h.frontend.streams.refused_connections == 3


async def test_the_limit_can_be_disabled_and_is_validated() -> None:
    h = await start_harness(BinanceSpotConfig(stream_max_incoming_per_s=0, stream_connection_attempts=0))
    try:
        for _ in range(5):
            await h.ws("/ws/btcusdt@trade")
        assert h.frontend.streams.refused_connections == 0 and len(h.frontend.streams.conns) == 5
    finally:
        await stop_harness(h)
    default = BinanceSpotConfig()
    assert (default.stream_connection_attempts, default.stream_connection_window_ms) == (300, 300_000)
    assert BinanceSpotConfig.from_options({"stream_connection_attempts": 10}).stream_connection_attempts == 10
    for bad in ({"stream_connection_attempts": -1}, {"stream_connection_window_ms": 0}):
        with pytest.raises(ConfigError):
            BinanceSpotConfig.from_options(bad)


async def test_the_default_limit_words_its_window_in_minutes() -> None:
    h = await start_harness(BinanceSpotConfig(stream_max_incoming_per_s=0, stream_connection_attempts=1))
    try:
        await h.ws("/ws")
        refused = await attempt(h)
        assert refused.status == 429
        assert (await refused.json())["msg"].endswith("1 connection attempts per 5 minutes.")
        assert 1 <= int(refused.headers["Retry-After"]) <= 300
    finally:
        await stop_harness(h)


async def test_refused_subscriptions_fault(limited: Harness) -> None:
    h = limited
    h.faults.refuse_subscriptions(2, message="Invalid request: too many streams")
    sock = await h.ws("/ws")
    answers = []
    for rid in (1, 2, 3):
        await sock.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": rid}))
        answers.append(await recv_json(sock))
        await sock.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 10 + rid}))
        answers.append((await recv_json(sock))["result"])
    assert answers == [
        {"code": 2, "msg": "Invalid request: too many streams", "id": 1}, [],  # refused: nothing subscribed
        {"code": 2, "msg": "Invalid request: too many streams", "id": 2}, [],
        {"result": None, "id": 3}, ["btcusdt@depth"],
    ]
    assert h.faults.fired["refused_subscription"] == 2
    h.faults.refuse_subscriptions(1)
    h.faults.clear()  # disarms it
    await sock.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 4}))
    assert await recv_json(sock) == {"result": None, "id": 4}
    with pytest.raises(ValueError):
        h.faults.refuse_subscriptions(0)
