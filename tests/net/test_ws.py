"""WsClient against a real aiohttp WebSocket server on 127.0.0.1, with time on a virtual clock.

Heartbeats, staleness and back-off all run on the VirtualClock, so every timing behaviour is
driven by ``advance`` and observed through events: no test sleeps or measures elapsed time.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from marketlink.core.errors import ConfigError
from marketlink.net import jsoncodec
from marketlink.net import ws as ws_module
from marketlink.net.clock import VirtualClock
from marketlink.net.errors import AuthError, ConnectionFailed
from marketlink.net.ws import (
    Closed,
    Connected,
    Disconnected,
    Heartbeat,
    Reconnecting,
    Stale,
    WsClient,
    WsItem,
    WsMessage,
    WsSession,
    backoff_delay,
)

STEP = 5.0  # safety net for awaiting an item; never reached when the code is right


class Conn:
    """One server-side connection: what it received, and a handle to talk back."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> None:
        self.ws = ws
        self.transport = transport
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def send(self, payload: Any) -> None:
        await self.ws.send_str(json.dumps(payload))

    async def received(self, n: int) -> list[Any]:
        return [await asyncio.wait_for(self.inbox.get(), STEP) for _ in range(n)]


class WsVenue:
    """Accepts connections on /ws; acks logins and answers client pings unless told otherwise."""

    def __init__(self) -> None:
        self.conns: asyncio.Queue[Conn] = asyncio.Queue()
        self.count = 0
        self.ack_login = True
        self.close_on_login = False
        self.ping_before_ack = False
        app = web.Application()
        app.router.add_get("/ws", self.handle)
        app.router.add_get("/expired/{listen_key}", self.refuse)
        self.app = app

    async def refuse(self, request: web.Request) -> web.Response:
        return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)

    async def next_conn(self) -> Conn:
        return await asyncio.wait_for(self.conns.get(), STEP)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # so the test sees the client's pongs
        await ws.prepare(request)
        conn = Conn(ws, request.transport)
        self.count += 1
        self.conns.put_nowait(conn)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    conn.inbox.put_nowait(data)
                    await self.reply(conn, data)
                elif msg.type is WSMsgType.BINARY:
                    conn.inbox.put_nowait(msg.data)
                elif msg.type is WSMsgType.PONG:
                    conn.pongs.put_nowait(msg.data)
        finally:
            conn.closed.set()
        return ws

    async def reply(self, conn: Conn, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if data.get("op") == "auth" and self.close_on_login:
            await conn.ws.close()
        elif data.get("op") == "auth" and self.ack_login:
            if self.ping_before_ack:
                await conn.ws.ping(b"login-ping")
                await conn.ws.send_str("garbage during login")
            await conn.send({"op": "auth", "success": True})
        elif data.get("op") == "ping":
            await conn.send({"op": "pong"})


@pytest.fixture
async def venue(serve: Any) -> tuple[WsVenue, str]:
    v = WsVenue()
    server = await serve(v.app)
    return v, server.ws_url


@pytest.fixture
async def make(clock: VirtualClock) -> AsyncIterator[Callable[..., WsClient]]:
    """``make(url, **kw)`` builds a client on the virtual clock; all are stopped after the test."""
    made: list[WsClient] = []

    def build(url: Any, **kw: Any) -> WsClient:
        kw.setdefault("heartbeat", Heartbeat.server_pings(60.0))
        kw.setdefault("rng", random.Random(1))
        client = WsClient(url, clock=clock, close_timeout=0.5, connect_timeout=2.0, name="wstest", **kw)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.stop()


async def nxt(items: AsyncIterator[WsItem]) -> WsItem:
    return await asyncio.wait_for(anext(items), STEP)


async def expect(items: AsyncIterator[WsItem], kind: type[Any]) -> Any:
    item = await nxt(items)
    assert isinstance(item, kind), f"expected {kind.__name__}, got {item!r}"
    return item


async def sit_out(clock: VirtualClock, event: Reconnecting) -> None:
    """Let the back-off pass: wait until the supervisor sleeps, then move time past it."""
    await asyncio.wait_for(clock.wait_for_sleepers(1), STEP)
    clock.advance(event.delay)


async def login(session: WsSession) -> None:
    await session.send({"op": "auth", "args": ["key", 1, "sig"]})
    ack = await session.receive()
    assert ack == {"op": "auth", "success": True}


def our_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("wstest")}


