"""Events: what a front-end needs to render executionReport, account position, trades, tickers."""

from __future__ import annotations

import logging

import pytest
from sandbox_support import SYMBOL, D, Recorder, limit, market

from marketlink.sandbox.exchange import (
    AccountEvent,
    BookTop,
    Exchange,
    ExecutionType,
    OrderEvent,
    OrderStatus,
    TradeEvent,
)


def order_events(rec: Recorder) -> list[OrderEvent]:
    return [e for e in rec.private if isinstance(e, OrderEvent)]


def test_taker_lifecycle_and_fill_fields(ex: Exchange, rec: Recorder) -> None:
    ex.subscribe_account("bob", rec.on_private())
    maker = limit(ex, "alice", "SELL", "0.4", "100")
    limit(ex, "alice", "SELL", "1", "101")

    res = market(ex, "bob", "BUY", quantity="1", now_ms=7_000)

    new, first, second = order_events(rec)
    assert (new.execution_type, new.order.status, new.order.is_working) == (
        ExecutionType.NEW, OrderStatus.NEW, True
    )
    assert new.trade_id == -1 and new.commission_asset is None and new.last_qty == 0
    assert (first.execution_type, first.order.status) == (ExecutionType.TRADE, OrderStatus.PARTIALLY_FILLED)
    assert (first.last_qty, first.last_price, first.last_quote_qty) == (D("0.4"), D("100"), D("40"))
    assert (first.commission, first.commission_asset, first.is_maker) == (D("0.0008"), "BTC", False)
    assert first.trade_id == res.fills[0].trade_id
    assert (first.order.executed_qty, first.order.cum_quote_qty) == (D("0.4"), D("40"))
    assert (second.order.status, second.order.executed_qty, second.order.cum_quote_qty) == (
        OrderStatus.FILLED, D("1"), D("100.6")
    )
    assert not second.order.is_working
    assert new.execution_id < first.execution_id < second.execution_id
    assert all(e.event_time == e.transaction_time == 7_000 for e in (new, first, second))
    assert new.client_order_id == res.order.client_order_id and new.orig_client_order_id == ""
    account = rec.private[-1]
    assert isinstance(account, AccountEvent) and account.account == "bob"
    assert {b.asset: (b.free, b.locked) for b in account.balances} == {
        "USDT": (D("1000000") - D("100.6"), D("0")),
        "BTC": (D("100") + D("1") - D("0.002"), D("0")),
    }
    assert sum(isinstance(e, AccountEvent) for e in rec.private) == 1  # one per operation
    assert maker.order.order_id != res.order.order_id


def test_maker_sees_its_fill_as_maker(ex: Exchange, rec: Recorder) -> None:
    ex.subscribe_account("alice", rec.on_private())
    limit(ex, "alice", "BUY", "1", "100", client_order_id="q1")
    market(ex, "bob", "SELL", quantity="0.25")
    new, trade = order_events(rec)
    assert new.order.is_working and new.client_order_id == "q1"
    assert (trade.is_maker, trade.commission_asset, trade.commission) == (True, "BTC", D("0.00025"))
    assert trade.order.status is OrderStatus.PARTIALLY_FILLED and trade.order.is_working


def test_public_trades_and_top_of_book_changes(ex: Exchange, rec: Recorder) -> None:
    ex.subscribe_symbol(SYMBOL, rec.on_public())
    limit(ex, "alice", "BUY", "1", "99")
    limit(ex, "alice", "BUY", "1", "98")  # deeper level: the top does not change
    market(ex, "bob", "SELL", quantity="0.5")

    tops = [e for e in rec.public if isinstance(e, BookTop)]
    trades = [e for e in rec.public if isinstance(e, TradeEvent)]
    assert [(t.bid_price, t.bid_qty) for t in tops] == [(D("99"), D("1")), (D("99"), D("0.5"))]
    (trade,) = trades
    assert (trade.price, trade.qty, trade.quote_qty) == (D("99"), D("0.5"), D("49.5"))
    assert trade.buyer_is_maker
    assert rec.public.index(trade) < rec.public.index(tops[-1])


def test_unsubscribe_and_unknown_symbol(ex: Exchange, rec: Recorder) -> None:
    stop = ex.subscribe_account("alice", rec.on_private())
    limit(ex, "alice", "BUY", "1", "90")
    count = len(rec.private)
    stop()
    stop()  # twice is harmless
    limit(ex, "alice", "BUY", "1", "91")
    assert len(rec.private) == count > 0
    with pytest.raises(Exception, match="unknown symbol"):
        ex.subscribe_symbol("NOPE", rec.on_public())


def test_a_failing_listener_is_contained(
    ex: Exchange, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: object) -> None:
        raise RuntimeError("listener bug")

    ex.subscribe_account("alice", broken)
    ex.subscribe_account("alice", rec.on_private())
    with caplog.at_level(logging.ERROR):
        res = limit(ex, "alice", "BUY", "1", "90")
    assert res.order.status is OrderStatus.NEW
    assert ex.listener_errors == 2  # the NEW report and the account event
    assert len(rec.private) == 2 and "listener failed" in caplog.text


def test_listeners_may_call_back_into_the_engine_and_order_is_kept(ex: Exchange) -> None:
    seen: list[tuple[str, object]] = []

    def alice_listener(event: object) -> None:
        seen.append(("alice", type(event).__name__))
        if isinstance(event, OrderEvent) and event.execution_type is ExecutionType.NEW:
            market(ex, "bob", "BUY", quantity="1", now_ms=2_000)  # nested operation

    def bob_listener(event: object) -> None:
        seen.append(("bob", type(event).__name__))

    ex.subscribe_account("alice", alice_listener)
    ex.subscribe_account("bob", bob_listener)
    limit(ex, "alice", "SELL", "1", "100")

    assert seen[:2] == [("alice", "OrderEvent"), ("alice", "AccountEvent")]  # outer batch first
    assert ("bob", "OrderEvent") in seen and ("alice", "OrderEvent") in seen[2:]
    assert ex.get_order("alice", SYMBOL, order_id=1).status is OrderStatus.FILLED
    assert ex.audit() == []
