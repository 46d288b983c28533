"""The arithmetic of pure market making, with no I/O: reference prices, the ladder of quotes,
inventory skew, refresh tolerance, minimum spread and the hanging-order cancel rule.

Kept apart from the strategy so each rule can be tested by values alone. Percentages are given
as percent (``Decimal("1")`` is 1 %), as traders write them in configuration files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from marketlink.core.enums import Side
from marketlink.core.rules import TradingRule, ceil_to, floor_to

__all__ = [
    "PriceSource",
    "Quote",
    "below_minimum_spread",
    "hanging_too_far",
    "inventory_multipliers",
    "keep_passive",
    "ladder",
    "reference_prices",
    "within_tolerance",
]

_ZERO = Decimal(0)
_ONE = Decimal(1)
_TWO = Decimal(2)
_HUNDRED = Decimal(100)


class PriceSource(StrEnum):
    MID = "mid"  # both sides around the mid price
    LAST = "last"  # both sides around the last public trade
    BEST = "best"  # bids from the best bid, asks from the best ask


@dataclass(frozen=True, slots=True)
class Quote:
    side: Side
    level: int
    price: Decimal
    amount: Decimal


def reference_prices(
    source: PriceSource,
    best_bid: Decimal | None,
    best_ask: Decimal | None,
    last: Decimal | None,
) -> tuple[Decimal, Decimal, Decimal] | None:
    """``(bid reference, ask reference, centre)``, or ``None`` while the source has no price.

    The centre is what distances are measured from (minimum spread, hanging orders): the mid
    for ``mid`` and ``best``, the last trade for ``last``."""
    if source is PriceSource.LAST:
        return None if last is None else (last, last, last)
    if best_bid is None or best_ask is None:
        return None
    mid = (best_bid + best_ask) / _TWO
    if source is PriceSource.MID:
        return mid, mid, mid
    return best_bid, best_ask, mid


def ladder(
    bid_ref: Decimal,
    ask_ref: Decimal,
    bid_spread: Decimal,
    ask_spread: Decimal,
    order_amount: Decimal,
    levels: int,
    level_spread: Decimal,
    level_amount: Decimal,
) -> tuple[list[Quote], list[Quote]]:
    """Bids and asks, innermost first. Level ``i`` (from 0) sits at spread
    ``spread + i * level_spread`` percent from its reference and trades
    ``order_amount + i * level_amount``. Unquantized: rounding is the venue rule's job."""
    bids: list[Quote] = []
    asks: list[Quote] = []
    for i in range(levels):
        amount = order_amount + i * level_amount
        extra = i * level_spread
        bids.append(Quote(Side.BUY, i, bid_ref * (_ONE - (bid_spread + extra) / _HUNDRED), amount))
        asks.append(Quote(Side.SELL, i, ask_ref * (_ONE + (ask_spread + extra) / _HUNDRED), amount))
    return bids, asks


def inventory_multipliers(
    base_total: Decimal,
    quote_total: Decimal,
    price: Decimal,
    target_base_pct: Decimal,
    side_amount: Decimal,
    range_multiplier: Decimal,
) -> tuple[Decimal, Decimal]:
    """``(bid multiplier, ask multiplier)``, each in [0, 2], summing to 2.

    The target base holding is ``target_base_pct`` of the portfolio's value (base valued at
    ``price``) expressed in base: ``target = (base * price + quote) * pct / 100 / price``.
    The range is the amount quoted on one side times ``range_multiplier``. With
    ``r = clamp((target - base) / range, -1, 1)``, bids are scaled by ``1 + r`` and asks by
    ``1 - r``: short of base, the bot bids more and asks less, up to bidding double and asking
    nothing a full range away from the target; at the target both sides are unchanged.
    """
    value = base_total * price + quote_total
    width = side_amount * range_multiplier
    if price <= 0 or value <= 0 or width <= 0:
        return _ONE, _ONE
    target = value * target_base_pct / _HUNDRED / price
    r = max(-_ONE, min(_ONE, (target - base_total) / width))
    return _ONE + r, _ONE - r


def within_tolerance(current: Sequence[Decimal], proposed: Sequence[Decimal], tolerance_pct: Decimal) -> bool:
    """Whether live orders at ``current`` prices may stay instead of ``proposed`` ones: same
    count, and each price (both sorted) within ``tolerance_pct`` percent of its counterpart. A
    negative tolerance never keeps (always refresh)."""
    if tolerance_pct < 0 or len(current) != len(proposed):
        return False
    for old, new in zip(sorted(current), sorted(proposed), strict=True):
        if old <= 0 or abs(new - old) / old * _HUNDRED > tolerance_pct:
            return False
    return True


def below_minimum_spread(side: Side, price: Decimal, centre: Decimal, minimum_pct: Decimal) -> bool:
    """A quote that the market has moved to within ``minimum_pct`` percent of (or through) the
    centre: it would trade at less edge than the trader allowed, so it is cancelled early."""
    if centre <= 0:
        return False
    edge = (centre - price) if side is Side.BUY else (price - centre)
    return edge / centre * _HUNDRED < minimum_pct


def hanging_too_far(price: Decimal, centre: Decimal, cancel_pct: Decimal) -> bool:
    """A hanging order more than ``cancel_pct`` percent from the centre has little chance to fill
    and keeps funds locked: it is cancelled."""
    if centre <= 0:
        return False
    return abs(price - centre) / centre * _HUNDRED > cancel_pct


def keep_passive(
    side: Side, price: Decimal, best_bid: Decimal | None, best_ask: Decimal | None, rule: TradingRule
) -> Decimal:
    """``price`` on the tick grid (buys down, sells up), moved back one tick behind the opposite
    best price if it would cross it: a maker quote must rest, never take."""
    tick = rule.tick_size
    if side is Side.BUY:
        price = floor_to(price, tick)
        if best_ask is not None and price >= best_ask:
            price = floor_to(best_ask - tick, tick)
        return price
    price = ceil_to(price, tick)
    if best_bid is not None and price <= best_bid:
        price = ceil_to(best_bid + tick, tick)
    return price
