"""End to end: the built-in strategies through the runner, on a real connector, against the
sandbox (no market flow: the book only moves when a test trades). The runner ticks on a
VirtualClock, so refresh times pass exactly when the test says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal

import pytest

import marketlink
from marketlink.core.enums import OrderType, Side
from marketlink.core.events import Event, OrderCancelled, OrderCompleted, OrderCreated, OrderFilled
from marketlink.engine.connector import SpotConnector
from marketlink.net.clock import VirtualClock
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.strategy.api import StrategyContext, StrategyEvent
from marketlink.strategy.pure_market_making import PureMarketMaking, PureMarketMakingConfig
from marketlink.strategy.runner import RunnerState, StrategyRunner
from marketlink.strategy.taker import PeriodicTaker, PeriodicTakerConfig

D = Decimal
PAIR, SYMBOL = "BTC-USDT", "BTCUSDT"
PMM = PureMarketMakingConfig(
    connector="binance", trading_pair=PAIR, bid_spread=D("0.5"), ask_spread=D("0.5"),
    order_amount=D("0.01"), order_refresh_time=10.0,
)


@pytest.fixture
async def conn() -> AsyncIterator[tuple[Sandbox, SpotConnector]]:
    async with Sandbox(SandboxConfig(seed=5), autotick=False) as sandbox, \
            marketlink.connect("binance", [PAIR], sandbox=sandbox) as c:
        yield sandbox, c


class Waiter:
    """Collects the connector's events; ``until`` waits for a condition over them."""

    def __init__(self, connector: SpotConnector) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        connector.bus.subscribe_callback(self._add)

    def _add(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def count(self, kind: type[Event]) -> int:
        return sum(isinstance(e, kind) for e in self.events)

    async def until(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not cond():
                self._changed.clear()
                await self._changed.wait()


class HeardPMM(PureMarketMaking):
    """Tells the test when the strategy itself (not just the bus) has heard an order complete."""

    def __init__(self, config: PureMarketMakingConfig) -> None:
        super().__init__(config)
        self.completed = asyncio.Event()

    def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> None:
        super().on_event(ctx, connector, event)
        if isinstance(event, OrderCompleted):
            self.completed.set()


class HeardTaker(PeriodicTaker):
    def __init__(self, config: PeriodicTakerConfig) -> None:
        super().__init__(config)
        self.completed = 0
        self.changed = asyncio.Event()

    def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> None:
        super().on_event(ctx, connector, event)
        if isinstance(event, OrderCompleted):
            self.completed += 1
            self.changed.set()


def _demo_orders(sandbox: Sandbox) -> list[tuple[str, Decimal]]:
    return sorted((str(o.side), o.price) for o in sandbox.exchange.open_orders("demo", SYMBOL)
                  if o.price is not None)


async def _run(runner: StrategyRunner, clock: VirtualClock) -> None:
    await runner.start()
    await clock.wait_for_sleepers(1)


async def _stop(runner: StrategyRunner) -> None:
    await asyncio.wait_for(runner.stop(), 10)


async def test_pmm_quotes_refreshes_keeps_and_stops_clean(conn: tuple[Sandbox, SpotConnector]) -> None:
    sandbox, c = conn
    w, clock = Waiter(c), VirtualClock()
    runner = StrategyRunner(PureMarketMaking(PMM), {"binance": c}, clock=clock)
    await _run(runner, clock)
    await w.until(lambda: w.count(OrderCreated) == 2)
    mid = c.mid_price(PAIR)
    assert mid is not None
    rule = c.trading_rule(PAIR)
    expected = [
        ("BUY", rule.quantize_price(mid * D("0.995"), Side.BUY)),
        ("SELL", rule.quantize_price(mid * D("1.005"), Side.SELL)),
    ]
    assert _demo_orders(sandbox) == expected  # the venue holds exactly our two quotes
    assert {e.order_type for e in w.events if isinstance(e, OrderCreated)} == {OrderType.LIMIT_MAKER}

    clock.advance(10.0)  # refresh time, book unchanged, tolerance 0: kept
    await clock.wait_for_sleepers(1)
    assert w.count(OrderCancelled) == 0 and _demo_orders(sandbox) == expected
    status = runner.status()
    assert len(status.open_orders) == 2 and status.balances["binance"]["BTC"][0] == D(100)

    await _stop(runner)
    await w.until(lambda: w.count(OrderCancelled) == 2)
    assert sandbox.exchange.open_orders("demo", SYMBOL) == []
    assert runner.state is RunnerState.STOPPED and runner.left_open == ()


async def test_pmm_refreshes_after_refresh_time(conn: tuple[Sandbox, SpotConnector]) -> None:
    sandbox, c = conn
    w, clock = Waiter(c), VirtualClock()
    runner = StrategyRunner(
        PureMarketMaking(replace(PMM, order_refresh_tolerance_pct=D("-1"))), {"binance": c}, clock=clock,
    )
    await _run(runner, clock)
    await w.until(lambda: w.count(OrderCreated) == 2)
    first = {o.client_order_id for o in sandbox.exchange.open_orders("demo", SYMBOL)}
    clock.advance(9.0)
    await clock.wait_for_sleepers(1)
    assert w.count(OrderCancelled) == 0
    clock.advance(1.0)
    await w.until(lambda: w.count(OrderCancelled) == 2)
    clock.advance(1.0)  # the next tick sees no live quotes and places new ones
    await w.until(lambda: w.count(OrderCreated) == 4)
    second = {o.client_order_id for o in sandbox.exchange.open_orders("demo", SYMBOL)}
    assert len(second) == 2 and not first & second
    await _stop(runner)
    assert sandbox.exchange.open_orders("demo", SYMBOL) == []


async def test_pmm_fill_leaves_a_hanging_order_and_stop_cancels_it(
    conn: tuple[Sandbox, SpotConnector],
) -> None:
    sandbox, c = conn
    w, clock = Waiter(c), VirtualClock()
    cfg = replace(PMM, hanging_orders_enabled=True, order_refresh_tolerance_pct=D("-1"))
    pmm = HeardPMM(cfg)
    runner = StrategyRunner(pmm, {"binance": c}, clock=clock)
    await _run(runner, clock)
    await w.until(lambda: w.count(OrderCreated) == 2)
    ours = {str(o.side): o for o in sandbox.exchange.open_orders("demo", SYMBOL)}
    bid, ask = ours["BUY"], ours["SELL"]
    now = int(time.time() * 1000)
    # Another trader sweeps the bids down through our quote.
    sandbox.exchange.open_account("whale", balances={"BTC": "100", "USDT": "0"}, now_ms=now)
    depth = sandbox.exchange.depth(SYMBOL, 1000)
    down_to = sum(q for p, q in depth.bids if p >= bid.price)
    sandbox.exchange.place_order("whale", SYMBOL, "SELL", "LIMIT", quantity=down_to, price=bid.price,
                                 time_in_force="IOC", now_ms=now)
    await asyncio.wait_for(pmm.completed.wait(), 10)
    assert pmm.status(runner.ctx)["hanging"] == "1"
    clock.advance(1.0)
    await w.until(lambda: w.count(OrderCreated) == 4)  # a new pair of quotes; the ask hangs on
    open_ids = {o.client_order_id for o in sandbox.exchange.open_orders("demo", SYMBOL)}
    assert ask.client_order_id in open_ids and len(open_ids) == 3
    clock.advance(10.0)  # refresh: the two new quotes go, the hanging ask stays
    await w.until(lambda: w.count(OrderCancelled) == 2)
    assert ask.client_order_id in {o.client_order_id for o in sandbox.exchange.open_orders("demo", SYMBOL)}
    await _stop(runner)
    assert sandbox.exchange.open_orders("demo", SYMBOL) == []
    assert runner.status().pnl[0].fills >= 1


async def test_periodic_taker_market_orders_fill(conn: tuple[Sandbox, SpotConnector]) -> None:
    _sandbox, c = conn
    w, clock = Waiter(c), VirtualClock()
    cfg = PeriodicTakerConfig("binance", PAIR, Side.BUY, D("0.001"), interval=5.0, max_orders=2)
    taker = HeardTaker(cfg)
    runner = StrategyRunner(taker, {"binance": c}, clock=clock)
    btc = c.total_balance("BTC")
    await _run(runner, clock)
    await w.until(lambda: w.count(OrderCompleted) == 1)
    clock.advance(4.0)
    await clock.wait_for_sleepers(1)
    assert taker.orders == 1
    clock.advance(1.0)
    await w.until(lambda: w.count(OrderCompleted) == 2)
    for _ in range(3):
        clock.advance(5.0)
        await clock.wait_for_sleepers(1)
    assert taker.orders == 2  # max_orders
    fills = [e for e in w.events if isinstance(e, OrderFilled)]
    assert sum(f.amount for f in fills) == D("0.002") and all(f.is_taker for f in fills)
    async with asyncio.timeout(10):
        while taker.completed < 2:
            taker.changed.clear()
            await taker.changed.wait()
    assert taker.filled_base == D("0.002") and c.total_balance("BTC") > btc
    assert taker.status(runner.ctx)["orders"] == "2 of 2"
    await _stop(runner)
