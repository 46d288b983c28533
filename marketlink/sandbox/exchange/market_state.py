"""Everything the engine keeps for one market besides the book's levels: ids, order indexes,
recent and per-account trades, rolling statistics.

Ids are per market, as on Binance (order, trade, execution and prevented-match ids each count
up within a symbol). Closed orders stay queryable until ``closed_retention`` newer orders have
closed, and each account keeps its last ``own_trade_retention`` trades here: a long simulation
must not grow without bound, while a test's recent history is always there.
"""

from __future__ import annotations

import bisect
from collections import deque

from marketlink.core.enums import Side
from marketlink.sandbox.exchange.book import MatchingBook
from marketlink.sandbox.exchange.events import BookTop, OwnTrade, TradeEvent
from marketlink.sandbox.exchange.markets import MarketSpec
from marketlink.sandbox.exchange.money import ZERO
from marketlink.sandbox.exchange.orders import Order
from marketlink.sandbox.exchange.stats import RollingStats


class MarketState:
    def __init__(
        self,
        spec: MarketSpec,
        *,
        closed_retention: int = 10_000,
        recent_trades: int = 1_000,
        own_trade_retention: int = 10_000,
    ) -> None:
        self.spec = spec
        self.book = MatchingBook(spec.symbol)
        self.stats = RollingStats()
        self.recent: deque[TradeEvent] = deque(maxlen=recent_trades)
        self.orders: dict[int, Order] = {}  # open, and closed ones still retained
        self.by_account: dict[str, dict[int, Order]] = {}
        self.open_by_account: dict[str, dict[int, Order]] = {}
        self.client_ids: dict[tuple[str, str], int] = {}  # latest order per (account, client id)
        self.own_trades: dict[str, list[OwnTrade]] = {}
        self.last_top: BookTop | None = None
        self._closed: deque[int] = deque()
        self._closed_retention = closed_retention
        self._own_trade_retention = own_trade_retention
        self._order_id = 0
        self._trade_id = 0
        self._execution_id = 0
        self._prevented_match_id = -1  # Binance numbers prevented matches from 0

    # -- ids ------------------------------------------------------------------------------------

    def next_order_id(self) -> int:
        self._order_id += 1
        return self._order_id

    def next_trade_id(self) -> int:
        self._trade_id += 1
        return self._trade_id

    def next_execution_id(self) -> int:
        self._execution_id += 1
        return self._execution_id

    def next_prevented_match_id(self) -> int:
        self._prevented_match_id += 1
        return self._prevented_match_id

    # -- orders ---------------------------------------------------------------------------------

    def register(self, order: Order) -> None:
        self.orders[order.order_id] = order
        self.by_account.setdefault(order.account, {})[order.order_id] = order
        self.open_by_account.setdefault(order.account, {})[order.order_id] = order
        self.client_ids[(order.account, order.client_order_id)] = order.order_id

    def close(self, order: Order) -> None:
        """``order`` reached a final status: out of the open set, into bounded retention."""
        open_orders = self.open_by_account.get(order.account)
        if open_orders is None or open_orders.pop(order.order_id, None) is None:
            return
        self._closed.append(order.order_id)
        while len(self._closed) > self._closed_retention:
            self._forget(self._closed.popleft())

    def _forget(self, order_id: int) -> None:
        order = self.orders.pop(order_id)
        self.by_account[order.account].pop(order_id, None)
        key = (order.account, order.client_order_id)
        if self.client_ids.get(key) == order_id:
            del self.client_ids[key]

    def find(self, account: str, order_id: int | None, client_order_id: str | None) -> Order | None:
        """By id (and then the client id must match, as Binance checks), else by client id."""
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is None or order.account != account:
                return None
            if client_order_id is not None and order.client_order_id != client_order_id:
                return None
            return order
        if client_order_id is None:
            return None
        found = self.client_ids.get((account, client_order_id))
        return self.orders.get(found) if found is not None else None

    def open_with_client_id(self, account: str, client_order_id: str) -> Order | None:
        order = self.find(account, None, client_order_id)
        return order if order is not None and order.status.is_open else None

    def open_orders(self, account: str) -> list[Order]:
        return list(self.open_by_account.get(account, {}).values())

    def account_orders(self, account: str) -> list[Order]:
        return list(self.by_account.get(account, {}).values())

    # -- trades ---------------------------------------------------------------------------------

    def record_trade(self, trade: TradeEvent) -> None:
        self.recent.append(trade)
        self.stats.add(trade)

    def record_own_trade(self, trade: OwnTrade) -> None:
        trades = self.own_trades.setdefault(trade.account, [])
        trades.append(trade)
        if len(trades) > 2 * self._own_trade_retention:
            del trades[: len(trades) - self._own_trade_retention]

    def own_trades_from(self, account: str, from_id: int) -> list[OwnTrade]:
        trades = self.own_trades.get(account, [])
        return trades[bisect.bisect_left(trades, from_id, key=lambda t: t.trade_id):]

    # -- top of book ----------------------------------------------------------------------------

    def top(self) -> BookTop:
        bid = self.book.best(Side.BUY)
        ask = self.book.best(Side.SELL)
        return BookTop(
            self.spec.symbol,
            self.book.update_id,
            bid[0] if bid else None,
            bid[1] if bid else ZERO,
            ask[0] if ask else None,
            ask[1] if ask else ZERO,
        )
