"""A quiet book on a live connection is verified, not resynced (audit B, finding 5).

The venue is the loopback one of test_market_data.py (its codec, snapshot fake and helpers),
with a stream server that can ping: ``keep_alive`` sends a ping frame and waits for our pong, so
the test knows the connection showed life at that virtual time without sending any data frame
(a data frame would be traffic of its own and hide what pings alone do). Time moves only by the
virtual clock; every verification and resync is read from the snapshot requests made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal as D
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from test_market_data import (
    BTC,
    WAIT,
    FakeCodec,
    Harness,
    MarketDataLab,
    SnapshotHttp,
    StreamServer,
    depth,
    snap,
)

from marketlink.core.events import ConnectorStatusChanged
from marketlink.engine.context import ConnectorConfig
from marketlink.engine.market_data import venue_moved
from marketlink.net.clock import VirtualClock
from marketlink.net.errors import ServerError
from marketlink.net.http import RestRequest

STALE = 5.0  # book_stale_after in every test here
SYMBOL = "BTCUSDT"


class PingingServer(StreamServer):
    """The stream server, answering no pings itself, so that our pongs reach the handler."""

    def __init__(self, log: list[str], codec: FakeCodec) -> None:
        super().__init__(log, codec)
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            if msg.type is WSMsgType.PONG:
                self.pongs.put_nowait(msg.data)
            elif msg.type is WSMsgType.TEXT:
                frame = msg.json()
                if frame.get("method") == "SUBSCRIBE":
                    for symbol in frame["params"]:
                        self.by_symbol[symbol] = ws
                    await ws.send_json({"result": None, "id": frame["id"]})
                    self.subscribed.put_nowait(frame["params"])
        return ws

    async def keep_alive(self, symbol: str = SYMBOL) -> None:
        """A server ping on ``symbol``'s connection; returns once our pong came back."""
        payload = f"p{self.pongs.qsize()}".encode()
        await self.by_symbol[symbol].ping(payload)
        assert await asyncio.wait_for(self.pongs.get(), WAIT) == payload


class TimedHttp(SnapshotHttp):
    """The snapshot fake, noting the virtual time and depth limit of every request."""

    def __init__(self, log: list[str], clock: VirtualClock) -> None:
        super().__init__(log)
        self.clock = clock
        self.at: list[tuple[float, int]] = []

    async def request(self, req: RestRequest, *, on_send: Callable[[], None] | None = None) -> Any:
        if on_send is not None:
            on_send()  # the fake has no rate limits to wait behind
        assert req.params is not None
        self.at.append((self.clock.time(), int(req.params["limit"])))
        return await super().request(req)


class Rig(Harness):
    server: PingingServer
    http: TimedHttp

    def ready_flips(self) -> list[bool]:
        """Readiness changes from the first time it was ready."""
        flips = [e.ready for e in self.events if isinstance(e, ConnectorStatusChanged)]
        return flips[flips.index(True):]

    async def settle(self) -> None:
        """Return once the watchdog has looked at the current time (it sleeps again)."""
        await asyncio.wait_for(self.clock.wait_for_sleepers(2), WAIT)  # the watchdog and ws heartbeat

    async def live_for(self, seconds: float, step: float = 1.0) -> None:
        """Let ``seconds`` pass with a ping every ``step`` (< STALE): a healthy, quiet socket."""
        end = self.clock.time() + seconds
        while self.clock.time() < end:
            self.clock.advance(min(step, end - self.clock.time()))
            await self.settle()
            await self.server.keep_alive()

    def verifications(self) -> list[float]:
        return [t - 1_000.0 for t, limit in self.http.at if limit == 5]


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Any]]:
    lab = MarketDataLab()

    async def start(pairs: Sequence[str] = (BTC,), **md_kw: Any) -> Rig:
        r = await lab.start(
            pairs, config=ConnectorConfig(book_stale_after=STALE), server_cls=PingingServer,
            make_http=TimedHttp, harness_cls=Rig, **md_kw,
        )
        assert isinstance(r, Rig)
        await r.server.next_subscription()
        r.http.answer(SYMBOL, snap(100))
        await r.until(lambda: r.md.in_sync)
        await r.settle()
        return r

    yield start
    await lab.close()


def test_venue_moved_means_a_higher_update_id() -> None:
    assert venue_moved(100, 101)
    assert not venue_moved(100, 100)
    assert not venue_moved(100, 99)  # a REST cache trailing the stream is no move


async def test_quiet_book_stays_in_sync_with_one_backed_off_verification_per_interval(rig: Any) -> None:
    r: Rig = await rig()
    r.http.answer(SYMBOL, *[snap(100)] * 6)
    await r.live_for(80.0)
    # First after STALE of silence, then after 2, 4, 8 x STALE; never closer than STALE.
    assert r.verifications() == [5.0, 15.0, 35.0, 75.0]
    assert [limit for _, limit in r.http.at] == [1000, 5, 5, 5, 5]  # one full snapshot: the first sync
    s = r.md.stats
    assert (s.verifications, s.verified_current, s.verified_behind, s.verify_failures) == (4, 4, 0, 0)
    assert s.snapshots == 1 and s.resyncs == {BTC: 0}
    assert r.resynced() == [] and r.ready_flips() == [True]  # ready once, never flipped back
    assert r.md.in_sync and r.md.book(BTC).update_id == 100


