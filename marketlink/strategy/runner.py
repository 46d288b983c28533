"""``StrategyRunner``: drives one strategy over its connectors, from start to a clean stop.

The runner owns the timing and the failure policy so that strategies own neither:

* a tick loop on a ``Clock`` (``VirtualClock`` in tests), ticks on a fixed grid: a slow tick
  skips the ticks it overran instead of running them in a burst;
* one bounded bus subscription per connector, each connector's events handed to ``on_event`` in
  publish order; one lock so two callbacks never run at once;
* an exception in a callback is logged and counted and the runner carries on, unless
  ``max_consecutive_errors`` callbacks in a row failed (0: never stop for errors; the runner then
  says ``stopped_by_errors``). A ``CancelledError`` out of a callback counts the same, unless the
  runner's own task is being cancelled: only a stop may end a loop;
* stopping (asked, too many errors, or the task cancelled, e.g. by Ctrl-C) runs ``on_stop``, then
  cancels this strategy's orders, and only theirs.

It does not start or stop connectors: the caller (the CLI's ``run``) owns them, so one set of
connectors can outlive a strategy, and a test can hand in fakes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import ConfigError
from marketlink.core.events import Event
from marketlink.engine.bus import Subscription
from marketlink.net.clock import Clock, SystemClock
from marketlink.strategy.api import MarketConnector, PairPnL, Strategy, StrategyContext, StrategyEvent

__all__ = ["OrderView", "RunnerState", "RunnerStatus", "StrategyRunner"]

log = logging.getLogger(__name__)


class RunnerState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class OrderView:
    connector: str
    client_order_id: str
    trading_pair: str
    side: Side
    order_type: OrderType
    price: Decimal | None
    amount: Decimal
    executed: Decimal
    state: str


@dataclass(frozen=True, slots=True)
class RunnerStatus:
    """A snapshot for a live view; cheap enough to take every second."""

    strategy: str
    state: RunnerState
    ticks: int
    events: int
    errors: int
    consecutive_errors: int
    last_error: str | None
    stop_reason: str | None
    stopped_by_errors: bool
    open_orders: tuple[OrderView, ...]
    balances: Mapping[str, Mapping[str, tuple[Decimal, Decimal]]]  # connector -> asset -> (total, avail)
    pnl: tuple[PairPnL, ...]
    last_events: tuple[tuple[str, StrategyEvent], ...]
    strategy_status: Mapping[str, str]
    orders_placed: int
    orders_failed: int
    cancel_left_open: tuple[str, ...]


class StrategyRunner:
    """Runs ``strategy`` over ``connectors`` (name -> connector). ``await run()`` runs until
    stopped; or ``await start()`` then ``await stop()``."""

    def __init__(
        self,
        strategy: Strategy,
        connectors: Mapping[str, MarketConnector],
        *,
        clock: Clock | None = None,
        tick_interval: float = 1.0,
        max_consecutive_errors: int = 0,
        cancel_timeout: float = 10.0,
        last_events: int = 20,
    ) -> None:
        if not math.isfinite(tick_interval) or tick_interval <= 0:
            raise ConfigError(f"tick_interval must be a positive number of seconds, got {tick_interval!r}")
        if isinstance(max_consecutive_errors, bool) or max_consecutive_errors < 0:
            raise ConfigError(f"max_consecutive_errors must be an int >= 0, got {max_consecutive_errors!r}")
        if not math.isfinite(cancel_timeout) or cancel_timeout < 0:
            raise ConfigError(f"cancel_timeout must be >= 0 seconds, got {cancel_timeout!r}")
        self.strategy = strategy
        self.clock: Clock = clock or SystemClock()
        self.ctx = StrategyContext(connectors, self.clock)
        self.tick_interval = float(tick_interval)
        self.max_consecutive_errors = max_consecutive_errors
        self.cancel_timeout = float(cancel_timeout)
        self.state = RunnerState.CREATED
        self.ticks = 0
        self.events = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self.stop_reason: str | None = None
        #: True when the runner stopped itself because ``max_consecutive_errors`` was reached:
        #: whoever runs it (the CLI) must then end too, and say so (a supervisor restarts it).
        self.stopped_by_errors = False
        self.left_open: tuple[str, ...] = ()
        self._recent: deque[tuple[str, StrategyEvent]] = deque(maxlen=last_events)
        self._lock = asyncio.Lock()
        self._subs: list[Subscription[Event]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_requested: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._stopping: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, run ``on_start``, then tick. An ``on_start`` that raises is counted like any
        callback error; the strategy still ticks (it may recover), unless the error limit says stop."""
        if self.state is not RunnerState.CREATED:
            raise RuntimeError("a runner starts once")
        self.state = RunnerState.RUNNING
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self.ctx.attach()
        for name in self.ctx.connector_names:
            sub = self.ctx.connector(name).bus.subscribe(name=f"strategy-{self.strategy.name}-{name}")
            self._subs.append(sub)
        await self._call("on_start", self.strategy.on_start, self.ctx)
        for name, sub in zip(self.ctx.connector_names, self._subs, strict=True):
            self._tasks.append(asyncio.create_task(self._consume(name, sub), name=f"strategy-events-{name}"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="strategy-ticks"))
        self._tasks.append(asyncio.create_task(self._watch_stop(), name="strategy-stop-watch"))
        log.info("strategy %s started on %s", self.strategy.name, ", ".join(self.ctx.connector_names))

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask the runner to stop (safe from a callback or a signal handler); ``run`` returns."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def stop(self, reason: str = "stopped") -> None:
        """Stop ticking and listening, run ``on_stop``, cancel this strategy's orders. Idempotent;
        concurrent callers all wait for the one stop."""
        if self.state is RunnerState.CREATED:
            self.state = RunnerState.STOPPED
            return
        if self._stopping is None:
            if self.stop_reason is None:
                self.stop_reason = reason
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        self.state = RunnerState.STOPPING
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)
        async with self._lock:
            await self._call("on_stop", self.strategy.on_stop, self.ctx)
        try:
            left = await self.ctx.cancel_all(self.cancel_timeout)
        except Exception:
            log.exception("strategy %s: cancelling its orders failed", self.strategy.name)
            left = [o.client_order_id for o in self.ctx.open_orders()]
        self.left_open = tuple(left)
        if left:
            log.warning("strategy %s: %d orders not confirmed cancelled within %.1fs: %s",
                        self.strategy.name, len(left), self.cancel_timeout, ", ".join(left))
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        self.ctx.detach()
        self.state = RunnerState.STOPPED
        assert self._stopped is not None
        self._stopped.set()
        log.info("strategy %s stopped (%s)", self.strategy.name, self.stop_reason)

    async def run(self) -> None:
        """Start, run until a stop is requested, then stop cleanly. Cancelled (Ctrl-C under
        ``asyncio.run``), it still stops cleanly, cancelling its orders, before re-raising."""
        try:
            if self.state is RunnerState.CREATED:
                await self.start()
            assert self._stopped is not None
            await self._stopped.wait()
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self.stop("interrupted")
            raise
        finally:
            if self.state is not RunnerState.STOPPED:
                await self.stop("run ended")

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()

    async def _watch_stop(self) -> None:
        assert self._stop_requested is not None
        await self._stop_requested.wait()
        await self.stop(self.stop_reason or "stop requested")

    # -- the loops ---------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        clock, interval = self.clock, self.tick_interval
        deadline = clock.time()
        while True:
            async with self._lock:
                self.ticks += 1
                await self._call("on_tick", self.strategy.on_tick, self.ctx)
            deadline += interval
            now = clock.time()
            if deadline <= now:  # overran: skip to the next grid point ahead
                deadline += (math.floor((now - deadline) / interval) + 1) * interval
            await clock.sleep(deadline - now)

    async def _consume(self, name: str, sub: Subscription[Event]) -> None:
        async for event in sub:
            async with self._lock:
                self.events += 1
                self._recent.append((name, event))
                await self._call("on_event", self.strategy.on_event, self.ctx, name, event)

    async def tick_now(self) -> None:
        """One tick outside the loop (for a CLI command or a test), under the same lock."""
        async with self._lock:
            self.ticks += 1
            await self._call("on_tick", self.strategy.on_tick, self.ctx)

    async def _call(self, what: str, fn: Callable[..., Awaitable[None] | None], *args: object) -> None:
        try:
            result = fn(*args)
            if result is not None and inspect.isawaitable(result):
                await result
        except asyncio.CancelledError as exc:
            # Only the runner's own task being cancelled (a stop, Ctrl-C) may end the loop. A
            # CancelledError out of the strategy's code (it awaited a helper task someone
            # cancelled) is a strategy error: re-raising it would kill this loop silently while
            # the runner still said RUNNING.
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            self._failed(what, exc)
            return
        except Exception as exc:
            self._failed(what, exc)
            return
        self.consecutive_errors = 0

    def _failed(self, what: str, exc: BaseException) -> None:
        """Count a callback's failure; stop the strategy at ``max_consecutive_errors`` in a row."""
        self.errors += 1
        self.consecutive_errors += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        log.error("strategy %s: %s raised (%d in a row)", self.strategy.name, what, self.consecutive_errors,
                  exc_info=exc)
        limit = self.max_consecutive_errors
        if limit and self.consecutive_errors >= limit and self.state is RunnerState.RUNNING:
            self.stopped_by_errors = True
            self.request_stop(f"{self.consecutive_errors} consecutive errors, last: {self.last_error}")

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> RunnerStatus:
        ctx = self.ctx
        orders: list[OrderView] = []
        balances: dict[str, dict[str, tuple[Decimal, Decimal]]] = {}
        for name in ctx.connector_names:
            conn = ctx.connector(name)
            for order in ctx.open_orders(name):
                orders.append(OrderView(
                    name, order.client_order_id, order.trading_pair, order.side, order.order_type,
                    order.price, order.amount, order.executed_base, str(order.state),
                ))
            assets = {a for pair in conn.trading_pairs for a in pair.split("-")}
            balances[name] = {
                a: (conn.total_balance(a), conn.available_balance(a)) for a in sorted(assets)
            }
        try:
            strategy_status = dict(self.strategy.status(ctx))
        except Exception as exc:  # a live view must not die of a strategy's reporting bug
            strategy_status = {"error": f"{type(exc).__name__}: {exc}"}
        return RunnerStatus(
            strategy=self.strategy.name,
            state=self.state,
            ticks=self.ticks,
            events=self.events,
            errors=self.errors,
            consecutive_errors=self.consecutive_errors,
            last_error=self.last_error,
            stop_reason=self.stop_reason,
            stopped_by_errors=self.stopped_by_errors,
            open_orders=tuple(orders),
            balances=balances,
            pnl=ctx.pnl(),
            last_events=tuple(self._recent),
            strategy_status=strategy_status,
            orders_placed=ctx.orders_placed,
            orders_failed=ctx.orders_failed,
            cancel_left_open=self.left_open,
        )
