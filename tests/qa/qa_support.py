"""What the QA rows add to the conformance harness: bots, a journal, and a few venue extras.

A *bot* is what a trader runs: a connector (its own client-id prefix and instance, from the
journal's bot record), a journal recorder on it, and a strategy under a ``StrategyRunner`` whose
clock is virtual, so "the refresh time passed" is a call, not a wait. Every wait is for a
condition re-checked on each connector event and each strategy callback, bounded by ``WAIT``;
nothing sleeps.

The venue extras (``QA_EXTRAS``) are what these rows need beyond ``VenueHarness``: how to make
the venue's and the connector's new-order limit small, and how to read the venue's own trade
history in the journal's terms. A new venue adds one entry beside its harness entry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from harness import DEMO, FAST, PAIR, WAIT, Lab, VenueHarness, World

from marketlink.core.credentials import Credentials
from marketlink.core.events import Event
from marketlink.core.orders import InFlightOrder, OrderState
from marketlink.engine.connector import SpotConnector
from marketlink.journal import BotRecord, FillRecord, Journal
from marketlink.journal import Recorder as JournalRecorder
from marketlink.net.clock import VirtualClock
from marketlink.net.throttler import RateLimit, Window
from marketlink.sandbox.server import Sandbox
from marketlink.strategy.api import Strategy, StrategyContext, StrategyEvent
from marketlink.strategy.pure_market_making import PureMarketMakingConfig
from marketlink.strategy.runner import StrategyRunner
from marketlink.venues.base import Venue
from marketlink.venues.binance import spec as binance_spec

D = Decimal

#: Orders a strategy is waiting on the venue for (placement or cancel not answered yet).
IN_TRANSIT = frozenset({OrderState.PENDING_CREATE, OrderState.PENDING_CANCEL, OrderState.UNKNOWN})

#: The book a quiet sandbox is given before a market maker starts: one order of the other
#: account each side, so the mid is 50000 and our quotes never meet it.
BOOK_BID, BOOK_ASK = "49000", "51000"


# -- venue extras ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QAVenue:
    # (connector's new orders per second, venue's) -> (connector's venue, sandbox front-end options)
    order_limit: Callable[[VenueHarness, int, int], tuple[VenueHarness, Mapping[str, object]]]
    order_pool: str  # the throttler pool new orders are charged to (RateLimitNear names it)


def _binance_order_limit(
    harness: VenueHarness, ours: int, venues: int
) -> tuple[VenueHarness, Mapping[str, object]]:
    """Binance's ORDERS limit per second, small on both sides: the venue counts ``venues`` new
    orders a second, the connector's spec says ``ours`` (a little under, as a client keeps a
    margin for the venue's fixed windows against its own sliding ones)."""

    def make_venue(recv_window_ms: int | None) -> Venue:
        venue = harness.make_venue(recv_window_ms)
        limits = tuple(
            RateLimit(lim.id, (Window(ours, 1), *lim.windows[1:])) if lim.id == binance_spec.ORDERS else lim
            for lim in venue.spec.rate_limits
        )
        return dataclasses.replace(venue, spec=dataclasses.replace(venue.spec, rate_limits=limits))

    options = {"rate_limits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 1, "limit": venues},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160_000},
    ]}
    return dataclasses.replace(harness, make_venue=make_venue), options


QA_EXTRAS: Mapping[str, QAVenue] = {
    "binance": QAVenue(order_limit=_binance_order_limit, order_pool=binance_spec.ORDERS),
}


def extras(venue: VenueHarness) -> QAVenue:
    return QA_EXTRAS[venue.name]


# -- the venue's records, in the journal's terms ------------------------------------------------

FillKey = tuple[str, str, Decimal, Decimal, tuple[tuple[str, Decimal], ...]]


def venue_fills(sb: Sandbox, symbol: str, account: str = DEMO) -> set[FillKey]:
    """(client id, trade id, price, amount, fees) of every trade of ``account`` the venue has."""
    cids = {o.order_id: o.client_order_id for o in sb.exchange.all_orders(account, symbol, limit=1000)}
    return {
        (cids[t.order_id], str(t.trade_id), t.price, t.qty, ((t.commission_asset, t.commission),))
        for t in sb.exchange.my_trades(account, symbol, limit=1000)
    }


def journal_fills(fills: Iterable[FillRecord]) -> list[FillKey]:
    """The same tuple of each journal fill (a list: duplicates must show)."""
    return [
        (f.client_order_id, f.trade_id, f.price, f.amount, tuple((x.token, x.amount) for x in f.fees))
        for f in fills
    ]


# -- bots ---------------------------------------------------------------------------------------


