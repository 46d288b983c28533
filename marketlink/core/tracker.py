"""The order tracker: every order we placed, routed by either id, driven one update at a time, and
turned into events that keep their promises.

Pure and synchronous: the engine calls it with updates in arrival order and publishes the events it
returns; each call finishes before the next begins, so updates for an order are never reordered
here. It never reads a clock: timestamps come in with the inputs, and ageing out finished orders
takes ``now`` from the caller.

Event rules (ARCHITECTURE §3), and how late fills keep them:

* ``OrderCreated`` is emitted the first time the venue shows it holds the order, before anything
  else about it; a fill arriving for a PENDING_CREATE or UNKNOWN order emits Created first.
* Exactly one terminal event per order. When the venue's terminal report says more has traded
  than the fills we hold (its cumulative quantity, or FILLED itself), the terminal event is *held*:
  the order sits in ``awaiting_fills()`` so the engine fetches its trades, and the terminal event
  follows the fill that closes the gap. No timers: if the fills never come the engine calls
  ``release`` and the terminal event goes out with ``missing_base`` set.
* So ``OrderCompleted`` always follows its last fill. An ``OrderFilled`` after a terminal event
  happens only when the venue's terminal report did not account for that fill (it carried no
  cumulative quantity, or understated it); the fill is still recorded and emitted, marked
  ``late``, because money moved, and the terminal event is not repeated.

Bad input (an id we do not track, an illegal transition, a fill for another pair) yields no events,
is counted in ``counters`` and kept in a bounded refusal log for the engine to drain and log.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError
from marketlink.core.events import (
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    OrderExpired,
    OrderFailed,
    OrderFilled,
    OrderLost,
    OrderUnknown,
    TerminalOrderEvent,
)
from marketlink.core.orders import (
    InFlightOrder,
    InvalidOrderData,
    OrderState,
    OrderUpdate,
    TradeUpdate,
    Verdict,
)

__all__ = ["OrderTracker", "Refusal", "RefusalKind", "TrackerCounters"]

_TERMINAL_EVENT: dict[OrderState, type[TerminalOrderEvent]] = {
    OrderState.FILLED: OrderCompleted,
    OrderState.CANCELED: OrderCancelled,
    OrderState.EXPIRED: OrderExpired,
    OrderState.FAILED: OrderFailed,
}


class RefusalKind(StrEnum):
    UNKNOWN_ORDER = "unknown_order"
    ILLEGAL_TRANSITION = "illegal_transition"
    ID_CONFLICT = "id_conflict"
    PAIR_MISMATCH = "pair_mismatch"
    FILL_CONFLICT = "fill_conflict"  # a trade id seen before, with a different price or amount


_REFUSAL_OF: dict[Verdict, RefusalKind] = {
    Verdict.ILLEGAL: RefusalKind.ILLEGAL_TRANSITION,
    Verdict.ID_CONFLICT: RefusalKind.ID_CONFLICT,
    Verdict.PAIR_MISMATCH: RefusalKind.PAIR_MISMATCH,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    timestamp: float
    client_order_id: str | None
    exchange_order_id: str | None
    detail: str


@dataclass(slots=True)
class TrackerCounters:
    """Everything the tracker dropped or found odd, for status pages and alerts."""

    unknown_order: int = 0
    illegal_transition: int = 0
    id_conflict: int = 0
    pair_mismatch: int = 0
    duplicate_fill: int = 0
    fill_conflict: int = 0
    late_fill: int = 0
    excess_fill: int = 0
    not_found: int = 0
    released_with_gap: int = 0
    evicted: int = 0


class OrderTracker:
    """Active, lost, awaiting-fills and recently finished orders, with O(1) lookup by either id.

    Collections are disjoint: *active* holds live orders that are not lost; *lost* the LOST ones;
    *held* terminal orders whose terminal event waits for fills; *finished* orders whose terminal
    event went out, kept (bounded by count, aged by ``evict_finished``) so late fills still route.
    """

    def __init__(
        self,
        *,
        lost_after: int = 3,
        max_finished: int = 1000,
        finished_ttl: float = 120.0,
        max_refusals: int = 1000,
        max_credited: int = 100_000,
    ) -> None:
        if lost_after < 1 or max_finished < 0 or finished_ttl < 0 or max_refusals < 1 or max_credited < 1:
            raise ConfigError("lost_after, max_refusals, max_credited must be >= 1; limits must be >= 0")
        self.lost_after = lost_after
        self.max_finished = max_finished
        self.finished_ttl = finished_ttl
        self.counters = TrackerCounters()
        self._orders: dict[str, InFlightOrder] = {}
        self._by_exchange_id: dict[str, str] = {}
        self._active: dict[str, InFlightOrder] = {}
        self._lost: dict[str, InFlightOrder] = {}
        self._held: dict[str, InFlightOrder] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()
        self._gapped: dict[str, InFlightOrder] = {}
        self._excess_counted: set[str] = set()
        #: (pair, trade id, side) of every fill credited lately, whichever order object got it: an
        #: order evicted and later adopted again is a new object whose fills we must not re-credit
        #: (one trade appears on two of our orders only as a self-trade, with opposite sides).
        self._credited: OrderedDict[tuple[str, str, Side], None] = OrderedDict()
        self.max_credited = max_credited
        self._refusals: deque[Refusal] = deque(maxlen=max_refusals)
        #: Called with each order ``start_tracking`` admits, before its placement is sent (the
        #: journal writes it then, not a scan later). Observers must not raise.
        self.on_tracked: list[Callable[[InFlightOrder], None]] = []

    # -- lookups ------------------------------------------------------------------------------

    def get(self, client_order_id: str) -> InFlightOrder | None:
        return self._orders.get(client_order_id)

    def get_by_exchange_id(self, exchange_order_id: str) -> InFlightOrder | None:
        cid = self._by_exchange_id.get(exchange_order_id)
        return None if cid is None else self._orders.get(cid)

    @property
    def active(self) -> Mapping[str, InFlightOrder]:
        return MappingProxyType(self._active)

    @property
    def lost(self) -> Mapping[str, InFlightOrder]:
        return MappingProxyType(self._lost)

    @property
    def held(self) -> Mapping[str, InFlightOrder]:
        """Terminal at the venue, terminal event waiting for fills."""
        return MappingProxyType(self._held)

    @property
    def recently_finished(self) -> list[InFlightOrder]:
        return [self._orders[cid] for cid in self._finished]

    def awaiting_fills(self) -> list[InFlightOrder]:
        """Orders whose fills fall short of what the venue reported: fetch their trades."""
        return list(self._gapped.values())

    def __len__(self) -> int:
        return len(self._orders)

    def drain_refusals(self) -> list[Refusal]:
        out = list(self._refusals)
        self._refusals.clear()
        return out

    # -- tracking -----------------------------------------------------------------------------

    def start_tracking(self, order: InFlightOrder) -> None:
        """Track a new order (before its placement is sent). A reused id is the caller's bug and
        would cross two orders' fills, so it raises instead of replacing."""
        self._check_new([order])
        self._admit(order)
        for observer in self.on_tracked:
            observer(order)

    def restore(self, orders: Iterable[InFlightOrder]) -> int:
        """Track orders reloaded from the journal; all or nothing. No events: their history was
        published before the restart. A terminal order with a fill gap comes back held (its
        terminal event never went out); other terminal orders come back finished, to route late
        fills."""
        batch = list(orders)
        self._check_new(batch)
        for order in batch:
            self._admit(order)
        return len(batch)

    def _check_new(self, batch: list[InFlightOrder]) -> None:
        seen: set[str] = set()
        seen_x: set[str] = set()
        for order in batch:
            cid, xid = order.client_order_id, order.exchange_order_id
            if cid in self._orders or cid in seen:
                raise InvalidOrderData(f"client order id {cid!r} is already tracked")
            if xid is not None and (xid in self._by_exchange_id or xid in seen_x):
                raise InvalidOrderData(f"exchange order id {xid!r} is already tracked")
            seen.add(cid)
            if xid is not None:
                seen_x.add(xid)

    def _admit(self, order: InFlightOrder) -> None:
        cid = order.client_order_id
        self._orders[cid] = order
        self._index_exchange_id(order)
        if order.is_terminal and not order.missing_fill:
            self._close(order, order.last_update_timestamp)
        else:
            self._place(order)
        self._refresh_gap(order)

    # -- inputs -------------------------------------------------------------------------------

    def process_order_update(self, u: OrderUpdate) -> list[OrderEvent]:
        order = self._route(u.client_order_id, u.exchange_order_id, u.timestamp)
        if order is None:
            return []
        before = _Snapshot(order)
        verdict = order.apply_update(u)
        if verdict in _REFUSAL_OF:
            self._refuse(
                _REFUSAL_OF[verdict], u.timestamp, u.client_order_id, u.exchange_order_id,
                f"{order.client_order_id}: {order.state} cannot take {u.new_state} ({verdict})",
            )
            return []
        self._index_exchange_id(order)
        return self._after(order, before, u.timestamp, None, u.created_at)

    def process_trade_update(self, t: TradeUpdate) -> list[OrderEvent]:
        order = self._route(t.client_order_id, t.exchange_order_id, t.timestamp)
        if order is None:
            return []
        credit = (order.trading_pair, t.trade_id, order.side)
        if credit in self._credited and t.trade_id not in order.fills:
            self.counters.duplicate_fill += 1
            self._refuse(
                RefusalKind.FILL_CONFLICT, t.timestamp, t.client_order_id, t.exchange_order_id,
                f"{order.client_order_id}: trade {t.trade_id} was already credited to an earlier "
                "record of this order (evicted, then adopted again)",
            )
            return []
        before = _Snapshot(order)
        late = order.client_order_id in self._finished
        verdict = order.apply_trade(t)
        if verdict is Verdict.DUPLICATE:
            self.counters.duplicate_fill += 1
            seen = order.fills[t.trade_id]
            if (seen.price, seen.amount) != (t.price, t.amount):
                self._refuse(
                    RefusalKind.FILL_CONFLICT, t.timestamp, t.client_order_id, t.exchange_order_id,
                    f"{order.client_order_id}: trade {t.trade_id} seen as {seen.amount}@{seen.price}, "
                    f"now {t.amount}@{t.price}",
                )
            return []
        if verdict in _REFUSAL_OF:
            self._refuse(
                _REFUSAL_OF[verdict], t.timestamp, t.client_order_id, t.exchange_order_id,
                f"{order.client_order_id}: fill {t.trade_id} refused ({verdict})",
            )
            return []
        self._index_exchange_id(order)
        credited = self._credited
        credited[credit] = None
        if len(credited) > self.max_credited:
            credited.popitem(last=False)
        if late:
            self.counters.late_fill += 1
        return self._after(order, before, t.timestamp, self._filled_event(order, t, late), t.created_at)

    def process_order_not_found(self, client_order_id: str, timestamp: float) -> list[OrderEvent]:
        """Count one real "order not found" answer (never a timeout or a server error: those say
        nothing about the order). After ``lost_after`` in a row the order becomes LOST, reported
        once per time it gets lost; any venue status resets the count."""
        order = self._orders.get(client_order_id)
        if order is None:
            self._refuse(RefusalKind.UNKNOWN_ORDER, timestamp, client_order_id, None, "not-found answer")
            return []
        if order.is_terminal:
            return []  # e.g. a cancel racing the fill: a finished order may well be gone
        self.counters.not_found += 1
        order.not_found_count += 1
        if order.state is OrderState.LOST or order.not_found_count < self.lost_after:
            return []
        return self.process_order_update(
            OrderUpdate(
                trading_pair=order.trading_pair,
                timestamp=timestamp,
                new_state=OrderState.LOST,
                client_order_id=client_order_id,
                reason=f"not found {order.not_found_count} times in a row",
            )
        )

    def process_placement_not_found(self, client_order_id: str, timestamp: float) -> list[OrderEvent]:
        """A query settling an UNKNOWN placement answered "not found".

        Counted like ``process_order_not_found``, but after ``lost_after`` answers in a row an
        order the venue never acknowledged is FAILED ("never reached the venue"): nothing of it
        was ever seen, so it holds no funds and no fills, and calling it lost would keep a ghost
        polled forever. The caller must only count answers given after the placement could no
        longer execute (the venue's receive window has passed), or a slow request could still
        land after we declared it failed. Any other order takes the ``process_order_not_found``
        path (an acknowledged one becomes LOST).
        """
        order = self._orders.get(client_order_id)
        if order is None or order.state is not OrderState.UNKNOWN or order.acknowledged:
            return self.process_order_not_found(client_order_id, timestamp)
        self.counters.not_found += 1
        order.not_found_count += 1
        if order.not_found_count < self.lost_after:
            return []
        return self.process_order_update(
            OrderUpdate(
                trading_pair=order.trading_pair,
                timestamp=timestamp,
                new_state=OrderState.FAILED,
                client_order_id=client_order_id,
                reason=f"never reached the venue (not found {order.not_found_count} times in a row)",
            )
        )

    def note_exchange_id(self, client_order_id: str, exchange_order_id: str) -> bool:
        """Learn the venue's id of an order whose reports cannot say it (one that ended here
        before the venue showed it, e.g. failed by inference and then found open), so its fills
        route to it. False if the order is not tracked or already has another id."""
        order = self._orders.get(client_order_id)
        if order is None or order.exchange_order_id not in (None, exchange_order_id):
            return False
        order.exchange_order_id = exchange_order_id
        self._index_exchange_id(order)
        return True

    def mark_unknown(self, client_order_id: str, timestamp: float, reason: str) -> list[OrderEvent]:
        """Placement timed out or broke in transport: UNKNOWN until a query settles it."""
        order = self._orders.get(client_order_id)
        if order is None:
            self._refuse(RefusalKind.UNKNOWN_ORDER, timestamp, client_order_id, None, "mark_unknown")
            return []
        return self.process_order_update(
            OrderUpdate(
                trading_pair=order.trading_pair,
                timestamp=timestamp,
                new_state=OrderState.UNKNOWN,
                client_order_id=client_order_id,
                reason=reason,
            )
        )

    def release(self, client_order_id: str, timestamp: float) -> list[OrderEvent]:
        """Emit a held terminal event although fills are still missing (the engine fetched trades
        and they did not come). The event's ``missing_base`` says how much is unaccounted for."""
        order = self._held.get(client_order_id)
        if order is None:
            return []
        self.counters.released_with_gap += 1
        event = self._close(order, timestamp)
        self._gapped.pop(client_order_id, None)  # the engine gave up; new input may re-add it
        return [event]

    def evict_finished(self, now: float) -> int:
        """Forget finished orders closed more than ``finished_ttl`` before ``now``, oldest first
        (in closing order; stops at the first one still young)."""
        evicted = 0
        while self._finished:
            cid, closed_at = next(iter(self._finished.items()))
            if closed_at > now - self.finished_ttl:
                break
            self._forget(cid)
            evicted += 1
        return evicted

    # -- internals ----------------------------------------------------------------------------

    def _route(self, cid: str | None, xid: str | None, timestamp: float) -> InFlightOrder | None:
        by_cid = self._orders.get(cid) if cid is not None else None
        by_xid = self.get_by_exchange_id(xid) if xid is not None else None
        if by_cid is None and by_xid is None:
            self._refuse(RefusalKind.UNKNOWN_ORDER, timestamp, cid, xid, "no tracked order has these ids")
            return None
        if by_cid is not None and by_xid is not None and by_cid is not by_xid:
            self._refuse(RefusalKind.ID_CONFLICT, timestamp, cid, xid, "ids name two different orders")
            return None
        return by_cid if by_cid is not None else by_xid

    def _after(
        self,
        order: InFlightOrder,
        before: _Snapshot,
        timestamp: float,
        filled: OrderFilled | None,
        created_at: float | None = None,
    ) -> list[OrderEvent]:
        events: list[OrderEvent] = []
        if order.acknowledged and not before.acknowledged:
            # Stamped with the venue's creation time when the message gives it: a query or a fill
            # that first reports an order carries the time of its last change, and balances use
            # the stamp to tell whether a snapshot already holds the funds the order locked.
            events.append(self._created_event(order, timestamp if created_at is None else created_at))
        if filled is not None:
            events.append(filled)
        if order.state is not before.state:
            if order.state is OrderState.LOST:
                events.append(self._lost_event(order, timestamp))
            elif order.state is OrderState.UNKNOWN:
                events.append(self._unknown_event(order, timestamp))
        # A fill overtaking the status that reports it is an excess for a moment (Binance sends
        # the fill first): count only what persists, i.e. an excess a venue status leaves
        # standing, or fills beyond the order's amount. Once per order.
        if (
            order.excess_fill
            and (filled is None or order.executed_base > order.amount)
            and order.client_order_id not in self._excess_counted
        ):
            self._excess_counted.add(order.client_order_id)
            self.counters.excess_fill += 1
        if order.client_order_id not in self._finished:
            if order.is_terminal and not order.missing_fill:
                events.append(self._close(order, timestamp))
            else:
                self._place(order)
        self._refresh_gap(order)
        return events

    def _place(self, order: InFlightOrder) -> None:
        cid = order.client_order_id
        self._active.pop(cid, None)
        self._lost.pop(cid, None)
        self._held.pop(cid, None)
        if order.is_terminal:
            self._held[cid] = order
        elif order.state is OrderState.LOST:
            self._lost[cid] = order
        else:
            self._active[cid] = order

    def _close(self, order: InFlightOrder, timestamp: float) -> TerminalOrderEvent:
        cid = order.client_order_id
        self._active.pop(cid, None)
        self._lost.pop(cid, None)
        self._held.pop(cid, None)
        self._finished[cid] = timestamp
        while len(self._finished) > self.max_finished:
            self._forget(next(iter(self._finished)))
        # A fill that closes a held order may carry an earlier time than the terminal report.
        return self._terminal_event(order, max(timestamp, order.last_update_timestamp))

    def _forget(self, cid: str) -> None:
        self._finished.pop(cid, None)
        self._gapped.pop(cid, None)
        self._excess_counted.discard(cid)
        order = self._orders.pop(cid)
        xid = order.exchange_order_id
        if xid is not None and self._by_exchange_id.get(xid) == cid:
            del self._by_exchange_id[xid]
        self.counters.evicted += 1

    def _index_exchange_id(self, order: InFlightOrder) -> None:
        xid = order.exchange_order_id
        if xid is not None:
            self._by_exchange_id.setdefault(xid, order.client_order_id)

    def _refresh_gap(self, order: InFlightOrder) -> None:
        cid = order.client_order_id
        if order.missing_fill and cid in self._orders:
            self._gapped[cid] = order
        else:
            self._gapped.pop(cid, None)

    def _refuse(
        self, kind: RefusalKind, timestamp: float, cid: str | None, xid: str | None, detail: str
    ) -> None:
        c = self.counters
        if kind is RefusalKind.UNKNOWN_ORDER:
            c.unknown_order += 1
        elif kind is RefusalKind.ILLEGAL_TRANSITION:
            c.illegal_transition += 1
        elif kind is RefusalKind.ID_CONFLICT:
            c.id_conflict += 1
        elif kind is RefusalKind.PAIR_MISMATCH:
            c.pair_mismatch += 1
        else:
            c.fill_conflict += 1
        self._refusals.append(Refusal(kind, timestamp, cid, xid, detail))

    # -- event builders -----------------------------------------------------------------------

    @staticmethod
    def _created_event(o: InFlightOrder, ts: float) -> OrderCreated:
        return OrderCreated(
            ts, o.client_order_id, o.exchange_order_id, o.trading_pair, o.side, o.order_type,
            amount=o.amount, price=o.price, creation_timestamp=o.creation_timestamp,
            time_in_force=o.time_in_force, position_action=o.position_action, leverage=o.leverage,
        )

    @staticmethod
    def _filled_event(o: InFlightOrder, t: TradeUpdate, late: bool) -> OrderFilled:
        return OrderFilled(
            t.timestamp, o.client_order_id, o.exchange_order_id, o.trading_pair, o.side, o.order_type,
            trade_id=t.trade_id, price=t.price, amount=t.amount, quote_amount=t.quote, fee=t.fee,
            fee_amounts=tuple(o.fee_amounts(t)), is_taker=t.is_taker,
            position_action=o.position_action, leverage=o.leverage, late=late,
        )

    @staticmethod
    def _lost_event(o: InFlightOrder, ts: float) -> OrderLost:
        return OrderLost(
            ts, o.client_order_id, o.exchange_order_id, o.trading_pair, o.side, o.order_type,
            not_found_count=o.not_found_count,
        )

    @staticmethod
    def _unknown_event(o: InFlightOrder, ts: float) -> OrderUnknown:
        return OrderUnknown(
            ts, o.client_order_id, o.exchange_order_id, o.trading_pair, o.side, o.order_type,
            reason=o.reason,
        )

    @staticmethod
    def _terminal_event(o: InFlightOrder, ts: float) -> TerminalOrderEvent:
        cls = _TERMINAL_EVENT[o.state]
        return cls(
            ts, o.client_order_id, o.exchange_order_id, o.trading_pair, o.side, o.order_type,
            executed_base=o.executed_base, executed_quote=o.executed_quote,
            average_price=o.average_price, fees=o.fee_totals(), missing_base=o.fill_gap,
            reason=o.reason,
        )


class _Snapshot:
    """What an update is compared against to decide which events it caused."""

    __slots__ = ("acknowledged", "excess_fill", "state")

    def __init__(self, order: InFlightOrder) -> None:
        self.state: OrderState = order.state
        self.acknowledged: bool = order.acknowledged
        self.excess_fill: bool = order.excess_fill