# -- pure pieces ------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    rng = random.Random(3)
    exact = [backoff_delay(n, base=0.5, cap=4.0, jitter=0.0, rng=rng) for n in range(1, 7)]
    assert exact == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff_delay(10_000, base=0.5, cap=30.0, jitter=0.0, rng=rng) == 30.0
    for n in range(1, 50):
        ceiling = min(30.0, 0.5 * 2 ** (n - 1))
        assert ceiling * 0.5 <= backoff_delay(n, base=0.5, cap=30.0, jitter=0.5, rng=rng) <= ceiling


def test_heartbeat_and_client_configuration_are_validated() -> None:
    with pytest.raises(ConfigError):
        Heartbeat(0)
    with pytest.raises(ConfigError):
        Heartbeat(10, interval=5)  # an interval without a message builder
    with pytest.raises(ConfigError):
        Heartbeat.client_pings(20, dict, timeout=20)
    assert Heartbeat.client_pings(20, dict).timeout == 40
    hb = Heartbeat.server_pings(5)
    with pytest.raises(ConfigError):
        WsClient("ws://x", heartbeat=hb, stale_after=5)  # staleness needs key_of
    with pytest.raises(ConfigError):
        WsClient("ws://x", heartbeat=hb, backoff_base=0)
    with pytest.raises(ConfigError):
        WsClient("ws://x", heartbeat=hb, max_queue=0)
    for healthy_after in (0.0, math.inf):
        with pytest.raises(ConfigError):
            WsClient("ws://x", heartbeat=hb, healthy_after=healthy_after)


# -- messages ---------------------------------------------------------------------------------


