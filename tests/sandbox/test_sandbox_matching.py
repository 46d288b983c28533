"""Matching, balances and fees of the sandbox engine, with exact expected values."""

from __future__ import annotations

import pytest
from sandbox_support import SYMBOL, D, free, limit, locked, make_exchange, make_spec, market

from marketlink.sandbox.exchange import (
    Exchange,
    ExchangeRejection,
    ExecutionType,
    FilterType,
    OrderStatus,
    Reason,
)


def rejection(exc: pytest.ExceptionInfo[ExchangeRejection]) -> tuple[Reason, FilterType | None]:
    return exc.value.reason, exc.value.filter


# -- priority and partial fills ---------------------------------------------------------------------


def test_price_then_time_priority(ex: Exchange) -> None:
    first = limit(ex, "alice", "SELL", "1", "100")
    second = limit(ex, "bob", "SELL", "1", "100")
    better = limit(ex, "carol", "SELL", "1", "99")
    ex.open_account("dave", balances={"USDT": "1000"})

    taker = limit(ex, "dave", "BUY", "2", "100")

    assert [(f.price, f.qty) for f in taker.fills] == [(D("99.00"), D("1.000")), (D("100.00"), D("1.000"))]
    trades = ex.recent_trades(SYMBOL)
    assert [t.seller_order_id for t in trades] == [better.order.order_id, first.order.order_id]
    assert all(t.buyer_order_id == taker.order.order_id and not t.buyer_is_maker for t in trades)
    assert ex.get_order("bob", SYMBOL, order_id=second.order.order_id).executed_qty == 0
    assert ex.get_order("alice", SYMBOL, order_id=first.order.order_id).status is OrderStatus.FILLED
    assert taker.order.status is OrderStatus.FILLED


def test_partial_fills_across_levels_then_rest(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "0.5", "100")
    limit(ex, "alice", "SELL", "0.7", "101")
    limit(ex, "alice", "SELL", "1", "102")

    res = limit(ex, "bob", "BUY", "2", "101")

    assert [(f.price, f.qty) for f in res.fills] == [(D("100.00"), D("0.500")), (D("101.00"), D("0.700"))]
    assert res.order.status is OrderStatus.PARTIALLY_FILLED
    assert res.order.executed_qty == D("1.2")
    assert res.order.cum_quote_qty == D("120.7")
    assert res.order.is_working
    book = ex.depth(SYMBOL)
    assert book.bids == ((D("101.00"), D("0.800")),)
    assert book.asks == ((D("102.00"), D("1.000")),)
    # bob locked 101 * 2, spent 120.7, and keeps exactly 101 * 0.8 locked for the rest
    assert locked(ex, "bob", "USDT") == D("80.8")
    assert free(ex, "bob", "USDT") == D("1000000") - D("120.7") - D("80.8")
    assert ex.audit() == []


def test_taker_fills_a_maker_partially_and_the_level_shrinks(ex: Exchange) -> None:
    maker = limit(ex, "alice", "SELL", "1", "100")
    limit(ex, "bob", "BUY", "0.25", "100")
    view = ex.get_order("alice", SYMBOL, order_id=maker.order.order_id)
    assert view.status is OrderStatus.PARTIALLY_FILLED and view.remaining_qty == D("0.75")
    assert ex.depth(SYMBOL).asks == ((D("100.00"), D("0.750")),)


def test_ioc_remainder_expires(ex: Exchange) -> None:
    events: list[object] = []
    ex.subscribe_account("bob", events.append)
    limit(ex, "alice", "SELL", "0.5", "100")

    res = limit(ex, "bob", "BUY", "1", "100", time_in_force="IOC")

    assert res.order.status is OrderStatus.EXPIRED
    assert res.order.executed_qty == D("0.5")
    kinds = [(e.execution_type, e.order.status) for e in events if hasattr(e, "execution_type")]
    assert kinds == [
        (ExecutionType.NEW, OrderStatus.NEW),
        (ExecutionType.TRADE, OrderStatus.PARTIALLY_FILLED),
        (ExecutionType.EXPIRED, OrderStatus.EXPIRED),
    ]
    assert locked(ex, "bob", "USDT") == 0
    assert ex.depth(SYMBOL).bids == ()


