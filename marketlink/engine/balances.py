"""Balances: the venue's word when we have it, our own accounting in between.

Authoritative values come from REST snapshots and pushed account updates. Between two of them
the engine moves balances itself from order events (an order resting locks funds, a fill moves
base and quote and takes its fee, a cancel unlocks what was left), so a strategy never sizes an
order on a balance that ignores its own last fill.

Double counting is avoided by time: each asset remembers the venue timestamp of its last
authoritative value, and a local adjustment stamped at or before it is already included in it
and is skipped. (Event timestamps are venue times, the same clock the balance updates carry.)

Losing an adjustment is avoided the same way. A snapshot can be taken at the venue before a fill
and reach us after it (its answer was slow, the fill came by REST meanwhile): it is newer than
the last authoritative value but older than the fill, so taking it as it is would undo the
fill. Each asset therefore keeps the adjustments applied since its last authoritative value,
with their stamps, and a new value is *rebased*: those stamped after it are applied again on top.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from marketlink.core.enums import OrderType, Side
from marketlink.core.events import BalanceUpdated, OrderCreated, OrderEvent, OrderFilled, TerminalOrderEvent
from marketlink.core.market import Balance, BalanceUpdate
from marketlink.core.pairs import split_pair

_ZERO = Decimal(0)
_NEVER = float("-inf")
#: Adjustments an asset keeps for rebasing (snapshots normally clear them within a minute). Past
#: this, the oldest is dropped and values older than it are refused: they could not be rebased.
PENDING_KEPT = 4096


class Balances:
    def __init__(self, publish: Callable[[BalanceUpdated], None]) -> None:
        self._publish = publish
        self._total: dict[str, Decimal] = {}
        self._available: dict[str, Decimal] = {}
        self._as_of: dict[str, float] = {}
        #: Per asset, (stamp, d_total, d_available) of each adjustment since its last authoritative
        #: value, and the stamp below which a value can no longer be rebased (PENDING_KEPT).
        self._pending: dict[str, list[tuple[float, Decimal, Decimal]]] = {}
        self._floor: dict[str, float] = {}
        #: The stamp of the latest complete snapshot: it speaks for every asset, those it leaves
        #: out (zero) included, even one we have never held.
        self._complete_as_of = _NEVER
        #: Per asset, the stamp of the newest change our value holds. What we publish carries it,
        #: so an asset's updates stay in time order even when events reach us out of it (the
        #: journal keeps each asset's latest balance by stamp).
        self._stamp: dict[str, float] = {}
        self._resting: set[str] = set()  # orders whose funds the venue locked (they were created)
        self.snapshots = 0
        #: Values refused as older than what we hold (a late push, a slow snapshot beyond rebasing).
        self.stale_refused = 0

    # -- queries --------------------------------------------------------------------------------

    def total(self, asset: str) -> Decimal:
        return self._total.get(asset, _ZERO)

    def available(self, asset: str) -> Decimal:
        return self._available.get(asset, _ZERO)

    def all(self) -> dict[str, Balance]:
        return {
            a: Balance(a, t, self._available.get(a, _ZERO)) for a, t in sorted(self._total.items())
        }

    # -- authoritative values -------------------------------------------------------------------

    def apply(self, update: BalanceUpdate) -> None:
        """A venue snapshot or push. A complete snapshot zeroes assets it does not list."""
        seen = set()
        for b in update.balances:
            seen.add(b.asset)
            self._set(b.asset, b.total, b.available, update.timestamp)
        if update.complete:
            self.snapshots += 1
            for asset in [a for a in self._total if a not in seen]:
                self._set(asset, _ZERO, _ZERO, update.timestamp)
            self._complete_as_of = max(self._complete_as_of, update.timestamp)

    def _included_until(self, asset: str) -> float:
        """The stamp up to which the venue's word on ``asset`` includes everything: its own last
        value, or for an asset never given one, the last complete snapshot (which left it out:
        zero, with every earlier event included)."""
        as_of = self._as_of.get(asset)
        return self._complete_as_of if as_of is None else as_of

    def _set(self, asset: str, total: Decimal, available: Decimal, ts: float) -> None:
        if ts < self._included_until(asset) or ts < self._floor.get(asset, _NEVER):
            self.stale_refused += 1  # an older push arriving late must not undo a newer one
            return
        pending = self._pending.pop(asset, None)
        stamp = max(ts, self._stamp.get(asset, _NEVER))
        if pending:
            later = [p for p in pending if p[0] > ts]  # what this value cannot include yet
            for at, d_total, d_available in later:
                total += d_total
                available += d_available
                stamp = max(stamp, at)
            if later:
                self._pending[asset] = later
        self._as_of[asset] = ts
        self._stamp[asset] = stamp
        changed = self._total.get(asset) != total or self._available.get(asset) != available
        self._total[asset] = total
        self._available[asset] = available
        if changed:
            self._publish(BalanceUpdated(timestamp=stamp, asset=asset, total=total, available=available))

    # -- local accounting between snapshots -------------------------------------------------------

    def mark_resting(self, client_order_id: str) -> None:
        """An order restored from the journal that the venue already holds: its funds are locked
        in the venue's balances, so its end must unlock what is left, as if we had seen it made."""
        self._resting.add(client_order_id)

    def adjust(self, asset: str, d_total: Decimal, d_available: Decimal, ts: float) -> None:
        if ts <= self._included_until(asset) or (not d_total and not d_available):
            return
        pending = self._pending.setdefault(asset, [])
        pending.append((ts, d_total, d_available))
        if len(pending) > PENDING_KEPT:
            oldest = min(range(len(pending)), key=lambda i: pending[i][0])
            self._floor[asset] = max(self._floor.get(asset, _NEVER), pending.pop(oldest)[0])
        total = self._total.get(asset, _ZERO) + d_total
        available = self._available.get(asset, _ZERO) + d_available
        self._total[asset] = total
        self._available[asset] = available
        stamp = self._stamp[asset] = max(ts, self._stamp.get(asset, _NEVER))
        self._publish(BalanceUpdated(timestamp=stamp, asset=asset, total=total, available=available))

    def on_order_event(self, event: OrderEvent, order_price: Decimal | None, remaining: Decimal) -> None:
        """Move balances for one order event of a spot order.

        ``order_price`` is the order's limit price (None for market orders, which lock nothing
        while resting because they never rest); ``remaining`` is the unfilled amount after the
        event, used to unlock on a terminal event."""
        base, quote = split_pair(event.trading_pair)
        rests = event.order_type is not OrderType.MARKET and order_price is not None
        ts = event.timestamp
        if isinstance(event, OrderCreated) and rests and order_price is not None:
            self._resting.add(event.client_order_id)
            if event.side is Side.BUY:
                self.adjust(quote, _ZERO, -event.amount * order_price, ts)
            else:
                self.adjust(base, _ZERO, -event.amount, ts)
        elif isinstance(event, OrderFilled):
            a, notional = event.amount, event.quote_amount
            if event.side is Side.BUY:
                unlock = a * order_price if rests and order_price is not None else _ZERO
                self.adjust(quote, -notional, unlock - notional, ts)
                self.adjust(base, a, a, ts)
            else:
                self.adjust(base, -a, _ZERO if rests else -a, ts)
                self.adjust(quote, notional, notional, ts)
            for fee in event.fee_amounts:
                self.adjust(fee.token, -fee.amount, -fee.amount, ts)
        elif isinstance(event, TerminalOrderEvent):
            # Only an order the venue accepted ever locked funds; a failed one has nothing to free.
            if event.client_order_id not in self._resting:
                return
            self._resting.discard(event.client_order_id)
            if not rests or order_price is None or remaining <= 0:
                return
            if event.side is Side.BUY:
                self.adjust(quote, _ZERO, remaining * order_price, ts)
            else:
                self.adjust(base, _ZERO, remaining, ts)
