"""The order tracker: routing, collections, and the event guarantees of ARCHITECTURE §3, one
scenario at a time (the property test throws random interleavings at the same guarantees)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from marketlink.core.enums import OrderType, Side
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
)
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.core.orders import InFlightOrder, InvalidOrderData, OrderState, OrderUpdate, TradeUpdate
from marketlink.core.tracker import OrderTracker, RefusalKind

S = OrderState
PAIR = "BTC-USDT"
FEE = TradeFee.reported("USDT", D("0.01"), FeeKind.ADDED_TO_COST)


def new_order(cid: str = "c1", **kw: Any) -> InFlightOrder:
    args: dict[str, Any] = {
        "client_order_id": cid,
        "trading_pair": PAIR,
        "order_type": OrderType.LIMIT,
        "side": Side.SELL,
        "amount": D("1"),
        "price": D("100"),
        "creation_timestamp": 1.0,
    }
    args.update(kw)
    return InFlightOrder(**args)


def upd(state: OrderState, ts: float = 2.0, cid: str | None = "c1", **kw: Any) -> OrderUpdate:
    return OrderUpdate(trading_pair=PAIR, timestamp=ts, new_state=state, client_order_id=cid, **kw)


def fill(tid: str, amount: str, ts: float = 3.0, cid: str | None = "c1", xid: str | None = None,
         **kw: Any) -> TradeUpdate:
    args: dict[str, Any] = {
        "trade_id": tid, "client_order_id": cid, "exchange_order_id": xid, "trading_pair": PAIR,
        "timestamp": ts, "price": D("100"), "amount": D(amount), "fee": FEE, "is_taker": False,
    }
    args.update(kw)
    return TradeUpdate(**args)


def kinds(events: list[OrderEvent]) -> list[type]:
    return [type(e) for e in events]


@pytest.fixture
def tracker() -> OrderTracker:
    t = OrderTracker()
    t.start_tracking(new_order())
    return t


# -- the happy path -----------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["status", "fill"])
def test_created_is_stamped_when_the_venue_made_the_order_if_the_message_says(
    tracker: OrderTracker, first: str
) -> None:
    """A query or a fill can be the first we hear of an order, carrying the time of its last
    change (5.0); balances read the Created stamp as when the order's funds were locked (1.5)."""
    if first == "status":
        events = tracker.process_order_update(upd(S.PARTIALLY_FILLED, ts=5.0, exchange_order_id="x1",
                                                  created_at=1.5))
    else:
        events = tracker.process_trade_update(fill("t1", "0.4", ts=5.0, xid="x1", created_at=1.5))
    assert kinds(events)[0] is OrderCreated and events[0].timestamp == 1.5
    t2 = OrderTracker()
    t2.start_tracking(new_order())
    [created] = t2.process_order_update(upd(S.OPEN, ts=5.0, exchange_order_id="x1"))
    assert created.timestamp == 5.0  # nothing said: the message's own time


@pytest.mark.parametrize(
    ("state", "venue_filled", "ours", "open_left"),
    [
        (S.CANCELED, "0.3", "0.3", "0.7"),  # cancelled after a partial fill
        (S.CANCELED, "0.3", "0", "0.7"),  # ... whose fill we never got: the venue traded it
        (S.FILLED, "1", "0.4", "0"),  # filled, fills missing: nothing of it is still open
        (S.CANCELED, "0", "0", "1"),
    ],
)
def test_what_is_open_at_the_venue_counts_fills_we_never_got(
    state: OrderState, venue_filled: str, ours: str, open_left: str
) -> None:
    order = new_order()
    order.apply_update(upd(S.OPEN, exchange_order_id="x1"))
    if D(ours):
        order.apply_trade(fill("t1", ours, xid="x1"))
    order.apply_update(upd(state, ts=4.0, exchange_order_id="x1", cumulative_filled=D(venue_filled)))
    assert order.open_at_venue == D(open_left)