def test_fok_is_all_or_nothing(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "0.5", "100")
    limit(ex, "alice", "SELL", "0.3", "101")
    before = ex.depth(SYMBOL)

    failed = limit(ex, "bob", "BUY", "1", "101", time_in_force="FOK")

    assert failed.order.status is OrderStatus.EXPIRED and failed.fills == ()
    assert ex.depth(SYMBOL).asks == before.asks
    assert free(ex, "bob", "USDT") == D("1000000") and locked(ex, "bob", "USDT") == 0

    done = limit(ex, "bob", "BUY", "0.8", "101", time_in_force="FOK")
    assert done.order.status is OrderStatus.FILLED
    assert [f.qty for f in done.fills] == [D("0.5"), D("0.3")]
    assert ex.depth(SYMBOL).asks == ()


def test_limit_maker_rejected_when_it_would_take(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "1", "100")
    before = ex.ground_truth()

    with pytest.raises(ExchangeRejection) as exc:
        ex.place_order("bob", SYMBOL, "BUY", "LIMIT_MAKER", quantity="1", price="100", now_ms=5)
    assert rejection(exc) == (Reason.WOULD_TAKE, None)
    assert ex.ground_truth() == before

    ok = ex.place_order("bob", SYMBOL, "BUY", "LIMIT_MAKER", quantity="1", price="99.99", now_ms=6)
    assert ok.order.status is OrderStatus.NEW and ok.order.is_working


def test_limit_sell_crossing_takes_at_maker_prices(ex: Exchange) -> None:
    limit(ex, "alice", "BUY", "1", "101")
    limit(ex, "alice", "BUY", "1", "100")
    res = limit(ex, "bob", "SELL", "1.5", "99")
    assert [(f.price, f.qty) for f in res.fills] == [(D("101.00"), D("1.000")), (D("100.00"), D("0.500"))]
    assert res.order.status is OrderStatus.FILLED


# -- MARKET orders ------------------------------------------------------------------------------


def test_market_by_quote_quantity_respects_the_step(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "0.5", "100")
    limit(ex, "alice", "SELL", "1", "103")

    res = market(ex, "bob", "BUY", quote_order_qty="60")

    # 50 buys 0.5 at 100; the last 10 buy floor(10 / 103 / 0.001) steps = 0.097 at 103
    assert [(f.price, f.qty) for f in res.fills] == [(D("100.00"), D("0.500")), (D("103.00"), D("0.097"))]
    assert res.order.executed_qty == D("0.597")
    assert res.order.cum_quote_qty == D("59.991") <= D("60")
    assert res.order.orig_quote_order_qty == D("60")
    assert all(f.qty % D("0.001") == 0 for f in res.fills)
    assert res.order.status is OrderStatus.FILLED
    assert locked(ex, "bob", "USDT") == 0


def test_market_sell_by_quote_quantity(ex: Exchange) -> None:
    limit(ex, "alice", "BUY", "1", "99")
    res = market(ex, "bob", "SELL", quote_order_qty="50")
    assert res.order.executed_qty == D("0.505")  # floor(50 / 99 / 0.001) steps
    assert res.order.cum_quote_qty == D("49.995")
    assert free(ex, "bob", "BTC") == D("100") - D("0.505")


def test_market_by_quote_too_small_for_one_lot_is_refused() -> None:
    ex = make_exchange(make_spec(min_notional="0", min_qty="0.01"))
    limit(ex, "alice", "SELL", "1", "100")
    with pytest.raises(ExchangeRejection) as exc:
        market(ex, "bob", "BUY", quote_order_qty="0.5")  # buys 0.005 < min 0.01
    assert rejection(exc) == (Reason.FILTER_FAILURE, FilterType.LOT_SIZE)
    with pytest.raises(ExchangeRejection) as exc:
        market(ex, "bob", "BUY", quote_order_qty="0.05")  # not even one step
    assert rejection(exc) == (Reason.FILTER_FAILURE, FilterType.LOT_SIZE)


