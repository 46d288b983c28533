"""UserStream against a loopback WebSocket server that speaks the fake codec's private protocol.

The server (127.0.0.1, a free port, inside each test) answers the subscribe frame as told, then
pushes what the test hands it. Waits are on events and queues with a bounded timeout; the
reconnect back-off runs on the virtual clock, moved by the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import web
from test_orders_fakes import PAIR, START, TIME, D, Harness, make_harness

from marketlink.core.events import ConnectorStatusChanged, Event
from marketlink.core.market import BalanceUpdate
from marketlink.core.orders import OrderState, OrderUpdate, TradeUpdate
from marketlink.engine.context import ConnectorConfig
from marketlink.engine.user_stream import STATUS_PART, UserStream
from marketlink.net.errors import AuthError, RequestTimeout

WAIT = 5.0  # a bound on every wait, never a synchronisation


class UserServer:
    def __init__(self) -> None:
        self.modes: list[str] = []  # how to answer each subscription in turn; then "ok"
        self.subscribes: list[dict[str, Any]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.subscribed = asyncio.Queue[web.WebSocketResponse]()
        self.early: list[dict[str, Any]] = []  # sent before the ack on the next connection
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            frame = await ws.receive_json()
        except (TypeError, ValueError):  # closed before it subscribed
            return ws
        self.subscribes.append(frame)
        mode = self.modes.pop(0) if self.modes else "ok"
        if mode in ("auth", "skew"):
            await ws.send_json({"id": frame["id"], "error": mode})
            await ws.close()
            return ws
        await ws.send_json({"id": frame["id"] + 1000})  # someone else's answer: ignored
        for message in self.early:
            await ws.send_json(message)
        self.early = []
        await ws.send_json({"id": frame["id"]})
        self.sockets.append(ws)
        self.subscribed.put_nowait(ws)
        async for _ in ws:
            pass
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/user", self.handler)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"ws://127.0.0.1:{self._runner.addresses[0][1]}/user"

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def push(self, *messages: dict[str, Any]) -> None:
        for m in messages:
            await self.sockets[-1].send_json(m)


@pytest.fixture
async def server() -> AsyncIterator[UserServer]:
    s = UserServer()
    await s.start()
    yield s
    await s.stop()


class Rig:
    def __init__(self, server: UserServer, **config: Any) -> None:
        cfg = ConnectorConfig(client_id_prefix="t", **config)
        self.h: Harness = make_harness(ws_user=server.url, config=cfg)
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.stream = UserStream(self.h.ctx, self.sink)
        self.reconnected = asyncio.Event()
        self.stream.on_reconnected = self.reconnected.set
        self.reconnecting = asyncio.Event()
        self.h.ctx.bus.subscribe_callback(self._status)

    def sink(self, items: Sequence[OrderUpdate | TradeUpdate | BalanceUpdate]) -> None:
        for item in items:
            self.items.put_nowait(item)

    def _status(self, event: Event) -> None:
        if isinstance(event, ConnectorStatusChanged):
            detail = dict(event.not_ready).get(STATUS_PART, "")
            if detail.startswith("reconnecting"):
                self.reconnecting.set()

    async def next_item(self) -> Any:
        return await asyncio.wait_for(self.items.get(), WAIT)

    async def close(self) -> None:
        await self.stream.stop()
        await self.h.ctx.supervisor.stop()


def order_msg(cid: str, state: str = "OPEN", filled: str = "0") -> dict[str, Any]:
    return {"e": "order", "s": "BTCUSDT", "T": START, "X": state, "c": cid, "i": "x1", "z": filled}


async def test_start_subscribes_and_events_flow_to_the_sink_in_order(server: UserServer) -> None:
    rig = Rig(server)
    await asyncio.wait_for(rig.stream.start(), WAIT)
    assert server.subscribes == [{"op": "subscribe", "id": 1, "key": "key"}]
    assert rig.h.ctx.status.snapshot()[STATUS_PART].ready
    assert rig.stream.connected and rig.stream.healthy
    await server.push(
        order_msg("c1"),
        {"e": "fill", "s": "BTCUSDT", "T": START, "t": "t1", "c": "c1", "p": "100", "q": "0.5"},
        {"e": "balance", "T": START, "B": [["USDT", "10", "9"]]},
    )
    first, second, third = [await rig.next_item() for _ in range(3)]
    assert isinstance(first, OrderUpdate) and first.new_state is OrderState.OPEN
    assert first.trading_pair == PAIR
    assert isinstance(second, TradeUpdate) and second.amount == D("0.5")
    assert isinstance(third, BalanceUpdate) and third.balances[0].available == D("9")
    assert rig.stream.counters.messages == 4  # with the stray answer read during the login
    assert rig.stream.counters.malformed == 0
    await rig.close()


async def test_bad_messages_are_counted_and_dropped(server: UserServer) -> None:
    rig = Rig(server)
    await asyncio.wait_for(rig.stream.start(), WAIT)
    await server.push({"e": "mystery"}, {"no": "kind"}, order_msg("c2"))
    item = await rig.next_item()
    assert isinstance(item, OrderUpdate) and item.client_order_id == "c2"
    assert rig.stream.counters.malformed == 2
    await rig.close()


async def test_sink_errors_do_not_stop_the_stream(server: UserServer) -> None:
    rig = Rig(server)
    calls: list[int] = []

    def bad_sink(items: Sequence[Any]) -> None:
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("bug")
        rig.sink(items)

    rig.stream._sink = bad_sink
    await asyncio.wait_for(rig.stream.start(), WAIT)
    await server.push(order_msg("c1"), order_msg("c2"))
    item = await rig.next_item()
    assert item.client_order_id == "c2" and rig.stream.counters.sink_errors == 1
    await rig.close()


async def test_a_refused_key_makes_start_raise_it(server: UserServer) -> None:
    server.modes = ["auth"]
    rig = Rig(server)
    with pytest.raises(AuthError):
        await asyncio.wait_for(rig.stream.start(), WAIT)
    assert not rig.stream.connected
    await rig.close()


async def test_transport_trouble_at_start_times_out_naming_the_problem(server: UserServer) -> None:
    rig = Rig(server)
    rig.h.ctx.endpoints = type(rig.h.ctx.endpoints)("http://x", "ws://x", "ws://127.0.0.1:9/user")
    task = asyncio.ensure_future(rig.stream.start(timeout=20.0))
    await asyncio.wait_for(rig.reconnecting.wait(), WAIT)
    rig.h.clock.advance(20.0)
    with pytest.raises(RequestTimeout, match=r"not subscribed within 20\.0s"):
        await asyncio.wait_for(task, WAIT)
    await rig.close()


async def test_clock_skew_at_login_resyncs_and_retries(server: UserServer) -> None:
    server.modes = ["skew"]
    rig = Rig(server)
    rig.h.http.answer(TIME, 1_700_000_000_000)
    task = asyncio.ensure_future(rig.stream.start())
    await asyncio.wait_for(rig.reconnecting.wait(), WAIT)
    assert rig.h.http.sent(TIME) and rig.h.ctx.time_sync.has_samples
    rig.h.clock.advance(1.0)  # the first back-off is at most 0.5 s
    await asyncio.wait_for(task, WAIT)
    assert len(server.subscribes) == 2 and rig.stream.connected
    await rig.close()


async def test_reconnect_resubscribes_and_triggers_a_reconcile_first(server: UserServer) -> None:
    rig = Rig(server)
    order: list[str] = []
    rig.stream.on_reconnected = lambda: (order.append("reconcile"), rig.reconnected.set())  # type: ignore[func-returns-value]
    rig.h.ctx.bus.subscribe_callback(
        lambda e: order.append("ready") if isinstance(e, ConnectorStatusChanged) and
        STATUS_PART not in dict(e.not_ready) and rig.reconnecting.is_set() else None
    )
    woken: list[int] = []
    rig.stream.on_health_change = lambda: woken.append(1)
    await asyncio.wait_for(rig.stream.start(), WAIT)
    await server.sockets[-1].close()
    await asyncio.wait_for(rig.reconnecting.wait(), WAIT)
    assert not rig.stream.connected and not rig.stream.healthy
    assert not rig.h.ctx.status.snapshot()[STATUS_PART].ready
    rig.h.clock.advance(30.0)
    await asyncio.wait_for(rig.reconnected.wait(), WAIT)
    assert [f["id"] for f in server.subscribes] == [1, 2]  # a fresh subscription on the new socket
    assert order[0] == "reconcile"  # before the stream reports ready again
    assert rig.stream.connected and rig.h.ctx.status.snapshot()[STATUS_PART].ready
    assert len(woken) == 3  # up, down, up
    await rig.close()


async def test_venue_ending_the_subscription_forces_a_resubscribe(server: UserServer) -> None:
    rig = Rig(server)
    await asyncio.wait_for(rig.stream.start(), WAIT)
    await server.push({"e": "end"})
    await asyncio.wait_for(rig.reconnecting.wait(), WAIT)
    rig.h.clock.advance(30.0)
    await asyncio.wait_for(rig.reconnected.wait(), WAIT)
    assert len(server.subscribes) == 2 and rig.stream.counters.ended_by_venue == 1
    await rig.close()


async def test_silence_makes_the_stream_unhealthy_until_a_message_comes(server: UserServer) -> None:
    rig = Rig(server, user_stream_silence=10.0)
    await asyncio.wait_for(rig.stream.start(), WAIT)
    assert rig.stream.healthy and rig.stream.silent_at == START + 10.0
    rig.h.clock.advance(10.0)
    assert rig.stream.connected and not rig.stream.healthy
    await server.push(order_msg("c1"))
    await rig.next_item()
    assert rig.stream.healthy and rig.stream.last_message_at == START + 10.0
    await rig.close()


async def test_events_before_the_ack_are_not_lost(server: UserServer) -> None:
    server.early = [order_msg("early")]
    rig = Rig(server)
    await asyncio.wait_for(rig.stream.start(), WAIT)
    item = await rig.next_item()
    assert item.client_order_id == "early"
    await rig.close()


async def test_start_twice_is_refused(server: UserServer) -> None:
    rig = Rig(server)
    await asyncio.wait_for(rig.stream.start(), WAIT)
    with pytest.raises(RuntimeError):
        await rig.stream.start()
    await rig.close()
