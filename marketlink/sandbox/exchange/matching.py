"""Matching as a plan: walk the book, decide every fill and every prevented match, change nothing.

Planning first and executing second is what lets the engine answer exactly like Binance does
before touching state: a MARKET order the account cannot pay for completely is rejected, a FOK
that cannot fill completely expires untouched, and the amount a MARKET order must lock is known
to the last unit. Because the engine is synchronous, executing the plan right after making it
yields exactly the planned trades.

Self-trade prevention follows the taker's mode (Binance's STP FAQ): NONE trades with oneself;
EXPIRE_MAKER expires each own resting order met and keeps matching; EXPIRE_TAKER stops and
expires the taker's remainder; EXPIRE_BOTH does both. Only orders of the same account count.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketlink.core.enums import Side
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.book import MatchingBook
from marketlink.sandbox.exchange.markets import StpMode
from marketlink.sandbox.exchange.orders import Order


@dataclass(frozen=True, slots=True)
class FillStep:
    maker: Order
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class PreventStep:
    """Self-trade prevention expires ``maker`` (EXPIRE_MAKER / EXPIRE_BOTH)."""

    maker: Order
    price: Decimal


Step = FillStep | PreventStep


@dataclass(frozen=True, slots=True)
class MatchPlan:
    steps: tuple[Step, ...]
    filled_qty: Decimal
    filled_quote: Decimal
    taker_prevented_at: Decimal | None  # price where STP expired the taker, if it did
    taker_prevented_maker: Order | None
    budget_exhausted: bool  # a quote-quantity order ran out of quote before liquidity ran out

    @property
    def fills(self) -> tuple[FillStep, ...]:
        return tuple(s for s in self.steps if isinstance(s, FillStep))


def plan_match(
    book: MatchingBook,
    *,
    account: str,
    side: Side,
    stp: StpMode,
    limit_price: Decimal | None,
    qty: Decimal | None,
    quote_qty: Decimal | None = None,
    step_size: Decimal,
    max_qty: Decimal | None = None,
) -> MatchPlan:
    """Plan a taker of ``side`` for ``qty`` (or, for MARKET, a ``quote_qty`` budget).

    ``limit_price`` ``None`` means no price limit. For a quote budget each fill is the largest
    multiple of ``step_size`` it affords (never spending or receiving more than asked), capped so
    the total stays within ``max_qty``.
    """
    steps: list[Step] = []
    filled = money.ZERO
    quote = money.ZERO
    prevented_at: Decimal | None = None
    prevented_maker: Order | None = None
    exhausted = False
    for price, maker in book.orders_from_best(side.opposite):
        if limit_price is not None and (price > limit_price if side is Side.BUY else price < limit_price):
            break
        if qty is not None:
            want = money.sub(qty, filled)
        else:
            assert quote_qty is not None
            lots = money.units(money.sub(quote_qty, quote), money.mul(price, step_size))
            want = money.mul(Decimal(lots), step_size)
            if max_qty is not None:
                want = min(want, money.sub(max_qty, filled))
        if want <= 0:
            exhausted = qty is None
            break
        if maker.account == account and stp is not StpMode.NONE:
            if stp in (StpMode.EXPIRE_MAKER, StpMode.EXPIRE_BOTH):
                steps.append(PreventStep(maker, price))
            if stp in (StpMode.EXPIRE_TAKER, StpMode.EXPIRE_BOTH):
                prevented_at, prevented_maker = price, maker
                break
            continue
        take = min(want, maker.remaining)
        steps.append(FillStep(maker, price, take))
        filled = money.add(filled, take)
        quote = money.add(quote, money.mul(price, take))
        if take < maker.remaining:  # the taker is done: quantity met, or budget or cap reached
            exhausted = qty is None
            break
    return MatchPlan(tuple(steps), filled, quote, prevented_at, prevented_maker, exhausted)