class Observed(Strategy):
    """Runs ``inner`` and pokes ``changed`` after each of its callbacks, so a test can wait for
    what the strategy (not only the bus) has heard."""

    def __init__(self, inner: Strategy, changed: Callable[[], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self._changed = changed

    async def _then_poke(self, result: Awaitable[None] | None) -> None:
        if result is not None and inspect.isawaitable(result):
            await result
        self._changed()

    async def on_start(self, ctx: StrategyContext) -> None:
        await self._then_poke(self.inner.on_start(ctx))

    async def on_tick(self, ctx: StrategyContext) -> None:
        await self._then_poke(self.inner.on_tick(ctx))

    async def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> None:
        await self._then_poke(self.inner.on_event(ctx, connector, event))

    async def on_stop(self, ctx: StrategyContext) -> None:
        await self._then_poke(self.inner.on_stop(ctx))

    def status(self, ctx: StrategyContext) -> dict[str, str]:
        return self.inner.status(ctx)


class Bot:
    """One bot: ``world`` (its connector on the sandbox), its journal record and recorder, and
    after ``run(strategy)`` a runner ticking on ``clock``."""

    def __init__(self, world: World, record: BotRecord, journal: Journal, recorder: JournalRecorder) -> None:
        self.world = world
        self.conn: SpotConnector = world.conn
        self.record = record
        self.journal = journal
        self.recorder = recorder
        self.clock = VirtualClock()
        self.runner: StrategyRunner | None = None
        self.strategy: Strategy | None = None
        self._changed = asyncio.Event()
        self.conn.bus.subscribe_callback(self._on_event)

    @property
    def bot_id(self) -> int:
        return self.record.bot_id

    def _on_event(self, _event: Event) -> None:
        self._changed.set()

    def poke(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        """Return once ``condition()`` holds, re-checked on every event and strategy callback."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def run(self, strategy: Strategy, *, tick: float = 1.0, name: str = "bot") -> StrategyRunner:
        self.strategy = strategy
        self.runner = StrategyRunner(
            Observed(strategy, self.poke), {name: self.conn}, clock=self.clock, tick_interval=tick,
        )
        await self.runner.start()
        await self.clock.wait_for_sleepers(1)  # the first tick ran
        return self.runner

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of the runner's clock pass; returns once the ticks due have run."""
        self.clock.advance(seconds)
        await self.clock.wait_for_sleepers(1)

    @property
    def ctx(self) -> StrategyContext:
        assert self.runner is not None
        return self.runner.ctx

    def live(self) -> list[InFlightOrder]:
        """This bot's orders that have not ended, as its connector tracks them."""
        return [o for o in self.conn.in_flight_orders().values() if not o.is_terminal]

    def settled(self, quotes: int | None = None) -> bool:
        """Nothing in transit, the strategy has heard every ending (and holds ``quotes`` orders)."""
        if any(o.state in IN_TRANSIT for o in self.live()):
            return False
        assert self.strategy is not None and self.runner is not None
        status = self.strategy.status(self.runner.ctx)
        if status.get("cancelling", "0") != "0":
            return False
        own = self.ctx.open_orders()
        return quotes is None or len(own) == quotes

    async def stop(self) -> None:
        """Stop the strategy (its orders cancelled), then write everything to the journal."""
        if self.runner is not None:
            await asyncio.wait_for(self.runner.stop(), WAIT)
        await self.recorder.drain()


class QALab(Lab):
    """``Lab`` plus bots with a journal; recorders are closed after the connectors stopped."""

    def __init__(self, venue: VenueHarness) -> None:
        super().__init__(venue)
        self._recorders: list[JournalRecorder] = []

    async def bot(
        self,
        sb: Sandbox,
        journal: Journal,
        name: str,
        *,
        prefix: str | None = None,
        pairs: Sequence[str] = (PAIR,),
        **overrides: Any,
    ) -> Bot:
        record = journal.bot(name, self.venue.name, prefix=prefix)
        conn = self.connector(
            sb, pairs, client_id_prefix=prefix, client_id_instance=record.client_id_instance, **overrides,
        )
        world = World(self.venue, sb, conn)
        recorder = journal.attach(conn, record.bot_id, scan_every=0.2)
        self._recorders.append(recorder)
        bot = Bot(world, record, journal, recorder)
        await conn.start(journal.restore_orders(record.bot_id, self.venue.name), timeout=WAIT)
        return bot

    def keyed_connector(
        self, sb: Sandbox, credentials: Credentials, pairs: Sequence[str] = (PAIR,), **overrides: Any,
    ) -> SpotConnector:
        """A connector (not started) with the given keys instead of the demo account's."""
        conn = SpotConnector(
            self.venue.make_venue(None), pairs, credentials, endpoints=self.venue.endpoints(sb.base_url),
            config=dataclasses.replace(FAST, **overrides),
        )
        self._connectors.append(conn)  # stopped by Lab.close with the others
        return conn

    async def close(self) -> None:
        await super().close()
        for recorder in self._recorders:
            await recorder.aclose()


async def seed_book(world: World) -> None:
    """The other account rests one order each side; returns once our book shows both."""
    world.maker("BUY", "1", BOOK_BID)
    world.maker("SELL", "1", BOOK_ASK)
    await world.book_caught_up()


def pmm(**overrides: Any) -> PureMarketMakingConfig:
    """A market maker on ``bot`` BTC-USDT: one level 0.1 % each side of the mid, 0.01 BTC."""
    base: dict[str, Any] = dict(
        connector="bot", trading_pair=PAIR, bid_spread=D("0.1"), ask_spread=D("0.1"),
        order_amount=D("0.01"), order_refresh_time=10.0,
    )
    base.update(overrides)
    return PureMarketMakingConfig(**base)


def inner_quote(orders: Iterable[InFlightOrder], side: str) -> InFlightOrder:
    """The order of ``side`` closest to the market (highest bid, lowest ask)."""
    mine = [o for o in orders if str(o.side) == side and o.price is not None]
    assert mine, f"no {side} order live"
    return (max if side == "BUY" else min)(mine, key=lambda o: o.price or D(0))
