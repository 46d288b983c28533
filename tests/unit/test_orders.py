"""The order state machine and the in-flight order: the table walked row by row, the special
cases beside it, fill accounting and the journal round trip."""

from __future__ import annotations

import json
from decimal import Decimal as D
from itertools import product
from typing import Any

import pytest

from marketlink.core.enums import OrderType, PositionAction, Side, TimeInForce
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.core.orders import (
    LIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    FillKind,
    InFlightOrder,
    InvalidOrderData,
    OrderState,
    OrderUpdate,
    TradeUpdate,
    Verdict,
    next_state,
)

S = OrderState
PAIR = "BTC-USDT"
FEE = TradeFee.reported("USDT", D("0.05"), FeeKind.ADDED_TO_COST)


def order(state: OrderState = S.PENDING_CREATE, **kw: Any) -> InFlightOrder:
    args: dict[str, Any] = {
        "client_order_id": "c1",
        "trading_pair": PAIR,
        "order_type": OrderType.LIMIT,
        "side": Side.BUY,
        "amount": D("1"),
        "price": D("100"),
        "creation_timestamp": 1.0,
        "state": state,
    }
    args.update(kw)
    return InFlightOrder(**args)


def upd(state: OrderState, **kw: Any) -> OrderUpdate:
    args: dict[str, Any] = {
        "trading_pair": PAIR, "timestamp": 2.0, "new_state": state, "client_order_id": "c1"
    }
    args.update(kw)
    return OrderUpdate(**args)


def fill(trade_id: str, amount: str, price: str = "100", **kw: Any) -> TradeUpdate:
    args: dict[str, Any] = {
        "trade_id": trade_id,
        "client_order_id": "c1",
        "exchange_order_id": None,
        "trading_pair": PAIR,
        "timestamp": 3.0,
        "price": D(price),
        "amount": D(amount),
        "fee": FEE,
        "is_taker": True,
    }
    args.update(kw)
    return TradeUpdate(**args)


# -- the table ----------------------------------------------------------------------------------

ALL_TRIGGERS: list[OrderState | FillKind] = [*OrderState, *FillKind]


@pytest.mark.parametrize(("state", "trigger"), list(product(OrderState, ALL_TRIGGERS)))
def test_every_pair_follows_the_table(state: OrderState, trigger: OrderState | FillKind) -> None:
    o = order(state)
    expected = TRANSITIONS.get((state, trigger))
    assert next_state(state, trigger) is expected
    if isinstance(trigger, FillKind):
        amount = "0.4" if trigger is FillKind.PARTIAL else "1"
        assert o.apply_trade(fill("t1", amount)) is Verdict.CHANGED
        assert o.executed_base == D(amount)  # a fill is always recorded: money moved
        assert o.state is (state if expected is None else expected)
        return
    verdict = o.apply_update(upd(trigger, exchange_order_id="x1", cumulative_filled=D(0)))
    if expected is None:
        assert verdict is Verdict.ILLEGAL
        assert (o.state, o.exchange_order_id, o.venue_filled) == (state, None, None)
    else:
        assert o.state is expected
        assert verdict is (Verdict.ACCEPTED if expected is state else Verdict.CHANGED)
        assert o.exchange_order_id == "x1"


def test_terminal_states_are_never_left_by_any_row() -> None:
    for (state, _trigger), nxt in TRANSITIONS.items():
        if state in TERMINAL_STATES:
            assert nxt is state


def test_every_live_state_has_both_fill_rows_and_no_terminal_state_has_one() -> None:
    for state, kind in product(OrderState, FillKind):
        assert ((state, kind) in TRANSITIONS) == (state in LIVE_STATES)
    for state in LIVE_STATES:
        assert TRANSITIONS[(state, FillKind.COMPLETE)] is S.FILLED


@pytest.mark.parametrize(
    ("state", "report"),
    [
        (S.OPEN, S.UNKNOWN),  # only a placement can be unknown
        (S.OPEN, S.FAILED),  # an accepted order cannot fail
        (S.OPEN, S.PENDING_CREATE),
        (S.FILLED, S.CANCELED),
        (S.CANCELED, S.OPEN),
        (S.FAILED, S.OPEN),
        (S.EXPIRED, S.PARTIALLY_FILLED),
        (S.LOST, S.UNKNOWN),
    ],
)
def test_known_illegal_transitions_are_refused(state: OrderState, report: OrderState) -> None:
    o = order(state)
    assert o.apply_update(upd(report)) is Verdict.ILLEGAL
    assert o.state is state


# -- special cases beside the table -------------------------------------------------------------


