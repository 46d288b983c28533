"""The pure renderers and parameter readers: number formatting, execution reports for every
execution type (expiry, self-trade prevention), and the parameter getters' refusals."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from binance_frontend_support import btc_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.sandbox.exchange import Exchange, OrderEvent, PrivateEvent
from marketlink.sandbox.venues.binance import messages, views
from marketlink.sandbox.venues.binance.errors import BinanceError
from marketlink.sandbox.venues.binance.params import Params

T = 1_000


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        (Decimal("0.1"), 8, "0.10000000"),
        (Decimal("30000"), 8, "30000.00000000"),
        (Decimal("1E-9"), 8, "0.000000001"),  # never rounded away
        (Decimal("5"), 0, "5"),
        (Decimal("-1.5"), 3, "-1.500"),
        (Decimal("12.345"), 2, "12.345"),
    ],
)
def test_fmt_pads_and_never_rounds(value: Decimal, places: int, text: str) -> None:
    assert views.fmt(value, places) == text


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=10**12, places=12, allow_nan=False, allow_infinity=False))
def test_fmt_round_trips_exactly(value: Decimal) -> None:
    text = views.fmt(value, 8)
    assert Decimal(text) == value and "E" not in text and len(text.partition(".")[2]) >= 8


def events_for(ex: Exchange, account: str) -> list[PrivateEvent]:
    seen: list[PrivateEvent] = []
    ex.subscribe_account(account, seen.append)
    return seen


def reports(seen: list[PrivateEvent]) -> list[dict[str, Any]]:
    f = views.Formats(btc_spec())
    return [
        json.loads(views.encode(messages.execution_report(e, f))) for e in seen if isinstance(e, OrderEvent)
    ]


def exchange() -> Exchange:
    ex = Exchange((btc_spec(),))
    for name in ("alice", "maker"):
        ex.open_account(name, balances={"BTC": "10", "USDT": "1000000"}, now_ms=T)
    return ex


def test_ioc_partial_fill_then_expired() -> None:
    ex = exchange()
    ex.place_order(
        "maker", "BTCUSDT", "SELL", "LIMIT", quantity="0.1", price="30000", time_in_force="GTC", now_ms=T
    )
    seen = events_for(ex, "alice")
    ex.place_order(
        "alice",
        "BTCUSDT",
        "BUY",
        "LIMIT",
        quantity="0.3",
        price="30000",
        time_in_force="IOC",
        client_order_id="ioc-1",
        now_ms=T,
    )
    rs = reports(seen)
    assert [(r["x"], r["X"]) for r in rs] == [
        ("NEW", "NEW"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("EXPIRED", "EXPIRED"),
    ]
    expired = rs[-1]
    assert (expired["f"], expired["z"], expired["l"], expired["N"], expired["t"]) == (
        "IOC",
        "0.10000000",
        "0.00000000",
        None,
        -1,
    )
    assert "v" not in expired and "A" not in expired


def test_self_trade_prevention_report_carries_v_a_b() -> None:
    ex = exchange()
    ex.place_order(
        "alice", "BTCUSDT", "SELL", "LIMIT", quantity="0.1", price="30000", time_in_force="GTC", now_ms=T
    )
    seen = events_for(ex, "alice")
    ex.place_order("alice", "BTCUSDT", "BUY", "MARKET", quantity="0.1", stp_mode="EXPIRE_TAKER", now_ms=T)
    rs = reports(seen)
    prevented = next(r for r in rs if r["x"] == "TRADE_PREVENTION")
    assert (prevented["X"], prevented["v"], prevented["A"], prevented["B"]) == (
        "EXPIRED_IN_MATCH",
        0,
        "0.10000000",
        "0.10000000",
    )
    assert list(prevented)[-2:] == ["A", "B"] and list(prevented).index("v") == list(prevented).index("t") + 1
    view = ex.get_order("alice", "BTCUSDT", order_id=2)
    result = json.loads(views.encode(views.order_query(view, views.Formats(btc_spec()))))
    assert (result["preventedMatchId"], result["preventedQuantity"]) == (0, "0.10000000")
    full = json.loads(views.encode(views.order_result(view, T, views.Formats(btc_spec()), ())))
    assert (full["preventedMatchId"], full["fills"]) == (0, [])


def test_cancel_response_of_a_prevented_order_keeps_the_fields() -> None:
    ex = exchange()
    ex.place_order(
        "alice", "BTCUSDT", "SELL", "LIMIT", quantity="0.2", price="30000", time_in_force="GTC", now_ms=T
    )
    ex.place_order(
        "alice",
        "BTCUSDT",
        "BUY",
        "LIMIT",
        quantity="0.1",
        price="30000",
        time_in_force="GTC",
        stp_mode="EXPIRE_TAKER",
        now_ms=T,
    )
    result = ex.cancel_order("alice", "BTCUSDT", order_id=1, now_ms=T)
    body = json.loads(views.encode(views.cancel_response(result, views.Formats(btc_spec()))))
    assert body["status"] == "CANCELED" and "preventedMatchId" not in body


def test_account_commission_in_basis_points() -> None:
    acct = views.account((), Decimal("0.00075"), Decimal("0.001"), can_trade=True, update_time=1, uid=2)
    assert (acct.makerCommission, acct.takerCommission) == (8, 10)
    assert acct.commissionRates.maker == "0.00075000"


def test_symbol_info_bounds() -> None:
    spec = btc_spec(max_qty="0", max_notional="100000", market_max_qty="5")
    info = views.symbol_info(spec, Decimal("777"))
    filters = {f["filterType"]: f for f in info["filters"]}
    assert filters["LOT_SIZE"]["maxQty"] == "777.00000000"
    assert filters["MARKET_LOT_SIZE"]["maxQty"] == "5.00000000"
    assert filters["NOTIONAL"]["maxNotional"] == "100000.00000000"
    no_cap = views.symbol_info(btc_spec(max_num_orders=0), Decimal("1"))
    assert "MAX_NUM_ORDERS" not in {f["filterType"] for f in no_cap["filters"]}


def test_wrappers() -> None:
    assert messages.wrap_combined(b'"s"', b"{}") == b'{"stream":"s","data":{}}'
    assert messages.wrap_subscription(3, b"{}") == b'{"subscriptionId":3,"event":{}}'


# -- parameters ----------------------------------------------------------------------------------


def test_params_from_json_values_become_text() -> None:
    p = Params.from_json({"a": 1, "b": True, "c": Decimal("0.10"), "d": ["X"], "e": None, "f": "s"})
    assert p.raw() == {"a": "1", "b": "true", "c": "0.10", "d": '["X"]', "f": "s"}
    assert Params.from_json(None).raw() == {}
    with pytest.raises(BinanceError) as exc:
        Params.from_json([1])
    assert exc.value.code == -1135


def test_params_getters() -> None:
    p = Params(
        {"n": "12", "bad": "1.5", "flag": "TRUE", "d": "1.50000000000", "e": "", "id": "a b", "x": "1"}
    )
    assert p.long("n") == 12 and p.long("missing") is None
    with pytest.raises(BinanceError):
        p.long("bad")
    assert p.boolean("flag") is True and p.boolean("missing") is None
    assert p.decimal("d", places=2) == Decimal("1.5")  # trailing zeros are not precision
    assert p.get("e") is None
    with pytest.raises(BinanceError) as exc:
        p.require("e")
    assert exc.value.code == -1102
    with pytest.raises(BinanceError):
        p.client_id("id")
    assert p.limit("n", default=5, maximum=10) == 10
    assert "n" in p and "zzz" not in p
    p.reject("absent")
    with pytest.raises(BinanceError) as unread:
        p.ensure_all_read()
    assert unread.value.code == -1104


def test_rest_params_query_wins_and_duplicates_refused() -> None:
    p = Params.from_rest("a=1&b=2", "b=3&c=4")
    assert p.raw() == {"a": "1", "b": "2", "c": "4"}
    with pytest.raises(BinanceError) as exc:
        Params.from_rest("a=1&a=2", "")
    assert exc.value.code == -1101
