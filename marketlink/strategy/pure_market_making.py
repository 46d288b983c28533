"""Pure market making: a ladder of maker quotes on both sides of a reference price, refreshed on
a timer, on one market of one connector (Hummingbot's classic strategy, written for marketlink).

One cycle, on every tick (the arithmetic is in ``pmm_proposal``):

1. Hanging orders further than ``hanging_orders_cancel_pct`` from the centre price are cancelled.
2. Quotes the market has come within ``minimum_spread`` of are cancelled.
3. While quotes are live: at their refresh time, a new proposal is computed; if every price is
   within ``order_refresh_tolerance_pct`` of the live one they stay (their timer restarts),
   otherwise they are all cancelled. Nothing new is placed until every cancel is confirmed, so
   the budget of the next quotes is read from balances that no longer hold the old ones.
4. With no quotes live: a new ladder is placed, prices on the tick grid and never crossing the
   book, amounts skewed toward the inventory target and shrunk to the available balances.

Hanging orders: when a quote fills completely, the live quotes of the other side become hanging:
they are left out of refreshes (never re-placed, never duplicated) until they fill, drift too
far, or the strategy stops (the runner cancels every order of the strategy on stop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from marketlink.core.budget import OrderCandidate
from marketlink.core.enums import OrderType, Side
from marketlink.core.events import OrderCompleted, TerminalOrderEvent
from marketlink.engine.bus import EventsDropped
from marketlink.strategy.api import Strategy, StrategyContext, StrategyEvent
from marketlink.strategy.pmm_proposal import (
    PriceSource,
    Quote,
    below_minimum_spread,
    hanging_too_far,
    inventory_multipliers,
    keep_passive,
    ladder,
    reference_prices,
    within_tolerance,
)

__all__ = ["PureMarketMaking", "PureMarketMakingConfig"]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PureMarketMakingConfig:
    """Percent values are percent: ``bid_spread: 0.5`` quotes 0.5 % under the reference."""

    connector: str
    trading_pair: str
    bid_spread: Decimal
    ask_spread: Decimal
    order_amount: Decimal
    order_levels: int = 1
    order_level_spread: Decimal = _ZERO
    order_level_amount: Decimal = _ZERO
    order_refresh_time: float = 30.0
    order_refresh_tolerance_pct: Decimal = _ZERO
    minimum_spread: Decimal | None = None
    price_source: PriceSource = PriceSource.MID
    hanging_orders_enabled: bool = False
    hanging_orders_cancel_pct: Decimal = Decimal(10)
    inventory_skew_enabled: bool = False
    inventory_target_base_pct: Decimal = Decimal(50)
    inventory_range_multiplier: Decimal = Decimal(1)

    def markets(self) -> list[tuple[str, str]]:
        return [(self.connector, self.trading_pair)]

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for each value out of range; empty when the config is sound."""
        out: list[tuple[str, str]] = []
        for name in ("bid_spread", "ask_spread", "order_level_spread", "hanging_orders_cancel_pct"):
            if getattr(self, name) < 0:
                out.append((name, "must be >= 0"))
        if self.order_amount <= 0:
            out.append(("order_amount", "must be > 0"))
        if self.order_levels < 1:
            out.append(("order_levels", "must be >= 1"))
        elif self.order_amount + (self.order_levels - 1) * self.order_level_amount <= 0:
            out.append(("order_level_amount", "leaves the outermost level with no amount"))
        if not self.order_refresh_time > 0:
            out.append(("order_refresh_time", "must be > 0 seconds"))
        if not _ZERO <= self.inventory_target_base_pct <= 100:
            out.append(("inventory_target_base_pct", "must be between 0 and 100"))
        if self.inventory_range_multiplier <= 0:
            out.append(("inventory_range_multiplier", "must be > 0"))
        if max(self.bid_spread, self.ask_spread) + (self.order_levels - 1) * self.order_level_spread >= 100:
            out.append(("bid_spread", "the outermost bid would be at or below zero (spread >= 100 %)"))
        return out


