"""Properties of the state machine and the tracker under any interleaving.

Two generators. *Arbitrary*: any sequence of status reports (any state, any cumulative quantity),
fills drawn from a small pool of trade ids (so duplicates with different contents occur), our own
markers, not-found answers and releases. *Consistent venue*: one true history (fills, then an
outcome) delivered as messages that are duplicated and shuffled; terminal reports carry the
venue's cumulative quantity, as Binance and Bybit do, which is what lets the strict promises hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.enums import OrderType, Side
from marketlink.core.events import (
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    OrderFilled,
    TerminalOrderEvent,
)
from marketlink.core.fees import FeeKind, TradeFee
from marketlink.core.orders import TERMINAL_STATES, InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from marketlink.core.tracker import OrderTracker

S = OrderState
PAIR = "ETH-USDT"
UNIT = D("0.1")
FEE = TradeFee.reported("USDT", D("0.001"), FeeKind.ADDED_TO_COST)


def _order(units: int) -> InFlightOrder:
    return InFlightOrder("c1", PAIR, OrderType.LIMIT, Side.BUY, units * UNIT, D("2000"), 0.0)


def _trade(tid: str, units: int, ts: float, by_exchange_id: bool = False) -> TradeUpdate:
    return TradeUpdate(
        trade_id=tid,
        client_order_id=None if by_exchange_id else "c1",
        exchange_order_id="x1" if by_exchange_id else None,
        trading_pair=PAIR,
        timestamp=ts,
        price=D("2000") + units,
        amount=units * UNIT,
        fee=FEE,
        is_taker=bool(units % 2),
    )


def _status(state: OrderState, ts: float, cum_units: int | None, with_xid: bool = True) -> OrderUpdate:
    return OrderUpdate(
        trading_pair=PAIR,
        timestamp=ts,
        new_state=state,
        client_order_id="c1",
        exchange_order_id="x1" if with_xid else None,
        cumulative_filled=None if cum_units is None else cum_units * UNIT,
    )


@dataclass
class Run:
    """Drives one tracker and checks the step-wise invariants as it goes."""

    tracker: OrderTracker
    order: InFlightOrder
    events: list[OrderEvent]

    def step(self, msg: tuple[Any, ...]) -> None:
        before = self.order.state
        kind = msg[0]
        t = self.tracker
        if kind == "status":
            out = t.process_order_update(msg[1])
        elif kind == "trade":
            out = t.process_trade_update(msg[1])
        elif kind == "not_found":
            out = t.process_order_not_found("c1", msg[1])
        elif kind == "unknown":
            out = t.mark_unknown("c1", msg[1], "timeout")
        else:
            out = t.release("c1", msg[1])
        if before in TERMINAL_STATES:
            assert self.order.state is before, f"left terminal {before} for {self.order.state}"
        self.events.extend(out)


def check_event_promises(run: Run) -> None:
    events, order = run.events, run.order
    filled = [e for e in events if isinstance(e, OrderFilled)]
    created = [i for i, e in enumerate(events) if isinstance(e, OrderCreated)]
    terminal = [i for i, e in enumerate(events) if isinstance(e, TerminalOrderEvent)]
    # No fill counted twice, and the order's totals are exactly the fills reported.
    ids = [e.trade_id for e in filled]
    assert len(ids) == len(set(ids)) == len(order.fills)
    assert sum((e.amount for e in filled), D(0)) == order.executed_base
    assert sum((e.quote_amount for e in filled), D(0)) == order.executed_quote
    # Created at most once, before any fill; exactly one terminal event once the order closed.
    assert len(created) <= 1
    for i, e in enumerate(events):
        if isinstance(e, OrderFilled):
            assert created and created[0] < i
            assert e.late == (bool(terminal) and terminal[0] < i)
    assert len(terminal) <= 1
    closed = [o.client_order_id for o in run.tracker.recently_finished]
    assert (len(terminal) == 1) == (closed == ["c1"])
    if terminal:
        ending = events[terminal[0]]
        assert isinstance(ending, TerminalOrderEvent) and order.state in TERMINAL_STATES
        if isinstance(ending, OrderCompleted):
            assert ending.executed_base + ending.missing_base >= order.amount
    elif order.state in TERMINAL_STATES:
        assert order.missing_fill and "c1" in run.tracker.held


def _new_run(units: int, lost_after: int = 2) -> Run:
    tracker = OrderTracker(lost_after=lost_after)
    order = _order(units)
    tracker.start_tracking(order)
    return Run(tracker, order, [])


# -- arbitrary input ----------------------------------------------------------------------------

_states = st.sampled_from(list(OrderState))
_ts = st.floats(min_value=0, max_value=100, allow_nan=False)
_message = st.one_of(
    st.tuples(
        st.just("status"),
        st.builds(_status, _states, _ts, st.none() | st.integers(0, 12), st.booleans()),
    ),
    st.tuples(
        st.just("trade"),
        st.builds(_trade, st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.integers(1, 6), _ts,
                  st.booleans()),
    ),
    st.tuples(st.sampled_from(["not_found", "unknown", "release"]), _ts),
)


@settings(max_examples=300, deadline=None)
@given(units=st.integers(1, 10), messages=st.lists(_message, max_size=30))
def test_arbitrary_input_never_leaves_terminal_nor_double_counts(
    units: int, messages: list[tuple[Any, ...]]
) -> None:
    run = _new_run(units)
    first_seen: dict[str, D] = {}
    for msg in messages:
        known = run.order.exchange_order_id is not None or msg[0] != "trade" or msg[1].client_order_id
        run.step(msg)
        if msg[0] == "trade" and known:
            first_seen.setdefault(msg[1].trade_id, msg[1].amount)
    assert run.order.executed_base == sum(first_seen.values(), D(0))
    check_event_promises(run)


# -- a consistent venue, messages duplicated and shuffled ---------------------------------------

_OUTCOMES = [S.FILLED, S.CANCELED, S.EXPIRED, S.FAILED, S.OPEN]


@st.composite
def _venue_story(draw: st.DrawFn) -> tuple[int, S, list[tuple[Any, ...]]]:
    units = draw(st.integers(1, 10))
    outcome = draw(st.sampled_from(_OUTCOMES))
    # FILLED trades everything; CANCELED/EXPIRED/OPEN leave at least one unit; FAILED none.
    left = {S.FILLED: units, S.FAILED: 0}.get(outcome, units - 1)
    parts: list[int] = []
    while left and (outcome is S.FILLED or draw(st.booleans())):
        take = draw(st.integers(1, left))
        parts.append(take)
        left -= take
    msgs: list[tuple[Any, ...]] = []
    if outcome is not S.FAILED:
        msgs.append(("status", _status(S.OPEN, 1.0, 0, draw(st.booleans()))))
    cum = 0
    for i, take in enumerate(parts):
        cum += take
        ts = 2.0 + i
        msgs.append(("trade", _trade(f"t{i}", take, ts)))
        if cum < units:
            msgs.append(("status", _status(S.PARTIALLY_FILLED, ts, cum, draw(st.booleans()))))
    if outcome is not S.OPEN:
        msgs.append(("status", _status(outcome, 50.0, cum, draw(st.booleans()))))
    dup = draw(st.lists(st.sampled_from(msgs), max_size=len(msgs))) if msgs else []
    local = draw(
        st.lists(
            st.sampled_from([("not_found", 60.0), ("unknown", 0.5), ("cancel", 0.7)]), max_size=4
        )
    )
    shuffled = draw(st.permutations(msgs + dup + local))
    story = [
        ("status", _status(S.PENDING_CANCEL, m[1], None, False)) if m[0] == "cancel" else m
        for m in shuffled
    ]
    return units, outcome, story


@settings(max_examples=300, deadline=None)
@given(story=_venue_story())
def test_consistent_venue_any_interleaving_keeps_every_promise(
    story: tuple[int, S, list[tuple[Any, ...]]],
) -> None:
    units, outcome, messages = story
    run = _new_run(units, lost_after=2)
    for msg in messages:
        run.step(msg)
    check_event_promises(run)
    delivered = {m[1].trade_id for m in messages if m[0] == "trade"}
    assert set(run.order.fills) == delivered  # every fill counted, once
    terminal = [e for e in run.events if isinstance(e, TerminalOrderEvent)]
    if outcome is not S.OPEN:
        # Every fill arrived and terminal reports carry the cumulative: one ending, no late fill,
        # and it is the venue's outcome.
        assert run.order.state is outcome
        assert len(terminal) == 1 and terminal[0].missing_base == 0
        assert not any(isinstance(e, OrderFilled) and e.late for e in run.events)
        assert run.events[-1] is terminal[0] or not isinstance(run.events[-1], OrderFilled)
    if outcome is S.FILLED:
        assert isinstance(terminal[0], OrderCompleted)
        last_fill = max(i for i, e in enumerate(run.events) if isinstance(e, OrderFilled))
        assert run.events.index(terminal[0]) > last_fill
    if outcome is S.FAILED:
        assert not any(isinstance(e, OrderCreated) for e in run.events)
