"""Market data end to end: the real connector, codec and books against the sandbox over loopback.

The sandbox runs without its timer (``autotick=False``): the market only moves when a test calls
``sandbox.tick()``, so every book state is known. Waits are bounded and event-driven: a book is
awaited at a known update id with ``MarketData.wait_book``, a recovery through its
``BookResynced`` event. Only the reconnect back-off runs on real time (a fraction of a second).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from marketlink.core.events import BookResynced, Event
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.faults import StreamKind
from marketlink.sandbox.markets_default import DEFAULT_PAIRS
from marketlink.sandbox.server import Sandbox
from marketlink.venues.binance import VENUE, local_endpoints

WAIT = 10.0  # bound on any wait; a healthy run takes milliseconds
MAX_TICKS = 200  # bound on ticking while waiting for the market to do something


def symbol(pair: str) -> str:
    return pair.replace("-", "")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(seed=11), autotick=False) as sb:
        yield sb


@pytest.fixture
async def connect(sandbox: Sandbox) -> AsyncIterator[Callable[..., Any]]:
    connectors: list[SpotConnector] = []

    async def start(pairs: tuple[str, ...] = DEFAULT_PAIRS, **config: Any) -> SpotConnector:
        connector = SpotConnector(
            VENUE, pairs, endpoints=local_endpoints(sandbox.base_url),
            config=ConnectorConfig(seed=3, **config),
        )
        connectors.append(connector)
        await connector.start(timeout=WAIT)
        return connector

    yield start
    for connector in connectors:
        await connector.stop()


def sandbox_book(sandbox: Sandbox, pair: str) -> tuple[int, dict[str, dict[Decimal, Decimal]]]:
    truth = sandbox.exchange.depth(symbol(pair), None)
    return truth.last_update_id, {"bids": dict(truth.bids), "asks": dict(truth.asks)}


async def assert_books_equal_the_sandbox(connector: SpotConnector, sandbox: Sandbox) -> None:
    for pair in connector.trading_pairs:
        update_id, levels = sandbox_book(sandbox, pair)
        book = await asyncio.wait_for(connector.market_data.wait_book(pair, update_id), WAIT)
        assert book.update_id == update_id, pair
        assert book.to_dict() == levels, pair


class Recoveries:
    """Collects BookResynced events; ``wait(n)`` returns once ``n`` have arrived."""

    def __init__(self, connector: SpotConnector) -> None:
        self.events: list[BookResynced] = []
        self._changed = asyncio.Event()
        connector.bus.subscribe_callback(self._on)

    def _on(self, event: Event) -> None:
        if isinstance(event, BookResynced):
            self.events.append(event)
            self._changed.set()

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.events) < n:
                self._changed.clear()
                await self._changed.wait()


async def tick_until_book_moves(sandbox: Sandbox, pair: str) -> None:
    """Tick until the sandbox publishes a change of ``pair``'s book (bounded)."""
    before = sandbox.exchange.depth(symbol(pair), None).last_update_id
    for _ in range(MAX_TICKS):
        await sandbox.tick()
        if sandbox.exchange.depth(symbol(pair), None).last_update_id != before:
            return
    raise AssertionError(f"{pair}'s book did not move in {MAX_TICKS} ticks")


async def test_every_pair_becomes_ready_with_the_sandbox_book(sandbox: Sandbox, connect: Any) -> None:
    connector = await connect(snapshot_concurrency=2)
    assert connector.ready and len(connector.trading_pairs) == len(DEFAULT_PAIRS) == 6
    assert connector.status()["order_books"].detail == "6 books in sync"
    await assert_books_equal_the_sandbox(connector, sandbox)
    stats = connector.market_data.stats
    assert stats.snapshots == 6 and stats.snapshot_failures == 0 and stats.malformed == 0


async def test_books_trades_and_tickers_follow_the_market_flow(sandbox: Sandbox, connect: Any) -> None:
    connector = await connect(("BTC-USDT", "ETH-USDT"))
    for _ in range(30):
        await sandbox.tick()
    await assert_books_equal_the_sandbox(connector, sandbox)
    # Trades and tickers were sent before the last depth diff on the same socket: all handled.
    for pair in connector.trading_pairs:
        _, levels = sandbox_book(sandbox, pair)
        top = (max(levels["bids"]), min(levels["asks"]))
        assert (connector.best_bid(pair), connector.best_ask(pair)) == top
        ticker = connector.ticker(pair)
        assert ticker is not None and (ticker.bid, ticker.ask) == top
        trades = sandbox.exchange.recent_trades(symbol(pair))
        if trades:
            assert connector.last_trade_price(pair) == trades[-1].price
    stats = connector.market_data.stats
    assert stats.diffs_applied > 0 and stats.trades > 0
    assert stats.resyncs == {p: 0 for p in connector.trading_pairs}


async def test_injected_gap_resyncs_to_the_sandbox_book(sandbox: Sandbox, connect: Any) -> None:
    connector = await connect(("BTC-USDT", "ETH-USDT"))
    recoveries = Recoveries(connector)
    sandbox.faults.skip_update_ids("BTCUSDT", 1)
    await tick_until_book_moves(sandbox, "BTC-USDT")  # this diff is never sent
    assert sandbox.faults.fired.get("depth_skip") == 1
    await tick_until_book_moves(sandbox, "BTC-USDT")  # this one shows the gap
    await recoveries.wait(1)
    [event] = recoveries.events
    assert event.trading_pair == "BTC-USDT" and event.reason.startswith("gap: ")
    await assert_books_equal_the_sandbox(connector, sandbox)
    assert connector.market_data.stats.resyncs == {"BTC-USDT": 1, "ETH-USDT": 0}
    assert connector.ready


async def test_dropped_stream_reconnects_and_resyncs_every_book(sandbox: Sandbox, connect: Any) -> None:
    connector = await connect(("BTC-USDT", "ETH-USDT", "ETH-BTC"))
    recoveries = Recoveries(connector)
    sandbox.faults.drop_streams(StreamKind.MARKET)
    await sandbox.tick()  # the front-end closes its market sockets on its tick
    await recoveries.wait(3)
    assert sorted(e.trading_pair for e in recoveries.events) == ["BTC-USDT", "ETH-BTC", "ETH-USDT"]
    assert all(e.reason.startswith("stream disconnected") for e in recoveries.events)
    assert connector.market_data.stats.connects == 2
    for _ in range(10):
        await sandbox.tick()
    await assert_books_equal_the_sandbox(connector, sandbox)
    assert connector.ready
