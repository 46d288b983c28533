"""The market-making arithmetic by values alone: ladder, references, skew, tolerance, minimum
spread, hanging-order distance, passive prices."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.enums import Side
from marketlink.core.rules import TradingRule
from marketlink.strategy.pmm_proposal import (
    PriceSource,
    below_minimum_spread,
    hanging_too_far,
    inventory_multipliers,
    keep_passive,
    ladder,
    reference_prices,
    within_tolerance,
)

D = Decimal
RULE = TradingRule("BTC-USDT", tick_size=D("0.01"), step_size=D("0.001"))


def test_ladder_levels_step_out_in_spread_and_amount() -> None:
    bids, asks = ladder(D("100"), D("100"), D("1"), D("2"), D("0.5"), 3, D("0.5"), D("0.1"))
    assert [(q.level, q.price, q.amount) for q in bids] == [
        (0, D("99.00"), D("0.5")), (1, D("98.500"), D("0.6")), (2, D("98.000"), D("0.7")),
    ]
    assert [q.price for q in asks] == [D("102.00"), D("102.500"), D("103.000")]
    assert all(q.side is Side.BUY for q in bids) and all(q.side is Side.SELL for q in asks)


def test_reference_prices_per_source() -> None:
    bid, ask, last = D("99"), D("101"), D("100.5")
    assert reference_prices(PriceSource.MID, bid, ask, last) == (D("100"), D("100"), D("100"))
    assert reference_prices(PriceSource.BEST, bid, ask, last) == (bid, ask, D("100"))
    assert reference_prices(PriceSource.LAST, bid, ask, last) == (last, last, last)
    assert reference_prices(PriceSource.LAST, bid, ask, None) is None
    assert reference_prices(PriceSource.MID, None, ask, last) is None
    assert reference_prices(PriceSource.BEST, bid, None, last) is None


def test_inventory_skew_at_target_below_and_beyond_range() -> None:
    # 5 base at 100 + 500 quote: half in base, exactly the 50 % target.
    assert inventory_multipliers(D("5"), D("500"), D("100"), D("50"), D("1"), D("1")) == (D(1), D(1))
    # 4 base + 600 quote: target 5 base, 1 short, range 2 -> r = 0.5.
    assert inventory_multipliers(D("4"), D("600"), D("100"), D("50"), D("1"), D("2")) == (D("1.5"), D("0.5"))
    # far above target: bids stop, asks double
    assert inventory_multipliers(D("10"), D("0"), D("100"), D("50"), D("1"), D("1")) == (D(0), D(2))
    # nothing to value: no skew
    assert inventory_multipliers(D("0"), D("0"), D("100"), D("50"), D("1"), D("1")) == (D(1), D(1))


@settings(max_examples=200, deadline=None)
@given(
    base=st.decimals(min_value=0, max_value=1000, places=3),
    quote=st.decimals(min_value=0, max_value=100000, places=2),
    pct=st.decimals(min_value=0, max_value=100, places=1),
)
def test_skew_multipliers_stay_in_range_and_sum_to_two(base: Decimal, quote: Decimal, pct: Decimal) -> None:
    bid, ask = inventory_multipliers(base, quote, D("100"), pct, D("1"), D("1.5"))
    assert D(0) <= bid <= D(2) and D(0) <= ask <= D(2) and bid + ask == D(2)


def test_tolerance_keeps_only_close_prices_of_the_same_count() -> None:
    assert within_tolerance([D("100")], [D("100.05")], D("0.1"))
    assert not within_tolerance([D("100")], [D("100.2")], D("0.1"))
    assert within_tolerance([D("100")], [D("100")], D("0"))
    assert not within_tolerance([D("100")], [D("100")], D("-1"))  # always refresh
    assert not within_tolerance([D("100")], [D("100"), D("99")], D("5"))
    assert within_tolerance([D("99"), D("100")], [D("100"), D("99")], D("0"))  # order does not matter


def test_minimum_spread_and_hanging_distance() -> None:
    assert below_minimum_spread(Side.BUY, D("99.9"), D("100"), D("0.2"))
    assert not below_minimum_spread(Side.BUY, D("99.7"), D("100"), D("0.2"))
    assert below_minimum_spread(Side.SELL, D("99.9"), D("100"), D("0"))  # crossed the centre
    assert not below_minimum_spread(Side.SELL, D("100.3"), D("100"), D("0.2"))
    assert not below_minimum_spread(Side.SELL, D("1"), D("0"), D("0.2"))
    assert hanging_too_far(D("89"), D("100"), D("10")) and not hanging_too_far(D("91"), D("100"), D("10"))
    assert not hanging_too_far(D("1"), D("0"), D("10"))


def test_keep_passive_rounds_to_the_safe_side_and_never_crosses() -> None:
    assert keep_passive(Side.BUY, D("99.999"), D("99"), D("101"), RULE) == D("99.99")
    assert keep_passive(Side.SELL, D("100.001"), D("99"), D("101"), RULE) == D("100.01")
    assert keep_passive(Side.BUY, D("101.5"), D("99"), D("101"), RULE) == D("100.99")
    assert keep_passive(Side.SELL, D("98"), D("99"), D("101"), RULE) == D("99.01")
    assert keep_passive(Side.BUY, D("150"), None, None, RULE) == D("150")