def test_market_by_quote_is_capped_by_max_quantity() -> None:
    ex = make_exchange(make_spec(market_max_qty="0.3"))
    limit(ex, "alice", "SELL", "1", "100")
    res = market(ex, "bob", "BUY", quote_order_qty="1000")
    assert res.order.executed_qty == D("0.3")


def test_market_order_expires_when_liquidity_runs_out(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "0.5", "100")
    res = market(ex, "bob", "BUY", quantity="1")
    assert res.order.status is OrderStatus.EXPIRED
    assert res.order.executed_qty == D("0.5") and res.order.price is None
    assert locked(ex, "bob", "USDT") == 0

    empty = market(ex, "bob", "BUY", quantity="1")
    assert empty.order.status is OrderStatus.EXPIRED and empty.fills == ()


def test_market_order_the_account_cannot_pay_in_full_is_rejected(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "1", "100")
    ex.open_account("poor", balances={"USDT": "40", "BTC": "0.1"})
    with pytest.raises(ExchangeRejection) as exc:
        market(ex, "poor", "BUY", quantity="0.5")  # costs 50
    assert rejection(exc) == (Reason.INSUFFICIENT_BALANCE, None)
    assert free(ex, "poor", "USDT") == D("40")
    ok = market(ex, "poor", "BUY", quantity="0.4")  # costs exactly 40
    assert ok.order.status is OrderStatus.FILLED and free(ex, "poor", "USDT") == 0


def test_limit_orders_need_the_full_amount(ex: Exchange) -> None:
    ex.open_account("poor", balances={"USDT": "10", "BTC": "0.1"})
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "poor", "BUY", "1", "100")
    assert exc.value.reason is Reason.INSUFFICIENT_BALANCE
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "poor", "SELL", "0.2", "100")
    assert exc.value.reason is Reason.INSUFFICIENT_BALANCE
    assert ex.open_orders("poor") == []
    assert [(b.asset, b.free, b.locked) for b in ex.balances("poor")] == [
        ("USDT", D("10"), D("0")), ("BTC", D("0.1"), D("0"))
    ]


# -- commission ---------------------------------------------------------------------------------


def test_commission_is_charged_in_the_asset_received(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "1", "100")  # maker, 0.1 %
    res = market(ex, "bob", "BUY", quantity="1")  # taker, 0.2 %

    (fill,) = res.fills
    assert (fill.commission, fill.commission_asset, fill.is_maker) == (D("0.002"), "BTC", False)
    assert free(ex, "bob", "BTC") == D("100.998")
    assert free(ex, "bob", "USDT") == D("999900")
    assert free(ex, "alice", "USDT") == D("1000099.9")
    assert free(ex, "alice", "BTC") == D("99") and locked(ex, "alice", "BTC") == 0
    assert ex.ledger.fees_collected == {"BTC": D("0.002"), "USDT": D("0.1")}
    (alice_trade,) = ex.my_trades("alice", SYMBOL)
    assert (alice_trade.commission, alice_trade.commission_asset) == (D("0.1"), "USDT")
    assert alice_trade.is_maker and not alice_trade.is_buyer


def test_account_fee_override_and_half_up_rounding() -> None:
    ex = make_exchange(make_spec(min_notional="0", base_precision=5))
    ex.open_account("vip", maker_fee="0", taker_fee="0.0025", balances={"USDT": "100"})
    limit(ex, "alice", "SELL", "0.006", "1.23")
    res = market(ex, "vip", "BUY", quantity="0.006")
    # 0.006 * 0.0025 = 0.000015 -> 0.00002 at 5 places, half up
    assert res.fills[0].commission == D("0.00002")
    assert free(ex, "vip", "BTC") == D("0.00598")
    limit(ex, "vip", "SELL", "0.005", "2")
    market(ex, "bob", "BUY", quantity="0.005")
    assert ex.my_trades("vip", SYMBOL)[-1].commission == 0  # vip's maker rate is zero


