"""BudgetChecker: what an order needs per token, how it shrinks, and why it is refused."""

from __future__ import annotations

from decimal import Decimal as D
from decimal import localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.budget import (
    BudgetAccepted,
    BudgetChecker,
    BudgetRejection,
    BudgetRejectReason,
    InvalidBalance,
    OrderCandidate,
)
from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import InvalidTradingPair, RuleViolation
from marketlink.core.fees import TokenAmount, TradeFee, TradeFeeSchema
from marketlink.core.rules import TradingRule

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, MAKER = OrderType.LIMIT, OrderType.MARKET, OrderType.LIMIT_MAKER

QUOTE_FEE = TradeFeeSchema(maker_percent=D("0.001"), taker_percent=D("0.002"))
BINANCE_LIKE = TradeFeeSchema(
    maker_percent=D("0.001"), taker_percent=D("0.001"), buy_percent_fee_deducted_from_returns=True
)
RULE = TradingRule("BTC-USDT", tick_size=D("0.01"), step_size=D("0.001"), min_notional=D("5"))


def buy(amount: str, price: str | None = "100", order_type: OrderType = LIMIT, maker: bool = False,
        pair: str = "BTC-USDT") -> OrderCandidate:
    return OrderCandidate(pair, BUY, order_type, D(amount), None if price is None else D(price), maker)


def sell(amount: str, price: str | None = "100", order_type: OrderType = LIMIT) -> OrderCandidate:
    return OrderCandidate("BTC-USDT", SELL, order_type, D(amount), None if price is None else D(price))


def accepted(result: object) -> BudgetAccepted:
    assert isinstance(result, BudgetAccepted), result
    assert result.ok
    return result


def rejected(result: object) -> BudgetRejection:
    assert isinstance(result, BudgetRejection), result
    assert not result.ok
    return result


# -- what each side needs ----------------------------------------------------------------------------


def test_buy_that_fits_is_unchanged_and_locks_quote_plus_added_fee() -> None:
    r = accepted(BudgetChecker(QUOTE_FEE).adjust(buy("2", maker=True), {"USDT": D("1000")}))
    assert r.candidate == r.requested and not r.resized and r.limited_by is None
    assert r.collateral == (TokenAmount("USDT", D("200.200")),)  # 200 notional + 0.1 % maker fee


def test_buy_shrinks_to_what_quote_plus_fee_allows() -> None:
    r = accepted(BudgetChecker(QUOTE_FEE).adjust(buy("20"), {"USDT": D("1000")}, rule=RULE))
    # taker fee 0.2 %: 1000 / (100 * 1.002) = 9.98003..., floored to the 0.001 step
    assert r.candidate.amount == D("9.980") and r.resized and r.limited_by == "USDT"
    assert r.collateral == (TokenAmount("USDT", D("999.99600")),)


def test_buy_without_rule_keeps_at_least_eight_decimals_and_never_overspends() -> None:
    r = accepted(BudgetChecker(QUOTE_FEE).adjust(buy("20"), {"USDT": D("1000")}))
    assert r.candidate.amount == D("9.98003992")
    assert r.collateral[0].amount <= D("1000")


def test_buy_with_fee_deducted_from_returns_needs_only_the_notional() -> None:
    r = accepted(BudgetChecker(BINANCE_LIKE).adjust(buy("20"), {"USDT": D("1000")}, rule=RULE))
    assert r.candidate.amount == D("10.000")
    assert r.collateral == (TokenAmount("USDT", D("1000.000")),)


def test_sell_needs_base_only() -> None:
    checker = BudgetChecker(QUOTE_FEE)
    r = accepted(checker.adjust(sell("1"), {"BTC": D("0.5")}, rule=RULE))  # no USDT at all
    assert r.candidate.amount == D("0.500") and r.limited_by == "BTC"
    assert r.collateral == (TokenAmount("BTC", D("0.500")),)


def test_third_token_fee_needs_that_token_on_both_sides() -> None:
    bnb = TradeFeeSchema(maker_percent=D("0.00075"), taker_percent=D("0.00075"), percent_fee_token="BNB")
    checker = BudgetChecker(bnb, rate=lambda f, t: D("0.002") if (f, t) == ("USDT", "BNB") else None)
    # buy 10 @ 100: notional 1000 USDT, fee 0.75 USDT = 0.0015 BNB
    r = accepted(checker.adjust(buy("10"), {"USDT": D("1000"), "BNB": D("1")}))
    assert dict((t.token, t.amount) for t in r.collateral) == {"USDT": D("1000"), "BNB": D("0.0015")}
    # only 0.00075 BNB: the fee token limits the order to half
    r = accepted(checker.adjust(buy("10"), {"USDT": D("1000"), "BNB": D("0.00075")}, rule=RULE))
    assert r.candidate.amount == D("5.000") and r.limited_by == "BNB"
    # a sell needs base and the fee token, no quote
    rej = rejected(checker.adjust(sell("10"), {"BTC": D("10")}, all_or_none=True))
    assert (rej.reason, rej.token, rej.required, rej.shortfall) == (
        BudgetRejectReason.INSUFFICIENT_BALANCE, "BNB", D("0.0015"), D("0.0015"),
    )


