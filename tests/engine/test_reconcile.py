"""Reconciler: pace by stream health, UNKNOWN settlement, LOST, fill recovery, the two-way diff.

The loop runs for real under a virtual clock; ``run_for`` moves time from one sleeper's deadline
to the next, so every wake-up happens exactly when the reconciler planned it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from test_orders_fakes import (
    ACCOUNT,
    CANCEL,
    OPEN,
    PAIR,
    PLACE,
    START,
    STATUS,
    TRADES,
    D,
    Harness,
    make_harness,
    placed,
    rule,
    settle,
    trade,
    venue_order,
)

from marketlink.core.enums import OrderType, Side
from marketlink.core.events import OrderCompleted, OrderCreated, OrderFailed, OrderLost
from marketlink.core.market import Balance, BalanceUpdate
from marketlink.core.orders import OrderState
from marketlink.engine.context import ConnectorConfig
from marketlink.engine.orders import OrderManager
from marketlink.engine.reconcile import FILL_FETCH_TRIES, MAX_TRADE_PAGES, STATUS_PART, Reconciler
from marketlink.net.errors import OrderNotFound, RequestTimeout, ServerError
from marketlink.net.http import RestRequest
from marketlink.net.throttler import Cost

S = OrderState


class FakeStream:
    """What the reconciler reads of the user stream."""

    def __init__(self, healthy: bool = True) -> None:
        self.healthy = healthy
        self.silent_at: float | None = None
        self.on_health_change: Callable[[], None] | None = None
        self.on_reconnected: Callable[[], None] | None = None

    def set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy
        assert self.on_health_change is not None
        self.on_health_change()


class World:
    def __init__(self, h: Harness, healthy: bool = True) -> None:
        self.h = h
        self.om = OrderManager(h.ctx, h.ids)
        self.stream = FakeStream(healthy)
        self.rec = Reconciler(h.ctx, self.om, self.stream)  # type: ignore[arg-type]
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self.rec.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.om.stop(timeout=0)

    async def run_for(self, seconds: float) -> None:
        clock = self.h.clock
        end = clock.time() + seconds
        for _ in range(10_000):
            await settle()
            deadline = clock.next_deadline
            if deadline is None or deadline > end:
                break
            clock.advance_to(deadline)
        clock.advance_to(end)
        await settle()

    async def open_order(self, xid: str = "x1") -> str:
        h = self.h
        h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h, xid=xid))  # type: ignore[index]
        cid = self.om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
        await settle()
        assert h.ctx.tracker.get(cid).state is S.OPEN  # type: ignore[union-attr]
        return cid


@pytest.fixture
def h() -> Harness:
    return make_harness(config=ConnectorConfig(client_id_prefix="t", reconcile_fast=2.0, reconcile_slow=30.0,
                                               open_orders_diff_every=60.0))


#: The harness's starting balances, as an account snapshot taken before anything happened.
SNAPSHOT = BalanceUpdate(
    (Balance("BTC", D("10"), D("10")), Balance("USDT", D("100000"), D("100000"))), 1.0, True
)


def listing(*orders: Any) -> Callable[[Any], Any]:
    return lambda _req: list(orders)


# -- pace ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("healthy", "expected"), [(True, 2), (False, 44)])
async def test_polls_slowly_while_the_stream_is_live_and_fast_while_it_is_not(
    h: Harness, healthy: bool, expected: int
) -> None:
    w = World(h, healthy)
    cid = await w.open_order()
    h.http.answer(STATUS, venue_order(cid))
    h.http.on(OPEN, listing(venue_order(cid)))
    h.http.answer(ACCOUNT, BalanceUpdate((Balance("USDT", D("100000"), D("99900")),), START, True))
    w.start()
    await w.run_for(90.0)
    # Every 30 s or every 2 s from 0; the full passes at 0 and 60 take the status from the listing.
    assert len(h.http.sent(STATUS)) == expected
    assert len(h.http.sent(OPEN)) == 2  # the diff at 0 and at 60 either way
    await w.stop()


async def test_a_stream_going_down_switches_to_fast_polling_at_once(h: Harness) -> None:
    w = World(h, healthy=True)
    cid = await w.open_order()
    h.http.answer(STATUS, venue_order(cid))
    h.http.on(OPEN, listing(venue_order(cid)))
    h.http.answer(ACCOUNT, SNAPSHOT)
    w.start()
    await w.run_for(10.0)
    assert len(h.http.sent(STATUS)) == 0 and len(h.http.sent(OPEN)) == 1
    w.stream.set_healthy(False)
    await w.run_for(0.0)
    assert len(h.http.sent(STATUS)) == 1  # polled on the spot: the last poll was 10 s ago
    await w.run_for(4.0)
    assert len(h.http.sent(STATUS)) == 3
    await w.stop()


async def test_no_orders_no_status_queries(h: Harness) -> None:
    w = World(h)
    h.http.on(OPEN, listing())
    h.http.answer(ACCOUNT, SNAPSHOT)
    w.start()
    await w.run_for(120.0)
    assert h.http.sent(STATUS) == [] and len(h.http.sent(OPEN)) == 3
    await w.stop()


# -- settling UNKNOWN placements ----------------------------------------------------------------


async def test_unknown_placement_settled_open_by_a_query_and_never_resent(h: Harness) -> None:
    w = World(h)
    h.http.on(OPEN, listing())
    h.http.answer(ACCOUNT, SNAPSHOT)
    await w.rec.run_once()
    w.start()
    h.http.answer(PLACE, RequestTimeout("no answer in 10s"))
    cid = w.om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    h.http.answer(STATUS, venue_order(cid, xid="x7"))
    await w.run_for(0.5)
    assert h.http.sent(STATUS) == []  # not before settle_unknown_after
    await w.run_for(0.6)
    assert [r.params["cid"] for r in h.http.sent(STATUS)] == [cid]  # type: ignore[index]
    assert h.kinds(cid) == ["OrderUnknown", "OrderCreated"]
    assert h.ctx.tracker.get(cid).exchange_order_id == "x7"  # type: ignore[union-attr]
    assert len(h.http.sent(PLACE)) == 1
    await w.stop()


async def test_unknown_placement_that_never_landed_fails_after_the_receive_window(h: Harness) -> None:
    w = World(h)
    h.http.on(OPEN, listing())
    h.http.answer(ACCOUNT, SNAPSHOT)
    await w.rec.run_once()
    w.start()
    h.http.answer(PLACE, ServerError("HTTP 503", status=503))
    cid = w.om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    h.http.answer(STATUS, OrderNotFound("Order does not exist.", code=-2013))
    await w.run_for(5.5)
    order = h.ctx.tracker.get(cid)
    assert order is not None and order.state is S.UNKNOWN
    assert w.rec.counters.not_found_too_early >= 4  # inside the 5 s window: not counted
    await w.run_for(3.0)
    assert h.kinds(cid) == ["OrderUnknown", "OrderFailed"]
    failed = h.of(OrderFailed, cid)[0]
    assert "never reached the venue" in (failed.reason or "")
    assert len(h.http.sent(PLACE)) == 1
    # Its reservation is gone with it: the whole balance is available to the next order.
    h.http.answer(PLACE, placed("ignored", h))
    assert h.ctx.balances.available("USDT") == D("100000")
    await w.stop()


# -- lost orders and missing fills --------------------------------------------------------------


async def test_lost_order_then_found_filled_with_its_fills_recovered(h: Harness) -> None:
    w = World(h)
    cid = await w.open_order()
    h.http.answer(STATUS, OrderNotFound("Order does not exist.", code=-2013))
    h.http.on(OPEN, listing())
    h.http.answer(TRADES, [])
    h.http.answer(ACCOUNT, SNAPSHOT)
    for _ in range(3):
        await w.rec.run_once(full=False)
    assert h.kinds(cid) == ["OrderCreated", "OrderLost"]
    assert h.of(OrderLost, cid)[0].not_found_count == 3
    assert cid in h.ctx.tracker.lost
    # A lost order is still polled for fills.
    fetched = len(h.http.sent(TRADES))
    assert fetched >= 1
    # The venue answers again: filled, fills in its trade history.
    h.http.answer(STATUS, venue_order(cid, state=S.FILLED, executed="1"))
    h.http.answer(TRADES, [trade("t1", "0.4"), trade("t2", "0.6")])
    assert await w.rec.run_once(full=False)
    assert h.kinds(cid) == ["OrderCreated", "OrderLost", "OrderFilled", "OrderFilled", "OrderCompleted"]
    assert h.of(OrderCompleted, cid)[0].missing_base == 0
    assert h.ctx.balances.total("BTC") == D("11")
    assert h.http.sent(CANCEL) == []


async def test_a_terminal_report_waits_for_its_fills_then_gives_up_stating_the_gap(h: Harness) -> None:
    w = World(h)
    cid = await w.open_order()
    h.http.answer(STATUS, venue_order(cid, state=S.FILLED, executed="1"))
    h.http.answer(TRADES, [trade("t1", "0.4")])
    h.http.on(OPEN, listing())
    for _ in range(FILL_FETCH_TRIES):
        assert h.of(OrderCompleted, cid) == []
        await w.rec.run_once(full=False)
    [done] = h.of(OrderCompleted, cid)
    assert done.missing_base == D("0.6") and done.executed_base == D("0.4")
    assert w.rec.counters.released == 1
    assert h.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderCompleted"]


async def test_transport_errors_never_count_as_not_found(h: Harness) -> None:
    w = World(h)
    cid = await w.open_order()
    h.http.answer(STATUS, RequestTimeout("slow"))
    h.http.answer(ACCOUNT, SNAPSHOT)
    for _ in range(5):
        assert not await w.rec.run_once(full=False)
    order = h.ctx.tracker.get(cid)
    assert order is not None and order.state is S.OPEN and order.not_found_count == 0
    assert w.rec.counters.errors == 5


# -- the two-way diff ---------------------------------------------------------------------------


async def test_diff_finds_the_order_the_venue_dropped_and_the_ones_it_has(h: Harness) -> None:
    w = World(h)
    dropped = await w.open_order("x1")
    mine_untracked = h.ids.new(Side.SELL, PAIR)
    h.http.on(OPEN, listing(
        venue_order(mine_untracked, xid="x2", side=Side.SELL, amount="0.5", price="120"),
        venue_order("other-bot-order-1", xid="x3", price="90"),
    ))
    h.http.answer(STATUS, OrderNotFound("Order does not exist.", code=-2013))
    h.http.answer(TRADES, [])
    h.http.answer(ACCOUNT, SNAPSHOT)
    await w.rec.run_once(full=True)
    # Dropped by the venue: queried at once, once per pass.
    assert [r.params["cid"] for r in h.http.sent(STATUS)] == [dropped]  # type: ignore[index]
    assert w.rec.counters.vanished == 1
    # Ours by instance but untracked: adopted and reported; another bot's: left alone.
    assert h.kinds(mine_untracked) == ["OrderCreated"]
    assert w.rec.counters.adopted == 1 and w.rec.counters.foreign == 1
    assert h.ctx.tracker.get("other-bot-order-1") is None
    await w.rec.run_once(full=True)
    await w.rec.run_once(full=True)
    assert h.kinds(dropped)[-1] == "OrderLost"
    # The adopted order is cancellable with the rest; the foreign one never is.
    h.http.on(CANCEL, lambda req: OrderNotFound("Unknown order sent.", code=-2011))
    results = await w.om.cancel_all(1.0)
    assert {r.client_order_id for r in results} == {dropped, mine_untracked}
    assert "other-bot-order-1" not in [r.params["cid"] for r in h.http.sent(CANCEL)]  # type: ignore[index]
    await w.stop()


async def test_diff_applies_what_the_venue_lists_and_notes_contradictions(h: Harness) -> None:
    w = World(h)
    live = await w.open_order("x1")
    ended = await w.open_order("x2")
    w.om.apply_updates([venue_order(ended, xid="x2", state=S.CANCELED).as_update()])
    h.http.on(OPEN, listing(
        venue_order(live, xid="x1", state=S.PARTIALLY_FILLED, executed="0.5"),
        venue_order(ended, xid="x2"),
    ))
    h.http.answer(TRADES, [trade("t1", "0.5", xid="x1")])
    h.http.answer(STATUS, venue_order(live, xid="x1", state=S.PARTIALLY_FILLED, executed="0.5"))
    h.http.answer(ACCOUNT, SNAPSHOT)
    assert await w.rec.run_once(full=True)
    assert w.rec.counters.contradictions == 1
    assert h.kinds(live) == ["OrderCreated", "OrderFilled"]  # the gap was fetched from history
    assert h.ctx.tracker.get(live).state is S.PARTIALLY_FILLED  # type: ignore[union-attr]


async def test_diff_failure_is_retried_fast(h: Harness) -> None:
    w = World(h)
    h.http.answer(OPEN, ServerError("HTTP 502", status=502))
    h.http.answer(ACCOUNT, SNAPSHOT)
    w.start()
    await w.run_for(5.0)
    assert len(h.http.sent(OPEN)) == 3  # at 0, 2, 4: a failed diff is not put off for a minute
    await w.stop()


# -- readiness after a reconnect ----------------------------------------------------------------


async def test_reconcile_after_reconnect_gates_readiness_and_refreshes_balances(h: Harness) -> None:
    w = World(h)
    h.http.on(OPEN, listing())
    h.http.answer(ACCOUNT, BalanceUpdate((Balance("USDT", D("5"), D("5")),), START + 1, True))
    assert await w.rec.run_once(full=True)
    assert h.ctx.status.ready and not w.rec.pending
    w.start()
    await w.run_for(1.0)
    h.http.answer(ACCOUNT, RequestTimeout("slow"))
    w.rec.trigger()
    assert not h.ctx.status.ready and dict(h.ctx.status.not_ready())[STATUS_PART].startswith("pending")
    await w.run_for(0.0)
    assert not h.ctx.status.ready  # the balance snapshot failed: still owed
    assert "incomplete" in dict(h.ctx.status.not_ready())[STATUS_PART]
    h.http.answer(ACCOUNT, BalanceUpdate((Balance("USDT", D("7"), D("7")),), START + 2, True))
    await w.run_for(2.0)
    assert h.ctx.status.ready and not w.rec.pending
    assert h.ctx.balances.total("USDT") == D("7")
    await w.stop()


async def test_a_cancel_that_failed_asks_for_a_prompt_query(h: Harness) -> None:
    w = World(h)
    cid = await w.open_order()
    h.http.on(OPEN, listing(venue_order(cid)))
    h.http.answer(ACCOUNT, SNAPSHOT)
    h.http.answer(STATUS, venue_order(cid))
    await w.rec.run_once(full=True)
    w.start()
    await w.run_for(1.0)
    h.http.answer(CANCEL, ServerError("HTTP 503", status=503))
    h.http.answer(STATUS, venue_order(cid, state=S.CANCELED))
    w.om.cancel(PAIR, cid)
    await w.run_for(0.0)
    assert len(h.http.sent(STATUS)) == 1  # at once, not at the next 30 s poll
    assert h.kinds(cid) == ["OrderCreated", "OrderCancelled"]
    await w.stop()


async def test_created_orders_in_flight_are_not_queried(h: Harness) -> None:
    w = World(h)
    held = h.http.hold(PLACE)
    cid = w.om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    h.http.on(OPEN, listing())
    h.http.answer(ACCOUNT, SNAPSHOT)
    await settle()
    assert await w.rec.run_once(full=True)
    assert h.http.sent(STATUS) == []
    held[0].set_result(placed(cid, h))
    await settle()
    assert h.of(OrderCreated, cid)


def test_placement_not_found_fails_only_unacknowledged_unknown_orders() -> None:
    from marketlink.core.orders import InFlightOrder
    from marketlink.core.tracker import OrderTracker

    t = OrderTracker(lost_after=2)
    for cid in ("u", "o"):
        t.start_tracking(InFlightOrder(cid, PAIR, OrderType.LIMIT, Side.BUY, D("1"), D("100"), START))
    t.mark_unknown("u", START, "timeout")
    t.process_order_update(venue_order("o", xid="xo").as_update())
    assert t.process_placement_not_found("u", START + 6) == []
    [failed] = t.process_placement_not_found("u", START + 7)
    assert isinstance(failed, OrderFailed) and "never reached the venue" in (failed.reason or "")
    # An acknowledged order takes the LOST path, whatever the caller thought.
    t.process_placement_not_found("o", START + 6)
    assert [type(e) for e in t.process_placement_not_found("o", START + 7)] == [OrderLost]
    assert t.process_placement_not_found("gone", START + 8) == []
    assert t.counters.unknown_order == 1


@pytest.mark.parametrize(("n_pairs", "requests"), [(3, 3), (20, 1)])
async def test_open_orders_are_listed_in_one_request_when_that_weighs_less(
    n_pairs: int, requests: int
) -> None:
    pairs = [PAIR] + [f"C{i}-USDT" for i in range(n_pairs - 1)]
    h = make_harness(rules=[rule(trading_pair=p) for p in pairs])
    codec = h.ctx.codec

    def weighed(symbol: str | None) -> RestRequest:
        # Binance's weights: 6 for one symbol, 80 for all of them.
        cost = (Cost("W", 6 if symbol else 80),)
        return RestRequest("GET", OPEN, {"symbol": symbol}, costs=cost)

    codec.open_orders_request = weighed  # type: ignore[method-assign]
    elsewhere = venue_order("other-bot-1", xid="x9", pair="ZZZ-USDT")  # a pair we do not trade
    h.http.on(OPEN, listing(elsewhere))
    h.http.answer(ACCOUNT, SNAPSHOT)
    w = World(h)
    assert await w.rec.run_once(full=True)
    sent = h.http.sent(OPEN)
    assert len(sent) == requests
    if requests == 1:
        assert sent[0].params["symbol"] is None  # type: ignore[index]
    else:
        symbols = sorted(r.params["symbol"] for r in sent)  # type: ignore[index]
        assert symbols == sorted(p.replace("-", "") for p in pairs)
    assert w.rec.counters.foreign == (0 if requests == 1 else n_pairs)
    await w.stop()


async def test_fills_are_recovered_across_pages_of_the_trade_history(h: Harness) -> None:
    w = World(h)
    cid = await w.open_order()
    pages = {
        None: [trade("t1", "0.1"), trade("t2", "0.1"), trade("t3", "0.1")],
        "t3+": [trade("t4", "0.2"), trade("t5", "0.2"), trade("t6", "0.2")],
        "t6+": [trade("t7", "0.1")],
    }
    h.http.on(TRADES, lambda req: pages[req.params["from"]])  # type: ignore[attr-defined]
    h.http.answer(STATUS, venue_order(cid, state=S.FILLED, executed="1"))
    h.http.on(OPEN, listing())
    assert await w.rec.run_once(full=False)
    assert [r.params["from"] for r in h.http.sent(TRADES)] == [None, "t3+", "t6+"]  # type: ignore[attr-defined]
    assert h.kinds(cid) == ["OrderCreated", *["OrderFilled"] * 7, "OrderCompleted"]
    assert h.of(OrderCompleted, cid)[0].missing_base == 0


async def test_a_trade_history_that_never_ends_is_cut_at_the_page_bound(h: Harness) -> None:
    w = World(h)
    cid = await w.open_order()
    counter = iter(range(10**6))

    def endless(req: object) -> list[object]:
        return [trade(f"t{next(counter)}", "0.0001") for _ in range(3)]

    h.http.on(TRADES, endless)
    h.http.answer(STATUS, venue_order(cid, state=S.FILLED, executed="1"))
    h.http.on(OPEN, listing())
    await w.rec.run_once(full=False)
    assert len(h.http.sent(TRADES)) == MAX_TRADE_PAGES
    assert h.of(OrderCompleted, cid) == []  # still held: the fills fall short
