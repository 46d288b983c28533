"""Rolling 24-hour statistics and the matching book's own bookkeeping."""

from __future__ import annotations

from decimal import Decimal

from sandbox_support import SYMBOL, D, limit, make_exchange, make_spec, market

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.sandbox.exchange import BookTop, StpMode, TradeEvent
from marketlink.sandbox.exchange.book import MatchingBook
from marketlink.sandbox.exchange.orders import Order
from marketlink.sandbox.exchange.stats import DAY_MS, RollingStats

HOUR = 3_600_000
EMPTY_TOP = BookTop(SYMBOL, 0, None, D(0), None, D(0))


def trade(trade_id: int, price: str, qty: str, time: int) -> TradeEvent:
    p, q = D(price), D(qty)
    return TradeEvent(SYMBOL, trade_id, p, q, p * q, 1, 2, True, time)


def test_ticker_over_a_rolling_day() -> None:
    stats = RollingStats()
    for i, (price, qty, t) in enumerate(
        [("100", "1", 0), ("120", "2", HOUR), ("90", "1", 2 * HOUR), ("110", "1", 3 * HOUR)], start=1
    ):
        stats.add(trade(i, price, qty, t))

    tk = stats.ticker(SYMBOL, 3 * HOUR, EMPTY_TOP)
    assert (tk.open_price, tk.high_price, tk.low_price, tk.last_price) == (D(100), D(120), D(90), D(110))
    assert (tk.volume, tk.quote_volume, tk.count, tk.first_id, tk.last_id) == (D(5), D(540), 4, 1, 4)
    assert (tk.price_change, tk.price_change_percent) == (D(10), D("10.000"))
    assert tk.weighted_avg_price == D("108.00000000")
    assert (tk.open_time, tk.close_time) == (3 * HOUR - DAY_MS, 3 * HOUR)
    assert tk.prev_close_price == 0 and tk.bid_price == 0

    # 24 h after the first two trades they leave the window, and high / low follow
    tk = stats.ticker(SYMBOL, DAY_MS + HOUR, EMPTY_TOP)
    assert (tk.open_price, tk.high_price, tk.low_price, tk.count) == (D(90), D(110), D(90), 2)
    assert (tk.volume, tk.prev_close_price, tk.first_id) == (D(2), D(120), 3)
    assert tk.price_change_percent == D("22.222")

    tk = stats.ticker(SYMBOL, DAY_MS * 3, EMPTY_TOP)
    assert (tk.count, tk.volume, tk.high_price, tk.first_id, tk.last_id) == (0, 0, 0, -1, -1)
    assert tk.last_price == D(110) and tk.prev_close_price == D(110)


def test_high_and_low_survive_equal_prices_and_eviction() -> None:
    stats = RollingStats(window_ms=10)
    for i, price in enumerate(["5", "7", "7", "3", "6"], start=1):
        stats.add(trade(i, price, "1", i))
    assert (stats.ticker(SYMBOL, 5, EMPTY_TOP).high_price, stats.ticker(SYMBOL, 5, EMPTY_TOP).low_price) == (
        D(7), D(3)
    )
    tk = stats.ticker(SYMBOL, 13, EMPTY_TOP)  # trades 1..3 gone
    assert (tk.high_price, tk.low_price, tk.count) == (D(6), D(3), 2)


def test_engine_ticker_includes_the_book_top() -> None:
    ex = make_exchange(make_spec())
    limit(ex, "alice", "SELL", "1", "101")
    limit(ex, "alice", "BUY", "2", "99")
    market(ex, "bob", "BUY", quantity="0.5")
    tk = ex.ticker_24h(SYMBOL, 2_000)
    assert (tk.bid_price, tk.bid_qty, tk.ask_price, tk.ask_qty) == (D(99), D(2), D(101), D("0.5"))
    assert (tk.last_price, tk.last_qty, tk.count) == (D(101), D("0.5"), 1)


def order(order_id: int, side: Side, price: str, qty: str) -> Order:
    return Order(
        symbol=SYMBOL, order_id=order_id, account="x", client_order_id=str(order_id), side=side,
        order_type=OrderType.LIMIT, time_in_force=TimeInForce.GTC, price=D(price), orig_qty=D(qty),
        orig_quote_order_qty=D(0), stp_mode=StpMode.NONE, time=0, lock_asset="USDT",
    )


def test_book_levels_priority_and_diffs() -> None:
    book = MatchingBook(SYMBOL)
    assert book.drain() is None and book.best(Side.BUY) is None
    a, b, c = order(1, Side.BUY, "10", "1"), order(2, Side.BUY, "10", "2"), order(3, Side.BUY, "11", "1")
    for o in (a, b, c):
        book.add(o)
    ask = order(4, Side.SELL, "12", "3")
    book.add(ask)
    assert [o.order_id for _, o in book.orders_from_best(Side.BUY)] == [3, 1, 2]
    assert book.best(Side.BUY) == (D(11), D(1)) and book.level_count(Side.BUY) == 2
    assert book.crosses(Side.BUY, D(12)) and not book.crosses(Side.BUY, D("11.99"))
    assert book.crosses(Side.SELL, D(11)) and not MatchingBook(SYMBOL).crosses(Side.SELL, D(1))
    first = book.drain()
    assert first is not None and (first.first_update_id, first.last_update_id) == (1, 4)
    assert first.bids == ((D(11), D(1)), (D(10), D(3))) and first.asks == ((D(12), D(3)),)

    a.executed_qty = D("0.4")
    book.reduce(a, D("0.4"))
    book.remove(c)
    second = book.drain()
    assert second is not None and (second.first_update_id, second.last_update_id) == (5, 6)
    assert second.bids == ((D(11), D(0)), (D(10), D("2.6")))
    assert book.depth(Side.BUY) == ((D(10), D("2.6")),)
    assert not c.on_book and a.on_book
    a.executed_qty = D(1)
    book.reduce(a, D("0.6"))
    assert [o.order_id for o in book.resting_orders()] == [2, 4]
    assert book.update_id == 7 and book.depth(Side.SELL, 0) == ()
    assert sum((q for _, q in book.depth(Side.BUY)), Decimal(0)) == D(2)
