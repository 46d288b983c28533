"""The journal attached to a real connector on the sandbox: orders and fills recorded as they
happen, and a restarted bot restores its open order, keeps its client-id instance, and cancels it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType
from marketlink.core.events import Event, OrderCancelled, OrderCompleted, OrderCreated
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.journal import Journal
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.venues.binance import VENUE, local_endpoints

D = Decimal


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(seed=11), autotick=False) as sb:
        yield sb


def _connector(sb: Sandbox, instance: str) -> SpotConnector:
    creds = Credentials(sb.demo_credentials.api_key, sb.demo_credentials.api_secret)
    config = ConnectorConfig(seed=1, client_id_instance=instance)
    return SpotConnector(VENUE, ["BTC-USDT"], creds, endpoints=local_endpoints(sb.base_url), config=config)


async def _wait_for(conn: SpotConnector, kind: type[Event], cid: str) -> None:
    seen = asyncio.Event()
    conn.bus.subscribe_callback(
        lambda e: seen.set() if isinstance(e, kind) and getattr(e, "client_order_id", None) == cid else None
    )
    await asyncio.wait_for(seen.wait(), 10)


async def test_a_run_is_recorded_and_a_restart_restores_its_open_order(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "journal.db"
    journal = Journal.open(path)
    bot = journal.bot("mm", "binance")
    conn = _connector(sandbox, bot.client_id_instance)
    rec = journal.attach(conn, bot.bot_id)
    await conn.start(timeout=15)
    bid = conn.best_bid("BTC-USDT")
    assert bid is not None
    resting = conn.buy("BTC-USDT", D("0.01"), OrderType.LIMIT, bid - 100)
    await _wait_for(conn, OrderCreated, resting)
    taker = conn.buy("BTC-USDT", D("0.002"), OrderType.MARKET)
    await _wait_for(conn, OrderCompleted, taker)
    await conn.stop()
    await rec.aclose()

    fills = journal.fills(bot.bot_id)
    assert fills and {f.client_order_id for f in fills} == {taker}
    assert sum(f.amount for f in fills) == D("0.002")
    states = {o.client_order_id: o.state for o in journal.orders(bot.bot_id)}
    assert states == {resting: "OPEN", taker: "FILLED"}
    assert journal.summary(bot.bot_id).pairs["BTC-USDT"].volume_base == D("0.002")
    assert "USDT" in journal.balances(bot.bot_id)
    journal.close()

    # -- the restart: same bot, same instance, its open order comes back and can be cancelled
    journal = Journal.open(path)
    again = journal.bot("mm", "binance")
    assert again.client_id_instance == bot.client_id_instance
    restore = journal.restore_orders(again.bot_id, "binance")
    assert [o.client_order_id for o in restore] == [resting]
    conn = _connector(sandbox, again.client_id_instance)
    rec = journal.attach(conn, again.bot_id)
    await conn.start(restore=restore, timeout=15)
    assert resting in conn.in_flight_orders()
    conn.cancel("BTC-USDT", resting)
    await _wait_for(conn, OrderCancelled, resting)
    await conn.stop()
    await rec.aclose()
    assert journal.restore_orders(again.bot_id, "binance") == []
    assert [s.state for s in journal.order_history(again.bot_id, resting)][-1] == "CANCELED"
    journal.close()
