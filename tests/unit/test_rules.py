"""TradingRule: side-aware quantization, validation after rounding, and the property that ties them."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import ConfigError, RuleViolation
from marketlink.core.rules import TradingRule, ceil_to, exact_mul, floor_to, is_multiple

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, MAKER = OrderType.LIMIT, OrderType.MARKET, OrderType.LIMIT_MAKER

RULE = TradingRule(
    "BTC-USDT", tick_size=D("0.01"), step_size=D("0.00001"), min_order_size=D("0.0001"),
    max_order_size=D("9000"), min_notional=D("5"), max_notional=D("9000000"),
)


# -- quantization ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "price", "expected"),
    [
        (BUY, "100.019", "100.01"),  # a buy never bids higher
        (SELL, "100.011", "100.02"),  # a sell never asks lower
        (BUY, "100.01", "100.01"),
        (SELL, "100.01", "100.01"),
        (BUY, "0.009", "0.00"),
    ],
)
def test_price_rounds_toward_the_passive_side(side: Side, price: str, expected: str) -> None:
    q = RULE.quantize_price(D(price), side)
    assert q == D(expected) and str(q) == expected


def test_amount_rounds_down_to_the_step_and_market_step_when_set() -> None:
    assert RULE.quantize_amount(D("1.234567")) == D("1.23456")
    rule = TradingRule("X-Y", D("1"), D("0.001"), market_step_size=D("0.1"))
    assert rule.quantize_amount(D("1.2999"), LIMIT) == D("1.299")
    assert rule.quantize_amount(D("1.2999"), MARKET) == D("1.2")


def test_rounding_helpers_are_exact_where_28_digit_division_fails() -> None:
    # 12 integer digits at 18 decimals: value/step has 30 digits, beyond the default context
    value = D("123456789012.123456789012345678")
    assert floor_to(value, D("1E-18")) == value and is_multiple(value, D("1E-18"))
    assert floor_to(value, D("1E-17")) == D("123456789012.12345678901234567")
    assert ceil_to(value, D("1E-17")) == D("123456789012.12345678901234568")
    assert floor_to(D("-1.5"), D("1")) == D("-2") and ceil_to(D("-1.5"), D("1")) == D("-1")
    assert floor_to(D("1234"), D("1E+2")) == D("1200") and ceil_to(D("1234"), D("1E+2")) == D("1300")
    assert floor_to(D("0.7"), D("0.25")) == D("0.50") and ceil_to(D("0.7"), D("0.25")) == D("0.75")
    assert str(floor_to(D("5"), D("0.01"))) == "5.00"  # keeps the step's exponent
    a, b = D("0.123456789012345678"), D("98765.4321098765")
    assert exact_mul(a, b) == Fraction(a) * Fraction(b)
    assert exact_mul(D("Infinity"), D("2")) == D("Infinity")


def test_non_finite_values_pass_through_rounding_and_fail_the_check() -> None:
    for bad in (D("NaN"), D("Infinity"), D("sNaN")):
        q = RULE.quantize_amount(bad)
        assert not q.is_finite()
        with pytest.raises(RuleViolation) as info:
            RULE.prepare(LIMIT, BUY, bad, D("100"))
        assert info.value.rule == "amount_positive"


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_type", "amount", "price", "rule", "value", "limit"),
    [
        (LIMIT, "0", "100", "amount_positive", "0", "0"),
        (LIMIT, "-1", "100", "amount_positive", "-1", "0"),
        (LIMIT, "1", None, "price_positive", None, "0"),
        (LIMIT, "1", "0", "price_positive", "0", "0"),
        (MARKET, "1", "NaN", "price_positive", "NaN", "0"),  # a bad reference price is refused, not raised
        (LIMIT, "0.00005", "100", "min_order_size", "0.00005", "0.0001"),
        (LIMIT, "9000.00001", "1", "max_order_size", "9000.00001", "9000"),
        (LIMIT, "1.000001", "100", "step_size", "1.000001", "0.00001"),
        (LIMIT, "1", "100.001", "tick_size", "100.001", "0.01"),
        (LIMIT, "0.0499", "100", "min_notional", "4.99", "5"),
        (MARKET, "0.0499", "100.001", "min_notional", "4.9900499", "5"),  # reference price not ticked
        (LIMIT, "9000", "1000.01", "max_notional", "9000090", "9000000"),
    ],
)
def test_check_names_the_broken_rule_with_its_numbers(
    order_type: OrderType, amount: str, price: str | None, rule: str, value: str | None, limit: str
) -> None:
    v = RULE.check(order_type, BUY, D(amount), None if price is None else D(price))
    assert v is not None and isinstance(v, RuleViolation)
    assert v.rule == rule
    if value is not None and value != "NaN":
        assert v.value == D(value)
    assert v.limit == D(limit)
    assert "BTC-USDT" in str(v)


def test_check_passes_a_good_order_and_market_without_reference_skips_notional() -> None:
    assert RULE.check(LIMIT, SELL, D("0.05"), D("100")) is None
    assert RULE.check(MARKET, BUY, D("0.0001"), None) is None  # notional unknown: not judged here


def test_market_specific_limits_and_notional_switch() -> None:
    rule = TradingRule(
        "X-Y", D("0.1"), D("0.01"), min_order_size=D("1"), max_order_size=D("100"), min_notional=D("10"),
        market_step_size=D("0.5"), market_min_order_size=D("2"), market_max_order_size=D("50"),
        apply_min_notional_to_market=False,
    )
    assert rule.check(MARKET, BUY, D("1.5"), D("1")).rule == "min_order_size"  # type: ignore[union-attr]
    assert rule.check(MARKET, BUY, D("60"), D("1")).rule == "max_order_size"  # type: ignore[union-attr]
    assert rule.check(MARKET, BUY, D("2.25"), D("1")).rule == "step_size"  # type: ignore[union-attr]
    assert rule.check(MARKET, BUY, D("2.5"), D("1")) is None  # notional 2.5 < 10 but not applied
    assert rule.check(LIMIT, BUY, D("2.5"), D("1")).rule == "min_notional"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flag", "order_type"),
    [
        ("supports_market_orders", MARKET),
        ("supports_limit_orders", LIMIT),
        ("supports_limit_maker_orders", MAKER),
    ],
)
def test_unsupported_order_types_are_refused(flag: str, order_type: OrderType) -> None:
    rule = TradingRule("X-Y", D("1"), D("1"), **{flag: False})  # type: ignore[arg-type]
    v = rule.check(order_type, BUY, D("1"), D("1"))
    assert v is not None and v.rule == "order_type"


def test_notional_is_exact_beyond_28_digits() -> None:
    # (1 - 1e-17) * (5 + 5e-17) = 5 - 5e-34: just below 5, but exactly 5 once rounded to 28 digits
    rule = TradingRule("X-Y", D("1E-17"), D("1E-17"), min_notional=D("5"))
    a, p = D("0.99999999999999999"), D("5.00000000000000005")
    exact = Fraction(a) * Fraction(p)
    assert exact < 5 and a * p == 5  # the default context gets it wrong
    v = rule.check(LIMIT, BUY, a, p)
    assert v is not None and v.rule == "min_notional" and v.value == exact


def test_prepare_returns_rounded_values_and_drops_the_market_reference_price() -> None:
    assert RULE.prepare(LIMIT, BUY, D("0.123456"), D("100.019")) == (D("0.12345"), D("100.01"))
    assert RULE.prepare(LIMIT, SELL, D("0.123456"), D("100.011")) == (D("0.12345"), D("100.02"))
    assert RULE.prepare(MARKET, BUY, D("0.123456"), D("100.019")) == (D("0.12345"), None)
    with pytest.raises(RuleViolation) as info:
        RULE.prepare(LIMIT, BUY, D("0.000019"), D("100"))  # rounds to 0.00001 < min size
    assert info.value.rule == "min_order_size" and info.value.value == D("0.00001")
    with pytest.raises(RuleViolation) as info:
        RULE.prepare(LIMIT, BUY, D("0.05"), D("-5"))
    assert info.value.rule == "price_positive"


def test_huge_values_with_tiny_steps_give_answers_not_decimal_errors() -> None:
    rule = TradingRule("SHIB-WETH", D("1E-18"), D("1E-18"), min_notional=D("0"))
    amount = D("123456789012345.123456789012345678")
    assert rule.prepare(LIMIT, BUY, amount, D("0.000000012345678901")) == (amount, D("0.000000012345678901"))
    v = rule.check(LIMIT, BUY, D("123456789012345.1234567890123456781"), D("1"))
    assert v is not None and v.rule == "step_size"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tick_size": D("0")},
        {"tick_size": D("-0.01")},
        {"step_size": D("NaN")},
        {"step_size": 0.01},
        {"market_step_size": D("0")},
        {"market_step_size": D("Infinity")},
        {"min_order_size": D("NaN")},
        {"max_order_size": D("-1")},
        {"min_notional": 5},
        {"market_max_order_size": D("sNaN")},
    ],
)
def test_invalid_rules_are_config_errors(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"trading_pair": "X-Y", "tick_size": D("0.01"), "step_size": D("0.1")}
    args.update(kwargs)
    with pytest.raises(ConfigError):
        TradingRule(**args)  # type: ignore[arg-type]


# -- the property ---------------------------------------------------------------------------------


def powers(lo: int, hi: int) -> st.SearchStrategy[D]:
    """Steps and ticks as venues publish them: 1, 2, 5 or 25 times a power of ten."""
    return st.builds(lambda m, e: D(m).scaleb(e), st.sampled_from([1, 2, 5, 25]), st.integers(lo, hi))


def values(max_places: int = 20) -> st.SearchStrategy[D]:
    return st.builds(
        lambda m, e: D(m).scaleb(-e), st.integers(-10, 10**16), st.integers(0, max_places)
    )


optional_bound = st.one_of(st.none(), values(6))


@st.composite
def rules(draw: st.DrawFn) -> TradingRule:
    lo = draw(st.one_of(st.just(D(0)), values(6)))
    return TradingRule(
        "BTC-USDT",
        tick_size=draw(powers(-12, 2)),
        step_size=draw(powers(-18, 2)),
        min_order_size=lo.copy_abs(),
        max_order_size=draw(optional_bound.map(lambda v: None if v is None else v.copy_abs())),
        min_notional=draw(values(6)).copy_abs(),
        max_notional=draw(optional_bound.map(lambda v: None if v is None else v.copy_abs())),
        market_step_size=draw(st.one_of(st.none(), powers(-8, 1))),
        market_min_order_size=draw(optional_bound.map(lambda v: None if v is None else v.copy_abs())),
        market_max_order_size=draw(optional_bound.map(lambda v: None if v is None else v.copy_abs())),
        supports_limit_orders=draw(st.sampled_from([True, True, False])),
        supports_market_orders=draw(st.sampled_from([True, True, False])),
        supports_limit_maker_orders=draw(st.sampled_from([True, True, False])),
        apply_min_notional_to_market=draw(st.booleans()),
    )


def broken(rule: TradingRule, order_type: OrderType, amount: D, price: D | None, name: str) -> bool:
    """An independent oracle, in exact fractions: do these (rounded) values break rule ``name``?"""
    a = Fraction(amount) if amount.is_finite() else None
    p = Fraction(price) if price is not None and price.is_finite() else None
    market = order_type is MARKET
    lo, hi, step = rule.min_order_size, rule.max_order_size, rule.step_size
    if market:
        lo = rule.market_min_order_size if rule.market_min_order_size is not None else lo
        hi = rule.market_max_order_size if rule.market_max_order_size is not None else hi
        step = rule.market_step_size or step
    judged_notional = p is not None and a is not None and (not market or rule.apply_min_notional_to_market)
    checks = {
        "order_type": (market and not rule.supports_market_orders)
        or (order_type is LIMIT and not rule.supports_limit_orders)
        or (order_type is MAKER and not rule.supports_limit_maker_orders),
        "amount_positive": a is None or a <= 0,
        "price_positive": (not market or price is not None) and (p is None or p <= 0),
        "min_order_size": a is not None and a < Fraction(lo),
        "max_order_size": a is not None and hi is not None and a > Fraction(hi),
        "step_size": a is not None and (a / Fraction(step)).denominator != 1,
        "tick_size": not market and p is not None and (p / Fraction(rule.tick_size)).denominator != 1,
        "min_notional": judged_notional and a * p < Fraction(rule.min_notional),  # type: ignore[operator]
        "max_notional": judged_notional and rule.max_notional is not None
        and a * p > Fraction(rule.max_notional),  # type: ignore[operator]
    }
    return bool(checks[name])


@settings(max_examples=300, deadline=None)
@given(
    rule=rules(), order_type=st.sampled_from([LIMIT, MAKER, MARKET]), side=st.sampled_from([BUY, SELL]),
    amount=values(), price=st.one_of(st.none(), values(14)),
)
@example(  # 30-digit quotient: failed with DivisionImpossible before the exact arithmetic
    rule=TradingRule("BTC-USDT", D("1E-18"), D("1E-18")), order_type=LIMIT, side=BUY,
    amount=D("123456789012.123456789012345678"), price=D("1"),
)
def test_property_prepare_never_produces_an_order_that_breaks_its_rule(
    rule: TradingRule, order_type: OrderType, side: Side, amount: D, price: D | None
) -> None:
    try:
        q_amount, q_price = rule.prepare(order_type, side, amount, price)
    except RuleViolation as v:
        # the violation is about the rounded values, and they really break the rule it names
        r_amount = rule.quantize_amount(amount, order_type)
        r_price = price
        if order_type.is_limit and price is not None and price.is_finite() and price > 0:
            r_price = rule.quantize_price(price, side)
        assert broken(rule, order_type, r_amount, r_price, v.rule), (v.rule, r_amount, r_price)
        if v.rule in ("min_order_size", "max_order_size", "step_size"):
            assert v.value == r_amount
        if v.rule in ("min_notional", "max_notional"):
            assert r_price is not None and Fraction(v.value) == Fraction(r_amount) * Fraction(r_price)  # type: ignore[arg-type]
        return
    step = rule.market_step_size if order_type is MARKET and rule.market_step_size else rule.step_size
    assert rule.check(order_type, side, q_amount, q_price if order_type.is_limit else price) is None
    assert Fraction(q_amount) / Fraction(step) == int(Fraction(q_amount) / Fraction(step))
    assert D(0) < q_amount <= amount
    assert Fraction(amount) - Fraction(q_amount) < Fraction(step)  # rounded by less than one step
    if order_type is MARKET:
        assert q_price is None
        return
    assert q_price is not None and price is not None
    assert (Fraction(q_price) / Fraction(rule.tick_size)).denominator == 1
    if side is BUY:
        assert q_price <= price
    else:
        assert q_price >= price
    assert abs(Fraction(q_price) - Fraction(price)) < Fraction(rule.tick_size)


@settings(max_examples=300, deadline=None)
@given(value=values(30).map(lambda v: v * 10**12), step=powers(-20, 4))
def test_property_floor_and_ceil_are_the_nearest_multiples(value: D, step: D) -> None:
    lo, hi = floor_to(value, step), ceil_to(value, step)
    v, s = Fraction(value), Fraction(step)
    assert (Fraction(lo) / s).denominator == 1 and (Fraction(hi) / s).denominator == 1
    assert Fraction(lo) <= v <= Fraction(hi)
    assert v - Fraction(lo) < s and Fraction(hi) - v < s
    assert (lo == hi) == is_multiple(value, step)
