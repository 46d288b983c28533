"""Simulated market flow: seeded agents that keep the sandbox's books alive.

Each market has a fair price that random-walks in whole ticks. Every ``step(now_ms)`` (the
server calls it every 100 ms) does, per market:

1. move the fair price (with ``move_probability``, by up to ``max_move_ticks``);
2. the *maker* re-centres its ladder of post-only quotes around fair, pulling stale quotes and
   at least one random quote (churn) that it re-places with a new size, so the book changes
   every step;
3. the *arbitrageur*, whose estimate of value is fair plus a fresh jitter of up to
   ``jitter_ticks``, sells into every bid above its estimate and buys every ask below it with an
   IOC order. This is what fills the top of the book, a client's quote there included, within a
   few steps: the jitter crosses the first levels often, while the fair price itself drifts
   slowly;
4. the *noise taker* sends random MARKET orders that eat the top of the book and, now and then,
   a sweep through its first few levels.

The agents use the engine's public API with their own funded accounts, exactly as a client
would, so every flow trade produces the same events and obeys the same rules as a client's.
All randomness comes from one ``random.Random(seed)`` and iteration orders are fixed, so the
same seed and the same sequence of client actions give the same trades. Probabilities are
floats (they are not money); every price and quantity is an exact Decimal built from ticks
and steps.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import ConfigError
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.engine import Exchange
from marketlink.sandbox.exchange.errors import ExchangeRejection
from marketlink.sandbox.exchange.markets import MarketSpec

log = logging.getLogger(__name__)

_ARBITRAGE_DEPTH = 50  # levels looked at for mispriced liquidity; enough for any client ladder


@dataclass(frozen=True, slots=True)
class FlowMarket:
    """How the flow trades one market. Sizes are in lots: the smallest order the market's
    LOT_SIZE and notional filters accept at the current fair price."""

    symbol: str
    initial_price: Decimal
    levels: int = 10
    spread_ticks: int = 2
    level_gap_ticks: int = 1
    max_move_ticks: int = 1
    move_probability: float = 0.25
    jitter_ticks: int = 3
    min_lots: int = 1
    max_lots: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.initial_price, Decimal) or not self.initial_price.is_finite():
            raise ConfigError(f"flow {self.symbol}: initial_price must be a finite Decimal")
        if self.initial_price <= 0 or self.levels < 1 or self.spread_ticks < 1 or self.level_gap_ticks < 1:
            raise ConfigError(f"flow {self.symbol}: price, levels, spread and gap must be positive")
        if not 0 <= self.move_probability <= 1:
            raise ConfigError(f"flow {self.symbol}: move_probability must be within [0, 1]")
        if self.max_move_ticks < 0 or self.jitter_ticks < 0 or not 1 <= self.min_lots <= self.max_lots:
            raise ConfigError(f"flow {self.symbol}: need move and jitter >= 0 and 1 <= min_lots <= max_lots")


@dataclass(frozen=True, slots=True)
class FlowConfig:
    markets: tuple[FlowMarket, ...]
    seed: int = 1
    enabled: bool = True
    rate: float = 1.0  # scales every per-step probability; 2.0 is twice as busy
    taker_probability: float = 0.3  # per market per step: a random MARKET order
    churn_probability: float = 0.3  # per market per step: pull one maker quote (re-placed at once)
    sweep_probability: float = 0.05  # per market per step: a MARKET order through several levels
    sweep_levels: int = 5  # a sweep eats the top 1..sweep_levels levels of one side
    maker_account: str = "flow-maker"
    taker_account: str = "flow-taker"
    funding: Decimal = field(default=Decimal(10) ** 9)  # per asset; topped up when half is gone

    def __post_init__(self) -> None:
        if self.sweep_levels < 1:
            raise ConfigError("flow: sweep_levels must be at least 1")
        for p in (self.rate, self.taker_probability, self.churn_probability, self.sweep_probability):
            if not 0 <= p < 1000:
                raise ConfigError(f"flow: probabilities and rate must be non-negative, got {p}")
        if self.maker_account == self.taker_account:
            raise ConfigError("flow: maker and taker need separate accounts (self-trade prevention)")
        if not isinstance(self.funding, Decimal) or not self.funding > 0:
            raise ConfigError("flow: funding must be a positive Decimal")

    @classmethod
    def for_prices(cls, prices: Mapping[str, Decimal | str], **options: object) -> FlowConfig:
        """A default flow for each ``symbol -> initial price``."""
        markets = []
        for symbol, price in prices.items():
            if not isinstance(price, Decimal | str):
                raise ConfigError(f"flow {symbol}: price must be a Decimal or a string, got {price!r}")
            try:
                markets.append(FlowMarket(symbol, Decimal(price)))
            except ArithmeticError:
                raise ConfigError(f"flow {symbol}: not a price: {price!r}") from None
        return cls(tuple(markets), **options)  # type: ignore[arg-type]


class MarketFlow:
    def __init__(self, exchange: Exchange, config: FlowConfig) -> None:
        self.exchange = exchange
        self.config = config
        self._rng = random.Random(config.seed)
        self._fair: dict[str, int] = {}  # the random walk, in ticks
        self._funded = False
        self.counters: dict[str, int] = {"orders": 0, "cancels": 0, "rejections": 0}
        for fm in config.markets:
            try:
                spec = exchange.market(fm.symbol)
            except ExchangeRejection as exc:
                raise ConfigError(f"flow: {exc.message}") from None
            self._fair[fm.symbol] = self._clamp(fm, spec, money.units(fm.initial_price, spec.tick_size))

    def fair_price(self, symbol: str) -> Decimal:
        return money.mul(Decimal(self._fair[symbol]), self.exchange.market(symbol).tick_size)

    def step(self, now_ms: int) -> None:
        """One tick of market activity at simulated time ``now_ms``."""
        if not self.config.enabled:
            return
        if not self._funded:
            for account in (self.config.maker_account, self.config.taker_account):
                self.exchange.open_account(account)
            self._funded = True
        for fm in self.config.markets:
            spec = self.exchange.market(fm.symbol)
            self._top_up(spec, now_ms)
            move = 0
            if self._rng.random() < fm.move_probability:
                move = self._rng.randint(-fm.max_move_ticks, fm.max_move_ticks)
            fair = self._fair[fm.symbol] = self._clamp(fm, spec, self._fair[fm.symbol] + move)
            self._requote(fm, spec, fair, now_ms)
            estimate = max(fair + self._rng.randint(-fm.jitter_ticks, fm.jitter_ticks), 2)
            if self._rng.random() < self.config.rate:  # every step at rate 1, never at rate 0
                self._arbitrage(fm, spec, estimate, now_ms)
            for _ in range(self._count(self.config.taker_probability)):
                side = Side.BUY if self._rng.random() < 0.5 else Side.SELL
                qty = self._size(fm, spec, fair)
                self._place(self.config.taker_account, spec, side, OrderType.MARKET, qty, None, now_ms)
            for _ in range(self._count(self.config.sweep_probability)):
                self._sweep(spec, now_ms)

    # -- agents ---------------------------------------------------------------------------------

    def _requote(self, fm: FlowMarket, spec: MarketSpec, fair: int, now_ms: int) -> None:
        maker, ex = self.config.maker_account, self.exchange
        below = fm.spread_ticks // 2
        above = fm.spread_ticks - below
        wanted = {
            Side.BUY: [fair - below - i * fm.level_gap_ticks for i in range(fm.levels)],
            Side.SELL: [fair + above + i * fm.level_gap_ticks for i in range(fm.levels)],
        }
        quotes: dict[tuple[Side, int], int] = {}  # (side, ticks) -> order id
        for order in ex.open_orders(maker, spec.symbol):
            assert order.price is not None
            key = (order.side, money.units(order.price, spec.tick_size))
            if key[1] not in wanted[order.side] or key in quotes:
                self._cancel(spec, order.order_id, now_ms)
            else:
                quotes[key] = order.order_id
        pulls = self._count(self.config.churn_probability)
        if self.config.rate > 0:  # at least one quote is refreshed, so the book moves every step
            pulls = max(pulls, 1)
        for _ in range(pulls):
            if quotes:
                key = self._rng.choice(sorted(quotes))
                self._cancel(spec, quotes.pop(key), now_ms)
        for side in (Side.BUY, Side.SELL):
            for ticks in wanted[side]:
                if (side, ticks) not in quotes:
                    price = money.mul(Decimal(ticks), spec.tick_size)
                    qty = self._size(fm, spec, fair)
                    self._place(maker, spec, side, OrderType.LIMIT_MAKER, qty, price, now_ms)

    def _arbitrage(self, fm: FlowMarket, spec: MarketSpec, estimate: int, now_ms: int) -> None:
        """Take every bid above ``estimate`` and every ask below it, one IOC order per side."""
        book = self.exchange.depth(spec.symbol, _ARBITRAGE_DEPTH)
        tick = spec.tick_size
        value = money.mul(Decimal(estimate), tick)
        rich_bids = [q for p, q in book.bids if p > value]
        cheap_asks = [q for p, q in book.asks if p < value]
        if rich_bids:
            qty = self._cap(spec, money.total(rich_bids))
            self._place(self.config.taker_account, spec, Side.SELL, OrderType.LIMIT, qty,
                        money.add(value, tick), now_ms)
        if cheap_asks:
            qty = self._cap(spec, money.total(cheap_asks))
            self._place(self.config.taker_account, spec, Side.BUY, OrderType.LIMIT, qty,
                        money.sub(value, tick), now_ms)

    def _sweep(self, spec: MarketSpec, now_ms: int) -> None:
        """A large MARKET order that clears the top few levels of one side."""
        side = Side.BUY if self._rng.random() < 0.5 else Side.SELL
        depth = self.exchange.depth(spec.symbol, self._rng.randint(1, self.config.sweep_levels))
        levels = depth.asks if side is Side.BUY else depth.bids
        if levels:
            qty = self._cap(spec, money.total(q for _, q in levels))
            self._place(self.config.taker_account, spec, side, OrderType.MARKET, qty, None, now_ms)

    # -- helpers --------------------------------------------------------------------------------

    def _place(
        self, account: str, spec: MarketSpec, side: Side, kind: OrderType, qty: Decimal,
        price: Decimal | None, now_ms: int,
    ) -> None:
        try:
            self.exchange.place_order(
                account, spec.symbol, side, kind, quantity=qty, price=price, now_ms=now_ms,
                time_in_force=TimeInForce.IOC if kind is OrderType.LIMIT else None,
            )
            self.counters["orders"] += 1
        except ExchangeRejection as exc:  # e.g. a post-only quote that would cross a client's order
            self.counters["rejections"] += 1
            log.debug("flow order refused: %r", exc)

    def _cancel(self, spec: MarketSpec, order_id: int, now_ms: int) -> None:
        try:
            self.exchange.cancel_order(
                self.config.maker_account, spec.symbol, order_id=order_id, now_ms=now_ms
            )
            self.counters["cancels"] += 1
        except ExchangeRejection:  # filled meanwhile by a client a listener let in
            self.counters["rejections"] += 1

    def _size(self, fm: FlowMarket, spec: MarketSpec, fair: int) -> Decimal:
        """A random number of lots; a lot clears LOT_SIZE and the notional minimum at half the
        fair price, so small price moves never make a flow order too small."""
        step = spec.step_size
        price = money.mul(Decimal(max(fair // 2, 1)), spec.tick_size)
        lot_steps = max(1, money.units_ceil(spec.min_qty, step), money.units_ceil(spec.market_min_qty, step))
        if spec.min_notional:
            lot_steps = max(lot_steps, money.units_ceil(spec.min_notional, money.mul(price, step)))
        qty = money.mul(Decimal(lot_steps * self._rng.randint(fm.min_lots, fm.max_lots)), step)
        return self._cap(spec, qty)

    @staticmethod
    def _cap(spec: MarketSpec, qty: Decimal) -> Decimal:
        cap = spec.max_market_qty()
        return min(qty, money.floor_to(cap, spec.step_size)) if cap is not None else qty

    def _count(self, probability: float) -> int:
        """How many times an event of this per-step probability (times ``rate``) happens now."""
        expected = probability * self.config.rate
        n = int(expected)
        return n + (1 if self._rng.random() < expected - n else 0)

    def _top_up(self, spec: MarketSpec, now_ms: int) -> None:
        funding = self.config.funding
        half = money.mul(funding, Decimal("0.5"))
        for account in (self.config.maker_account, self.config.taker_account):
            for asset in (spec.base, spec.quote):
                if self.exchange.balance(account, asset).free < half:
                    self.exchange.deposit(account, asset, funding, now_ms=now_ms)

    @staticmethod
    def _clamp(fm: FlowMarket, spec: MarketSpec, ticks: int) -> int:
        """Keep the whole ladder at positive prices within the market's price filter."""
        reach = fm.spread_ticks + (fm.levels - 1) * fm.level_gap_ticks + 1
        low = reach + 1
        if spec.min_price:
            low = max(low, money.units_ceil(spec.min_price, spec.tick_size) + reach)
        ticks = max(ticks, low)
        if spec.max_price:
            ticks = min(ticks, max(low, money.units(spec.max_price, spec.tick_size) - reach))
        return ticks