def test_third_token_fee_without_a_rate_is_costed_in_quote() -> None:
    bnb = TradeFeeSchema(taker_percent=D("0.001"), percent_fee_token="BNB")
    r = accepted(BudgetChecker(bnb).adjust(buy("1"), {"USDT": D("1000")}))
    assert r.collateral == (TokenAmount("USDT", D("100.100")),)


def test_fixed_fee_must_fit_and_is_not_shrinkable() -> None:
    gas = TradeFeeSchema(taker_fixed_fees=(TokenAmount("ETH", D("0.01")),))
    checker = BudgetChecker(gas)
    rej = rejected(checker.adjust(buy("1"), {"USDT": D("1000"), "ETH": D("0.004")}))
    assert (rej.token, rej.required, rej.available, rej.locked, rej.shortfall) == (
        "ETH", D("0.01"), D("0.004"), D("0"), D("0.006"),
    )
    # a fixed fee in quote leaves less room for the notional
    quote_fee = BudgetChecker(TradeFeeSchema(taker_fixed_fees=(TokenAmount("USDT", D("10")),)))
    r = accepted(quote_fee.adjust(buy("20"), {"USDT": D("1000")}, rule=RULE))
    assert r.candidate.amount == D("9.900")
    assert r.collateral == (TokenAmount("USDT", D("1000.000")),)


def test_maker_rebate_lets_a_buy_use_slightly_more_than_the_balance_over_price() -> None:
    rebate = TradeFeeSchema(maker_percent=D("-0.0001"))
    r = accepted(BudgetChecker(rebate).adjust(buy("20", maker=True), {"USDT": D("1000")}, rule=RULE))
    assert r.candidate.amount == D("10.001")  # 1000.1 * 0.9999 = 999.99999; 10.002 would cost 1000.09998
    assert r.collateral[0].amount <= D("1000")


def test_third_token_rebate_needs_no_balance_of_that_token() -> None:
    schema = TradeFeeSchema(maker_percent=D("-0.0001"), percent_fee_token="BNB")
    checker = BudgetChecker(schema, rate=lambda f, t: D("0.002"))
    r = accepted(checker.adjust(buy("1", maker=True), {"USDT": D("100")}))
    assert r.collateral == (TokenAmount("USDT", D("100")),)  # the negative BNB part is not locked


# -- balances ------------------------------------------------------------------------------------


def test_locked_collateral_of_pending_orders_reduces_the_budget() -> None:
    checker = BudgetChecker(BINANCE_LIKE)
    r = accepted(checker.adjust(buy("5"), {"USDT": D("1000")}, {"USDT": D("800")}, rule=RULE))
    assert r.candidate.amount == D("2.000")
    rej = rejected(checker.adjust(buy("5"), {"USDT": D("1000")}, {"USDT": D("1000")}, rule=RULE))
    assert (rej.token, rej.required, rej.available, rej.locked, rej.shortfall) == (
        "USDT", D("500.000"), D("1000"), D("1000"), D("500.000"),
    )


def test_all_or_none_refuses_instead_of_shrinking_and_says_by_how_much() -> None:
    rej = rejected(BudgetChecker(QUOTE_FEE).adjust(buy("20"), {"USDT": D("1000")}, all_or_none=True))
    assert rej.reason is BudgetRejectReason.INSUFFICIENT_BALANCE
    assert (rej.token, rej.required, rej.shortfall) == ("USDT", D("2004.000"), D("1004.000"))
    assert rej.violation is None and rej.candidate == buy("20")


def test_all_or_none_accepts_an_order_that_fits_exactly() -> None:
    r = accepted(BudgetChecker(BINANCE_LIKE).adjust(buy("10"), {"USDT": D("1000")}, all_or_none=True))
    assert r.candidate.amount == D("10")


def test_missing_token_is_zero_balance() -> None:
    rej = rejected(BudgetChecker(BINANCE_LIKE).adjust(sell("1"), {"USDT": D("5000")}))
    assert (rej.token, rej.available, rej.shortfall) == ("BTC", D("0"), D("1"))


def test_non_decimal_or_nan_balance_is_a_typed_error() -> None:
    checker = BudgetChecker(BINANCE_LIKE)
    with pytest.raises(InvalidBalance):
        checker.adjust(buy("1"), {"USDT": D("NaN")})
    with pytest.raises(InvalidBalance):
        checker.adjust(buy("1"), {"USDT": 1000.0})  # type: ignore[dict-item]


