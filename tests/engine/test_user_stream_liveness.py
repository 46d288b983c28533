"""A quiet account on a live private connection is polled at the slow pace (audit B, finding 6).

The private stream is the real ``UserStream`` against test_user_stream.py's loopback server,
taught to ping: ``keep_alive`` sends a server ping and waits for our pong, so the connection
shows life without a single private message. The reconciler is the real one over
test_orders_fakes' venue (which counts status queries); time moves only by the virtual clock,
one second at a time, with every ready task run after each step (``settle``, as the reconciler's
own tests do).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web
from test_orders_fakes import ACCOUNT, OPEN, START, STATUS, D, make_harness, placed, settle, venue_order
from test_user_stream import WAIT, UserServer

from marketlink.core.enums import OrderType, Side
from marketlink.core.market import Balance, BalanceUpdate
from marketlink.core.orders import OrderState
from marketlink.engine.context import ConnectorConfig
from marketlink.engine.orders import OrderManager
from marketlink.engine.reconcile import Reconciler
from marketlink.engine.user_stream import UserStream

PAIR = "BTC-USDT"


class PingingServer(UserServer):
    """The private stream server; answers no pings itself, so our pongs reach the handler."""

    def __init__(self) -> None:
        super().__init__()
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        frame = await ws.receive_json()
        self.subscribes.append(frame)
        await ws.send_json({"id": frame["id"]})
        self.sockets.append(ws)
        self.subscribed.put_nowait(ws)
        async for msg in ws:
            if msg.type is WSMsgType.PONG:
                self.pongs.put_nowait(msg.data)
        return ws

    async def keep_alive(self) -> None:
        payload = f"p{self.pongs.qsize()}".encode()
        await self.sockets[-1].ping(payload)
        assert await asyncio.wait_for(self.pongs.get(), WAIT) == payload


@pytest.fixture
async def server() -> AsyncIterator[PingingServer]:
    s = PingingServer()
    await s.start()
    yield s
    await s.stop()


class Account:
    """One resting order, a live private stream and the reconciler choosing its pace by it."""

    def __init__(self, server: PingingServer) -> None:
        cfg = ConnectorConfig(client_id_prefix="t", user_stream_silence=10.0, reconcile_fast=2.0,
                              reconcile_slow=30.0, open_orders_diff_every=600.0)
        self.h = make_harness(ws_user=server.url, config=cfg)
        self.server = server
        self.om = OrderManager(self.h.ctx, self.h.ids)
        self.stream = UserStream(self.h.ctx, self.om.apply_updates)
        self.rec = Reconciler(self.h.ctx, self.om, self.stream)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        h = self.h
        h.http.on("/place", lambda req: placed(str(req.params["cid"]), h, xid="x1"))  # type: ignore[index]
        cid = self.om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
        await settle()
        assert h.ctx.tracker.get(cid).state is OrderState.OPEN  # type: ignore[union-attr]
        h.http.answer(STATUS, venue_order(cid))
        h.http.on(OPEN, lambda _req: [venue_order(cid)])
        h.http.answer(ACCOUNT, BalanceUpdate((Balance("USDT", D("100000"), D("99900")),), START, True))
        await asyncio.wait_for(self.stream.start(), WAIT)
        self.task = asyncio.ensure_future(self.rec.run())
        await settle()

    async def run_for(self, seconds: int, *, ping: bool) -> None:
        for _ in range(seconds):
            self.h.clock.advance(1.0)
            await settle()
            if ping:
                await self.server.keep_alive()

    def queries(self) -> int:
        return len(self.h.http.sent(STATUS))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.stream.stop()
        await self.om.stop(timeout=0)
        await self.h.ctx.supervisor.stop()


async def test_pings_keep_a_quiet_stream_healthy_and_silence_does_not(server: PingingServer) -> None:
    a = Account(server)
    await a.start()
    s = a.stream
    assert s.healthy and s.last_traffic_at == START and s.silent_at == START + 10.0
    await a.run_for(25, ping=True)
    assert s.healthy and s.last_message_at == START  # not one private message, yet live
    assert s.last_traffic_at == START + 25.0 and s.silent_at == START + 35.0
    await a.run_for(10, ping=False)
    assert s.connected and not s.healthy  # no frame of any kind for the silence threshold
    await server.keep_alive()
    assert s.healthy  # any frame brings it back
    await a.stop()
    assert s.last_traffic_at is None and s.silent_at is None and not s.healthy


async def test_a_quiet_account_on_a_live_connection_is_polled_slowly(server: PingingServer) -> None:
    a = Account(server)
    await a.start()
    await a.run_for(61, ping=True)
    assert a.queries() == 2  # at 30 and 60 s: the slow pace, although no private message came
    await a.stop()


async def test_a_connection_with_no_traffic_at_all_is_polled_fast(server: PingingServer) -> None:
    a = Account(server)
    await a.start()
    await a.run_for(61, ping=False)
    assert a.queries() == 26  # from 10 s (the silence threshold) on, every 2 s
    await a.stop()


async def test_the_private_connection_takes_its_healthy_after_from_the_config(server: PingingServer) -> None:
    a = Account(server)
    a.h.ctx.config = dataclasses.replace(a.h.ctx.config, stream_healthy_after=12.5)
    await a.start()
    assert a.stream._ws is not None and a.stream._ws._healthy_after == 12.5
    await a.stop()