def test_created_filled_completed_routed_by_exchange_id(tracker: OrderTracker) -> None:
    assert kinds(tracker.process_order_update(upd(S.OPEN, exchange_order_id="x1"))) == [OrderCreated]
    assert tracker.get_by_exchange_id("x1") is tracker.get("c1")
    assert kinds(tracker.process_trade_update(fill("t1", "0.4", cid=None, xid="x1"))) == [OrderFilled]
    events = tracker.process_trade_update(fill("t2", "0.6", ts=4.0, cid=None, xid="x1", price=D("101")))
    assert kinds(events) == [OrderFilled, OrderCompleted]
    done = events[1]
    assert isinstance(done, OrderCompleted)
    assert (done.executed_base, done.executed_quote, done.average_price) == (D("1"), D("100.6"), D("100.6"))
    assert (done.fees, done.missing_base, done.timestamp) == ((TokenAmount("USDT", D("0.02")),), D(0), 4.0)
    assert (dict(tracker.active), tracker.lost, tracker.awaiting_fills()) == ({}, {}, [])
    assert [o.client_order_id for o in tracker.recently_finished] == ["c1"]
    assert tracker.process_order_update(upd(S.FILLED, exchange_order_id="x1")) == []  # repeat: silent
    assert tracker.counters.illegal_transition == 0


def test_fill_before_the_ack_emits_created_first(tracker: OrderTracker) -> None:
    events = tracker.process_trade_update(fill("t1", "0.5"))
    assert kinds(events) == [OrderCreated, OrderFilled]
    assert tracker.process_order_update(upd(S.OPEN, exchange_order_id="x1")) == []  # stale ack
    assert tracker.get("c1") is not None and tracker.get("c1").state is S.PARTIALLY_FILLED  # type: ignore[union-attr]


def test_single_fill_of_the_whole_amount(tracker: OrderTracker) -> None:
    events = tracker.process_trade_update(fill("t1", "1"))
    assert kinds(events) == [OrderCreated, OrderFilled, OrderCompleted]


# -- held terminal events -----------------------------------------------------------------------