def test_invalid_fee_override_is_refused(ex: Exchange) -> None:
    with pytest.raises(ExchangeRejection):
        ex.open_account("x", maker_fee="1.5")


# -- client ids, cancels, queries ---------------------------------------------------------------


def test_duplicate_client_order_id_among_open_orders(ex: Exchange) -> None:
    limit(ex, "alice", "BUY", "1", "90", client_order_id="abc")
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "alice", "BUY", "1", "91", client_order_id="abc")
    assert exc.value.reason is Reason.DUPLICATE_ORDER
    limit(ex, "bob", "BUY", "1", "91", client_order_id="abc")  # another account may use it
    ex.cancel_order("alice", SYMBOL, client_order_id="abc", now_ms=2_000)
    again = limit(ex, "alice", "BUY", "1", "92", client_order_id="abc")
    assert ex.get_order("alice", SYMBOL, client_order_id="abc").order_id == again.order.order_id


def test_cancel_reports_both_client_ids_and_unlocks(ex: Exchange) -> None:
    events: list[object] = []
    placed = limit(ex, "alice", "BUY", "1", "90", client_order_id="mine")
    ex.subscribe_account("alice", events.append)

    res = ex.cancel_order("alice", SYMBOL, order_id=placed.order.order_id,
                          cancel_client_order_id="undo", now_ms=2_000)

    assert res.order.status is OrderStatus.CANCELED and res.cancel_client_order_id == "undo"
    report = events[0]
    assert report.execution_type is ExecutionType.CANCELED  # type: ignore[attr-defined]
    assert (report.client_order_id, report.orig_client_order_id) == ("undo", "mine")  # type: ignore[attr-defined]
    assert locked(ex, "alice", "USDT") == 0 and free(ex, "alice", "USDT") == D("1000000")
    assert ex.depth(SYMBOL).bids == ()
    with pytest.raises(ExchangeRejection) as exc:
        ex.cancel_order("alice", SYMBOL, order_id=placed.order.order_id, now_ms=2_001)
    assert exc.value.reason is Reason.ORDER_NOT_FOUND


def test_cancel_needs_an_id_and_finds_only_own_orders(ex: Exchange) -> None:
    placed = limit(ex, "alice", "BUY", "1", "90")
    with pytest.raises(ExchangeRejection) as exc:
        ex.cancel_order("alice", SYMBOL, now_ms=1)
    assert exc.value.reason is Reason.INVALID_PARAMETER
    with pytest.raises(ExchangeRejection) as exc:
        ex.cancel_order("bob", SYMBOL, order_id=placed.order.order_id, now_ms=1)
    assert exc.value.reason is Reason.ORDER_NOT_FOUND
    with pytest.raises(ExchangeRejection):
        ex.cancel_order("alice", SYMBOL, order_id=placed.order.order_id, cancel_client_order_id="bad id!",
                        now_ms=1)


def test_cancel_all_and_open_orders(ex: Exchange) -> None:
    a = limit(ex, "alice", "BUY", "1", "90")
    b = limit(ex, "alice", "SELL", "1", "110")
    limit(ex, "bob", "BUY", "1", "91")
    assert [o.order_id for o in ex.open_orders("alice", SYMBOL)] == [a.order.order_id, b.order.order_id]

    results = ex.cancel_all("alice", SYMBOL, now_ms=3_000)

    assert [r.order.order_id for r in results] == [a.order.order_id, b.order.order_id]
    assert all(r.order.status is OrderStatus.CANCELED for r in results)
    assert ex.open_orders("alice") == []
    assert len(ex.open_orders("bob")) == 1
    assert ex.cancel_all("alice", SYMBOL, now_ms=3_001) == []
    assert (locked(ex, "alice", "USDT"), locked(ex, "alice", "BTC")) == (0, 0)


