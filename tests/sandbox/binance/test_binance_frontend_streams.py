"""Market streams over real WebSockets: raw and combined paths, live SUBSCRIBE frames, depth diffs
whose U/u continue, partial books, trades, aggregate trades, book tickers, and the stream faults,
server pings and the connection lifetime.

Synchronisation is by order, never by time: a LIST_SUBSCRIPTIONS request is answered through the
same outbox as the data, so every frame queued before it has arrived when its reply arrives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from binance_frontend_support import (
    MAKER_KEY,
    MAKER_SECRET,
    T0,
    Harness,
    recv_json,
    start_harness,
    stop_harness,
)

from marketlink.sandbox.faults import StreamKind
from marketlink.sandbox.venues.binance import BinanceSpotConfig
from marketlink.sandbox.venues.binance.streams import parse_stream

BTC = "BTCUSDT"


async def sync(sock: aiohttp.ClientWebSocketResponse, rid: str = "sync") -> list[Any]:
    """Every frame that arrives before the answer to a LIST_SUBSCRIPTIONS barrier."""
    await sock.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": rid}))
    frames: list[Any] = []
    while True:
        msg = await recv_json(sock)
        if isinstance(msg, dict) and msg.get("id") == rid and "result" in msg:
            return frames
        frames.append(msg)


async def control(sock: aiohttp.ClientWebSocketResponse, request: Any) -> Any:
    await sock.send_str(request if isinstance(request, str) else json.dumps(request))
    return await recv_json(sock)


async def quote(h: Harness, side: str, price: str, qty: str) -> dict[str, Any]:
    r = await h.order(
        {"symbol": BTC, "side": side, "type": "LIMIT", "timeInForce": "GTC", "quantity": qty, "price": price},
        key=MAKER_KEY,
        secret=MAKER_SECRET,
    )
    assert r.status == 200, r.body
    body: dict[str, Any] = r.body
    return body


async def take(h: Harness, side: str, qty: str) -> None:
    r = await h.order({"symbol": BTC, "side": side, "type": "MARKET", "quantity": qty})
    assert r.status == 200, r.body


def test_stream_names() -> None:
    assert parse_stream("BTCUSDT@depth@100ms").name == "btcusdt@depth@100ms"  # type: ignore[union-attr]
    assert parse_stream("btcusdt@depth20").symbol == BTC  # type: ignore[union-attr]
    for bad in ("btcusdt@kline_1m", "btcusdt", "@trade", "btcusdt@depth7", "btcusdt@aggtrade"):
        assert parse_stream(bad) is None


async def test_diff_depth_ids_are_contiguous_across_messages(h: Harness) -> None:
    ws = await h.ws("/ws/btcusdt@depth@100ms")
    await quote(h, "SELL", "30000", "0.5")
    await quote(h, "BUY", "29000", "0.5")
    await h.tick(100)
    await quote(h, "SELL", "30001", "0.1")
    await take(h, "BUY", "0.2")
    await h.tick(100)
    await h.tick(100)  # nothing changed: nothing sent
    frames = await sync(ws)
    assert frames == [
        {
            "e": "depthUpdate",
            "E": T0 + 100,
            "s": BTC,
            "U": 1,
            "u": 2,
            "b": [["29000.00000000", "0.50000000"]],
            "a": [["30000.00000000", "0.50000000"]],
        },
        {
            "e": "depthUpdate",
            "E": T0 + 200,
            "s": BTC,
            "U": 3,
            "u": 4,
            "b": [],
            "a": [["30000.00000000", "0.30000000"], ["30001.00000000", "0.10000000"]],
        },
    ]
    snap = (await h.public("/api/v3/depth", {"symbol": BTC})).body
    assert snap["lastUpdateId"] == frames[-1]["u"]


async def test_skip_fault_leaves_a_visible_gap(h: Harness) -> None:
    fast = await h.ws("/ws/btcusdt@depth@100ms")
    slow = await h.ws("/ws/btcusdt@depth")
    await quote(h, "SELL", "30000", "0.5")
    await h.tick(100)  # first slow flush happens at once (the cadence starts here)
    await quote(h, "SELL", "30001", "0.5")
    h.faults.skip_update_ids(BTC, 1)
    await h.tick(100)
    await quote(h, "SELL", "30002", "0.5")
    await h.tick(100)
    fast_frames = await sync(fast)
    assert [(f["U"], f["u"]) for f in fast_frames] == [(1, 1), (3, 3)]  # U=3 > last u + 1 = 2
    await h.tick(1000)
    slow_frames = await sync(slow)
    assert [(f["U"], f["u"]) for f in slow_frames] == [(1, 1), (3, 3)]
    assert h.faults.fired["depth_skip"] == 1 and h.frontend.streams.depth_skipped == 1


async def test_slow_depth_merges_a_period(h: Harness) -> None:
    ws = await h.ws("/ws/btcusdt@depth")
    await h.tick(0)  # starts the 1000 ms cadence
    await quote(h, "SELL", "30000", "0.5")
    await h.tick(100)
    await quote(h, "SELL", "30001", "0.5")
    await take(h, "BUY", "0.5")  # empties 30000
    await h.tick(100)
    assert await sync(ws) == []
    await h.tick(800)
    frames = await sync(ws)
    assert frames == [
        {
            "e": "depthUpdate",
            "E": T0 + 1000,
            "s": BTC,
            "U": 1,
            "u": 3,
            "b": [],
            "a": [["30000.00000000", "0.00000000"], ["30001.00000000", "0.50000000"]],
        }
    ]


async def test_partial_books(h: Harness) -> None:
    fast = await h.ws("/ws/btcusdt@depth5@100ms")
    slow = await h.ws("/stream?streams=btcusdt@depth10")
    for i in range(6):
        await quote(h, "SELL", str(30000 + i), "0.1")
    await quote(h, "BUY", "29000", "0.1")
    await h.tick(100)
    await h.tick(100)
    fast_frames = await sync(fast)
    assert len(fast_frames) == 2
    book = fast_frames[0]
    assert list(book) == ["lastUpdateId", "bids", "asks"] and book["lastUpdateId"] == 7
    assert len(book["asks"]) == 5 and book["asks"][0] == ["30000.00000000", "0.10000000"]
    assert book["bids"] == [["29000.00000000", "0.10000000"]]
    slow_frames = await sync(slow)
    assert len(slow_frames) == 1
    assert slow_frames[0]["stream"] == "btcusdt@depth10" and len(slow_frames[0]["data"]["asks"]) == 6


async def test_trades_aggregates_and_book_ticker_combined(h: Harness) -> None:
    ws = await h.ws("/stream?streams=btcusdt@trade/btcusdt@aggTrade/btcusdt@bookTicker")
    await quote(h, "SELL", "30000", "0.1")
    await quote(h, "SELL", "30000", "0.2")
    await quote(h, "SELL", "30001", "0.3")
    frames = await sync(ws)
    assert [f["stream"] for f in frames] == ["btcusdt@bookTicker"] * 2  # the third quote is not the best
    assert frames[1]["data"] == {
        "u": 2,
        "s": BTC,
        "b": "0.00000000",
        "B": "0.00000000",
        "a": "30000.00000000",
        "A": "0.30000000",
    }
    await take(h, "BUY", "0.4")  # two fills at 30000 (one aggregate), one at 30001
    frames = await sync(ws)
    trades = [f["data"] for f in frames if f["stream"] == "btcusdt@trade"]
    assert trades[0] == {
        "e": "trade",
        "E": T0,
        "s": BTC,
        "t": 1,
        "p": "30000.00000000",
        "q": "0.10000000",
        "T": T0,
        "m": False,
        "M": True,
    }
    assert [t["t"] for t in trades] == [1, 2, 3]
    aggs = [f["data"] for f in frames if f["stream"] == "btcusdt@aggTrade"]
    assert aggs == [
        {
            "e": "aggTrade",
            "E": T0,
            "s": BTC,
            "a": 1,
            "p": "30000.00000000",
            "q": "0.30000000",
            "f": 1,
            "l": 2,
            "T": T0,
            "m": False,
            "M": True,
        },
        {
            "e": "aggTrade",
            "E": T0,
            "s": BTC,
            "a": 2,
            "p": "30001.00000000",
            "q": "0.10000000",
            "f": 3,
            "l": 3,
            "T": T0,
            "m": False,
            "M": True,
        },
    ]
    await quote(h, "BUY", "29000", "0.1")
    await h.order({"symbol": BTC, "side": "SELL", "type": "MARKET", "quantity": "0.1"})
    frames = await sync(ws)
    sell = next(f["data"] for f in frames if f["stream"] == "btcusdt@trade")
    assert sell["m"] is True  # the buyer was the maker


async def test_live_subscribe_unsubscribe_list_and_properties(h: Harness) -> None:
    ws = await h.ws("/ws")
    assert await control(
        ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "BTCUSDT@bookTicker"], "id": 1}
    ) == {
        "result": None,
        "id": 1,
    }
    assert await control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "a-1"}) == {
        "result": ["btcusdt@trade", "btcusdt@bookTicker"],
        "id": "a-1",
    }
    await quote(h, "SELL", "30000", "0.1")
    raw = await sync(ws)
    assert raw[0]["a"] == "30000.00000000"  # raw payload, not wrapped
    assert await control(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 2}) == {
        "result": None,
        "id": 2,
    }
    await quote(h, "SELL", "29999", "0.1")
    assert await sync(ws) == []
    assert await control(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 3}) == {
        "result": False,
        "id": 3,
    }
    assert await control(ws, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 4}) == {
        "result": None,
        "id": 4,
    }
    await take(h, "BUY", "0.1")
    wrapped = await sync(ws)
    assert wrapped[0]["stream"] == "btcusdt@trade" and wrapped[0]["data"]["e"] == "trade"
    assert await control(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": None}) == {
        "result": None,
        "id": None,
    }


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        ("not json", {"code": 3}),
        ("[1]", {"code": 3}),
        ({"method": "SUBSCRIBE", "params": ["x"], "id": 1.5}, {"code": 2}),
        ({"method": "SUBSCRIBE", "params": ["x"], "id": True}, {"code": 2}),
        ({"method": "SUBSCRIBE", "params": ["x"], "id": "bad id"}, {"code": 2}),
        ({"params": [], "id": 1}, {"code": 2, "msg": "Invalid request: missing field `method`", "id": 1}),
        ({"method": "JOIN", "id": 1}, {"code": 2}),
        ({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 1}, {"code": 2}),
        (
            {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1},
            {"code": 2, "msg": "Invalid request: invalid stream", "id": 1},
        ),
        ({"method": "GET_PROPERTY", "params": [], "id": 1}, {"code": 2}),
        (
            {"method": "GET_PROPERTY", "params": ["speed"], "id": 7},
            {"code": 0, "msg": "Unknown property", "id": 7},
        ),
        (
            {"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 1},
            {"code": 1, "msg": "Invalid value type: expected Boolean", "id": 1},
        ),
    ],
)
async def test_control_errors(h: Harness, request_: Any, reply: dict[str, Any]) -> None:
    ws = await h.ws("/ws")
    answer = await control(ws, request_)
    assert {k: answer[k] for k in reply} == reply


async def test_path_errors_and_stream_cap(h: Harness) -> None:
    async with h.http.get(h.url("/ws/btcusdt@kline_1m")) as r:
        assert (r.status, await r.json()) == (400, {"code": 2, "msg": "Invalid request: invalid stream"})
    async with h.http.get(h.url("/stream?streams=notAListenKey")) as r:
        assert (r.status, (await r.json())["code"]) == (400, -1125)


@pytest.fixture
async def small() -> AsyncIterator[Harness]:
    cfg = BinanceSpotConfig(
        stream_ping_interval_ms=1_000,
        stream_pong_timeout_ms=3_000,
        connection_lifetime_ms=10_000,
        stream_max_incoming_per_s=5,
        max_streams_per_connection=2,
    )
    harness = await start_harness(cfg)
    yield harness
    await stop_harness(harness)


async def test_server_pings_and_pong_deadline(small: Harness) -> None:
    h = small
    quiet = await h.ws("/ws/btcusdt@trade", autoping=False)
    polite = await h.ws("/ws/btcusdt@trade", autoping=True)
    await h.tick(1_000)
    msg = await quiet.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PING, str(T0 + 1_000).encode())
    for _ in range(3):
        assert await sync(polite) == []  # reading lets the client answer the ping
        await h.tick(1_000)
    # 3 s after its unanswered ping the quiet socket is cut; the polite one stays
    while (msg := await quiet.receive(timeout=5)).type is aiohttp.WSMsgType.PING:
        pass
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
    assert await sync(polite) == []
    assert len(h.frontend.streams.conns) == 1


async def test_unsolicited_pong_does_not_count(small: Harness) -> None:
    h = small
    ws = await h.ws("/ws/btcusdt@trade", autoping=False)
    await h.tick(1_000)
    assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PING
    await ws.pong(b"hello")
    await ws.ping(b"client ping")  # the server answers client pings
    assert (await ws.receive(timeout=5)).data == b"client ping"
    conn = next(iter(h.frontend.streams.conns))
    assert conn.socket._ping_payload is not None  # still waiting for the echo
    await ws.pong(str(T0 + 1_000).encode())
    await sync(ws)
    assert conn.socket._ping_payload is None


async def test_connection_lifetime(small: Harness) -> None:
    h = small
    ws = await h.ws("/ws/btcusdt@trade")
    await h.tick(9_999)
    assert await sync(ws) == []
    await h.tick(1)
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1000


async def test_incoming_message_limit(small: Harness) -> None:
    h = small
    ws = await h.ws("/ws")
    for i in range(6):
        await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
    replies = []
    while (msg := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
        replies.append(json.loads(msg.data))
    assert len(replies) == 5 and msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1008


async def test_stream_cap_per_connection(small: Harness) -> None:
    h = small
    ws = await h.ws("/ws/btcusdt@trade")
    reply = await control(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@depth", "ethusdt@trade"], "id": 1})
    assert reply["code"] == 2
    async with h.http.get(h.url("/stream?streams=a@trade/b@trade/c@trade")) as r:
        assert r.status == 400


async def test_drop_fault_closes_market_sockets_only(h: Harness) -> None:
    market = await h.ws("/ws/btcusdt@trade")
    key = (await h.call("POST", "/api/v3/userDataStream", headers={"X-MBX-APIKEY": MAKER_KEY})).body[
        "listenKey"
    ]
    user = await h.ws(f"/ws/{key}")
    h.faults.drop_streams(StreamKind.MARKET)
    await h.tick(100)
    msg = await market.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    assert await sync(user) == []  # still open
    fresh = await h.ws("/ws/btcusdt@trade")  # new sockets are not affected by the old fault
    await h.tick(100)
    assert await sync(fresh) == []


async def test_duplicate_and_reorder_faults(h: Harness) -> None:
    ws = await h.ws("/ws/btcusdt@trade")
    await quote(h, "SELL", "30000", "0.5")
    h.faults.duplicate_messages(1, StreamKind.MARKET)
    await take(h, "BUY", "0.1")
    await take(h, "BUY", "0.1")
    assert [f["t"] for f in await sync(ws, "s1")] == [1, 1, 2]
    h.faults.reorder_messages(1, StreamKind.MARKET)
    await take(h, "BUY", "0.1")
    await take(h, "BUY", "0.1")
    assert [f["t"] for f in await sync(ws, "s2")] == [4, 3]
    h.faults.duplicate_messages(1, StreamKind.USER)  # other kinds leave market frames alone
    await take(h, "BUY", "0.1")
    assert [f["t"] for f in await sync(ws, "s3")] == [5]


async def test_stall_fault_holds_frames_until_it_ends(h: Harness) -> None:
    ws = await h.ws("/ws/btcusdt@trade")
    conn = next(iter(h.frontend.streams.conns))
    h.faults.stall_streams(h.now + 500, StreamKind.MARKET)
    await quote(h, "SELL", "30000", "0.5")
    await take(h, "BUY", "0.1")
    await h.tick(100)
    assert conn.socket.frames_sent == 0
    await h.tick(500)  # the stall is over: the held trade goes out
    assert [f["t"] for f in await sync(ws)] == [1]


async def test_frontend_close_closes_sockets(h: Harness) -> None:
    ws = await h.ws("/ws/btcusdt@trade")
    combined = await h.ws("/stream?streams=btcusdt@trade")
    api = await h.ws("/ws-api/v3")
    await h.frontend.close()
    assert await recv_json(ws) == {"e": "serverShutdown", "E": T0}
    assert await recv_json(combined) == {
        "stream": "!serverShutdown",
        "data": {"e": "serverShutdown", "E": T0},
    }
    for sock in (ws, api):
        msg = await sock.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001


async def test_reordered_frame_without_a_successor_goes_out_after_a_tick(h: Harness) -> None:
    ws = await h.ws("/ws/btcusdt@trade")
    await quote(h, "SELL", "30000", "0.5")
    h.faults.reorder_messages(1, StreamKind.MARKET)
    await take(h, "BUY", "0.1")
    await h.tick(100)
    await h.tick(100)
    assert [f["t"] for f in await sync(ws)] == [1]


async def test_slow_consumer_is_dropped() -> None:
    h = await start_harness(BinanceSpotConfig(max_outbox=3, stream_max_incoming_per_s=0))
    try:
        ws = await h.ws("/ws/btcusdt@trade")
        for i in range(5):
            await quote(h, "SELL", str(30000 + i), "0.1")
        await take(h, "BUY", "0.5")  # five trades queued at once, in one engine operation
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    finally:
        await stop_harness(h)


async def test_control_bug_is_logged_not_fatal(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = await h.ws("/ws/btcusdt@trade")
    original = h.frontend.streams.control

    def buggy(conn: Any, text: str) -> dict[str, Any]:
        if text == "{}":
            raise RuntimeError("bug")
        return original(conn, text)

    monkeypatch.setattr(h.frontend.streams, "control", buggy)
    await ws.send_str("{}")
    assert await sync(ws) == []
    assert h.frontend.streams.control_errors == 1
