"""What the engine tests that run a real connector against the sandbox share: the connector's
events recorded, and a bounded wait for a condition re-checked on every event (never a sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from marketlink.core.events import Event
from marketlink.engine.connector import SpotConnector
from marketlink.net.clock import VirtualClock
from marketlink.sandbox.server import Sandbox

WAIT = 10.0


class SandboxSetup:
    def __init__(self, sb: Sandbox, conn: SpotConnector, clock: VirtualClock) -> None:
        self.sb, self.conn, self.clock = sb, conn, clock
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        conn.bus.subscribe_callback(self._on)

    def _on(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not condition():
                self._changed.clear()
                await self._changed.wait()
