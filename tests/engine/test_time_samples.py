"""Time samples of the connector and of the user stream, through the real HttpClient and Throttler.

The audit's t1 case: a server-time request that waits in the throttler (a 3 s back-off) was
timed from before the wait, so half the wait became offset (+1500 ms) and the next order was
refused for a timestamp 1 s ahead. Here the throttler waits on a virtual clock, and the local
clock of the samples is that same virtual clock, so a wait counted into a sample would show
exactly. The venue is a loopback server reading the virtual clock when it answers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from test_orders_fakes import TIME, make_harness

from marketlink.engine.connector import SpotConnector
from marketlink.engine.user_stream import UserStream
from marketlink.net.clock import VirtualClock
from marketlink.net.http import HttpClient
from marketlink.net.throttler import Throttler
from marketlink.net.timesync import TimeSync
from marketlink.venues.binance import VENUE, local_endpoints

WAIT = 5.0  # a bound on every wait, never a synchronisation
BOOT_MS = 7_000_000.0  # where the local monotonic clock stands at virtual time 0
VENUE_AHEAD_MS = 1_700_000_000_000.0  # venue clock minus local monotonic clock: the truth
WALL_MS = VENUE_AHEAD_MS - 250.0  # wall clock minus local monotonic: 250 ms behind the venue
BACKOFF = 3.0  # seconds the throttler holds every request (a 429's Retry-After)


class Venue:
    """Answers a server-time request with the venue's clock when it handles it."""

    def __init__(self, clock: VirtualClock, shape: Callable[[int], Any]) -> None:
        self.clock = clock
        self.shape = shape
        self.hits = 0
        self.url = ""

    def venue_ms(self) -> int:
        return math.floor(local_ms(self.clock) + VENUE_AHEAD_MS)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response(self.shape(self.venue_ms()))


def local_ms(clock: VirtualClock) -> float:
    return BOOT_MS + clock.time() * 1000


def virtual_time_sync(clock: VirtualClock, wall: list[float]) -> TimeSync:
    return TimeSync(local_ms=lambda: local_ms(clock), wall_ms=lambda: wall[0] + local_ms(clock))


async def serve(venue: Venue, path: str) -> AsyncIterator[Venue]:
    app = web.Application()
    app.router.add_get(path, venue.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    venue.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield venue
    await runner.cleanup()


async def held_by_a_back_off(clock: VirtualClock, throttler: Throttler, sync: Any) -> None:
    """Run ``sync`` while every request first waits BACKOFF s in the throttler."""
    throttler.back_off(BACKOFF)
    task = asyncio.ensure_future(sync())
    await asyncio.wait_for(clock.wait_for_sleepers(1), WAIT)  # queued behind the back-off
    clock.advance(BACKOFF)
    await asyncio.wait_for(task, WAIT)


@pytest.fixture
async def binance() -> AsyncIterator[Venue]:
    clock = VirtualClock(100.0)
    async for venue in serve(Venue(clock, lambda ms: {"serverTime": ms}), "/api/v3/time"):
        yield venue


@pytest.fixture
async def fake_venue() -> AsyncIterator[Venue]:
    clock = VirtualClock(100.0)
    async for venue in serve(Venue(clock, lambda ms: ms), TIME):
        yield venue


def connector_on(venue: Venue, wall: list[float]) -> SpotConnector:
    conn = SpotConnector(VENUE, ["BTC-USDT"], None, endpoints=local_endpoints(venue.url), clock=venue.clock)
    ctx = conn.ctx
    ctx.time_sync = virtual_time_sync(venue.clock, wall)
    ctx.http = HttpClient(
        venue.url, throttler=ctx.throttler, venue=VENUE.codec, clock=venue.clock,
        time_ms=ctx.time_sync.server_time_ms, stamp_ms=lambda: local_ms(venue.clock),
    )
    return conn


async def test_connector_samples_exclude_the_throttler_wait(binance: Venue) -> None:
    wall = [WALL_MS]
    conn = connector_on(binance, wall)
    ctx = conn.ctx
    try:
        await held_by_a_back_off(binance.clock, ctx.throttler, conn._sync_time)
        assert binance.hits == 3 and len(ctx.time_sync.samples) == 3
        # Timed from before the wait, the estimate would be BACKOFF / 2 = 1500 ms ahead.
        assert abs(ctx.time_sync.server_time_ms() - binance.venue_ms()) <= 1
        assert ctx.status.snapshot()["time_sync"].ready
        assert ctx.time_sync.offset_ms == pytest.approx(250.0)  # reported against the wall clock

        # The resync after a refused timestamp: the same, and the old samples are replaced.
        binance.clock.advance(60.0)
        await held_by_a_back_off(binance.clock, ctx.throttler, conn._resync_time)
        assert binance.hits == 6 and len(ctx.time_sync.samples) == 3
        assert abs(ctx.time_sync.server_time_ms() - binance.venue_ms()) <= 1
    finally:
        await ctx.http.close()


async def test_a_wall_clock_step_changes_no_signature_timestamp(binance: Venue) -> None:
    wall = [WALL_MS]
    conn = connector_on(binance, wall)
    ctx = conn.ctx
    try:
        await conn._sync_time()
        signed_before = ctx.time_sync.server_time_ms()
        wall[0] += 2_000.0  # NTP steps our wall clock 2 s ahead
        assert ctx.time_sync.server_time_ms() == signed_before == binance.venue_ms()
        await conn._sync_time()  # a periodic sync after the step agrees with the estimate
        assert ctx.time_sync.server_time_ms() == binance.venue_ms() and ctx.time_sync.steps == 0
        assert ctx.time_sync.offset_ms == pytest.approx(-1_750.0)  # what a person is told
    finally:
        await ctx.http.close()


async def test_user_stream_resync_excludes_the_throttler_wait_and_replaces_old_samples(
    fake_venue: Venue,
) -> None:
    h = make_harness()
    clock = fake_venue.clock
    wall = [WALL_MS]
    ctx = h.ctx
    ctx.time_sync = virtual_time_sync(clock, wall)
    for i in range(16):  # fast samples of a venue clock that has since stepped 5 s
        t = local_ms(clock) - 1000.0 + i
        ctx.time_sync.add_sample(t, t + VENUE_AHEAD_MS - 5_000.0, t + 2)
    throttler = Throttler((), clock=clock)
    ctx.http = HttpClient(
        fake_venue.url, throttler=throttler, venue=ctx.codec, clock=clock,
        stamp_ms=lambda: local_ms(clock),
    )
    stream = UserStream(ctx, lambda items: None)
    try:
        await held_by_a_back_off(clock, throttler, stream._resync_time)
    finally:
        await ctx.http.close()
    assert fake_venue.hits == 3 and len(ctx.time_sync.samples) == 3
    # Before: one sample taken from before the 3 s wait replaced all others (+1500 ms).
    assert abs(ctx.time_sync.server_time_ms() - fake_venue.venue_ms()) <= 1
