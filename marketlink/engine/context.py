"""The shared state of one connector, handed to each of its components.

A connector is a composition (wsproto-style), not a template: market data, the user stream, the
order manager and the reconciler are separate small classes that each receive this context and
own nothing of each other's. The context holds what they share: the venue (spec, codec, auth),
the network clients, the clock, the event bus, the status board, markets and books, the order
tracker and balances.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketlink.core.book import OrderBook
from marketlink.core.errors import UnknownSymbol
from marketlink.core.events import Event
from marketlink.core.market import BookTicker
from marketlink.core.pairs import SymbolMap
from marketlink.core.rules import TradingRule
from marketlink.core.tracker import OrderTracker
from marketlink.engine.balances import Balances
from marketlink.engine.bus import EventBus
from marketlink.engine.status import StatusBoard
from marketlink.engine.supervisor import Supervisor
from marketlink.net.clock import Clock
from marketlink.net.http import HttpClient
from marketlink.net.throttler import Throttler
from marketlink.net.timesync import Sample, TimeSync
from marketlink.venues.base import Endpoints, SpotCodec, Venue, VenueSpec

#: Parts of readiness every spot connector reports (ARCHITECTURE §5).
STATUS_PARTS = (
    "symbols",
    "trading_rules",
    "time_sync",
    "order_books",
    "user_stream",
    "balances",
    "journal_restore",
)


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """Timings and sizes of a connector; the defaults suit a live venue."""

    client_id_prefix: str | None = None
    # The instance part of client order ids. Random when None; a restarted bot passes its saved one
    # so that it still owns (may cancel, adopts) the orders it placed before the restart.
    client_id_instance: str | None = None
    request_timeout: float = 10.0
    snapshot_concurrency: int = 16  # book snapshots in flight at once (weights still throttled)
    book_stale_after: float = 30.0  # a depth stream silent this long is resynced
    reconcile_fast: float = 2.0  # order polling while the user stream is down or silent
    reconcile_slow: float = 30.0  # order polling while the user stream is live
    open_orders_diff_every: float = 60.0  # two-way diff of local vs venue open orders
    user_stream_silence: float = 60.0  # no private message for this long counts as "silent"
    lost_after: int = 3  # consecutive real "not found" answers before an order is LOST
    time_sync_every: float = 300.0
    balance_snapshot_every: float = 60.0
    near_limit: float = 0.8  # RateLimitNear at this share of any pool
    # Tighten the spec's rate limits to those the venue publishes with its markets where they are
    # lower (never raised). Off only to keep limits of one's own, e.g. chosen by a test.
    adopt_published_limits: bool = True
    settle_unknown_after: float = 1.0  # first query of an UNKNOWN order after this delay
    # A WebSocket connection must stay up this long before its reconnect back-off starts over (a
    # venue that accepts and drops at once is otherwise redialled in a storm that earns a ban).
    stream_healthy_after: float = 30.0
    seed: int | None = None  # jitter of reconnect backoffs (tests pin it)


@dataclass
class Markets:
    """Trading rules and the symbol map, loaded at start and refreshed by the engine."""

    symbols: SymbolMap
    rules: dict[str, TradingRule] = field(default_factory=dict)
    #: Venue symbols left out of the market list, with why (not trading, or unreadable).
    skipped: dict[str, str] = field(default_factory=dict)

    def rule(self, pair: str) -> TradingRule:
        try:
            return self.rules[pair]
        except KeyError:
            raise UnknownSymbol(self.symbols.venue, pair) from None


def wall_time() -> float:
    return time.time()


@dataclass
class ConnectorContext:
    venue: Venue
    endpoints: Endpoints
    config: ConnectorConfig
    clock: Clock
    bus: EventBus[Event]
    status: StatusBoard
    supervisor: Supervisor
    throttler: Throttler
    time_sync: TimeSync
    http: HttpClient
    auth: Any | None  # the venue's auth (REST and WebSocket signing); None for public-only use
    markets: Markets
    trading_pairs: tuple[str, ...]
    tracker: OrderTracker
    balances: Balances
    books: dict[str, OrderBook] = field(default_factory=dict)
    tickers: dict[str, BookTicker] = field(default_factory=dict)
    last_prices: dict[str, Decimal] = field(default_factory=dict)
    now: Callable[[], float] = wall_time  # event timestamps (seconds); venue-aligned via time sync

    @property
    def spec(self) -> VenueSpec:
        return self.venue.spec

    @property
    def codec(self) -> SpotCodec:
        return self.venue.codec

    def publish(self, event: Event) -> None:
        self.bus.publish(event)

    def symbol(self, pair: str) -> str:
        return self.markets.symbols.symbol(pair)

    def pair_map(self) -> dict[str, str]:
        """venue symbol -> pair, as codec parsers take it."""
        return dict(self.markets.symbols)

    async def time_samples(self, count: int = 3) -> list[Sample]:
        """``count`` server-time round trips, each timed from when it really left (after the
        throttler and the signing) to when its answer came back: a wait in our own queue is no
        part of a sample. Handed to ``time_sync`` by the caller, who knows whether they add to
        the estimate or replace it."""
        samples: list[Sample] = []
        for _ in range(count):
            answer = await self.http.timed_request(self.codec.server_time_request())
            samples.append((answer.sent_ms, self.codec.parse_server_time(answer.payload), answer.received_ms))
        return samples
