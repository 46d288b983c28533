"""Fees: schema validation, spot and perpetual estimates, per-token amounts, cost and returns."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from marketlink.core.enums import PositionAction, Side
from marketlink.core.errors import ConfigError, InvalidTradingPair
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee, TradeFeeSchema

BUY, SELL = Side.BUY, Side.SELL
ADDED, DEDUCTED = FeeKind.ADDED_TO_COST, FeeKind.DEDUCTED_FROM_RETURNS

BINANCE_SPOT = TradeFeeSchema(
    maker_percent=D("0.001"), taker_percent=D("0.001"), buy_percent_fee_deducted_from_returns=True
)
BNB = TradeFeeSchema(maker_percent=D("0.00075"), taker_percent=D("0.00075"), percent_fee_token="BNB")
TIERED = TradeFeeSchema(
    maker_percent=D("0.0002"), taker_percent=D("0.0005"),
    maker_fixed_fees=(TokenAmount("ETH", D("0.001")),), taker_fixed_fees=(TokenAmount("ETH", D("0.002")),),
)


def usdt_to_bnb(from_token: str, to_token: str) -> D | None:
    return D("0.002") if (from_token, to_token) == ("USDT", "BNB") else None


# -- schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"maker_percent": D("1")},
        {"taker_percent": D("-1")},
        {"taker_percent": D("NaN")},
        {"maker_percent": 0.001},  # a float is never money
        {"percent_fee_token": "BNB", "buy_percent_fee_deducted_from_returns": True},
    ],
)
def test_schema_refuses_impossible_terms(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TradeFeeSchema(**kwargs)  # type: ignore[arg-type]


def test_schema_allows_rebates() -> None:
    assert TradeFeeSchema(maker_percent=D("-0.0001")).maker_percent == D("-0.0001")


# -- estimates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "side", "maker", "kind", "percent", "token", "flat"),
    [
        (BINANCE_SPOT, BUY, True, DEDUCTED, "0.001", None, ()),  # buy fee taken from the base received
        (BINANCE_SPOT, SELL, False, DEDUCTED, "0.001", None, ()),
        (TradeFeeSchema(taker_percent=D("0.002")), BUY, False, ADDED, "0.002", None, ()),
        (BNB, BUY, False, ADDED, "0.00075", "BNB", ()),
        (BNB, SELL, True, DEDUCTED, "0.00075", "BNB", ()),
        (TIERED, BUY, True, ADDED, "0.0002", None, (TokenAmount("ETH", D("0.001")),)),
        (TIERED, SELL, False, DEDUCTED, "0.0005", None, (TokenAmount("ETH", D("0.002")),)),
    ],
)
def test_estimate_spot(
    schema: TradeFeeSchema, side: Side, maker: bool, kind: FeeKind, percent: str, token: str | None,
    flat: tuple[TokenAmount, ...],
) -> None:
    fee = TradeFee.estimate_spot(schema, side, maker)
    assert (fee.kind, fee.percent, fee.percent_token, fee.flat_fees) == (kind, D(percent), token, flat)


@pytest.mark.parametrize(
    ("schema", "action", "kind"),
    [
        (TIERED, PositionAction.OPEN, ADDED),
        (TIERED, PositionAction.NIL, ADDED),
        (TIERED, PositionAction.CLOSE, DEDUCTED),  # paid out of the position's proceeds
        (BNB, PositionAction.CLOSE, ADDED),  # a third token is always paid from its own balance
    ],
)
def test_estimate_perpetual(schema: TradeFeeSchema, action: PositionAction, kind: FeeKind) -> None:
    fee = TradeFee.estimate_perpetual(schema, action, is_maker=False)
    assert fee.kind is kind and fee.percent == schema.taker_percent


def test_reported_fee_is_exact_and_zero_means_none() -> None:
    fee = TradeFee.reported("BNB", D("0.00012345"), ADDED)
    assert fee.flat_fees == (TokenAmount("BNB", D("0.00012345")),) and fee.percent == 0
    assert TradeFee.reported("USDT", D("0"), DEDUCTED).flat_fees == ()


# -- amounts ----------------------------------------------------------------------------------------


def test_bybit_documented_execution_fee() -> None:
    # Bybit v5 execution sample: execValue 1190.15 * 0.1 = 119.015, execFee = 119.015 * 0.0006
    fee = TradeFee(kind=ADDED, percent=D("0.0006"))
    assert fee.amounts("ETH-USDT", BUY, D("1190.15"), D("0.1")) == [TokenAmount("USDT", D("0.071409"))]


def test_amounts_fall_on_the_natural_asset() -> None:
    p, a = D("20000"), D("0.5")
    deducted_buy = TradeFee.estimate_spot(BINANCE_SPOT, BUY, False)
    assert deducted_buy.amounts("BTC-USDT", BUY, p, a) == [TokenAmount("BTC", D("0.0005"))]
    deducted_sell = TradeFee.estimate_spot(BINANCE_SPOT, SELL, False)
    assert deducted_sell.amounts("BTC-USDT", SELL, p, a) == [TokenAmount("USDT", D("10.000"))]
    added_buy = TradeFee(kind=ADDED, percent=D("0.001"))
    assert added_buy.amounts("BTC-USDT", BUY, p, a) == [TokenAmount("USDT", D("10.000"))]


def test_third_token_fee_is_converted_with_a_rate_and_kept_in_quote_without_one() -> None:
    fee = TradeFee.estimate_spot(BNB, BUY, False)
    assert fee.amounts("BTC-USDT", BUY, D("100"), D("10"), usdt_to_bnb) == [TokenAmount("BNB", D("0.0015"))]
    # no rate: the fee is still reported, as its value in quote, never dropped
    assert fee.amounts("BTC-USDT", BUY, D("100"), D("10")) == [TokenAmount("USDT", D("0.75"))]
    assert fee.amounts("ETH-BTC", BUY, D("0.05"), D("10"), usdt_to_bnb) == [TokenAmount("BTC", D("0.000375"))]
    quote_token = TradeFee(kind=ADDED, percent=D("0.001"), percent_token="USDT")
    assert quote_token.amounts("BTC-USDT", SELL, D("100"), D("1"), usdt_to_bnb) == [
        TokenAmount("USDT", D("0.1"))
    ]


def test_flat_fees_are_appended_and_no_percent_means_no_percent_entry() -> None:
    fee = TradeFee.estimate_spot(TIERED, SELL, True)
    assert fee.amounts("ETH-USDT", SELL, D("2000"), D("1")) == [
        TokenAmount("USDT", D("0.4000")), TokenAmount("ETH", D("0.001")),
    ]
    flat_only = TradeFee.reported("USDT", D("0.3"), ADDED)
    assert flat_only.amounts("ETH-USDT", SELL, D("2000"), D("1")) == [TokenAmount("USDT", D("0.3"))]


def test_bad_pair_is_a_typed_error() -> None:
    with pytest.raises(InvalidTradingPair):
        TradeFee(kind=ADDED, percent=D("0.001")).amounts("ETHUSDT", BUY, D("1"), D("1"))


# -- cost and returns ---------------------------------------------------------------------------------


def test_buy_with_fee_added_to_cost() -> None:
    fee = TradeFee(kind=ADDED, percent=D("0.001"))
    cost, returns = fee.cost_and_returns("BTC-USDT", BUY, D("20000"), D("0.5"))
    assert cost == {"USDT": D("10010.000")} and returns == {"BTC": D("0.5")}


def test_buy_with_fee_deducted_from_the_base_received() -> None:
    fee = TradeFee.estimate_spot(BINANCE_SPOT, BUY, False)
    cost, returns = fee.cost_and_returns("BTC-USDT", BUY, D("20000"), D("0.5"))
    assert cost == {"USDT": D("10000.0")} and returns == {"BTC": D("0.4995")}


def test_sell_with_fee_deducted_from_the_quote_received() -> None:
    fee = TradeFee.estimate_spot(BINANCE_SPOT, SELL, False)
    cost, returns = fee.cost_and_returns("BTC-USDT", SELL, D("20000"), D("0.5"))
    assert cost == {"BTC": D("0.5")} and returns == {"USDT": D("9990.000")}


def test_third_token_fee_is_a_cost_on_either_side() -> None:
    buy = TradeFee.estimate_spot(BNB, BUY, False)
    assert buy.cost_and_returns("BTC-USDT", BUY, D("100"), D("10"), usdt_to_bnb) == (
        {"USDT": D("1000"), "BNB": D("0.0015")}, {"BTC": D("10")},
    )
    sell = TradeFee.estimate_spot(BNB, SELL, False)  # "deducted", but we never receive BNB
    assert sell.cost_and_returns("BTC-USDT", SELL, D("100"), D("10"), usdt_to_bnb) == (
        {"BTC": D("10"), "BNB": D("0.0015")}, {"USDT": D("1000")},
    )


def test_deducted_flat_fee_in_an_unreceived_token_is_a_cost() -> None:
    fee = TradeFee.estimate_spot(TIERED, SELL, False)
    cost, returns = fee.cost_and_returns("BTC-USDT", SELL, D("100"), D("2"))
    assert cost == {"BTC": D("2"), "ETH": D("0.002")} and returns == {"USDT": D("199.9000")}


def test_rebate_lowers_cost() -> None:
    fee = TradeFee.estimate_spot(TradeFeeSchema(maker_percent=D("-0.0001")), BUY, True)
    cost, _ = fee.cost_and_returns("BTC-USDT", BUY, D("100"), D("1"))
    assert cost == {"USDT": D("99.9900")}


def test_total_in_sums_flat_fees_of_one_token() -> None:
    fee = TradeFee(kind=ADDED, flat_fees=(TokenAmount("BNB", D("0.1")), TokenAmount("BNB", D("0.2")),
                                         TokenAmount("USDT", D("5"))))
    assert fee.total_in("BNB") == D("0.3") and fee.total_in("BTC") == 0
    assert fee.total_in("USDT", [TokenAmount("USDT", D("1"))]) == D("1")
    assert fee.total_in("BNB", []) == 0  # an explicit empty list is empty, not "use mine"


def test_fee_values_are_immutable() -> None:
    fee = TradeFee(kind=ADDED)
    with pytest.raises(AttributeError):
        fee.percent = D("1")  # type: ignore[misc]
