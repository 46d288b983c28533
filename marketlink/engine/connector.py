"""``SpotConnector``: one venue, standardized. The composition root of the engine.

It wires the venue (spec, codec, auth) to the network layer and to four components that each do
one job (market data, user stream, orders, reconciler), runs the start sequence of
ARCHITECTURE §5, and exposes the strategy-facing API: queries answer from local state at once,
``buy``/``sell``/``cancel`` return at once and report through events.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal

from marketlink.core.book import OrderBook
from marketlink.core.client_ids import ClientOrderIdFactory
from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import ConfigError
from marketlink.core.events import Event, RateLimitNear
from marketlink.core.market import Balance, BookTicker, PublishedLimit
from marketlink.core.orders import InFlightOrder
from marketlink.core.pairs import SymbolMap, TradingPair
from marketlink.core.rules import TradingRule
from marketlink.core.tracker import OrderTracker
from marketlink.engine.balances import Balances
from marketlink.engine.bus import EventBus
from marketlink.engine.context import STATUS_PARTS, ConnectorConfig, ConnectorContext, Markets
from marketlink.engine.market_data import MarketData
from marketlink.engine.orders import CancelResult, OrderManager
from marketlink.engine.reconcile import Reconciler
from marketlink.engine.status import PartStatus, StatusBoard
from marketlink.engine.supervisor import Supervisor
from marketlink.engine.user_stream import UserStream
from marketlink.net.clock import Clock, SystemClock
from marketlink.net.errors import IpBanned, MalformedMessage, VenueError
from marketlink.net.http import HttpClient
from marketlink.net.throttler import Throttler
from marketlink.net.timesync import TimeSync
from marketlink.venues.base import Endpoints, Venue

log = logging.getLogger(__name__)


class SpotConnector:
    """A spot venue behind one small API. ``start()`` returns once the connector is ready."""

    def __init__(
        self,
        venue: Venue,
        trading_pairs: Iterable[str],
        credentials: Credentials | None = None,
        domain: str = "com",
        *,
        endpoints: Endpoints | None = None,
        config: ConnectorConfig | None = None,
        clock: Clock | None = None,
        bus: EventBus[Event] | None = None,
    ) -> None:
        self.venue = venue
        self.config = config or ConnectorConfig()
        pairs = tuple(dict.fromkeys(str(TradingPair.parse(p)) for p in trading_pairs))
        if not pairs:
            raise ConfigError("a connector needs at least one trading pair")
        clock = clock or SystemClock()
        self.bus: EventBus[Event] = bus or EventBus(name=f"{venue.name}-events")
        self._credentials = credentials
        auth = venue.make_auth(credentials) if credentials is not None else None
        time_sync = TimeSync()
        throttler = Throttler(
            venue.spec.rate_limits,
            clock=clock,
            near_limit=self.config.near_limit,
            on_near_limit=self._near_limit,
            on_ban=self._banned,
        )
        eps = endpoints or venue.spec.endpoints(domain)
        http = HttpClient(
            eps.rest,
            throttler=throttler,
            venue=venue.codec,
            auth=auth,
            time_ms=lambda: time_sync.server_time_ms(),
            timeout=self.config.request_timeout,
            clock=clock,
            resync_time=self._resync_time,
        )
        status = StatusBoard(venue.name, STATUS_PARTS, self.bus.publish, lambda: ctx.now())
        ids = venue.spec.client_ids
        self.client_ids = ClientOrderIdFactory(
            self.config.client_id_prefix or ids.default_prefix, ids.max_length, ids.alphabet,
            instance_id=self.config.client_id_instance,
        )
        ctx = ConnectorContext(
            venue=venue,
            endpoints=eps,
            config=self.config,
            clock=clock,
            bus=self.bus,
            status=status,
            supervisor=Supervisor(clock),
            throttler=throttler,
            time_sync=time_sync,
            http=http,
            auth=auth,
            markets=Markets(SymbolMap(venue.name)),
            trading_pairs=pairs,
            tracker=OrderTracker(lost_after=self.config.lost_after),
            balances=Balances(self.bus.publish),
            now=lambda: time_sync.server_time_ms() / 1000.0,
        )
        self.ctx = ctx
        self._rng = random.Random(self.config.seed)
        self.market_data = MarketData(ctx, rng=self._rng)
        self.orders = OrderManager(ctx, self.client_ids)
        self.user_stream = UserStream(ctx, self.orders.apply_updates, rng=self._rng)
        self.reconciler = Reconciler(ctx, self.orders, self.user_stream)
        self.user_stream.on_reconnected = self.reconciler.trigger
        self._started = False
        self._stop_called = False

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.venue.name

    @property
    def trading_pairs(self) -> tuple[str, ...]:
        return self.ctx.trading_pairs

    @property
    def ready(self) -> bool:
        return self.ctx.status.ready

    def status(self) -> dict[str, PartStatus]:
        return self.ctx.status.snapshot()

    async def start(
        self,
        restore: Sequence[InFlightOrder] = (),
        *,
        timeout: float = 30.0,
        banned_until: float | None = None,
    ) -> None:
        """Run the start sequence; returns when ready (raises ``TimeoutError`` naming what is not).

        ``banned_until``: the end (epoch seconds) of an IP ban an earlier run saw (see
        ``ip_ban_until``). While it holds, nothing is sent: calling a banned API lengthens the ban,
        so the start is refused at once with a local ``IpBanned`` (the connector may start later)."""
        if self._started:
            raise RuntimeError("a connector starts once")
        if banned_until is not None and (left := banned_until - time.time()) > 0:
            self.ctx.throttler.back_off(left)  # known from now on: ip_ban_until() reports it
            self.ctx.throttler.ban(left)
            raise IpBanned(
                f"{self.name}: IP banned for {left:.0f}s more (recorded by an earlier run): "
                "start refused, nothing sent", retry_after=left, local=True,
            )
        self._started = True
        ctx = self.ctx
        await self._sync_time()
        await self._load_markets()
        self.orders.restore(restore)
        ctx.status.ok("journal_restore", f"{len(restore)} orders restored")
        # Books sync in the background while the private side starts: neither waits for the other.
        await self.market_data.start()
        if self._credentials is not None:
            # The private stream is subscribed before reconciling, so nothing that happens during
            # the reconcile pass is missed; the balance snapshot runs alongside.
            await asyncio.gather(self.refresh_balances(), self.user_stream.start())
            await self.reconciler.run_once(full=True)
            ctx.supervisor.spawn("reconciler", self.reconciler.run)
            ctx.supervisor.spawn("balances", self._balance_loop)
        else:
            ctx.status.ok("user_stream", "public only (no credentials)")
            ctx.status.ok("balances", "public only (no credentials)")
        ctx.supervisor.spawn("time_sync", self._time_loop)
        try:
            await asyncio.wait_for(self.wait_ready(), timeout)
        except TimeoutError:
            missing = "; ".join(f"{k}: {v}" for k, v in ctx.status.not_ready())
            raise TimeoutError(f"{self.name} not ready after {timeout}s ({missing})") from None

    def ip_ban_until(self) -> float | None:
        """When the venue's IP ban ends, in epoch seconds (to outlive this process; see
        ``start(banned_until=...)``), or ``None`` when no ban holds."""
        until = self.ctx.throttler.banned_until
        if until is None:
            return None
        return time.time() + (until - self.ctx.clock.time())

    async def wait_ready(self) -> None:
        """Return once every status part is ready (status changes arrive as bus events)."""
        sub = self.bus.subscribe()
        try:
            while not self.ctx.status.ready:
                try:
                    await anext(sub)
                except StopAsyncIteration:
                    raise RuntimeError(f"{self.name} stopped before it was ready") from None
        finally:
            sub.close()

    async def stop(self, *, cancel_orders: bool = False, timeout: float = 10.0) -> list[CancelResult]:
        results: list[CancelResult] = []
        if self._stop_called:
            return results
        self._stop_called = True
        self.orders.refuse_new_orders()  # first: an order placed now would outlive its reporting
        if cancel_orders and self._credentials is not None:
            results = await self.cancel_all(timeout)
        await self.ctx.supervisor.stop()
        await self.orders.stop()
        await self.user_stream.stop()
        await self.market_data.stop()
        await self.ctx.http.close()
        self.bus.close()
        return results

    async def __aenter__(self) -> SpotConnector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- start-up pieces ------------------------------------------------------------------------

    async def _sync_time(self) -> None:
        """Take a few server-time samples (the estimator keeps the best round trips)."""
        await self._take_time_samples(fresh=False)

    async def _resync_time(self) -> None:
        """After the venue refused a timestamp we signed: the samples before the refusal describe
        a clock that is no longer right, and their round trips may well be the fastest, so the
        estimator would keep voting for them. Only the new samples count."""
        await self._take_time_samples(fresh=True)

    async def _take_time_samples(self, *, fresh: bool) -> None:
        """Three round trips (``ConnectorContext.time_samples``)."""
        ctx = self.ctx
        samples = await ctx.time_samples()
        # Only now, so requests signed meanwhile keep the old estimate.
        if fresh:
            ctx.time_sync.replace(samples)
        else:
            ctx.time_sync.add_samples(samples)
        ctx.status.ok("time_sync", f"offset {ctx.time_sync.offset_ms:.0f} ms")

    async def _time_loop(self) -> None:
        while True:
            await self.ctx.clock.sleep(self.config.time_sync_every)
            await self._sync_time()

    async def _load_markets(self) -> None:
        ctx = self.ctx
        info = ctx.codec.parse_markets(await ctx.http.request(ctx.codec.markets_request()))
        for name, why in info.skipped.items():
            log.info("%s: market %s skipped: %s", self.name, name, why)
        if self.config.adopt_published_limits:
            self._adopt_limits(info.rate_limits)
        symbols = SymbolMap(self.name, info.symbols.items())
        missing = [p for p in ctx.trading_pairs if not symbols.has_pair(p) or p not in info.rules]
        if missing:
            ctx.status.fail("symbols", f"unknown or not trading: {', '.join(missing)}")
            raise ConfigError(f"{self.name}: unknown or not trading pairs: {', '.join(missing)}")
        ctx.markets.symbols = symbols
        ctx.markets.rules = info.rules
        ctx.markets.skipped = dict(info.skipped)
        skipped = f", {len(info.skipped)} skipped (skipped_markets())" if info.skipped else ""
        ctx.status.ok("symbols", f"{len(symbols)} symbols{skipped}")
        ctx.status.ok("trading_rules", f"{len(info.rules)} rules")

    def _adopt_limits(self, published: list[PublishedLimit]) -> None:
        """Tighten our limits to the venue's where it publishes less than the spec (it may have
        cut them since the spec was written, or for this account), and count windows the spec
        lacks. A larger published number is not taken: the spec keeps its margin for the venue's
        fixed windows against our sliding ones. A pool the spec does not know is reported, not
        invented, since nothing says which requests it would charge."""
        throttler = self.ctx.throttler
        for limit in published:
            try:
                ours = dict(throttler.windows(limit.limit_id)).get(limit.seconds)
            except ConfigError:
                log.warning("%s: the venue publishes a rate limit on %r, which our spec does not know",
                            self.name, limit.limit_id)
                continue
            if ours is not None and ours <= limit.capacity:
                continue
            throttler.adopt(limit.limit_id, limit.seconds, limit.capacity)
            log.warning("%s: the venue publishes %s %d per %gs, %s: counted so from now on", self.name,
                        limit.limit_id, limit.capacity, limit.seconds,
                        "a window our spec lacks" if ours is None else f"below our {ours}")

    async def refresh_balances(self) -> None:
        ctx = self.ctx
        ctx.balances.apply(ctx.codec.parse_balances(await ctx.http.request(ctx.codec.balances_request())))
        ctx.status.ok("balances", "snapshot")

    async def _balance_loop(self) -> None:
        while True:
            await self.ctx.clock.sleep(self.config.balance_snapshot_every)
            await self.refresh_balances()

    async def check_network(self) -> bool:
        """Whether the venue answers now (its ping). Any failure to get an answer is "down",
        whatever its type: the question is reachability, not why, and it never raises."""
        ctx = self.ctx
        try:
            await ctx.http.request(ctx.codec.ping_request())
        except VenueError as exc:
            log.info("%s: network check failed: %s: %s", self.name, type(exc).__name__, exc)
            return False
        return True

    async def last_prices(self, trading_pairs: Iterable[str] | None = None) -> dict[str, Decimal]:
        """The venue's last traded price of each pair (default: this connector's), by REST.

        A one-off read, for a strategy that needs prices before any trade streamed in; it does not
        touch what ``last_trade_price`` answers, which follows the trade stream in its order (a
        REST answer may be older than a trade already received). Pairs the venue has no price for
        (never traded: Binance then says zero) are left out."""
        ctx = self.ctx
        wanted = ctx.trading_pairs if trading_pairs is None else tuple(
            str(TradingPair.parse(p)) for p in trading_pairs
        )
        payload = await ctx.http.request(ctx.codec.last_prices_request())
        prices = ctx.codec.parse_last_prices(payload, ctx.pair_map())
        out: dict[str, Decimal] = {}
        for pair in wanted:
            price = prices.get(pair)
            if price is None:
                continue
            if not isinstance(price, Decimal) or not price.is_finite() or price < 0:
                raise MalformedMessage(f"last price of {pair}: not a Decimal >= 0: {price!r}")
            if price > 0:
                out[pair] = price
        return out

    def _near_limit(self, pool: str, fraction: float) -> None:
        self.bus.publish(RateLimitNear(timestamp=self.ctx.now(), pool=pool, fraction=fraction))

    def _banned(self, until: float) -> None:
        """A ban earned by any request (a balance read too) stops trading: report it now."""
        self.orders.note_ban()

    # -- orders ---------------------------------------------------------------------------------

    def buy(
        self,
        trading_pair: str,
        amount: Decimal,
        order_type: OrderType = OrderType.LIMIT,
        price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> str:
        return self.orders.place(Side.BUY, trading_pair, amount, order_type, price, time_in_force)

    def sell(
        self,
        trading_pair: str,
        amount: Decimal,
        order_type: OrderType = OrderType.LIMIT,
        price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> str:
        return self.orders.place(Side.SELL, trading_pair, amount, order_type, price, time_in_force)

    def cancel(self, trading_pair: str, client_order_id: str) -> None:
        self.orders.cancel(trading_pair, client_order_id)

    async def cancel_all(self, timeout: float = 10.0) -> list[CancelResult]:
        return await self.orders.cancel_all(timeout)

    # -- queries for strategies ------------------------------------------------------------------

    def skipped_markets(self) -> dict[str, str]:
        """Venue symbols the market list held but we left out, each with why: not trading, or
        unreadable (a missing filter, a bad tick). A pair you expected and cannot trade is here."""
        return dict(self.ctx.markets.skipped)

    def book(self, trading_pair: str) -> OrderBook:
        return self.market_data.book(trading_pair)

    def best_bid(self, trading_pair: str) -> Decimal | None:
        return self.book(trading_pair).best_bid()

    def best_ask(self, trading_pair: str) -> Decimal | None:
        return self.book(trading_pair).best_ask()

    def mid_price(self, trading_pair: str) -> Decimal | None:
        return self.book(trading_pair).mid()

    def price_for_volume(self, trading_pair: str, is_buy: bool, volume: Decimal) -> Decimal | None:
        return self.book(trading_pair).price_for_volume(is_buy, volume)

    def vwap_for_volume(
        self, trading_pair: str, is_buy: bool, volume: Decimal
    ) -> tuple[Decimal | None, Decimal]:
        return self.book(trading_pair).vwap_for_volume(is_buy, volume)

    def book_rows(self, trading_pair: str, side: Side, n: int = 20) -> list[tuple[Decimal, Decimal]]:
        return self.book(trading_pair).rows(side, n)

    def last_trade_price(self, trading_pair: str) -> Decimal | None:
        """The venue's last trade price, or None while unknown: before the first trade, and from
        a market stream's drop until a trade streams in or the REST refresh after the reconnect
        answers (see engine/market_data.py). Never a pre-outage value."""
        self.book(trading_pair)  # UnknownSymbol for a pair this connector does not follow
        return self.ctx.last_prices.get(trading_pair)

    def ticker(self, trading_pair: str) -> BookTicker | None:
        """The last book ticker, or None while unknown: before the first, and from a market
        stream's drop until the venue sends a fresh one (it does when the top changes)."""
        return self.ctx.tickers.get(trading_pair)

    def balances(self) -> dict[str, Balance]:
        return self.ctx.balances.all()

    def available_balance(self, asset: str) -> Decimal:
        return self.ctx.balances.available(asset)

    def total_balance(self, asset: str) -> Decimal:
        return self.ctx.balances.total(asset)

    def spendable_balance(self, asset: str) -> Decimal:
        """``available_balance`` less what this connector's orders in flight (sent, not yet
        locked at the venue) will consume: what the budget check lets a new order use."""
        return self.orders.spendable(asset)

    def in_flight_orders(self) -> dict[str, InFlightOrder]:
        """Every order not ended, LOST ones included: a lost order may still rest and fill."""
        tracker = self.ctx.tracker
        return {**tracker.active, **tracker.lost}

    def trading_rule(self, trading_pair: str) -> TradingRule:
        return self.ctx.markets.rule(trading_pair)

    def supported_order_types(self) -> frozenset[OrderType]:
        return self.venue.spec.order_types
