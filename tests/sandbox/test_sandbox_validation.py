"""Market configuration and order validation: every refusal carries its machine reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sandbox_support import SYMBOL, D, limit, make_exchange, make_spec, market

from marketlink.core.errors import ConfigError
from marketlink.sandbox.exchange import (
    Exchange,
    ExchangeRejection,
    FilterType,
    MarketSpec,
    Reason,
    StpMode,
)

# -- market configuration -------------------------------------------------------------------------


def test_from_config_parses_strings_exactly() -> None:
    spec = make_spec(
        maker_fee="0.00075", allowed_stp=["NONE", "EXPIRE_MAKER"], notional_filter="MIN_NOTIONAL"
    )
    assert spec.maker_fee == Decimal("0.00075") and spec.tick_size == Decimal("0.01")
    assert spec.allowed_stp == frozenset({StpMode.NONE, StpMode.EXPIRE_MAKER})
    assert spec.default_stp is StpMode.EXPIRE_MAKER
    assert spec.market_step == spec.step_size
    assert make_spec(market_step_size="0.01").market_step == D("0.01")
    assert spec.max_market_qty() == D("1000")
    assert make_spec(max_qty="0").max_market_qty() is None
    assert make_spec(market_max_qty="5").max_market_qty() == D("5")


@pytest.mark.parametrize(
    "overrides",
    [
        {"tick_size": 0.01},  # float: refused, never parsed
        {"tick_size": "abc"},
        {"tick_size": "0"},
        {"step_size": "-1"},
        {"maker_fee": "1"},
        {"max_price": "0.001"},  # below min_price
        {"max_qty": "0.0001"},  # below min_qty
        {"base": "USDT"},
        {"symbol": ""},
        {"default_stp": "EXPIRE_TAKER", "allowed_stp": ["NONE"]},
        {"default_stp": "BOGUS"},
        {"allowed_stp": "NONE"},
        {"notional_filter": "LOT_SIZE"},
        {"base_precision": 40},
        {"unknown_field": "1"},
        {"min_qty": "NaN"},
        {"min_qty": True},
    ],
)
def test_bad_market_config_is_a_config_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        make_spec(**overrides)


def test_duplicate_markets_are_refused() -> None:
    with pytest.raises(ConfigError):
        Exchange([make_spec(), make_spec()])


def test_market_lookup(ex: Exchange) -> None:
    assert ex.symbols == [SYMBOL] and ex.market(SYMBOL).base == "BTC"
    with pytest.raises(ExchangeRejection) as exc:
        ex.market("ETHUSDT")
    assert exc.value.reason is Reason.UNKNOWN_SYMBOL
    assert "UNKNOWN_SYMBOL" in repr(exc.value)


# -- request parameters ---------------------------------------------------------------------------


def place(ex: Exchange, **kw: Any) -> None:
    args: dict[str, Any] = {"quantity": "1", "price": "100", "now_ms": 1}
    args.update(kw)
    account = args.pop("account", "alice")
    symbol = args.pop("symbol", SYMBOL)
    side = args.pop("side", "BUY")
    kind = args.pop("order_type", "LIMIT")
    ex.place_order(account, symbol, side, kind, **args)


@pytest.mark.parametrize(
    ("kw", "reason", "filter_type"),
    [
        ({"symbol": "ETHUSDT"}, Reason.UNKNOWN_SYMBOL, None),
        ({"account": "mallory"}, Reason.UNKNOWN_ACCOUNT, None),
        ({"side": "buy"}, Reason.INVALID_PARAMETER, None),
        ({"order_type": "STOP_LOSS"}, Reason.INVALID_PARAMETER, None),
        ({"time_in_force": "GTX"}, Reason.INVALID_PARAMETER, None),
        ({"price": None}, Reason.INVALID_PARAMETER, None),
        ({"quantity": None}, Reason.INVALID_PARAMETER, None),
        ({"quote_order_qty": "10"}, Reason.INVALID_PARAMETER, None),
        ({"order_type": "MARKET", "price": None, "quote_order_qty": "10"}, Reason.INVALID_PARAMETER, None),
        ({"order_type": "MARKET", "price": None, "quantity": None}, Reason.INVALID_PARAMETER, None),
        ({"order_type": "MARKET"}, Reason.INVALID_PARAMETER, None),
        ({"order_type": "MARKET", "price": None, "time_in_force": "IOC"}, Reason.INVALID_PARAMETER, None),
        ({"order_type": "LIMIT_MAKER", "time_in_force": "IOC"}, Reason.INVALID_PARAMETER, None),
        ({"order_type": "MARKET", "price": None, "quantity": None, "quote_order_qty": "0"},
         Reason.INVALID_PARAMETER, None),
        ({"quantity": 1.0}, Reason.INVALID_PARAMETER, None),  # floats never become money
        ({"quantity": True}, Reason.INVALID_PARAMETER, None),
        ({"quantity": "-1"}, Reason.INVALID_PARAMETER, None),
        ({"quantity": "NaN"}, Reason.INVALID_PARAMETER, None),
        ({"quantity": "Infinity"}, Reason.INVALID_PARAMETER, None),
        ({"quantity": "1e40"}, Reason.INVALID_PARAMETER, None),
        ({"quantity": "1e-40"}, Reason.INVALID_PARAMETER, None),
        ({"price": "ten"}, Reason.INVALID_PARAMETER, None),
        ({"client_order_id": "has space"}, Reason.INVALID_PARAMETER, None),
        ({"client_order_id": "x" * 37}, Reason.INVALID_PARAMETER, None),
        ({"stp_mode": "DECREMENT"}, Reason.INVALID_PARAMETER, None),
        ({"now_ms": 1.5}, Reason.INVALID_PARAMETER, None),
        ({"price": "0"}, Reason.FILTER_FAILURE, FilterType.PRICE_FILTER),
        ({"price": "100.001"}, Reason.FILTER_FAILURE, FilterType.PRICE_FILTER),
        ({"price": "1000000.01"}, Reason.FILTER_FAILURE, FilterType.PRICE_FILTER),
        ({"price": "0.001"}, Reason.FILTER_FAILURE, FilterType.PRICE_FILTER),
        ({"quantity": "0"}, Reason.FILTER_FAILURE, FilterType.LOT_SIZE),
        ({"quantity": "0.0015"}, Reason.FILTER_FAILURE, FilterType.LOT_SIZE),
        ({"quantity": "1000.001"}, Reason.FILTER_FAILURE, FilterType.LOT_SIZE),
        ({"quantity": "0.001", "price": "10"}, Reason.FILTER_FAILURE, FilterType.NOTIONAL),
    ],
)
def test_refusals_carry_reason_and_filter(
    ex: Exchange, kw: dict[str, Any], reason: Reason, filter_type: FilterType | None
) -> None:
    before = ex.ground_truth()
    with pytest.raises(ExchangeRejection) as exc:
        place(ex, **kw)
    assert (exc.value.reason, exc.value.filter) == (reason, filter_type)
    assert ex.ground_truth() == before


def test_market_lot_size_and_notional_for_market_orders() -> None:
    ex = make_exchange(make_spec(market_max_qty="2", market_min_qty="0.01", max_notional="1000"))
    limit(ex, "alice", "SELL", "5", "100")
    for qty, filt in (("3", FilterType.MARKET_LOT_SIZE), ("0.005", FilterType.MARKET_LOT_SIZE),
                      ("0.02", FilterType.NOTIONAL)):
        with pytest.raises(ExchangeRejection) as exc:
            market(ex, "bob", "BUY", quantity=qty)
        assert exc.value.filter is filt, qty
    # max notional applies to limit orders, not to market ones unless configured
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "bob", "BUY", "11", "100")
    assert exc.value.filter is FilterType.NOTIONAL
    assert market(ex, "bob", "BUY", quantity="2").order.executed_qty == D("2")


def test_market_order_notional_uses_the_last_price_once_there_is_one() -> None:
    ex = make_exchange(make_spec(min_notional="10"))
    limit(ex, "alice", "SELL", "1", "20")
    with pytest.raises(ExchangeRejection):  # 0.4 * best ask 20 = 8 < 10
        market(ex, "bob", "BUY", quantity="0.4")
    market(ex, "bob", "BUY", quantity="0.5")
    limit(ex, "alice", "SELL", "3", "5")
    assert market(ex, "bob", "BUY", quantity="0.5").order.executed_qty == D("0.5")  # last price 20


def test_legacy_min_notional_name_and_quote_orders_notional() -> None:
    ex = make_exchange(make_spec(notional_filter="MIN_NOTIONAL"))
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "alice", "BUY", "0.001", "10")
    assert exc.value.filter is FilterType.MIN_NOTIONAL
    with pytest.raises(ExchangeRejection) as exc:
        market(ex, "alice", "BUY", quote_order_qty="4")
    assert exc.value.filter is FilterType.MIN_NOTIONAL
    lenient = make_exchange(make_spec(apply_min_to_market=False))
    assert market(lenient, "alice", "BUY", quote_order_qty="4").fills == ()


def test_max_num_orders_filter() -> None:
    ex = make_exchange(make_spec(max_num_orders=2))
    limit(ex, "alice", "BUY", "1", "90")
    limit(ex, "alice", "BUY", "1", "91")
    with pytest.raises(ExchangeRejection) as exc:
        limit(ex, "alice", "BUY", "1", "92")
    assert exc.value.filter is FilterType.MAX_NUM_ORDERS
    limit(ex, "bob", "BUY", "1", "92")  # per account


def test_canonical_prices_and_quantities(ex: Exchange) -> None:
    a = limit(ex, "alice", "BUY", "1.5", "100.5")
    b = limit(ex, "bob", "BUY", "0.50000", "100.500")
    assert (str(a.order.price), str(a.order.orig_qty)) == ("100.50", "1.500")
    assert (str(b.order.price), str(b.order.orig_qty)) == ("100.50", "0.500")
    assert ex.depth(SYMBOL).bids == ((D("100.5"), D("2")),)
    limit(ex, "carol", "BUY", D("1"), 99)  # Decimal and int inputs are fine


def test_account_queries_need_an_account(ex: Exchange) -> None:
    for call in (lambda: ex.balances("nobody"), lambda: ex.open_orders("nobody"),
                 lambda: ex.my_trades("nobody", SYMBOL), lambda: ex.balance("nobody", "BTC")):
        with pytest.raises(ExchangeRejection) as exc:
            call()
        assert exc.value.reason is Reason.UNKNOWN_ACCOUNT
    with pytest.raises(ExchangeRejection):
        ex.open_account("")
    with pytest.raises(ExchangeRejection):
        ex.depth(SYMBOL, 0)
    with pytest.raises(ExchangeRejection):
        ex.ticker_24h(SYMBOL, "now")  # type: ignore[arg-type]


def test_spec_is_a_plain_value() -> None:
    spec = MarketSpec("ETHBTC", "ETH", "BTC", tick_size=D("0.00001"), step_size=D("0.0001"))
    assert spec.min_notional == 0 and spec.allowed_stp == frozenset(StpMode)
