"""Self-trade prevention, checked against the scenarios of Binance's STP FAQ."""

from __future__ import annotations

import pytest
from sandbox_support import SYMBOL, D, limit, locked, make_exchange, make_spec, market

from marketlink.sandbox.exchange import (
    BINANCE_DEFAULT_STP,
    Exchange,
    ExchangeRejection,
    ExecutionType,
    OrderEvent,
    OrderStatus,
    Reason,
    StpMode,
)


def three_bids(ex: Exchange) -> list[int]:
    """Scenario B/C's book: own bids 1.2 @ 1.2, 1.3 @ 1.1 and 8.1 @ 1 (min notional off)."""
    return [
        limit(ex, "alice", "BUY", q, p, stp_mode="NONE").order.order_id
        for q, p in (("1.2", "1.2"), ("1.3", "1.1"), ("8.1", "1"))
    ]


@pytest.fixture
def ex0() -> Exchange:
    return make_exchange(make_spec(min_notional="0"))


def test_binance_default_is_expire_maker_and_configurable() -> None:
    assert BINANCE_DEFAULT_STP is StpMode.EXPIRE_MAKER
    ex = make_exchange(make_spec(min_notional="0"))
    assert limit(ex, "alice", "BUY", "1", "1").order.stp_mode is StpMode.EXPIRE_MAKER
    other = make_exchange(make_spec(default_stp="NONE"))
    assert limit(other, "alice", "BUY", "1", "10").order.stp_mode is StpMode.NONE


def test_none_lets_an_account_trade_with_itself(ex0: Exchange) -> None:
    limit(ex0, "alice", "BUY", "1", "1", stp_mode="NONE")
    res = limit(ex0, "alice", "SELL", "1", "1", stp_mode="NONE")
    assert res.order.status is OrderStatus.FILLED and len(res.fills) == 1
    assert [t.is_buyer for t in ex0.my_trades("alice", SYMBOL)] == [True, False]
    assert ex0.audit() == []


def test_expire_maker_expires_own_quotes_and_the_taker_rests(ex0: Exchange) -> None:
    makers = three_bids(ex0)
    events: list[OrderEvent] = []
    ex0.subscribe_account("alice", lambda e: events.append(e) if isinstance(e, OrderEvent) else None)

    res = limit(ex0, "alice", "SELL", "3", "1", stp_mode="EXPIRE_MAKER")

    assert res.order.status is OrderStatus.NEW and res.order.is_working and res.fills == ()
    assert [(p.maker_order_id, p.price, p.maker_prevented_qty, p.taker_prevented_qty)
            for p in res.prevented_matches] == [
        (makers[0], D("1.20"), D("1.200"), None),
        (makers[1], D("1.10"), D("1.300"), None),
        (makers[2], D("1.00"), D("8.100"), None),
    ]
    assert [p.prevented_match_id for p in res.prevented_matches] == [0, 1, 2]
    for order_id in makers:
        view = ex0.get_order("alice", SYMBOL, order_id=order_id)
        assert view.status is OrderStatus.EXPIRED_IN_MATCH and view.prevented_qty == view.orig_qty
    prevention = [e for e in events if e.execution_type is ExecutionType.TRADE_PREVENTION]
    assert [(e.order.order_id, e.order.status, e.last_prevented_qty) for e in prevention] == [
        (makers[0], OrderStatus.EXPIRED_IN_MATCH, D("1.2")),
        (makers[1], OrderStatus.EXPIRED_IN_MATCH, D("1.3")),
        (makers[2], OrderStatus.EXPIRED_IN_MATCH, D("8.1")),
    ]
    assert ex0.depth(SYMBOL).bids == () and ex0.depth(SYMBOL).asks == ((D("1.00"), D("3.000")),)
    assert locked(ex0, "alice", "USDT") == 0  # every expired bid gave its lock back
    assert ex0.audit() == []


def test_expire_maker_keeps_matching_other_accounts(ex0: Exchange) -> None:
    own = limit(ex0, "alice", "BUY", "1", "2")
    limit(ex0, "bob", "BUY", "1", "1.5")
    res = limit(ex0, "alice", "SELL", "1", "1")  # market default EXPIRE_MAKER
    assert ex0.get_order("alice", SYMBOL, order_id=own.order.order_id).status is OrderStatus.EXPIRED_IN_MATCH
    assert [(f.price, f.qty) for f in res.fills] == [(D("1.50"), D("1.000"))]
    assert res.order.status is OrderStatus.FILLED


