"""The real SpotConnector (Binance codec) against the sandbox's Binance front-end over 127.0.0.1.

Market flow is off, so the only trades are the ones a test makes: a second account ("taker")
trades against our orders directly on the sandbox's exchange. Every wait is for an event the
connector publishes, bounded by a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType
from marketlink.core.events import (
    Event,
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    OrderFilled,
    OrderUnknown,
)
from marketlink.core.orders import OrderState
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.engine.orders import CancelOutcome
from marketlink.sandbox.config import AccountConfig, SandboxConfig
from marketlink.sandbox.faults import StreamKind
from marketlink.sandbox.server import Sandbox
from marketlink.sandbox.venues.binance import BinanceSpotFrontend
from marketlink.venues.binance import VENUE, local_endpoints

D = Decimal
PAIR = "BTC-USDT"
SYMBOL = "BTCUSDT"
WAIT = 10.0  # a bound on every wait


class Recorder:
    """Every event the connector publishes, and a way to wait for a condition on them."""

    def __init__(self, connector: SpotConnector) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        connector.bus.subscribe_callback(self._on)

    def _on(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def of(self, kind: type[Any], cid: str) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.client_order_id == cid]

    def kinds(self, cid: str) -> list[str]:
        return [
            type(e).__name__ for e in self.events if isinstance(e, OrderEvent) and e.client_order_id == cid
        ]


class World:
    def __init__(self, sandbox: Sandbox, connector: SpotConnector, recorder: Recorder) -> None:
        self.sb = sandbox
        self.conn = connector
        self.rec = recorder

    def now_ms(self) -> int:
        return self.sb.context.clock.now_ms()

    def taker(self, side: str, qty: str, price: str) -> None:
        """The other account takes liquidity at ``price`` (an IOC limit: never rests)."""
        self.sb.exchange.place_order(
            "taker", SYMBOL, side, "LIMIT", quantity=qty, price=price, time_in_force="IOC",
            now_ms=self.now_ms(),
        )

    def venue_orders(self, cid: str) -> list[Any]:
        return [o for o in self.sb.exchange.all_orders("demo", SYMBOL) if o.client_order_id == cid]

    def balances_match(self) -> bool:
        truth = self.sb.ground_truth().balances["demo"]
        ours = self.conn.balances()
        return all(
            ours[a].total == b.total and ours[a].available == b.free
            for a, b in truth.items() if a in ("BTC", "USDT")
        )

    async def created(self, cid: str) -> OrderCreated:
        await self.rec.until(lambda: bool(self.rec.of(OrderCreated, cid)))
        created: OrderCreated = self.rec.of(OrderCreated, cid)[0]
        return created


@pytest.fixture
async def world() -> AsyncIterator[World]:
    config = SandboxConfig(
        markets=(PAIR,), flow=False, seed=11,
        accounts=(AccountConfig("taker", balances={"BTC": D("50"), "USDT": D("5000000")}),),
    )
    async with Sandbox(config, [BinanceSpotFrontend]) as sb:
        creds = sb.demo_credentials
        conn = SpotConnector(
            VENUE, [PAIR], Credentials(creds.api_key, creds.api_secret),
            endpoints=local_endpoints(sb.base_url),
            config=ConnectorConfig(
                seed=3, request_timeout=2.0, settle_unknown_after=0.2, reconcile_fast=0.3,
                reconcile_slow=30.0, open_orders_diff_every=60.0,
            ),
        )
        recorder = Recorder(conn)
        await conn.start(timeout=WAIT)
        try:
            yield World(sb, conn, recorder)
        finally:
            await conn.stop()


async def test_limit_orders_are_created_with_the_venues_exchange_id(world: World) -> None:
    buy = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("50000"))
    sell = world.conn.sell(PAIR, D("0.02"), OrderType.LIMIT, D("70000.004"))
    for cid in (buy, sell):
        created = await world.created(cid)
        [venue] = world.venue_orders(cid)
        assert created.exchange_order_id == str(venue.order_id)
        assert world.conn.in_flight_orders()[cid].state is OrderState.OPEN
    assert world.venue_orders(sell)[0].price == D("70000.01")  # a sell rounds up to the tick


async def test_fills_arrive_by_websocket_with_their_fees_and_complete_after_the_last(world: World) -> None:
    rec = world.rec
    cid = world.conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    created = await world.created(cid)
    world.taker("SELL", "0.005", "50000")
    world.taker("SELL", "0.015", "50000")
    await rec.until(lambda: bool(rec.of(OrderCompleted, cid)))
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderFilled", "OrderCompleted"]
    fills: list[OrderFilled] = rec.of(OrderFilled, cid)
    trades = world.sb.exchange.my_trades("demo", SYMBOL, order_id=int(created.exchange_order_id or 0))
    assert [(f.trade_id, f.amount) for f in fills] == [(str(t.trade_id), t.qty) for t in trades]
    assert [tuple((x.token, x.amount) for x in f.fee_amounts) for f in fills] == [
        ((t.commission_asset, t.commission),) for t in trades
    ]
    done: OrderCompleted = rec.of(OrderCompleted, cid)[0]
    assert done.executed_base == D("0.02") and done.missing_base == 0
    assert world.conn.reconciler.counters.fill_fetches == 0  # all of it came by the stream
    await rec.until(world.balances_match)


async def test_lost_creation_answer_is_settled_open_without_a_duplicate(world: World) -> None:
    rec = world.rec
    # Hold the private stream back, so only the reconciler's query can tell what happened.
    world.sb.faults.stall_streams(world.now_ms() + 3_000, StreamKind.USER)
    world.sb.faults.lose_order_responses(1)
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("49000"))
    await world.created(cid)
    assert rec.kinds(cid)[:2] == ["OrderUnknown", "OrderCreated"]
    unknown: OrderUnknown = rec.of(OrderUnknown, cid)[0]
    assert unknown.reason is not None
    assert world.conn.in_flight_orders()[cid].state is OrderState.OPEN
    assert len(world.venue_orders(cid)) == 1  # never placed twice
    assert world.sb.faults.fired.get("lost_order_response") == 1


async def test_fills_are_recovered_by_rest_while_the_user_stream_is_down(world: World) -> None:
    rec = world.rec
    cid = world.conn.buy(PAIR, D("0.03"), OrderType.LIMIT, D("50000"))
    await world.created(cid)
    # The stream goes quiet and then drops: the fills below never come through it (the stalled
    # socket dies holding them, and a new subscription does not replay the past). The stall also
    # holds the next subscription's answer for a moment, so the stream stays down a while.
    world.sb.faults.stall_streams(world.now_ms() + 1_500, StreamKind.USER)
    world.taker("SELL", "0.01", "50000")
    world.taker("SELL", "0.02", "50000")
    world.sb.faults.drop_streams(StreamKind.USER)
    await rec.until(lambda: bool(rec.of(OrderCompleted, cid)))
    assert rec.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderFilled", "OrderCompleted"]
    assert world.conn.reconciler.counters.fill_fetches >= 1
    # The stream comes back, resubscribed, and the connector is ready once it has reconciled.
    await rec.until(lambda: world.conn.user_stream.counters.connections >= 2 and world.conn.ready)
    done: OrderCompleted = rec.of(OrderCompleted, cid)[0]
    assert done.executed_base == D("0.03") and done.missing_base == 0


async def test_cancel_all_cancels_every_own_order(world: World) -> None:
    ids = [world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D(p)) for p in ("48000", "48500", "49000")]
    for cid in ids:
        await world.created(cid)
    results = await world.conn.cancel_all(WAIT)
    assert sorted(r.client_order_id for r in results) == sorted(ids)
    assert all(r.outcome is CancelOutcome.CANCELLED for r in results)
    assert world.sb.exchange.open_orders("demo", SYMBOL) == []
    await world.rec.until(world.balances_match)
    assert world.conn.available_balance("USDT") == world.conn.total_balance("USDT")