def test_failed_is_refused_once_the_venue_acknowledged_the_order() -> None:
    o = order()
    o.apply_update(upd(S.OPEN))
    o.apply_update(upd(S.PENDING_CANCEL))
    assert o.acknowledged
    assert o.apply_update(upd(S.FAILED)) is Verdict.ILLEGAL
    assert o.state is S.PENDING_CANCEL


def test_failed_is_accepted_for_a_cancel_sent_before_any_ack() -> None:
    o = order()
    o.apply_update(upd(S.PENDING_CANCEL))
    assert o.apply_update(upd(S.FAILED, reason="insufficient balance")) is Verdict.CHANGED
    assert (o.state, o.reason) == (S.FAILED, "insufficient balance")


def test_failed_is_refused_for_an_order_that_traded() -> None:
    lost = order(S.LOST)
    lost.apply_trade(fill("t1", "0.1"))
    assert lost.state is S.LOST
    assert lost.apply_update(upd(S.FAILED)) is Verdict.ILLEGAL
    unknown = order(S.UNKNOWN)
    assert unknown.apply_update(upd(S.FAILED, cumulative_filled=D("0.1"))) is Verdict.ILLEGAL
    assert unknown.state is S.UNKNOWN
    unknown.apply_update(upd(S.PENDING_CREATE, cumulative_filled=D("0.2")))
    assert unknown.apply_update(upd(S.FAILED)) is Verdict.ILLEGAL


def test_open_report_for_an_order_with_fills_means_partially_filled() -> None:
    o = order(S.OPEN)
    o.apply_trade(fill("t1", "0.3"))
    o.apply_update(upd(S.PENDING_CANCEL))
    assert o.apply_update(upd(S.OPEN)) is Verdict.CHANGED  # the cancel failed
    assert o.state is S.PARTIALLY_FILLED


def test_fill_on_a_terminal_order_is_recorded_and_the_state_stays() -> None:
    o = order(S.CANCELED)
    assert o.apply_trade(fill("t1", "0.5")) is Verdict.CHANGED
    assert (o.state, o.executed_base) == (S.CANCELED, D("0.5"))


def test_fills_move_the_state_partial_then_complete() -> None:
    o = order(S.OPEN)
    o.apply_trade(fill("t1", "0.25"))
    assert o.state is S.PARTIALLY_FILLED
    o.apply_update(upd(S.PENDING_CANCEL, reason="user"))
    o.apply_trade(fill("t2", "0.25"))
    assert o.state is S.PENDING_CANCEL  # the cancel may still land
    o.apply_trade(fill("t3", "0.5"))
    assert (o.state, o.reason) == (S.FILLED, None)


def test_cancel_request_on_lost_or_unknown_order_keeps_what_we_know() -> None:
    for state in (S.LOST, S.UNKNOWN):
        o = order(state)
        assert o.apply_update(upd(S.PENDING_CANCEL)) is Verdict.ACCEPTED
        assert o.state is state


# -- fills and accounting -----------------------------------------------------------------------


def test_duplicate_trade_id_is_not_counted_twice() -> None:
    o = order(S.OPEN)
    assert o.apply_trade(fill("t1", "0.4")) is Verdict.CHANGED
    assert o.apply_trade(fill("t1", "0.4")) is Verdict.DUPLICATE
    assert o.apply_trade(fill("t1", "0.6", price="99")) is Verdict.DUPLICATE
    assert (o.executed_base, o.executed_quote, o.fees) == (D("0.4"), D("40.0"), {"USDT": D("0.05")})
    assert list(o.fills) == ["t1"]


def test_totals_are_exact_decimal_sums() -> None:
    o = order(S.OPEN, amount=D("1000000"), trading_pair="ETH-USDT")
    o.apply_trade(fill("a", "0.1", price="0.3", trading_pair="ETH-USDT"))
    o.apply_trade(fill("b", "0.2", price="0.3", trading_pair="ETH-USDT"))
    assert o.executed_base == D("0.3")  # 0.1 + 0.2 in float would not be
    tiny, huge = "0.000000000000000001", "123456789012.123456789012345678"
    o.apply_trade(fill("c", tiny, price=huge, trading_pair="ETH-USDT"))
    o.apply_trade(fill("d", huge, price=tiny, trading_pair="ETH-USDT"))
    # 30 significant digits: the default 28-digit context would round the last ones away.
    assert o.executed_base == D("123456789012.423456789012345679")
    assert o.executed_quote == D("0.090000246913578024246913578024691356")


