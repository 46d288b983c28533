"""Periodic taker: a market order of a fixed size every ``interval`` seconds, up to
``max_orders`` (0: no limit). The smallest strategy that takes liquidity, e.g. to build or unwind
a position in slices (a crude TWAP), and the proof that a connector works as a taker (QA Q4).

Each slice is sized against the available balance at the price its volume reaches in the book
(the worst it may fill at), so a buy never asks for more quote than is there; a slice that cannot
fit at all is skipped and counted, and the next one is tried at the next interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from marketlink.core.budget import OrderCandidate
from marketlink.core.enums import OrderType, Side
from marketlink.core.events import OrderFilled
from marketlink.strategy.api import Strategy, StrategyContext, StrategyEvent

__all__ = ["PeriodicTaker", "PeriodicTakerConfig"]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PeriodicTakerConfig:
    connector: str
    trading_pair: str
    side: Side
    order_amount: Decimal
    interval: float = 60.0
    max_orders: int = 0

    def markets(self) -> list[tuple[str, str]]:
        return [(self.connector, self.trading_pair)]

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.order_amount <= 0:
            out.append(("order_amount", "must be > 0"))
        if not self.interval > 0:
            out.append(("interval", "must be > 0 seconds"))
        if self.max_orders < 0:
            out.append(("max_orders", "must be >= 0 (0: no limit)"))
        return out


class PeriodicTaker(Strategy):
    name = "periodic_taker"

    def __init__(self, config: PeriodicTakerConfig) -> None:
        self.config = config
        self.orders = 0
        self.skipped = 0
        self.filled_base = _ZERO
        self.filled_quote = _ZERO
        self._next_at: float | None = None
        self._ids: set[str] = set()

    def on_tick(self, ctx: StrategyContext) -> None:
        cfg = self.config
        now = ctx.now()
        if cfg.max_orders and self.orders >= cfg.max_orders:
            return
        if (self._next_at is not None and now < self._next_at) or not ctx.ready(cfg.connector):
            return
        self._next_at = now + cfg.interval
        conn = ctx.connector(cfg.connector)
        reference = conn.price_for_volume(cfg.trading_pair, cfg.side is Side.BUY, cfg.order_amount)
        if reference is None:  # not that much volume on the book: try again next time
            self.skipped += 1
            log.info("%s: no book depth for %s %s", self.name, cfg.order_amount, cfg.trading_pair)
            return
        candidate = OrderCandidate(cfg.trading_pair, cfg.side, OrderType.MARKET, cfg.order_amount, reference)
        sized = ctx.shrink_to_budget(cfg.connector, [candidate])
        if not sized:
            self.skipped += 1
            return
        place = ctx.buy if cfg.side is Side.BUY else ctx.sell
        self._ids.add(place(cfg.connector, cfg.trading_pair, sized[0].amount, OrderType.MARKET))
        self.orders += 1

    def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> None:
        # Our own ids, not ctx.is_own: the context forgets an order at its ending, which it sees
        # as it is published, before this callback hears of the fills that came first.
        if isinstance(event, OrderFilled) and event.client_order_id in self._ids:
            self.filled_base += event.amount
            self.filled_quote += event.quote_amount

    def status(self, ctx: StrategyContext) -> dict[str, str]:
        cfg = self.config
        limit = str(cfg.max_orders) if cfg.max_orders else "no limit"
        return {
            "market": f"{cfg.connector} {cfg.trading_pair} {cfg.side}",
            "orders": f"{self.orders} of {limit}",
            "skipped": str(self.skipped),
            "filled": f"{self.filled_base} for {self.filled_quote}",
        }
