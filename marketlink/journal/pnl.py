"""A bot's totals from its fills: volume, fees, position and realised PnL. Pure; no SQLite here.

Realised PnL uses the **average cost** method, per trading pair, in the pair's quote asset:
a fill that grows the position (from flat, or in the position's direction) moves the average
entry price; a fill against it realises ``closed amount x (exit price - average price)``
(sign-adjusted for a short) and leaves the average unchanged; a fill larger than the position
flips it and opens the rest at its own price. Average cost rather than FIFO because it needs
one running pair of numbers per market instead of a lot queue, and its result does not depend
on how the venue split a fill into trades. A spot bot that sells inventory it held before its
first recorded buy shows a short position here: the journal knows only its own fills.

**Fees paid in the pair's own assets are part of the result**, because they are part of what
the account holds: a fee in the **quote** asset is taken off the realised PnL when it is paid;
a fee in the **base** asset is base leaving the position for nothing, booked as a disposal at
price zero (so a buy of 1 BTC that pays 0.001 BTC leaves a 0.999 BTC position and realises the
0.001 BTC's cost). A round trip that ends flat on the account therefore ends flat here, with
the PnL the balances show. A fee in a **third** asset (BNB on BTC-USDT) has no quote value
without a price the journal does not have: it is kept per pair in ``other_fees`` and never
mixed into the PnL. A rebate is a negative fee and works the same way in reverse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal

from marketlink.core.enums import Side
from marketlink.core.fees import TokenAmount
from marketlink.journal.records import FillRecord

__all__ = ["PairTotals", "Summary", "summarize"]

_ZERO = Decimal(0)
_EXACT = Context(prec=120, rounding=ROUND_HALF_EVEN)
_AVERAGE = Context(prec=40, rounding=ROUND_HALF_EVEN)


@dataclass(slots=True)
class PairTotals:
    """Running totals of one pair. ``position`` is signed base (positive long), net of base fees;
    ``realized_pnl`` is net of quote fees and of the cost of base fees; ``fees_base`` and
    ``fees_quote`` say how much of each was paid; ``other_fees`` are fees in any other asset."""

    trading_pair: str
    fills: int = 0
    volume_base: Decimal = _ZERO
    volume_quote: Decimal = _ZERO
    position: Decimal = _ZERO
    average_price: Decimal = _ZERO  # of the open position; zero when flat
    realized_pnl: Decimal = _ZERO  # in the quote asset
    fees_base: Decimal = _ZERO
    fees_quote: Decimal = _ZERO
    other_fees: dict[str, Decimal] = field(default_factory=dict)

    def add(
        self, side: Side, amount: Decimal, price: Decimal, quote: Decimal, fees: Iterable[TokenAmount] = ()
    ) -> None:
        self.fills += 1
        self.volume_base = _EXACT.add(self.volume_base, amount)
        self.volume_quote = _EXACT.add(self.volume_quote, quote)
        self._trade(amount if side is Side.BUY else -amount, price)
        base, _, quote_asset = self.trading_pair.partition("-")
        for fee in fees:
            if fee.token == base:
                self.fees_base = _EXACT.add(self.fees_base, fee.amount)
                self._trade(-fee.amount, _ZERO)  # base given away: a disposal at price zero
            elif fee.token == quote_asset:
                self.fees_quote = _EXACT.add(self.fees_quote, fee.amount)
                self.realized_pnl = _EXACT.subtract(self.realized_pnl, fee.amount)
            else:
                self.other_fees[fee.token] = _EXACT.add(self.other_fees.get(fee.token, _ZERO), fee.amount)

    def _trade(self, signed: Decimal, price: Decimal) -> None:
        """Move the position by ``signed`` base at ``price`` (average cost)."""
        if signed == 0:
            return
        amount = abs(signed)
        q = self.position
        if q == 0 or (q > 0) == (signed > 0):
            size = abs(q)
            cost = _EXACT.add(_EXACT.multiply(size, self.average_price), _EXACT.multiply(amount, price))
            self.average_price = _AVERAGE.divide(cost, _EXACT.add(size, amount))
            self.position = _EXACT.add(q, signed)
            return
        closed = min(amount, abs(q))
        gain = _EXACT.multiply(closed, _EXACT.subtract(price, self.average_price))
        self.realized_pnl = _EXACT.add(self.realized_pnl, gain if q > 0 else -gain)
        self.position = _EXACT.add(q, signed)
        if self.position == 0:
            self.average_price = _ZERO
        elif amount > closed:  # flipped: the rest opens a position at this price
            self.average_price = price


@dataclass(frozen=True, slots=True)
class Summary:
    bot_id: int
    orders_by_state: dict[str, int]
    fill_count: int
    fees: dict[str, Decimal]
    pairs: dict[str, PairTotals] = field(default_factory=dict)

    @property
    def order_count(self) -> int:
        return sum(self.orders_by_state.values())

    def realized_pnl(self, trading_pair: str) -> Decimal:
        totals = self.pairs.get(trading_pair)
        return totals.realized_pnl if totals is not None else _ZERO


def summarize(bot_id: int, orders_by_state: dict[str, int], fills: Iterable[FillRecord]) -> Summary:
    """Fold ``fills`` (in time order) into a ``Summary``."""
    pairs: dict[str, PairTotals] = {}
    fees: dict[str, Decimal] = {}
    count = 0
    for f in fills:
        count += 1
        totals = pairs.get(f.trading_pair)
        if totals is None:
            totals = pairs[f.trading_pair] = PairTotals(f.trading_pair)
        totals.add(f.side, f.amount, f.price, f.quote_amount, f.fees)
        for fee in f.fees:
            fees[fee.token] = _EXACT.add(fees.get(fee.token, _ZERO), fee.amount)
    return Summary(bot_id, dict(orders_by_state), count, fees, pairs)