def test_average_price_and_venue_quote_amount() -> None:
    o = order(S.OPEN)
    assert o.average_price is None
    o.apply_trade(fill("t1", "0.5", price="100"))
    o.apply_trade(fill("t2", "0.25", price="103", quote_amount=D("25.74")))  # venue's own figure
    assert o.executed_quote == D("75.74")
    assert o.average_price == D("75.74") / D("0.75")
    assert o.remaining == D("0.25")


def test_fees_accumulate_per_token_including_estimates() -> None:
    o = order(S.OPEN)
    bnb = TradeFee.reported("BNB", D("0.001"), FeeKind.ADDED_TO_COST)
    base_fee = TradeFee(kind=FeeKind.DEDUCTED_FROM_RETURNS, percent=D("0.001"))
    o.apply_trade(fill("t1", "0.2", fee=bnb))
    o.apply_trade(fill("t2", "0.2", fee=bnb))
    o.apply_trade(fill("t3", "0.5", fee=base_fee))  # buy, deducted: charged in base
    assert o.fees == {"BNB": D("0.002"), "BTC": D("0.0005")}
    assert o.fee_totals() == (TokenAmount("BNB", D("0.002")), TokenAmount("BTC", D("0.0005")))


def test_updates_naming_another_order_or_pair_are_refused() -> None:
    o = order(S.OPEN, exchange_order_id="x1")
    assert o.apply_update(upd(S.CANCELED, client_order_id="other")) is Verdict.ID_CONFLICT
    assert o.apply_update(upd(S.CANCELED, exchange_order_id="x2")) is Verdict.ID_CONFLICT
    assert o.apply_update(upd(S.CANCELED, trading_pair="ETH-USDT")) is Verdict.PAIR_MISMATCH
    foreign = fill("t1", "0.1", client_order_id=None, exchange_order_id="x2")
    assert o.apply_trade(foreign) is Verdict.ID_CONFLICT
    assert o.apply_trade(fill("t1", "0.1", trading_pair="BTCUSDT")) is Verdict.PAIR_MISMATCH
    assert (o.state, o.executed_base) == (S.OPEN, D(0))


def test_exchange_id_is_learned_once_from_an_update_or_a_fill() -> None:
    o = order()
    o.apply_trade(fill("t1", "0.1", exchange_order_id="x9"))
    assert o.exchange_order_id == "x9"
    assert o.apply_update(upd(S.OPEN, exchange_order_id="x9")) is Verdict.ACCEPTED  # late ack
    assert o.state is S.PARTIALLY_FILLED


def test_cumulative_cross_check_flags_missing_and_excess_fills() -> None:
    o = order(S.OPEN)
    o.apply_update(upd(S.PARTIALLY_FILLED, cumulative_filled=D("0.4")))
    assert (o.missing_fill, o.fill_gap, o.excess_fill) == (True, D("0.4"), False)
    o.apply_update(upd(S.PARTIALLY_FILLED, cumulative_filled=D("0.1")))  # stale: the max stays
    assert o.venue_filled == D("0.4")
    o.apply_trade(fill("t1", "0.4"))
    assert (o.missing_fill, o.excess_fill) == (False, False)
    o.apply_trade(fill("t2", "0.1"))
    assert (o.missing_fill, o.excess_fill) == (False, True)


def test_filled_report_targets_the_whole_amount() -> None:
    o = order(S.OPEN)
    o.apply_trade(fill("t1", "0.4"))
    o.apply_update(upd(S.FILLED))
    assert (o.fill_target, o.fill_gap) == (D("1"), D("0.6"))
    over = order(S.OPEN)
    over.apply_update(upd(S.FILLED, cumulative_filled=D("1.2")))
    assert over.fill_target == D("1.2")


def test_overfill_beyond_the_amount_is_flagged() -> None:
    o = order(S.OPEN)
    o.apply_trade(fill("t1", "0.8"))
    o.apply_trade(fill("t2", "0.8"))
    assert (o.state, o.excess_fill) == (S.FILLED, True)


def test_not_found_count_resets_only_on_a_venue_answer() -> None:
    o = order(S.OPEN)
    o.not_found_count = 2
    o.apply_update(upd(S.PENDING_CANCEL))
    assert o.not_found_count == 2
    o.apply_update(upd(S.OPEN))
    assert o.not_found_count == 0


