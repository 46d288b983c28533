"""What the engine tests that run a real connector against the sandbox share: the connector's
events recorded, and a bounded wait for a condition re-checked on every event (never a sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from marketlink.core.events import Event
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.net.clock import VirtualClock
from marketlink.sandbox.server import Sandbox
from marketlink.venues.base import Venue
from marketlink.venues.binance import SPEC, BinanceSpotCodec
from marketlink.venues.binance import local_endpoints as binance_endpoints

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


def public_connector(
    sb: Sandbox, pairs: tuple[str, ...], **config: Any
) -> tuple[SpotConnector, VirtualClock]:
    """A public-only Binance connector on the sandbox ``sb``, on a virtual clock (the test moves
    time), with ``config`` over a quick test configuration."""
    clock = VirtualClock()
    conn = SpotConnector(
        Venue(spec=SPEC, codec=BinanceSpotCodec(), make_auth=lambda c: c), pairs, None,  # type: ignore[arg-type,return-value]
        endpoints=binance_endpoints(sb.base_url),
        config=ConnectorConfig(**{"seed": 3, "request_timeout": 2.0, **config}),
        clock=clock,
    )
    return conn, clock
