"""Rolling 24-hour trade statistics, O(1) amortized per trade and per query.

Volume sums are kept exactly (added on arrival, subtracted on eviction); high and low come from
monotonic deques, so a busy simulated market does not make every ticker request scan a day of
trades. Only the two ratios (percent change, weighted average price) are rounded, to the
places Binance prints.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.events import BookTop, TradeEvent

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Ticker24h:
    symbol: str
    price_change: Decimal
    price_change_percent: Decimal
    weighted_avg_price: Decimal
    prev_close_price: Decimal
    last_price: Decimal
    last_qty: Decimal
    bid_price: Decimal
    bid_qty: Decimal
    ask_price: Decimal
    ask_qty: Decimal
    open_price: Decimal
    high_price: Decimal
    low_price: Decimal
    volume: Decimal
    quote_volume: Decimal
    open_time: int
    close_time: int
    first_id: int
    last_id: int
    count: int


class RollingStats:
    def __init__(self, window_ms: int = DAY_MS) -> None:
        self.window_ms = window_ms
        self._trades: deque[TradeEvent] = deque()
        self._highs: deque[TradeEvent] = deque()  # prices non-increasing from the left
        self._lows: deque[TradeEvent] = deque()  # prices non-decreasing from the left
        self._volume = money.ZERO
        self._quote_volume = money.ZERO
        self._prev_close = money.ZERO
        self.last: TradeEvent | None = None

    def add(self, trade: TradeEvent) -> None:
        """Record ``trade``; times must not decrease (the engine's clock guarantees it)."""
        self._trades.append(trade)
        self._volume = money.add(self._volume, trade.qty)
        self._quote_volume = money.add(self._quote_volume, trade.quote_qty)
        while self._highs and self._highs[-1].price < trade.price:
            self._highs.pop()
        self._highs.append(trade)
        while self._lows and self._lows[-1].price > trade.price:
            self._lows.pop()
        self._lows.append(trade)
        self.last = trade

    def _evict(self, now_ms: int) -> None:
        horizon = now_ms - self.window_ms
        while self._trades and self._trades[0].time <= horizon:
            old = self._trades.popleft()
            self._volume = money.sub(self._volume, old.qty)
            self._quote_volume = money.sub(self._quote_volume, old.quote_qty)
            self._prev_close = old.price
            if self._highs and self._highs[0] is old:
                self._highs.popleft()
            if self._lows and self._lows[0] is old:
                self._lows.popleft()

    def ticker(self, symbol: str, now_ms: int, top: BookTop) -> Ticker24h:
        self._evict(now_ms)
        zero = money.ZERO
        last_price = self.last.price if self.last else zero
        if self._trades:
            first, last = self._trades[0], self._trades[-1]
            open_price, high, low = first.price, self._highs[0].price, self._lows[0].price
            change = money.sub(last.price, open_price)
            percent = money.divide(money.mul(change, Decimal(100)), open_price, 3)
            wavg = money.divide(self._quote_volume, self._volume, 8)
            first_id, last_id, count = first.trade_id, last.trade_id, len(self._trades)
            last_qty = last.qty
        else:
            open_price = high = low = change = percent = wavg = last_qty = zero
            first_id = last_id = -1
            count = 0
        return Ticker24h(
            symbol=symbol,
            price_change=change,
            price_change_percent=percent,
            weighted_avg_price=wavg,
            prev_close_price=self._prev_close,
            last_price=last_price,
            last_qty=last_qty,
            bid_price=top.bid_price if top.bid_price is not None else zero,
            bid_qty=top.bid_qty,
            ask_price=top.ask_price if top.ask_price is not None else zero,
            ask_qty=top.ask_qty,
            open_price=open_price,
            high_price=high,
            low_price=low,
            volume=self._volume,
            quote_volume=self._quote_volume,
            open_time=now_ms - self.window_ms,
            close_time=now_ms,
            first_id=first_id,
            last_id=last_id,
            count=count,
        )