async def test_messages_are_decoded_and_malformed_frames_dropped(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    server, url = venue
    client = make(url, key_of=lambda m: m.get("stream"))
    items = client.items()
    await client.start()
    assert await expect(items, Connected) == Connected(url, 1)
    conn = await server.next_conn()
    await conn.send({"stream": "btcusdt@depth", "p": 0.1})
    await conn.ws.send_str("{not json")
    await conn.ws.send_bytes(b"\xff\x00binary garbage")
    await conn.send([1, 2])
    msg = await expect(items, WsMessage)
    assert msg.data == {"stream": "btcusdt@depth", "p": Decimal("0.1")}
    assert msg.key == "btcusdt@depth"
    second = await expect(items, WsMessage)
    assert second.data == [1, 2] and second.key is None  # key_of failed on a list: no key, not lost
    assert client.stats.malformed == 2 and client.stats.messages == 2


@pytest.mark.skipif(not ws_module._RAW_TEXT, reason="this aiohttp decodes text frames itself")
async def test_text_frames_reach_the_decoder_as_bytes_and_bad_utf8_is_dropped(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    # aiohttp may hand a text frame over undecoded (decode_text): the decoder then gets bytes,
    # and invalid UTF-8 must still be refused (msgspec checks it), never passed on.
    server, url = venue
    seen: list[type] = []

    def decode(data: bytes | str) -> Any:
        seen.append(type(data))
        return jsoncodec.decode(data)

    client = make(url, decode=decode)
    items = client.items()
    await client.start()
    await expect(items, Connected)
    conn = await server.next_conn()
    await conn.ws.send_frame(b'{"bad":"\xff"}', WSMsgType.TEXT)  # a text frame that is not UTF-8
    await conn.send({"ok": 1})
    assert (await expect(items, WsMessage)).data == {"ok": 1}
    assert seen == [bytes, bytes] and client.stats.malformed == 1


async def test_send_variants_and_send_while_down(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    server, url = venue
    client = make(url)
    with pytest.raises(ConnectionFailed):
        await client.send({"op": "x"})
    items = client.items()
    await client.start()
    await expect(items, Connected)
    conn = await server.next_conn()
    await client.send({"qty": Decimal("1E-8")})
    await client.send('{"raw":true}')
    await client.send(b"\x01\x02")
    assert await conn.received(3) == [{"qty": "0.00000001"}, {"raw": True}, b"\x01\x02"]


# -- reconnect and resubscribe ----------------------------------------------------------------


async def test_subscriptions_are_resent_after_the_server_drops_us(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    client = make(url, on_connect=login)
    await client.subscribe("book", {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})
    await client.subscribe("trades", {"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
    items = client.items()
    await client.start()
    await expect(items, Connected)
    first = await server.next_conn()
    login_frame, book, trades = await first.received(3)
    assert login_frame["op"] == "auth"  # on_connect runs before any subscription
    assert (book["args"], trades["args"]) == (["orderbook.50.BTCUSDT"], ["publicTrade.BTCUSDT"])

    # Changes while connected are sent at once and remembered for the next connection.
    await client.subscribe("ticker", {"op": "subscribe", "args": ["tickers.BTCUSDT"]})
    await client.unsubscribe("trades", {"op": "unsubscribe", "args": ["publicTrade.BTCUSDT"]})
    await client.unsubscribe("never-subscribed")
    assert [m["op"] for m in await first.received(2)] == ["subscribe", "unsubscribe"]
    assert client.subscriptions == ("book", "ticker")

    await first.ws.close()
    gone = await expect(items, Disconnected)
    assert gone.reason == "closed by server" and gone.code == 1000
    again = await expect(items, Reconnecting)
    assert again.attempt == 1
    await sit_out(clock, again)
    assert await expect(items, Connected) == Connected(url, 2)
    second = await server.next_conn()
    frames = await second.received(3)
    assert [f["op"] for f in frames] == ["auth", "subscribe", "subscribe"]
    assert [f["args"] for f in frames[1:]] == [["orderbook.50.BTCUSDT"], ["tickers.BTCUSDT"]]


async def test_backoff_grows_with_seeded_jitter_and_url_is_fetched_each_time(
    make: Callable[..., WsClient], clock: VirtualClock, closed_port: int
) -> None:
    fetched: list[int] = []

    async def fresh_url() -> str:  # e.g. a new listen key per connection
        fetched.append(1)
        return f"ws://127.0.0.1:{closed_port}/ws"

    client = make(fresh_url, backoff_base=0.5, backoff_max=4.0, jitter=0.5, rng=random.Random(7))
    items = client.items()
    await client.start()
    delays = []
    for n in range(1, 7):
        event = await expect(items, Reconnecting)
        assert event.attempt == n and "Connect" in event.reason
        delays.append(event.delay)
        await sit_out(clock, event)
    draws = random.Random(7)
    expected = [min(4.0, 0.5 * 2 ** (n - 1)) * (1 - 0.5 * draws.random()) for n in range(1, 7)]
    assert delays == expected
    assert len(fetched) >= 6
    await client.stop()
    assert isinstance(await nxt(items), Closed)  # never connected, so no Disconnected
    assert not our_tasks()


async def test_a_refused_handshake_is_reported_without_the_listen_key(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    _, url = venue
    client = make(url.replace("/ws", "/expired/SECRETLISTENKEY"))
    items = client.items()
    await client.start()
    failed = await expect(items, Reconnecting)
    assert failed.reason == "WSServerHandshakeError: HTTP 400"


async def test_login_failure_is_retried_and_login_may_see_pings_and_garbage(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    server.ping_before_ack = True
    attempts: list[int] = []

    async def flaky_login(session: WsSession) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise AuthError("invalid api key", code=10003)
        await login(session)

    client = make(url, on_connect=flaky_login)
    items = client.items()
    await client.start()
    failed = await expect(items, Reconnecting)
    assert "AuthError" in failed.reason and failed.attempt == 1
    await sit_out(clock, failed)
    assert await expect(items, Connected) == Connected(url, 1)
    conns = [await server.next_conn(), await server.next_conn()]
    assert await asyncio.wait_for(conns[1].pongs.get(), STEP) == b"login-ping"
    assert client.stats.malformed == 1  # the garbage frame during login


async def test_login_without_ack_times_out_into_a_reconnect(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    server, url = venue
    server.ack_login = False

    async def impatient_login(session: WsSession) -> None:
        await session.send({"op": "auth"})
        await session.receive(timeout=0.05)

    client = make(url, on_connect=impatient_login)
    items = client.items()
    await client.start()
    failed = await expect(items, Reconnecting)
    assert "RequestTimeout" in failed.reason


async def test_socket_closed_during_login_is_a_failed_attempt(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    server, url = venue
    server.close_on_login = True
    client = make(url, on_connect=login)
    items = client.items()
    await client.start()
    failed = await expect(items, Reconnecting)
    assert "ConnectionFailed" in failed.reason and "login" in failed.reason


async def test_a_protocol_violation_reconnects(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    client = make(url)
    items = client.items()
    await client.start()
    await expect(items, Connected)
    conn = await server.next_conn()
    assert isinstance(conn.transport, asyncio.WriteTransport)
    conn.transport.write(b"\x83\x00")  # FIN + reserved opcode 0x3: not a valid frame
    gone = await expect(items, Disconnected)
    assert gone.reason.startswith("socket error") and gone.code == 1002  # PROTOCOL_ERROR
    await sit_out(clock, await expect(items, Reconnecting))
    assert await expect(items, Connected) == Connected(url, 2)


# -- heartbeat --------------------------------------------------------------------------------


async def test_server_pings_are_answered_with_their_payload(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    server, url = venue
    client = make(url, heartbeat=Heartbeat.server_pings(60.0))
    items = client.items()
    await client.start()
    await expect(items, Connected)
    conn = await server.next_conn()
    await conn.ws.ping(b"20s-ping")
    assert await asyncio.wait_for(conn.pongs.get(), STEP) == b"20s-ping"
    assert client.stats.pings_answered == 1


async def test_client_ping_message_is_sent_on_the_interval_and_pongs_are_swallowed(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    heartbeat = Heartbeat.client_pings(
        20.0, lambda: {"op": "ping", "req_id": "hb"}, is_pong=lambda m: m["op"] == "pong"
    )
    client = make(url, heartbeat=heartbeat)
    items = client.items()
    await client.start()
    await expect(items, Connected)
    conn = await server.next_conn()
    await asyncio.wait_for(clock.wait_for_sleepers(1), STEP)  # the watchdog waits for the ping time
    assert conn.inbox.empty()
    clock.advance(20.0)
    assert await conn.received(1) == [{"op": "ping", "req_id": "hb"}]
    # Sent after the pong, which must not reach us; is_pong raises KeyError on it: still delivered.
    await conn.send({"topic": "tickers.BTCUSDT"})
    msg = await expect(items, WsMessage)
    assert msg.data == {"topic": "tickers.BTCUSDT"}
    assert client.stats.pings_sent == 1


async def test_a_silent_server_triggers_a_reconnect(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    client = make(url, heartbeat=Heartbeat.server_pings(30.0))
    items = client.items()
    await client.start()
    await expect(items, Connected)
    first = await server.next_conn()
    await asyncio.wait_for(clock.wait_for_sleepers(1), STEP)
    clock.advance(30.0)
    gone = await expect(items, Disconnected)
    assert gone.reason.startswith("heartbeat timeout")
    await asyncio.wait_for(first.closed.wait(), STEP)  # we really closed the dead socket
    again = await expect(items, Reconnecting)
    await sit_out(clock, again)
    assert await expect(items, Connected) == Connected(url, 2)


async def test_a_failing_ping_builder_reconnects_instead_of_crashing(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    _, url = venue

    def broken_ping() -> Any:
        raise ValueError("no req id")

    client = make(url, heartbeat=Heartbeat.client_pings(10.0, broken_ping))
    items = client.items()
    await client.start()
    await expect(items, Connected)
    await asyncio.wait_for(clock.wait_for_sleepers(1), STEP)
    clock.advance(10.0)
    gone = await expect(items, Disconnected)
    assert gone.reason == "heartbeat failed: ValueError: no req id"
    assert isinstance(await nxt(items), Reconnecting)


# -- staleness, engine-requested reconnect, overflow ------------------------------------------


async def test_a_silent_subscription_yields_one_stale_event(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    client = make(url, stale_after=5.0, key_of=lambda m: m.get("k"))
    await client.subscribe("a", {"sub": "a"})
    await client.subscribe("b", {"sub": "b"})
    items = client.items()
    await client.start()
    await expect(items, Connected)
    conn = await server.next_conn()
    await asyncio.wait_for(clock.wait_for_sleepers(1), STEP)
    clock.advance(3.0)
    await conn.send({"k": "a"})
    assert (await expect(items, WsMessage)).key == "a"
    clock.advance(3.0)  # t=6: b silent since 0, a only since 3
    assert await expect(items, Stale) == Stale("b", 6.0)
    clock.advance(1.5)  # b is not reported twice for one silence
    await conn.send({"k": "b"})
    assert (await expect(items, WsMessage)).key == "b"
    assert client.stats.stale == 1

    client.reconnect("engine: resync b")  # the engine's choice after a Stale
    assert await expect(items, Disconnected) == Disconnected("engine: resync b", None)
    again = await expect(items, Reconnecting)
    assert again.attempt == 1  # the first failure; data alone would not have reset a count


async def test_queue_overflow_drops_the_abandoned_backlog_and_keeps_the_events(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    client = make(url, max_queue=2)
    items = client.items()
    await client.start()
    await expect(items, Connected)  # the consumer then stalls
    conn = await server.next_conn()
    for i in range(4):
        await conn.send({"i": i})
    await asyncio.wait_for(conn.closed.wait(), STEP)
    # Messages 0 and 1 of the abandoned connection are gone (the resync replaces them); the
    # connection's events are all there, in order.
    assert await expect(items, Disconnected) == Disconnected("receive queue overflow", None)
    assert client.stats.overflow >= 3  # the two queued and at least the frame that overflowed
    await sit_out(clock, await expect(items, Reconnecting))
    assert await expect(items, Connected) == Connected(url, 2)
    # The new connection starts with an empty backlog: its first messages fit and are delivered.
    second = await server.next_conn()
    for i in (10, 11):
        await second.send({"i": i})
    assert [(await expect(items, WsMessage)).data["i"] for _ in range(2)] == [10, 11]
    assert client.connected and client.stats.connects == 2


# -- reconnect rate: the back-off must survive a venue that accepts and then drops us ---------

#: Binance: 300 connection attempts per 5 min per IP (exchange-protocols.md §2.5). A process has
#: several sockets (market data, user stream, a connector per venue...), so one client may use
#: a tenth of it at most.
BINANCE_CONNECTIONS, BINANCE_WINDOW = 300, 300.0
PER_CLIENT = BINANCE_CONNECTIONS // 10


class AckThenDrop:
    """Acks the subscription as Binance does (``{"result":null,"id":N}``), then closes with a
    code: the audit's w2 case, where the ack used to count as proof of a healthy connection."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.handshakes = 0
        app = web.Application()
        app.router.add_get("/ws", self.handle)
        self.app = app

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.handshakes += 1
        sub = await ws.receive()
        if sub.type is WSMsgType.TEXT:
            await ws.send_str(json.dumps({"result": None, "id": json.loads(sub.data)["id"]}))
        await ws.close(code=self.code, message=b"Too many requests")
        return ws


@pytest.mark.parametrize("code", [1008, 1013, 1000])
async def test_a_venue_that_acks_then_drops_sees_a_growing_back_off_within_its_connection_limit(
    serve: Any, make: Callable[..., WsClient], clock: VirtualClock, code: int
) -> None:
    venue = AckThenDrop(code)
    server = await serve(venue.app)
    client = make(server.ws_url, rng=random.Random(7))  # the engine's back-off: 0.5 s doubling to 30 s
    await client.subscribe("depth", {"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1})
    items = client.items()
    await client.start()
    connected_at: list[float] = []
    attempts: list[int] = []
    # Bounded: stops at the end of Binance's window, or as soon as the limit share is exceeded.
    while clock.time() < BINANCE_WINDOW and venue.handshakes <= PER_CLIENT:
        item = await nxt(items)
        if isinstance(item, Connected):
            connected_at.append(clock.time())
        elif isinstance(item, Disconnected):
            assert item.code == code
        elif isinstance(item, Reconnecting):
            attempts.append(item.attempt)
            await sit_out(clock, item)
    assert venue.handshakes <= PER_CLIENT, f"{venue.handshakes} connections in {clock.time():.0f} s"
    assert attempts == list(range(1, len(attempts) + 1))  # never reset: every connection failed
    assert len(connected_at) >= 8 and connected_at[-1] - connected_at[-2] >= 15.0  # at the cap


async def test_the_back_off_starts_over_only_after_a_connection_stayed_up(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient], clock: VirtualClock
) -> None:
    server, url = venue
    client = make(url, healthy_after=30.0, heartbeat=Heartbeat.server_pings(3600.0))
    items = client.items()
    await client.start()

    async def live_for(seconds: float, code: int = 1000) -> Reconnecting:
        await expect(items, Connected)
        conn = await server.next_conn()
        await conn.send({"data": 1})  # data flowing proves nothing by itself
        await expect(items, WsMessage)
        clock.advance(seconds)
        await conn.ws.close(code=code)
        assert (await expect(items, Disconnected)).code == code
        event: Reconnecting = await expect(items, Reconnecting)
        await sit_out(clock, event)
        return event

    assert (await live_for(10.0)).attempt == 1
    assert (await live_for(29.0)).attempt == 2  # short-lived, with data: still failing
    assert (await live_for(30.0)).attempt == 1  # stayed up: the count starts over
    assert (await live_for(10.0)).attempt == 2
    assert (await live_for(600.0, code=1013)).attempt == 3  # "try again later" is a failure
    assert (await live_for(600.0, code=1008)).attempt == 4  # so is a policy close, however late
    assert (await live_for(600.0)).attempt == 1


# -- shutdown ---------------------------------------------------------------------------------


async def test_stop_closes_cleanly_and_leaves_no_tasks(
    venue: tuple[WsVenue, str], make: Callable[..., WsClient]
) -> None:
    server, url = venue
    client = make(url)
    items = client.items()
    await client.start()
    await client.start()  # idempotent
    await expect(items, Connected)
    conn = await server.next_conn()
    assert client.connected and our_tasks()
    await client.stop()
    assert await expect(items, Disconnected) == Disconnected("stopped", 1000)
    assert isinstance(await nxt(items), Closed)
    assert not our_tasks()
    assert not client.connected
    await asyncio.wait_for(conn.closed.wait(), STEP)
    await client.stop()  # idempotent
    with pytest.raises(ConfigError):
        await client.start()
