"""Shared helpers for the network tests: a loopback aiohttp server and a spying throttler.

Servers bind 127.0.0.1 on a port the OS picks, inside the test; nothing here touches the internet.
The throttler is the real one, wrapped to record what the HTTP client told it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import web

from marketlink.net.clock import VirtualClock
from marketlink.net.throttler import Cost, RateLimit, Throttler


class LoopbackServer:
    """An aiohttp app served on 127.0.0.1:<free port> for the duration of one test."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner = web.AppRunner(app, handle_signals=False)
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """``await serve(app)`` starts ``app`` on loopback; every server is stopped after the test."""
    servers: list[LoopbackServer] = []

    async def start(app: web.Application) -> LoopbackServer:
        server = LoopbackServer(app)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nobody listening: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


class SpyThrottler:
    """The real ``Throttler`` plus a log of the feedback calls the client made."""

    def __init__(self, limits: Sequence[RateLimit], clock: VirtualClock) -> None:
        self.real = Throttler(limits, clock=clock)
        self.calls: list[tuple[Any, ...]] = []

    def validate(self, costs: Sequence[Cost]) -> None:
        self.real.validate(costs)

    async def acquire(self, costs: Sequence[Cost], *, is_order: bool = False) -> None:
        self.calls.append(("acquire", tuple(costs), is_order))
        await self.real.acquire(costs, is_order=is_order)

    def calibrate(self, limit_id: str, used: int, window_seconds: float | None = None) -> None:
        self.calls.append(("calibrate", limit_id, used))
        self.real.calibrate(limit_id, used, window_seconds)

    def back_off(self, seconds: float) -> None:
        self.calls.append(("back_off", seconds))
        self.real.back_off(seconds)

    def ban(self, seconds: float) -> None:
        self.calls.append(("ban", seconds))
        self.real.ban(seconds)

    def hold_orders(self, seconds: float) -> None:
        self.calls.append(("hold_orders", seconds))
        self.real.hold_orders(seconds)

    def feedback(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] != "acquire"]


@pytest.fixture
def spy_throttler(clock: VirtualClock) -> Any:
    """``spy_throttler(limits)``: a SpyThrottler on the test's virtual clock."""

    def make(limits: Sequence[RateLimit]) -> SpyThrottler:
        return SpyThrottler(limits, clock)

    return make