def test_filled_report_before_its_fills_waits_for_them(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    assert tracker.process_order_update(upd(S.FILLED, ts=5.0)) == []
    assert [o.client_order_id for o in tracker.awaiting_fills()] == ["c1"]
    assert "c1" in tracker.held and "c1" not in tracker.active
    assert kinds(tracker.process_trade_update(fill("t1", "0.3"))) == [OrderFilled]
    events = tracker.process_trade_update(fill("t2", "0.7"))
    assert kinds(events) == [OrderFilled, OrderCompleted]
    assert events[1].timestamp == 5.0  # the terminal report's time, not the earlier fill's
    assert (tracker.awaiting_fills(), dict(tracker.held)) == ([], {})


def test_cancel_with_unaccounted_fills_waits_then_cancels(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    tracker.process_trade_update(fill("t1", "0.2"))
    assert tracker.process_order_update(upd(S.CANCELED, cumulative_filled=D("0.5"))) == []
    assert kinds(tracker.process_trade_update(fill("t2", "0.3"))) == [OrderFilled, OrderCancelled]


def test_cancel_without_cumulative_then_a_late_fill(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    assert kinds(tracker.process_order_update(upd(S.CANCELED))) == [OrderCancelled]
    events = tracker.process_trade_update(fill("t1", "0.2"))
    assert kinds(events) == [OrderFilled]
    assert isinstance(events[0], OrderFilled) and events[0].late
    assert tracker.counters.late_fill == 1
    assert tracker.get("c1").executed_base == D("0.2")  # type: ignore[union-attr]
    assert tracker.process_trade_update(fill("t1", "0.2")) == []  # still deduplicated
    assert tracker.process_order_update(upd(S.CANCELED, cumulative_filled=D("0.2"))) == []


def test_finished_order_with_a_new_gap_shows_in_awaiting_fills(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    tracker.process_order_update(upd(S.EXPIRED))
    tracker.process_order_update(upd(S.EXPIRED, cumulative_filled=D("0.1")))  # understated before
    assert [o.client_order_id for o in tracker.awaiting_fills()] == ["c1"]
    assert kinds(tracker.process_trade_update(fill("t1", "0.1"))) == [OrderFilled]
    assert tracker.awaiting_fills() == []


def test_release_emits_the_held_event_with_the_gap(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    tracker.process_trade_update(fill("t1", "0.25"))
    tracker.process_order_update(upd(S.EXPIRED, cumulative_filled=D("0.75"), reason="IOC"))
    events = tracker.release("c1", 9.0)
    assert kinds(events) == [OrderExpired]
    expired = events[0]
    assert isinstance(expired, OrderExpired)
    assert (expired.missing_base, expired.executed_base, expired.reason) == (D("0.5"), D("0.25"), "IOC")
    assert tracker.release("c1", 9.5) == []
    assert tracker.awaiting_fills() == []
    assert tracker.counters.released_with_gap == 1
    assert kinds(tracker.process_trade_update(fill("t2", "0.5"))) == [OrderFilled]  # no 2nd terminal


def test_no_second_terminal_event_from_repeats_or_contradictions(tracker: OrderTracker) -> None:
    assert kinds(tracker.process_order_update(upd(S.CANCELED))) == [OrderCreated, OrderCancelled]
    assert tracker.process_order_update(upd(S.CANCELED)) == []
    assert tracker.process_order_update(upd(S.FILLED)) == []
    assert tracker.counters.illegal_transition == 1
    assert tracker.get("c1").state is S.CANCELED  # type: ignore[union-attr]


# -- unknown and lost ---------------------------------------------------------------------------


def test_unknown_placement_settled_by_query(tracker: OrderTracker) -> None:
    events = tracker.mark_unknown("c1", 2.0, "timeout")
    assert kinds(events) == [OrderUnknown]
    assert isinstance(events[0], OrderUnknown) and events[0].reason == "timeout"
    assert "c1" in tracker.active
    assert kinds(tracker.process_order_update(upd(S.OPEN, ts=3.0, exchange_order_id="x1"))) == [OrderCreated]


def test_unknown_placement_that_never_landed_fails_without_created(tracker: OrderTracker) -> None:
    tracker.mark_unknown("c1", 2.0, "timeout")
    assert kinds(tracker.process_order_update(upd(S.FAILED, reason="rejected"))) == [OrderFailed]


def test_unknown_order_that_filled_emits_created_then_fill(tracker: OrderTracker) -> None:
    tracker.mark_unknown("c1", 2.0, "reset by peer")
    assert kinds(tracker.process_trade_update(fill("t1", "0.1"))) == [OrderCreated, OrderFilled]


def test_an_acknowledged_order_cannot_become_unknown(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    assert tracker.mark_unknown("c1", 3.0, "timeout") == []
    assert tracker.counters.illegal_transition == 1
    [refusal] = tracker.drain_refusals()
    assert refusal.kind is RefusalKind.ILLEGAL_TRANSITION and "UNKNOWN" in refusal.detail


def test_lost_after_n_consecutive_not_found_reported_once(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    assert tracker.process_order_not_found("c1", 3.0) == []
    assert tracker.process_order_not_found("c1", 4.0) == []
    events = tracker.process_order_not_found("c1", 5.0)
    assert kinds(events) == [OrderLost]
    assert isinstance(events[0], OrderLost) and events[0].not_found_count == 3
    assert "c1" in tracker.lost and "c1" not in tracker.active
    assert tracker.process_order_not_found("c1", 6.0) == []
    assert tracker.counters.not_found == 4


def test_a_venue_answer_resets_the_not_found_run(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    tracker.process_order_not_found("c1", 3.0)
    tracker.process_order_not_found("c1", 4.0)
    tracker.process_order_update(upd(S.OPEN, ts=4.5))
    assert tracker.process_order_not_found("c1", 5.0) == []
    assert tracker.get("c1").state is S.OPEN  # type: ignore[union-attr]


def test_lost_order_stays_fillable_cancellable_and_settles_later() -> None:
    t = OrderTracker(lost_after=1)
    t.start_tracking(new_order())
    t.process_order_update(upd(S.OPEN, exchange_order_id="x1"))
    assert kinds(t.process_order_not_found("c1", 3.0)) == [OrderLost]
    assert t.process_order_update(upd(S.PENDING_CANCEL, ts=4.0)) == []  # cancel attempt accepted
    assert t.get("c1").state is S.LOST  # type: ignore[union-attr]
    assert kinds(t.process_trade_update(fill("t1", "0.4", cid=None, xid="x1"))) == [OrderFilled]
    assert "c1" in t.lost
    events = t.process_order_update(upd(S.FILLED, ts=6.0, cumulative_filled=D("1")))
    assert events == [] and "c1" in t.held
    assert kinds(t.process_trade_update(fill("t2", "0.6", xid="x1"))) == [OrderFilled, OrderCompleted]
    assert dict(t.lost) == {}


def test_lost_order_back_to_open_can_be_lost_again_and_is_reported_again() -> None:
    t = OrderTracker(lost_after=2)
    t.start_tracking(new_order())
    t.process_order_not_found("c1", 2.0)
    assert kinds(t.process_order_not_found("c1", 3.0)) == [OrderLost]
    assert kinds(t.process_order_update(upd(S.OPEN, ts=4.0))) == [OrderCreated]
    assert "c1" in t.active
    t.process_order_not_found("c1", 5.0)
    assert kinds(t.process_order_not_found("c1", 6.0)) == [OrderLost]


def test_not_found_for_finished_or_unknown_orders(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.CANCELED))
    assert tracker.process_order_not_found("c1", 3.0) == []
    assert tracker.process_order_not_found("nope", 3.0) == []
    assert tracker.mark_unknown("nope", 3.0, "x") == []
    assert tracker.counters.unknown_order == 2
    assert tracker.counters.not_found == 0


def test_cancel_request_that_failed_brings_the_order_back(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    assert tracker.process_order_update(upd(S.PENDING_CANCEL)) == []
    assert tracker.process_order_update(upd(S.OPEN, ts=3.0)) == []
    assert tracker.get("c1").state is S.OPEN  # type: ignore[union-attr]
    assert kinds(tracker.process_order_update(upd(S.CANCELED, ts=4.0))) == [OrderCancelled]


# -- bad input ----------------------------------------------------------------------------------


def test_updates_for_unknown_ids_are_counted_not_raised(tracker: OrderTracker) -> None:
    assert tracker.process_order_update(upd(S.OPEN, cid="zz")) == []
    assert tracker.process_order_update(upd(S.OPEN, cid=None, exchange_order_id="nope")) == []
    assert tracker.process_trade_update(fill("t1", "0.1", cid="zz")) == []
    assert tracker.counters.unknown_order == 3
    refusals = tracker.drain_refusals()
    assert [r.kind for r in refusals] == [RefusalKind.UNKNOWN_ORDER] * 3
    assert refusals[1].exchange_order_id == "nope"
    assert tracker.drain_refusals() == []


def test_ids_naming_two_orders_are_refused() -> None:
    t = OrderTracker()
    t.start_tracking(new_order("a", exchange_order_id="xa"))
    t.start_tracking(new_order("b", exchange_order_id="xb"))
    assert t.process_order_update(upd(S.CANCELED, cid="a", exchange_order_id="xb")) == []
    assert t.process_trade_update(fill("t1", "0.1", cid="a", xid="xb")) == []
    # An exchange id the order does not have, not yet indexed: refused by the order itself.
    assert t.process_order_update(upd(S.OPEN, cid="a", exchange_order_id="x-other")) == []
    assert t.counters.id_conflict == 3
    assert t.get_by_exchange_id("x-other") is None
    assert t.get("a").state is S.PENDING_CREATE  # type: ignore[union-attr]


def test_fill_for_another_pair_is_refused(tracker: OrderTracker) -> None:
    assert tracker.process_trade_update(fill("t1", "0.1", trading_pair="BTC-USDC")) == []
    assert tracker.counters.pair_mismatch == 1
    assert tracker.get("c1").executed_base == 0  # type: ignore[union-attr]


def test_duplicate_fills_are_counted_and_conflicting_ones_logged(tracker: OrderTracker) -> None:
    tracker.process_trade_update(fill("t1", "0.1"))
    assert tracker.process_trade_update(fill("t1", "0.1")) == []
    assert tracker.process_trade_update(fill("t1", "0.2")) == []
    assert tracker.counters.duplicate_fill == 2
    assert tracker.counters.fill_conflict == 1
    assert [r.kind for r in tracker.drain_refusals()] == [RefusalKind.FILL_CONFLICT]


def test_excess_fill_is_counted_once_and_only_when_it_persists(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.PARTIALLY_FILLED, cumulative_filled=D("0.1")))
    tracker.process_trade_update(fill("t1", "0.2"))  # overtakes the status that reports it
    assert tracker.get("c1").excess_fill  # type: ignore[union-attr]
    assert tracker.counters.excess_fill == 0  # a moment's excess is no alarm
    tracker.process_order_update(upd(S.PARTIALLY_FILLED, cumulative_filled=D("0.2")))
    assert not tracker.get("c1").excess_fill  # type: ignore[union-attr]
    tracker.process_trade_update(fill("t2", "0.2"))
    # The venue's next status still says less than we hold: that excess persists.
    tracker.process_order_update(upd(S.PARTIALLY_FILLED, cumulative_filled=D("0.3")))
    tracker.process_order_update(upd(S.PARTIALLY_FILLED, cumulative_filled=D("0.3")))
    assert tracker.counters.excess_fill == 1


def test_fills_beyond_the_order_amount_are_counted_at_once(tracker: OrderTracker) -> None:
    tracker.process_order_update(upd(S.OPEN))
    tracker.process_trade_update(fill("t1", "0.7"))
    tracker.process_trade_update(fill("t2", "0.7"))  # 1.4 of an order of 1
    assert tracker.counters.excess_fill == 1


def test_refusal_log_is_bounded() -> None:
    t = OrderTracker(max_refusals=2)
    for i in range(5):
        t.process_order_update(upd(S.OPEN, cid=f"u{i}"))
    assert [r.client_order_id for r in t.drain_refusals()] == ["u3", "u4"]
    assert t.counters.unknown_order == 5


def test_reusing_ids_raises_a_typed_error(tracker: OrderTracker) -> None:
    with pytest.raises(InvalidOrderData):
        tracker.start_tracking(new_order())
    tracker.process_order_update(upd(S.OPEN, exchange_order_id="x1"))
    with pytest.raises(InvalidOrderData):
        tracker.start_tracking(new_order("c2", exchange_order_id="x1"))


@pytest.mark.parametrize(
    "kw", [{"lost_after": 0}, {"max_finished": -1}, {"finished_ttl": -1.0}, {"max_refusals": 0}]
)
def test_bad_configuration(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        OrderTracker(**kw)


# -- finished orders ----------------------------------------------------------------------------


def test_recently_finished_is_bounded_and_oldest_go_first() -> None:
    t = OrderTracker(max_finished=2)
    for i in range(3):
        t.start_tracking(new_order(f"c{i}", exchange_order_id=f"x{i}"))
        t.process_order_update(upd(S.CANCELED, ts=float(i), cid=f"c{i}"))
    assert [o.client_order_id for o in t.recently_finished] == ["c1", "c2"]
    assert (t.get("c0"), t.get_by_exchange_id("x0"), len(t)) == (None, None, 2)
    assert t.process_trade_update(fill("t1", "0.1", cid=None, xid="x0")) == []
    assert t.counters.unknown_order == 1 and t.counters.evicted == 1


def test_late_fill_routes_to_a_finished_order_until_it_ages_out() -> None:
    t = OrderTracker(finished_ttl=10.0)
    t.start_tracking(new_order("a", exchange_order_id="xa"))
    t.start_tracking(new_order("b"))
    t.process_order_update(upd(S.CANCELED, ts=100.0, cid="a"))
    t.process_order_update(upd(S.CANCELED, ts=105.0, cid="b"))
    assert t.evict_finished(now=109.0) == 0
    assert kinds(t.process_trade_update(fill("t1", "0.1", cid=None, xid="xa"))) == [OrderFilled]
    assert t.evict_finished(now=110.0) == 1
    assert t.get("a") is None and t.get("b") is not None
    assert t.evict_finished(now=200.0) == 1
    assert len(t) == 0


# -- restore ------------------------------------------------------------------------------------


def _journal_copy(o: InFlightOrder) -> InFlightOrder:
    return InFlightOrder.from_dict(o.to_dict())


def test_restore_places_orders_by_state_and_routes_them() -> None:
    before = OrderTracker(lost_after=1)
    for cid in ("live", "lost", "held", "done"):
        before.start_tracking(new_order(cid, exchange_order_id=f"x-{cid}"))
    before.process_order_update(upd(S.OPEN, cid="live"))
    before.process_order_not_found("lost", 2.0)
    before.process_order_update(upd(S.FILLED, cid="held"))
    before.process_order_update(upd(S.CANCELED, cid="done"))
    after = OrderTracker()
    restored = [_journal_copy(o) for o in (*before.active.values(), *before.lost.values(),
                                            *before.held.values(), *before.recently_finished)]
    assert after.restore(restored) == 4
    assert (list(after.active), list(after.lost), list(after.held)) == (["live"], ["lost"], ["held"])
    assert [o.client_order_id for o in after.recently_finished] == ["done"]
    assert [o.client_order_id for o in after.awaiting_fills()] == ["held"]
    assert kinds(after.process_trade_update(fill("t1", "1", cid=None, xid="x-held"))) == [
        OrderFilled, OrderCompleted
    ]
    # Created went out before the restart; the restored order must not announce it again.
    assert after.process_order_update(upd(S.FILLED, cid=None, exchange_order_id="x-live")) == []
    assert kinds(after.process_trade_update(fill("t2", "1", cid="live"))) == [OrderFilled, OrderCompleted]


def test_restore_is_all_or_nothing() -> None:
    t = OrderTracker()
    t.start_tracking(new_order("a"))
    with pytest.raises(InvalidOrderData):
        t.restore([new_order("b"), new_order("a")])
    with pytest.raises(InvalidOrderData):
        t.restore([new_order("b", exchange_order_id="x"), new_order("c", exchange_order_id="x")])
    assert t.get("b") is None and len(t) == 1


def test_observers_see_each_new_order_when_it_is_tracked_but_not_restored_ones() -> None:
    tracker = OrderTracker()
    seen: list[str] = []
    tracker.on_tracked.append(lambda o: seen.append(o.client_order_id))
    new = InFlightOrder("n1", "BTC-USDT", OrderType.LIMIT, Side.BUY, D("1"), D("100"), 1.0)
    old = InFlightOrder("r1", "BTC-USDT", OrderType.LIMIT, Side.SELL, D("1"), D("101"), 0.5)
    tracker.start_tracking(new)
    assert seen == ["n1"] and tracker.get("n1") is new  # tracked before the observer ran
    tracker.restore([old])  # reloaded from the journal: already recorded there
    with pytest.raises(InvalidOrderData):
        tracker.start_tracking(new)  # a reused id is refused before any observer hears of it
    assert seen == ["n1"]


# -- one trade, one credit, across records of an order ------------------------------------------


def test_a_fill_is_never_credited_again_to_a_later_record_of_the_same_order() -> None:
    t = OrderTracker(finished_ttl=10.0)
    t.start_tracking(new_order())
    t.process_order_update(upd(S.OPEN, exchange_order_id="x1"))
    t.process_trade_update(fill("t1", "0.4"))
    t.process_order_update(upd(S.CANCELED, ts=4.0))
    assert t.evict_finished(now=100.0) == 1 and t.get("c1") is None
    # The venue still shows it, so it is adopted as a new record, and its trades are fetched.
    t.start_tracking(new_order())
    t.process_order_update(upd(S.OPEN, ts=101.0, exchange_order_id="x1"))
    assert t.process_trade_update(fill("t1", "0.4", ts=101.0)) == []
    assert t.counters.duplicate_fill == 1
    assert t.drain_refusals()[-1].kind is RefusalKind.FILL_CONFLICT
    # A new trade still counts; so does the other side of a self-trade with the same trade id.
    assert kinds(t.process_trade_update(fill("t2", "0.1", ts=102.0))) == [OrderFilled]
    t.start_tracking(new_order("c2", side=Side.BUY))
    t.process_order_update(upd(S.OPEN, ts=103.0, cid="c2", exchange_order_id="x2"))
    assert kinds(t.process_trade_update(fill("t2", "0.1", ts=103.0, cid="c2"))) == [OrderFilled]


def test_credits_are_bounded() -> None:
    t = OrderTracker(max_credited=2)
    t.start_tracking(new_order(amount=D("10")))
    t.process_order_update(upd(S.OPEN))
    for i in range(5):
        t.process_trade_update(fill(f"t{i}", "0.1", ts=3.0 + i))
    assert len(t._credited) == 2
    with pytest.raises(ConfigError):
        OrderTracker(max_credited=0)


def test_note_exchange_id_routes_fills_of_an_order_that_ended_before_the_venue_showed_it() -> None:
    t = OrderTracker(lost_after=1)
    t.start_tracking(new_order())
    t.mark_unknown("c1", 2.0, "timeout")
    [failed] = t.process_placement_not_found("c1", 3.0)
    assert isinstance(failed, OrderFailed)
    assert t.note_exchange_id("c1", "x9") and t.get_by_exchange_id("x9") is t.get("c1")
    assert t.note_exchange_id("c1", "x9")  # the same id again: fine
    assert not t.note_exchange_id("c1", "x10") and not t.note_exchange_id("nope", "x1")
    events = t.process_trade_update(fill("t1", "0.4", ts=4.0, cid=None, xid="x9"))
    assert [type(e) for e in events][-1] is OrderFilled
    assert events[-1].late  # type: ignore[attr-defined]