def test_get_order_finds_open_and_closed_orders(ex: Exchange) -> None:
    placed = limit(ex, "alice", "SELL", "1", "100", client_order_id="x1")
    market(ex, "bob", "BUY", quantity="1")
    view = ex.get_order("alice", SYMBOL, client_order_id="x1")
    assert view.status is OrderStatus.FILLED and view.order_id == placed.order.order_id
    assert ex.get_order("alice", SYMBOL, order_id=placed.order.order_id, client_order_id="x1") == view
    for kwargs in ({"order_id": placed.order.order_id, "client_order_id": "other"}, {"order_id": 999}):
        with pytest.raises(ExchangeRejection) as exc:
            ex.get_order("alice", SYMBOL, **kwargs)  # type: ignore[arg-type]
        assert exc.value.reason is Reason.ORDER_NOT_FOUND
    with pytest.raises(ExchangeRejection):
        ex.get_order("bob", SYMBOL, order_id=placed.order.order_id)
    with pytest.raises(ExchangeRejection):
        ex.get_order("alice", SYMBOL)


def test_closed_orders_are_forgotten_after_the_retention() -> None:
    ex = Exchange([make_spec()], closed_retention=2)
    ex.open_account("alice", balances={"USDT": "10000"})
    ids = [limit(ex, "alice", "BUY", "1", "10", client_order_id=f"c{i}").order.order_id for i in range(3)]
    for i in ids:
        ex.cancel_order("alice", SYMBOL, order_id=i, now_ms=2)
    with pytest.raises(ExchangeRejection):
        ex.get_order("alice", SYMBOL, order_id=ids[0])
    with pytest.raises(ExchangeRejection):
        ex.get_order("alice", SYMBOL, client_order_id="c0")
    assert ex.get_order("alice", SYMBOL, order_id=ids[2]).status is OrderStatus.CANCELED
    assert [o.order_id for o in ex.all_orders("alice", SYMBOL)] == ids[1:]


def test_all_orders_and_my_trades_paging(ex: Exchange) -> None:
    for i in range(4):
        limit(ex, "alice", "SELL", "1", str(100 + i), now_ms=10 + i)
    res = market(ex, "bob", "BUY", quantity="3", now_ms=20)
    ids = [o.order_id for o in ex.all_orders("alice", SYMBOL)]
    assert len(ids) == 4
    assert [o.order_id for o in ex.all_orders("alice", SYMBOL, from_order_id=ids[1], limit=2)] == ids[1:3]
    assert [o.order_id for o in ex.all_orders("alice", SYMBOL, limit=1)] == ids[-1:]

    trades = ex.my_trades("bob", SYMBOL)
    assert [t.trade_id for t in trades] == [f.trade_id for f in res.fills] == [1, 2, 3]
    assert [t.trade_id for t in ex.my_trades("bob", SYMBOL, from_id=2)] == [2, 3]
    assert [t.trade_id for t in ex.my_trades("bob", SYMBOL, limit=2)] == [2, 3]
    assert [t.trade_id for t in ex.my_trades("alice", SYMBOL, order_id=ids[0])] == [1]
    assert ex.my_trades("bob", SYMBOL, start_time=21) == []
    assert len(ex.my_trades("bob", SYMBOL, end_time=20)) == 3
    with pytest.raises(ExchangeRejection):
        ex.my_trades("bob", SYMBOL, limit=0)


# -- market data and clock ----------------------------------------------------------------------