def test_derived_properties() -> None:
    o = order(S.OPEN, trading_pair="ETH-BTC")
    assert (o.base_asset, o.quote_asset, o.is_terminal) == ("ETH", "BTC", False)
    assert S.CANCELED.is_terminal and not S.LOST.is_terminal
    assert order(S.PENDING_CREATE).acknowledged is False
    assert order(S.OPEN).acknowledged is True


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"client_order_id": ""},
        {"trading_pair": "btc-usdt"},  # not canonical: updates would never match it
        {"trading_pair": "BTCUSDT"},
        {"amount": D(0)},
        {"amount": 1.5},
        {"amount": D("NaN")},
        {"price": D(-1)},
        {"price": None},  # a limit order needs one
        {"leverage": 0},
        {"leverage": True},
        {"side": "BUY"},
        {"state": "OPEN"},
    ],
)
def test_bad_orders_raise_a_typed_error(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidOrderData):
        order(**kw)


def test_market_order_may_have_no_price() -> None:
    assert order(order_type=OrderType.MARKET, price=None).price is None


@pytest.mark.parametrize(
    "kw",
    [
        {"client_order_id": None},
        {"new_state": "FILLED"},
        {"cumulative_filled": 0.5},
        {"cumulative_filled": D(-1)},
    ],
)
def test_bad_order_updates_raise(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidOrderData):
        upd(S.OPEN, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        {"trade_id": ""},
        {"client_order_id": None},
        {"price": D(0)},
        {"amount": D(0)},
        {"amount": D("Infinity")},
        {"quote_amount": D(-1)},
        {"fee": None},
    ],
)
def test_bad_trade_updates_raise(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidOrderData):
        _bad_fill(kw)


def _bad_fill(kw: dict[str, Any]) -> TradeUpdate:
    base: dict[str, Any] = {
        "trade_id": "t",
        "client_order_id": "c1",
        "exchange_order_id": None,
        "trading_pair": PAIR,
        "timestamp": 1.0,
        "price": D(1),
        "amount": D(1),
        "fee": FEE,
        "is_taker": False,
    }
    base.update(kw)
    return TradeUpdate(**base)


# -- journal round trip -------------------------------------------------------------------------


def _busy_order() -> InFlightOrder:
    o = order(
        time_in_force=TimeInForce.IOC, position_action=PositionAction.OPEN, leverage=5, price=D("100.10")
    )
    o.apply_update(upd(S.OPEN, exchange_order_id="x1"))
    bnb = TradeFee.reported("BNB", D("0.0001"), FeeKind.ADDED_TO_COST)
    o.apply_trade(fill("t1", "0.3", price="100.1", fee=bnb))
    o.apply_trade(fill("t2", "0.2", quote_amount=D("20.02"), fee=TradeFee(FeeKind.ADDED_TO_COST, D("0.001"))))
    o.apply_update(upd(S.CANCELED, cumulative_filled=D("0.6"), reason="user"))
    o.not_found_count = 1
    return o


def test_to_dict_from_dict_round_trips_through_json() -> None:
    o = _busy_order()
    record = json.loads(json.dumps(o.to_dict()))
    back = InFlightOrder.from_dict(record)
    assert back.to_dict() == o.to_dict()
    assert (back.state, back.venue_filled, back.missing_fill, back.acknowledged) == (
        S.CANCELED, D("0.6"), True, True
    )
    assert back.fills["t2"] == o.fills["t2"]
    assert back.fees == o.fees and back.executed_quote == D("50.05")
    assert isinstance(record["amount"], str) and isinstance(record["fills"][0]["price"], str)


def test_round_trip_of_a_fresh_market_order() -> None:
    o = order(order_type=OrderType.MARKET, price=None)
    assert InFlightOrder.from_dict(o.to_dict()).to_dict() == o.to_dict()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(amount=1.0),  # float money
        lambda r: r.pop("state"),
        lambda r: r.update(state="DONE"),
        lambda r: r.update(executed_base="0.7"),  # disagrees with its fills
        lambda r: r.update(fees={}),
        lambda r: r["fills"].append(dict(r["fills"][0])),  # same trade twice
        lambda r: r["fills"][0].update(trading_pair="ETH-USDT"),
        lambda r: r["fills"][0].update(price=100),
        lambda r: r["fills"][0]["fee"].update(kind="X"),
        lambda r: r.update(not_found_count=-1),
        lambda r: r.update(acknowledged="yes"),
        lambda r: r.update(creation_timestamp="now"),
        lambda r: r.update(exchange_order_id=7),
        lambda r: r.update(price="abc"),
    ],
)
def test_malformed_journal_records_raise_a_typed_error(mutate: Any) -> None:
    record = json.loads(json.dumps(_busy_order().to_dict()))
    mutate(record)
    with pytest.raises(InvalidOrderData):
        InFlightOrder.from_dict(record)


def test_trade_update_round_trip() -> None:
    t = fill("t1", "0.1", quote_amount=D("10.01"), is_taker=False)
    assert TradeUpdate.from_dict(json.loads(json.dumps(t.to_dict()))) == t