def test_adjust_many_locks_each_accepted_candidate_for_the_next() -> None:
    checker = BudgetChecker(BINANCE_LIKE)
    rules = {"BTC-USDT": RULE}
    results = checker.adjust_many(
        [buy("6"), buy("6"), sell("1"), buy("1")], {"USDT": D("1000"), "BTC": D("1")},
        {"USDT": D("100")}, rules=rules,
    )
    first, second, third, fourth = results
    assert accepted(first).candidate.amount == D("6.000")
    assert accepted(second).candidate.amount == D("3.000")  # 900 - 600 left
    assert accepted(third).candidate.amount == D("1.000")  # sells do not compete for quote
    rej = rejected(fourth)
    assert (rej.token, rej.locked, rej.shortfall) == ("USDT", D("1000.000"), D("100.000"))

    strict = checker.adjust_many([buy("6"), buy("6")], {"USDT": D("1000")}, all_or_none=True)
    assert accepted(strict[0]).candidate.amount == D("6")
    assert rejected(strict[1]).shortfall == D("200")


# -- order types, rules, validation ---------------------------------------------------------------


def test_market_order_needs_a_reference_price_and_pays_taker() -> None:
    checker = BudgetChecker(QUOTE_FEE)
    rej = rejected(checker.adjust(buy("1", price=None, order_type=MARKET), {"USDT": D("1000")}))
    assert rej.reason is BudgetRejectReason.NO_REFERENCE_PRICE and rej.token is None
    r = accepted(checker.adjust(buy("1", price="100.005", order_type=MARKET, maker=True),
                                {"USDT": D("1000")}, rule=RULE))
    assert r.fee.percent == D("0.002")  # taker even though is_maker was set
    assert r.candidate.price == D("100.005")  # a reference price is not quantized
    with pytest.raises(RuleViolation):
        checker.collateral(buy("1", price=None, order_type=MARKET))


def test_post_only_pays_maker_and_limit_follows_the_flag() -> None:
    assert buy("1", order_type=MAKER).pays_maker_fee
    assert buy("1", maker=True).pays_maker_fee and not buy("1").pays_maker_fee
    assert not buy("1", price="1", order_type=MARKET, maker=True).pays_maker_fee


def test_rule_quantizes_price_side_aware_before_costing() -> None:
    checker = BudgetChecker(BINANCE_LIKE)
    r = accepted(checker.adjust(buy("1.0004", price="100.009"), {"USDT": D("1000")}, rule=RULE))
    assert (r.candidate.amount, r.candidate.price) == (D("1.000"), D("100.00"))
    assert r.collateral == (TokenAmount("USDT", D("100.00000")),)
    r = accepted(checker.adjust(sell("1", price="100.001"), {"BTC": D("1")}, rule=RULE))
    assert r.candidate.price == D("100.01")


def test_rule_violation_without_resize_is_a_rule_rejection() -> None:
    rej = rejected(BudgetChecker(BINANCE_LIKE).adjust(buy("0.01"), {"USDT": D("1000")}, rule=RULE))
    assert rej.reason is BudgetRejectReason.RULE_VIOLATION
    assert rej.violation is not None and rej.violation.rule == "min_notional"
    assert rej.token is None and rej.shortfall is None


def test_rule_broken_only_because_of_the_shrink_is_a_shortfall() -> None:
    rej = rejected(BudgetChecker(BINANCE_LIKE).adjust(buy("1"), {"USDT": D("3")}, rule=RULE))
    assert rej.reason is BudgetRejectReason.INSUFFICIENT_BALANCE
    assert rej.violation is not None and rej.violation.rule == "min_notional"
    assert (rej.token, rej.shortfall) == ("USDT", D("97.000"))


def test_shrink_below_one_step_is_a_shortfall() -> None:
    rej = rejected(BudgetChecker(BINANCE_LIKE).adjust(buy("1"), {"USDT": D("0.05")}, rule=RULE))
    assert rej.reason is BudgetRejectReason.INSUFFICIENT_BALANCE and rej.violation is None