def test_depth_recent_trades_book_ticker_and_last_price(ex: Exchange) -> None:
    assert ex.last_price(SYMBOL) is None
    top = ex.book_ticker(SYMBOL)
    assert (top.bid_price, top.ask_price, top.bid_qty) == (None, None, 0)
    for p in ("99", "98", "97"):
        limit(ex, "alice", "BUY", "1", p)
    limit(ex, "alice", "SELL", "2", "101")
    assert ex.depth(SYMBOL, 2).bids == ((D("99.00"), D("1.000")), (D("98.00"), D("1.000")))
    market(ex, "bob", "SELL", quantity="1.5")
    trades = ex.recent_trades(SYMBOL)
    assert [(t.price, t.qty, t.buyer_is_maker) for t in trades] == [
        (D("99.00"), D("1.000"), True), (D("98.00"), D("0.500"), True)
    ]
    assert ex.recent_trades(SYMBOL, 1) == trades[-1:]
    assert ex.last_price(SYMBOL) == D("98")
    top = ex.book_ticker(SYMBOL)
    assert (top.bid_price, top.bid_qty, top.ask_price, top.ask_qty) == (D("98"), D("0.5"), D("101"), D("2"))
    assert top.update_id == ex.depth(SYMBOL).last_update_id


def test_the_clock_never_runs_backwards(ex: Exchange) -> None:
    limit(ex, "alice", "SELL", "1", "100", now_ms=5_000)
    res = market(ex, "bob", "BUY", quantity="1", now_ms=4_000)
    assert res.transact_time == 5_000 and ex.recent_trades(SYMBOL)[0].time == 5_000
    with pytest.raises(ExchangeRejection):
        market(ex, "bob", "BUY", quantity="1", now_ms=-1)
    with pytest.raises(ExchangeRejection):  # refused: the clock does not move
        limit(ex, "bob", "BUY", "1000", "1000", now_ms=9_000)
    limit(ex, "alice", "SELL", "1", "100", now_ms=6_000)
    assert market(ex, "bob", "BUY", quantity="1", now_ms=1).transact_time == 6_000


def test_deposit_and_withdraw(ex: Exchange) -> None:
    events: list[object] = []
    ex.subscribe_account("alice", events.append)
    assert ex.deposit("alice", "ETH", "2.5", now_ms=1).free == D("2.5")
    assert ex.deposit("alice", "ETH", "-1", now_ms=2).free == D("1.5")
    assert ex.deposit("alice", "ETH", D("-0.5"), now_ms=3).free == D("1.0")
    with pytest.raises(ExchangeRejection) as exc:
        ex.deposit("alice", "ETH", "-5", now_ms=4)
    assert exc.value.reason is Reason.INSUFFICIENT_BALANCE
    with pytest.raises(ExchangeRejection):
        ex.deposit("nobody", "ETH", "1", now_ms=4)
    with pytest.raises(ExchangeRejection):
        ex.deposit("alice", "", "1", now_ms=4)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["BalanceDelta", "AccountEvent"] * 3
    assert ex.ledger.deposited["ETH"] == D("1.0")


def test_generated_client_ids_avoid_a_client_chosen_one(ex: Exchange) -> None:
    limit(ex, "alice", "BUY", "1", "90", client_order_id="sandbox-BTCUSDT-2")
    second = limit(ex, "alice", "BUY", "1", "91")
    assert second.order.client_order_id == "sandbox-BTCUSDT-2-1"
    assert ex.get_order("alice", SYMBOL, client_order_id="sandbox-BTCUSDT-2").order_id == 1


def test_audit_notices_broken_invariants(ex: Exchange) -> None:
    limit(ex, "alice", "BUY", "1", "90")
    limit(ex, "bob", "SELL", "1", "110")
    assert ex.audit() == []
    ex.ledger.credit("alice", "USDT", D("1"))  # money from nowhere
    assert any("USDT: held" in p for p in ex.audit())
    ex.ledger.collect_fee("USDT", D("-1"))
    assert ex.audit() == []
    ex.ledger.lock("bob", "BTC", D("0.5"))  # locked without an order holding it
    assert any(p.startswith("bob BTC: locked") for p in ex.audit())
    ex.ledger.unlock("bob", "BTC", D("0.5"))
    book_order = next(iter(ex._state(SYMBOL).book.resting_orders()))  # reach in to corrupt the book
    book_order.executed_qty = D("0.5")
    assert any("level totals differ" in p for p in ex.audit())
    book_order.status = OrderStatus.CANCELED
    assert any("misplaced" in p for p in ex.audit())