class PureMarketMaking(Strategy):
    name = "pure_market_making"

    def __init__(self, config: PureMarketMakingConfig) -> None:
        self.config = config
        self._active: dict[str, Quote] = {}  # live quotes of the current ladder
        self._hanging: dict[str, Quote] = {}
        self._cancelling: dict[str, float] = {}  # id -> when the cancel was asked
        self._refresh_at = 0.0
        self.cycles = 0
        self.refreshes_kept = 0

    # -- callbacks -------------------------------------------------------------------------------

    def on_tick(self, ctx: StrategyContext) -> None:
        cfg = self.config
        conn, pair = cfg.connector, cfg.trading_pair
        if not ctx.ready(conn):
            return
        refs = reference_prices(
            cfg.price_source, ctx.best_bid(conn, pair), ctx.best_ask(conn, pair),
            ctx.last_trade_price(conn, pair),
        )
        if refs is None:
            return
        now = ctx.now()
        centre = refs[2]
        self._cancel_far_hanging(ctx, centre, now)
        self._cancel_below_minimum_spread(ctx, centre, now)
        self._retry_stuck_cancels(ctx, now)
        if self._active:
            if not self._cancelling.keys() & self._active.keys() and now >= self._refresh_at:
                self._refresh(ctx, refs, now)
            return
        self._place_ladder(ctx, refs, now)

    def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> None:
        if connector != self.config.connector:
            return
        if isinstance(event, EventsDropped):
            # We may have missed endings: keep only what the context still knows as live.
            for book in (self._active, self._hanging, self._cancelling):
                for cid in [c for c in book if not ctx.is_own(c)]:
                    del book[cid]
            return
        if not isinstance(event, TerminalOrderEvent):
            return
        cid = event.client_order_id
        quote = self._active.pop(cid, None)
        self._hanging.pop(cid, None)
        self._cancelling.pop(cid, None)
        if quote is not None and isinstance(event, OrderCompleted) and self.config.hanging_orders_enabled:
            for other, q in list(self._active.items()):
                if q.side is not quote.side and other not in self._cancelling:
                    self._hanging[other] = self._active.pop(other)

    def status(self, ctx: StrategyContext) -> dict[str, str]:
        return {
            "market": f"{self.config.connector} {self.config.trading_pair}",
            "quotes": str(len(self._active)),
            "hanging": str(len(self._hanging)),
            "cancelling": str(len(self._cancelling)),
            "cycles": str(self.cycles),
            "next refresh": f"{max(0.0, self._refresh_at - ctx.now()):.1f}s",
        }

    # -- steps -----------------------------------------------------------------------------------

    def _cancel(self, ctx: StrategyContext, cid: str, now: float) -> None:
        if cid not in self._cancelling:
            self._cancelling[cid] = now
            ctx.cancel(cid)

    def _cancel_far_hanging(self, ctx: StrategyContext, centre: Decimal, now: float) -> None:
        for cid, q in self._hanging.items():
            if hanging_too_far(q.price, centre, self.config.hanging_orders_cancel_pct):
                self._cancel(ctx, cid, now)

    def _cancel_below_minimum_spread(self, ctx: StrategyContext, centre: Decimal, now: float) -> None:
        minimum = self.config.minimum_spread
        if minimum is None:
            return
        for cid, q in self._active.items():
            if below_minimum_spread(q.side, q.price, centre, minimum):
                self._cancel(ctx, cid, now)

    def _retry_stuck_cancels(self, ctx: StrategyContext, now: float) -> None:
        """A cancel the venue did not confirm within a refresh period is asked again (the
        connector never sends two at once for one order)."""
        for cid, asked in list(self._cancelling.items()):
            if now - asked >= self.config.order_refresh_time:
                self._cancelling[cid] = now
                ctx.cancel(cid)

    def _refresh(self, ctx: StrategyContext, refs: tuple[Decimal, Decimal, Decimal], now: float) -> None:
        proposal = self._proposal(ctx, refs)
        tol = self.config.order_refresh_tolerance_pct
        keep = all(
            within_tolerance(
                [q.price for q in self._active.values() if q.side is side],
                [q.price for q in proposal if q.side is side],
                tol,
            )
            for side in (Side.BUY, Side.SELL)
        )
        if keep:
            self.refreshes_kept += 1
            self._refresh_at = now + self.config.order_refresh_time
            return
        for cid in list(self._active):
            self._cancel(ctx, cid, now)

    def _place_ladder(self, ctx: StrategyContext, refs: tuple[Decimal, Decimal, Decimal], now: float) -> None:
        cfg = self.config
        proposal = self._proposal(ctx, refs)
        if not proposal:
            return
        maker_only = ctx.supports(cfg.connector, OrderType.LIMIT_MAKER)
        order_type = OrderType.LIMIT_MAKER if maker_only else OrderType.LIMIT
        candidates = [
            OrderCandidate(cfg.trading_pair, q.side, order_type, q.amount, q.price, is_maker=True)
            for q in proposal
        ]
        sized = ctx.shrink_to_budget(cfg.connector, candidates)
        by_key = {(q.side, q.price): q for q in proposal}
        for cand in sized:
            assert cand.price is not None
            place = ctx.buy if cand.side is Side.BUY else ctx.sell
            cid = place(cfg.connector, cfg.trading_pair, cand.amount, order_type, cand.price)
            level = by_key[(cand.side, cand.price)].level
            self._active[cid] = Quote(cand.side, level, cand.price, cand.amount)
        self.cycles += 1
        self._refresh_at = now + cfg.order_refresh_time

    def _proposal(self, ctx: StrategyContext, refs: tuple[Decimal, Decimal, Decimal]) -> list[Quote]:
        """The ladder to quote now: on the tick grid, never crossing, inner levels first (bid,
        ask, bid, ask...) so a short budget keeps the levels closest to the market. Quotes whose
        amount rounds to zero are left out."""
        cfg = self.config
        conn, pair = cfg.connector, cfg.trading_pair
        rule = ctx.trading_rule(conn, pair)
        bids, asks = ladder(
            refs[0], refs[1], cfg.bid_spread, cfg.ask_spread, cfg.order_amount, cfg.order_levels,
            cfg.order_level_spread, cfg.order_level_amount,
        )
        bid_mult = ask_mult = Decimal(1)
        if cfg.inventory_skew_enabled:
            base, _, quote = pair.partition("-")
            bid_mult, ask_mult = inventory_multipliers(
                ctx.total_balance(conn, base), ctx.total_balance(conn, quote), refs[2],
                cfg.inventory_target_base_pct, sum((q.amount for q in bids), _ZERO),
                cfg.inventory_range_multiplier,
            )
        best_bid, best_ask = ctx.best_bid(conn, pair), ctx.best_ask(conn, pair)
        out: list[Quote] = []
        for bid, ask in zip(bids, asks, strict=True):
            for q, mult in ((bid, bid_mult), (ask, ask_mult)):
                amount = rule.quantize_amount(q.amount * mult)
                price = keep_passive(q.side, q.price, best_bid, best_ask, rule)
                if amount > 0 and price > 0:
                    out.append(Quote(q.side, q.level, price, amount))
        return out
