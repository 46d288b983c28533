"""The matching book of one market: price levels in price order, orders in time order.

Levels are keyed by exact Decimal prices (canonical form, so 1.5 and 1.50 are one level) and
kept in a sorted list with ``bisect``; each level is an insertion-ordered dict of resting
orders, which gives time priority and O(1) removal. Every change to a level's total bumps the
book's update id and is remembered as an absolute quantity, so a front-end can drain Binance
style diffs whose ids are contiguous and whose levels replay onto any snapshot taken between
drains (the snapshot's id then falls inside the next diff, the case Binance's rule allows).

This is deliberately independent of ``marketlink.core.book``: the sandbox is the ground truth
the client-side book is checked against.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from decimal import Decimal

from marketlink.core.enums import Side
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.events import DepthDiff, Level
from marketlink.sandbox.exchange.orders import Order


class _Level:
    __slots__ = ("orders", "total")

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        self.total = money.ZERO


class _BookSide:
    """One side; ``prices`` ascending, the best end depends on the side."""

    __slots__ = ("is_bid", "levels", "prices")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.prices: list[Decimal] = []
        self.levels: dict[Decimal, _Level] = {}

    def best(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def prices_from_best(self) -> Iterator[Decimal]:
        return reversed(self.prices) if self.is_bid else iter(self.prices)

    def level(self, price: Decimal) -> _Level:
        lvl = self.levels.get(price)
        if lvl is None:
            lvl = self.levels[price] = _Level()
            bisect.insort(self.prices, price)
        return lvl

    def drop(self, price: Decimal) -> None:
        del self.levels[price]
        i = bisect.bisect_left(self.prices, price)
        del self.prices[i]


class MatchingBook:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.update_id = 0
        self._bids = _BookSide(is_bid=True)
        self._asks = _BookSide(is_bid=False)
        self._pending_first: int | None = None
        self._pending: dict[Side, dict[Decimal, Decimal]] = {Side.BUY: {}, Side.SELL: {}}

    def _side(self, side: Side) -> _BookSide:
        return self._bids if side is Side.BUY else self._asks

    # -- mutation (the engine's only way to change the book) -----------------------------------

    def add(self, order: Order) -> None:
        """Rest ``order`` at the back of its price level."""
        assert order.price is not None and not order.on_book and order.remaining > 0
        book_side = self._side(order.side)
        lvl = book_side.level(order.price)
        lvl.orders[order.order_id] = order
        lvl.total = money.add(lvl.total, order.remaining)
        order.on_book = True
        self._changed(order.side, order.price, lvl.total)

    def reduce(self, order: Order, qty: Decimal) -> None:
        """``order`` (already updated by the caller) traded ``qty``; drop it once exhausted."""
        lvl = self._level_of(order)
        lvl.total = money.sub(lvl.total, qty)
        if order.remaining == 0:
            self._detach(order, lvl)
        self._changed(order.side, order.price, lvl.total)  # type: ignore[arg-type]

    def remove(self, order: Order) -> None:
        """Take ``order`` off the book whole (cancel, expiry)."""
        lvl = self._level_of(order)
        lvl.total = money.sub(lvl.total, order.remaining)
        self._detach(order, lvl)
        self._changed(order.side, order.price, lvl.total)  # type: ignore[arg-type]

    def _level_of(self, order: Order) -> _Level:
        assert order.on_book and order.price is not None
        return self._side(order.side).levels[order.price]

    def _detach(self, order: Order, lvl: _Level) -> None:
        del lvl.orders[order.order_id]
        order.on_book = False
        if not lvl.orders:
            assert lvl.total == 0, f"{self.symbol}: empty level with total {lvl.total}"
            self._side(order.side).drop(order.price)  # type: ignore[arg-type]

    def _changed(self, side: Side, price: Decimal, total: Decimal) -> None:
        self.update_id += 1
        if self._pending_first is None:
            self._pending_first = self.update_id
        self._pending[side][price] = total

    # -- reading --------------------------------------------------------------------------------

    def best(self, side: Side) -> Level | None:
        book_side = self._side(side)
        price = book_side.best()
        if price is None:
            return None
        return price, book_side.levels[price].total

    def crosses(self, side: Side, price: Decimal) -> bool:
        """Would an order on ``side`` at ``price`` trade against the opposite side now?"""
        best = self._side(side.opposite).best()
        if best is None:
            return False
        return best <= price if side is Side.BUY else best >= price

    def orders_from_best(self, side: Side) -> Iterator[tuple[Decimal, Order]]:
        """Resting orders of ``side`` in priority order. Do not mutate the book meanwhile."""
        book_side = self._side(side)
        for price in book_side.prices_from_best():
            for order in book_side.levels[price].orders.values():
                yield price, order

    def depth(self, side: Side, limit: int | None = None) -> tuple[Level, ...]:
        book_side = self._side(side)
        out: list[Level] = []
        for price in book_side.prices_from_best():
            if limit is not None and len(out) >= limit:
                break
            out.append((price, book_side.levels[price].total))
        return tuple(out)

    def level_count(self, side: Side) -> int:
        return len(self._side(side).prices)

    def resting_orders(self) -> Iterator[Order]:
        for side in (Side.BUY, Side.SELL):
            for _, order in self.orders_from_best(side):
                yield order

    # -- diffs ----------------------------------------------------------------------------------

    def drain(self) -> DepthDiff | None:
        """Levels changed since the last drain (absolute quantities), or ``None`` if none."""
        if self._pending_first is None:
            return None
        bids = tuple(sorted(self._pending[Side.BUY].items(), reverse=True))
        asks = tuple(sorted(self._pending[Side.SELL].items()))
        diff = DepthDiff(self.symbol, self._pending_first, self.update_id, bids, asks)
        self._pending_first = None
        self._pending = {Side.BUY: {}, Side.SELL: {}}
        return diff
