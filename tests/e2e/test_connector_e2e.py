"""SpotConnector's start sequence, status map and strategy queries against the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import ConfigError, UnknownSymbol
from marketlink.core.events import ConnectorStatusChanged, OrderCancelled, OrderCreated
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import STATUS_PARTS, ConnectorConfig
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.venues.binance import VENUE, local_endpoints

D = Decimal
PAIRS = ["BTC-USDT", "ETH-USDT"]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(seed=11), autotick=False) as sb:
        yield sb


def _connector(sb: Sandbox, pairs: list[str] = PAIRS, *, keys: bool = True) -> SpotConnector:
    creds = Credentials(sb.demo_credentials.api_key, sb.demo_credentials.api_secret) if keys else None
    return SpotConnector(
        VENUE, pairs, creds, endpoints=local_endpoints(sb.base_url), config=ConnectorConfig(seed=1)
    )


async def test_start_makes_every_status_part_ready_and_queries_answer(sandbox: Sandbox) -> None:
    conn = _connector(sandbox)
    changes: list[ConnectorStatusChanged] = []
    conn.bus.subscribe_callback(
        lambda e: changes.append(e) if isinstance(e, ConnectorStatusChanged) else None
    )
    await conn.start(timeout=15)
    try:
        assert conn.ready
        assert set(STATUS_PARTS) <= set(conn.status())
        assert changes[-1].ready and changes[0].ready is False
        truth = sandbox.exchange.depth("BTCUSDT", 5)
        assert conn.best_bid("BTC-USDT") == truth.bids[0][0]
        assert conn.best_ask("BTC-USDT") == truth.asks[0][0]
        mid = conn.mid_price("BTC-USDT")
        assert mid is not None and truth.bids[0][0] < mid < truth.asks[0][0]
        assert conn.book_rows("BTC-USDT", Side.BUY, 3) == [(p, q) for p, q in truth.bids[:3]]
        vwap, filled = conn.vwap_for_volume("BTC-USDT", True, truth.asks[0][1])
        assert vwap == truth.asks[0][0] and filled == truth.asks[0][1]
        assert conn.price_for_volume("BTC-USDT", False, truth.bids[0][1]) == truth.bids[0][0]
        usdt = next(b for b in sandbox.exchange.balances("demo") if b.asset == "USDT")
        assert conn.total_balance("USDT") == usdt.free + usdt.locked
        assert conn.available_balance("USDT") == usdt.free
        assert conn.balances()["USDT"].total == usdt.free + usdt.locked
        rule = conn.trading_rule("BTC-USDT")
        assert rule.tick_size == sandbox.exchange.market("BTCUSDT").tick_size
        assert OrderType.LIMIT_MAKER in conn.supported_order_types()
        assert conn.in_flight_orders() == {}
        with pytest.raises(UnknownSymbol):
            conn.book("DOGE-USDT")
    finally:
        await conn.stop()


async def test_stop_can_cancel_the_connectors_open_orders(sandbox: Sandbox) -> None:
    conn = _connector(sandbox)
    created = asyncio.Event()
    conn.bus.subscribe_callback(lambda e: created.set() if isinstance(e, OrderCreated) else None)
    await conn.start(timeout=15)
    bid = conn.best_bid("BTC-USDT")
    assert bid is not None
    cid = conn.buy("BTC-USDT", D("0.01"), OrderType.LIMIT, bid - 100)
    await asyncio.wait_for(created.wait(), 10)
    assert cid in conn.in_flight_orders()
    cancelled: list[OrderCancelled] = []
    conn.bus.subscribe_callback(lambda e: cancelled.append(e) if isinstance(e, OrderCancelled) else None)
    results = await conn.stop(cancel_orders=True, timeout=10)
    assert [r.client_order_id for r in results] == [cid]
    assert results[0].success
    assert sandbox.exchange.open_orders("demo") == []
    assert [e.client_order_id for e in cancelled] == [cid]


async def test_a_public_only_connector_needs_no_keys(sandbox: Sandbox) -> None:
    conn = _connector(sandbox, ["ETH-USDT"], keys=False)
    await conn.start(timeout=15)
    try:
        assert conn.ready
        assert conn.status()["user_stream"].detail.startswith("public only")
        assert conn.best_ask("ETH-USDT") == sandbox.exchange.depth("ETHUSDT", 1).asks[0][0]
    finally:
        await conn.stop()


async def test_an_unknown_pair_fails_start_with_a_typed_error_naming_it(sandbox: Sandbox) -> None:
    conn = _connector(sandbox, ["BTC-USDT", "NOPE-USDT"])
    with pytest.raises(ConfigError, match="NOPE-USDT"):
        await conn.start(timeout=15)
    assert conn.status()["symbols"].detail.startswith("unknown or not trading")
    await conn.stop()


def test_a_connector_needs_pairs_and_starts_once() -> None:
    with pytest.raises(ConfigError):
        SpotConnector(VENUE, [], None, endpoints=local_endpoints("http://127.0.0.1:1"))
    with pytest.raises(ConfigError):
        SpotConnector(VENUE, ["BTC-USDT"], None, domain="nowhere")


async def test_start_times_out_naming_what_is_not_ready(sandbox: Sandbox) -> None:
    conn = _connector(sandbox, ["BTC-USDT"])
    # Hold every depth snapshot: the book can never get in sync.
    sandbox.faults.timeout_requests(50, path_prefix="/api/v3/depth")
    with pytest.raises(TimeoutError, match="order_books"):
        await conn.start(timeout=1.0)
    await conn.stop()
    with pytest.raises(RuntimeError):
        await conn.start()