async def test_backoff_is_capped_at_ten_times_stale_after(rig: Any) -> None:
    r: Rig = await rig()
    r.http.answer(SYMBOL, *[snap(100)] * 8)
    await r.live_for(230.0)
    assert r.verifications() == [5.0, 15.0, 35.0, 75.0, 125.0, 175.0, 225.0]
    assert r.resynced() == [] and r.md.in_sync


async def test_a_diff_ends_the_quiet_and_resets_the_backoff(rig: Any) -> None:
    r: Rig = await rig()
    r.http.answer(SYMBOL, *[snap(100)] * 4)
    await r.live_for(16.0)
    assert r.verifications() == [5.0, 15.0]  # the next one would be 20 s later
    await r.server.push(SYMBOL, depth(101, 101, [("99.00", "1")]))
    await r.server.barrier(SYMBOL)  # at 1016: the diff and the marker
    r.http.answer(SYMBOL, snap(101))
    await r.live_for(6.0)
    assert r.verifications() == [5.0, 15.0, 21.0]  # STALE after the diff again
    assert r.md.book(BTC).update_id == 101 and r.resynced() == []


async def test_venue_that_moved_during_the_silence_is_resynced(rig: Any) -> None:
    r: Rig = await rig()
    r.http.answer(SYMBOL, snap(107, [("99.50", "2")]))  # the venue changed the book: diffs were lost
    await r.live_for(4.0)
    r.clock.advance(1.0)
    await r.detail_contains("moved to update 107 (book at 100); resyncing")
    for _ in range(3):  # the first sync's, the verification's, and the resync's (held)
        assert await r.http.next_request() == SYMBOL
    assert r.http.at[1:] == [(1_005.0, 5), (1_005.0, 1000)]  # the full snapshot at once
    r.http.settle(SYMBOL, snap(107, [("99.50", "2")]))
    await r.until(lambda: r.md.in_sync)
    [event] = r.resynced()
    assert event.update_id == 107 and event.reason.startswith("stale: no depth update for 5.0s")
    assert r.md.book(BTC).best_bid() == D("99.5")
    s = r.md.stats
    assert (s.verifications, s.verified_behind, s.verified_current, s.resyncs) == (1, 1, 0, {BTC: 1})
    assert r.ready_flips() == [True, False, True]


async def test_a_dead_connection_still_resyncs_at_once(rig: Any) -> None:
    r: Rig = await rig()
    r.clock.advance(STALE)  # no frame at all: neither diffs nor pings
    await r.detail_contains("BTC-USDT: stale: no depth update for 5.0s; resyncing")
    assert r.md.stats.verifications == 0 and r.http.at[-1] == (1_005.0, 1000)


async def test_a_connection_that_dies_while_a_quiet_book_is_backed_off_resyncs(rig: Any) -> None:
    r: Rig = await rig()
    r.http.answer(SYMBOL, snap(100))
    await r.live_for(6.0)
    assert r.verifications() == [5.0] and r.md.in_sync  # next verification due at 15
    r.clock.advance(3.0)  # 1009: 3 s since the last ping (1006): alive, and no verification due
    await r.settle()
    assert r.md.in_sync
    r.clock.advance(2.0)  # 1011: 5 s since the last frame of any kind
    await r.detail_contains("BTC-USDT: stale: no depth update for 11.0s; resyncing")
    assert r.verifications() == [5.0]


async def test_failed_verifications_keep_the_book_and_are_retried(rig: Any) -> None:
    r: Rig = await rig()
    r.http.answer(SYMBOL, ServerError("busy", status=503), {"garbage": 1}, snap(100))
    await r.live_for(16.0)
    assert r.verifications() == [5.0, 10.0, 15.0]  # no doubling after a failure
    s = r.md.stats
    assert (s.verify_failures, s.verified_current, s.malformed) == (2, 1, 1)
    assert r.md.in_sync and r.resynced() == [] and r.ready_flips() == [True]


async def test_a_diff_during_the_verification_makes_its_answer_moot(rig: Any) -> None:
    r: Rig = await rig()
    await r.live_for(4.0)
    r.clock.advance(1.0)
    await r.http.next_request()  # the first sync's
    assert await r.http.next_request() == SYMBOL  # the verification: held
    await r.server.push(SYMBOL, depth(101, 101, [("99.00", "1")]))
    await r.server.barrier(SYMBOL)
    r.http.settle(SYMBOL, snap(101))  # past the book as it was: but the diff came first
    await r.server.keep_alive()
    assert r.md.stats.verify_superseded == 1 and r.md.stats.verified_behind == 0
    assert r.md.in_sync and r.resynced() == [] and r.md.book(BTC).update_id == 101


async def test_stop_during_a_verification(rig: Any) -> None:
    r: Rig = await rig()
    await r.live_for(4.0)
    r.clock.advance(1.0)
    await r.http.next_request()
    await r.http.next_request()  # the verification, held
    await r.md.stop()
    assert not r.md.book(BTC).in_sync and r.md._verifying == set()