def test_explicit_fee_overrides_the_schema_estimate() -> None:
    fee = TradeFee.estimate_spot(QUOTE_FEE, BUY, is_maker=False)
    r = accepted(BudgetChecker(BINANCE_LIKE).adjust(buy("1"), {"USDT": D("1000")}, fee=fee))
    assert r.fee is fee and r.collateral == (TokenAmount("USDT", D("100.200")),)
    assert BudgetChecker(BINANCE_LIKE).collateral(buy("1"), fee) == {"USDT": D("100.200")}
    assert BudgetChecker(BINANCE_LIKE).collateral(sell("1")) == {"BTC": D("1")}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"amount": 1.0}, TypeError),
        ({"amount": D("0")}, RuleViolation),
        ({"amount": D("NaN")}, RuleViolation),
        ({"price": D("-1")}, RuleViolation),
        ({"price": 100.0}, TypeError),
        ({"price": None}, RuleViolation),  # a limit order needs its price
        ({"trading_pair": "BTCUSDT"}, InvalidTradingPair),
    ],
)
def test_candidate_validation(kwargs: dict[str, object], error: type[Exception]) -> None:
    args: dict[str, object] = {
        "trading_pair": "BTC-USDT", "side": BUY, "order_type": LIMIT, "amount": D("1"), "price": D("1"),
    }
    args.update(kwargs)
    with pytest.raises(error):
        OrderCandidate(**args)  # type: ignore[arg-type]


# -- property: never overspend, never shrink more than needed -------------------------------------

decimals = st.decimals(min_value=D("0.001"), max_value=D("100000"), places=3, allow_nan=False)
schemas = st.builds(
    TradeFeeSchema,
    maker_percent=st.decimals(min_value=D("-0.001"), max_value=D("0.01"), places=4),
    taker_percent=st.decimals(min_value=D("0"), max_value=D("0.01"), places=4),
    buy_percent_fee_deducted_from_returns=st.booleans(),
    taker_fixed_fees=st.sampled_from(
        [(), (TokenAmount("USDT", D("0.5")),), (TokenAmount("BNB", D("0.01")),)]
    ),
)


def exact_cost(c: OrderCandidate, fee: TradeFee) -> dict[str, D]:
    with localcontext() as ctx:
        ctx.prec = 200
        assert c.price is not None
        return fee.cost_and_returns(c.trading_pair, c.side, c.price, c.amount)[0]


@settings(max_examples=300, deadline=None)
@given(
    schema=schemas, side=st.sampled_from([BUY, SELL]), order_type=st.sampled_from([LIMIT, MAKER, MARKET]),
    amount=decimals, price=decimals, maker=st.booleans(), use_rule=st.booleans(),
    usdt=decimals, btc=decimals, bnb=st.decimals(min_value=D("0"), max_value=D("1"), places=3),
    locked_usdt=st.decimals(min_value=D("0"), max_value=D("1000"), places=2),
)
def test_property_accepted_orders_fit_and_shrinks_are_maximal(
    schema: TradeFeeSchema, side: Side, order_type: OrderType, amount: D, price: D, maker: bool,
    use_rule: bool, usdt: D, btc: D, bnb: D, locked_usdt: D,
) -> None:
    checker = BudgetChecker(schema)
    candidate = OrderCandidate("BTC-USDT", side, order_type, amount, price, maker)
    available = {"USDT": usdt, "BTC": btc, "BNB": bnb}
    locked = {"USDT": locked_usdt}
    rule = TradingRule("BTC-USDT", tick_size=D("0.01"), step_size=D("0.001")) if use_rule else None
    result = checker.adjust(candidate, available, locked, rule)
    fee = checker.estimate_fee(candidate)
    budget = {t: available.get(t, D(0)) - locked.get(t, D(0)) for t in ("USDT", "BTC", "BNB")}
    if isinstance(result, BudgetAccepted):
        c = result.candidate
        assert D(0) < c.amount <= amount
        cost = exact_cost(c, fee)
        for token, value in cost.items():
            assert value <= 0 or value <= budget[token], (token, value, budget[token])
        locks = {t.token: t.amount for t in result.collateral}
        assert locks == {t: v for t, v in cost.items() if v > 0}
        if rule is not None:
            assert rule.check(order_type, side, c.amount, c.price) is None
            if result.limited_by is not None:  # one more step would not fit
                bigger = OrderCandidate(c.trading_pair, side, order_type, c.amount + rule.step_size, c.price)
                more = exact_cost(bigger, fee)
                assert any(v > 0 and v > budget[t] for t, v in more.items())
            else:
                assert c.amount == rule.quantize_amount(amount, order_type)
        elif result.limited_by is None:
            assert c.amount == amount
    elif result.reason is BudgetRejectReason.RULE_VIOLATION:  # the full order breaks the rule
        assert rule is not None and result.violation is not None
        q_price = rule.quantize_price(price, side) if order_type.is_limit else price
        assert rule.check(order_type, side, rule.quantize_amount(amount, order_type), q_price) is not None
    else:
        assert result.reason is BudgetRejectReason.INSUFFICIENT_BALANCE
        assert result.token is not None and result.shortfall is not None and result.shortfall > 0
        assert budget[result.token] < exact_cost(candidate, fee)[result.token]