def test_expire_taker_expires_the_new_order_and_keeps_the_book(ex0: Exchange) -> None:
    makers = three_bids(ex0)
    events: list[OrderEvent] = []
    ex0.subscribe_account("alice", lambda e: events.append(e) if isinstance(e, OrderEvent) else None)

    res = limit(ex0, "alice", "SELL", "3", "1", stp_mode="EXPIRE_TAKER")

    assert res.order.status is OrderStatus.EXPIRED_IN_MATCH
    assert res.order.prevented_qty == D("3") and res.order.prevented_match_id == 0
    (pm,) = res.prevented_matches
    assert (pm.maker_order_id, pm.taker_prevented_qty, pm.maker_prevented_qty) == (makers[0], D("3"), None)
    assert all(ex0.get_order("alice", SYMBOL, order_id=i).status is OrderStatus.NEW for i in makers)
    assert [e.execution_type for e in events] == [ExecutionType.NEW, ExecutionType.TRADE_PREVENTION]
    assert locked(ex0, "alice", "BTC") == 0


def test_expire_taker_after_partial_fills_against_others(ex0: Exchange) -> None:
    limit(ex0, "bob", "BUY", "1", "2")
    limit(ex0, "alice", "BUY", "5", "1.5")
    res = limit(ex0, "alice", "SELL", "3", "1", stp_mode="EXPIRE_TAKER")
    assert res.order.executed_qty == D("1") and res.order.prevented_qty == D("2")
    assert res.order.status is OrderStatus.EXPIRED_IN_MATCH
    assert res.order.remaining_qty == 0


def test_expire_both_expires_both_sides_in_one_prevented_match(ex0: Exchange) -> None:
    maker = limit(ex0, "alice", "BUY", "1", "1", stp_mode="NONE")
    res = limit(ex0, "alice", "SELL", "3", "1", stp_mode="EXPIRE_BOTH")
    assert res.order.status is OrderStatus.EXPIRED_IN_MATCH and res.order.prevented_qty == D("3")
    (pm,) = res.prevented_matches
    assert (pm.prevented_match_id, pm.maker_order_id, pm.taker_prevented_qty, pm.maker_prevented_qty) == (
        0, maker.order.order_id, D("3"), D("1")
    )
    view = ex0.get_order("alice", SYMBOL, order_id=maker.order.order_id)
    assert view.status is OrderStatus.EXPIRED_IN_MATCH and view.prevented_match_id == 0
    assert ex0.depth(SYMBOL).bids == () and ex0.depth(SYMBOL).asks == ()


def test_the_taker_mode_decides_not_the_makers(ex0: Exchange) -> None:
    maker = limit(ex0, "alice", "BUY", "1", "1", stp_mode="EXPIRE_MAKER")
    res = limit(ex0, "alice", "SELL", "1", "1", stp_mode="EXPIRE_TAKER")
    assert res.order.status is OrderStatus.EXPIRED_IN_MATCH
    assert ex0.get_order("alice", SYMBOL, order_id=maker.order.order_id).status is OrderStatus.NEW


def test_market_order_with_expire_maker_expires_for_lack_of_liquidity(ex0: Exchange) -> None:
    maker = limit(ex0, "alice", "BUY", "1", "1", stp_mode="NONE")
    res = market(ex0, "alice", "SELL", quantity="1", stp_mode="EXPIRE_MAKER")
    maker_now = ex0.get_order("alice", SYMBOL, order_id=maker.order.order_id)
    assert maker_now.status is OrderStatus.EXPIRED_IN_MATCH
    assert res.order.status is OrderStatus.EXPIRED and res.fills == ()
    assert len(res.prevented_matches) == 1


def test_a_mode_the_market_does_not_allow_is_refused() -> None:
    ex = make_exchange(make_spec(allowed_stp=["NONE", "EXPIRE_MAKER"]))
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "alice", "BUY", "1", "10", stp_mode="EXPIRE_BOTH")
    assert exc.value.reason is Reason.STP_MODE_NOT_ALLOWED
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "alice", "BUY", "1", "10", stp_mode="DECREMENT")
    assert exc.value.reason is Reason.INVALID_PARAMETER
