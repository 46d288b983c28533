"""OrderManager: placing, local refusals, venue answers, UNKNOWN outcomes, cancels, the ban breaker.

Every flow runs against the pass-through codec and a scripted HTTP client (test_orders_fakes), on a
virtual clock; nothing sleeps.
"""

from __future__ import annotations

import asyncio

import pytest
from test_orders_fakes import (
    CANCEL,
    PAIR,
    PLACE,
    START,
    D,
    Harness,
    make_harness,
    placed,
    rule,
    settle,
    spec,
    trade,
)

from marketlink.core.book import OrderBook
from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import InvalidTradingPair, UnknownSymbol
from marketlink.core.events import (
    BalanceUpdated,
    ConnectorStatusChanged,
    OrderCompleted,
    OrderCreated,
    OrderFailed,
    OrderFilled,
    OrderUnknown,
)
from marketlink.core.market import Balance, BalanceUpdate
from marketlink.core.orders import InFlightOrder, InvalidOrderData, OrderState, OrderUpdate
from marketlink.engine.context import ConnectorConfig
from marketlink.engine.orders import TRADING_PART, CancelOutcome, ForeignOrder, OrderManager
from marketlink.net.errors import (
    ClockSkew,
    ConnectionFailed,
    DuplicateOrder,
    InsufficientFunds,
    IpBanned,
    OrderNotFound,
    RateLimited,
    RequestTimeout,
    ServerError,
)

S = OrderState


@pytest.fixture
def h() -> Harness:
    return make_harness()


def manager(h: Harness) -> OrderManager:
    return OrderManager(h.ctx, h.ids)


# -- placing ------------------------------------------------------------------------------------


async def test_buy_is_tracked_before_sending_and_created_with_the_exchange_id(h: Harness) -> None:
    om = manager(h)
    seen_when_sent: list[OrderState] = []

    def on_place(req: object) -> object:
        order = h.ctx.tracker.get(cid)
        assert order is not None
        seen_when_sent.append(order.state)
        return placed(cid, h, xid="x42")

    h.http.on(PLACE, on_place)
    cid = om.place(Side.BUY, PAIR, D("0.5004"), OrderType.LIMIT, D("100.019"))
    order = h.ctx.tracker.get(cid)
    assert order is not None and order.state is S.PENDING_CREATE  # tracked at once, nothing sent yet
    assert h.http.requests == [] and om.placing(cid)
    await settle()
    [req] = h.http.sent(PLACE)
    # Quantized: amount down to the step, a buy price down to the tick.
    assert req.params == {"symbol": "BTCUSDT", "cid": cid, "qty": D("0.500"), "price": D("100.01")}
    assert req.is_order and seen_when_sent == [S.PENDING_CREATE]
    assert order.state is S.OPEN and order.exchange_order_id == "x42" and not om.placing(cid)
    [created] = h.of(OrderCreated, cid)
    assert (created.exchange_order_id, created.amount, created.price) == ("x42", D("0.500"), D("100.01"))
    # The resting buy locks its notional in the available quote balance.
    assert h.ctx.balances.available("USDT") == D("100000") - D("0.500") * D("100.01")
    assert h.ctx.balances.total("USDT") == D("100000")
    assert om.counters.placed == 1


async def test_sell_price_is_rounded_up_and_locks_base(h: Harness) -> None:
    om = manager(h)
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h))  # type: ignore[index]
    cid = om.place(Side.SELL, PAIR, D("2"), OrderType.LIMIT, D("100.011"))
    await settle()
    assert h.http.sent(PLACE)[0].params["price"] == D("100.02")  # type: ignore[index]
    assert h.ctx.balances.available("BTC") == D("8")
    assert h.kinds(cid) == ["OrderCreated"]


async def test_pair_is_normalised_and_unknown_pairs_raise(h: Harness) -> None:
    om = manager(h)
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h))  # type: ignore[index]
    cid = om.place(Side.BUY, "btc-usdt", D("1"), OrderType.LIMIT, D("100"))
    assert h.ctx.tracker.get(cid).trading_pair == PAIR  # type: ignore[union-attr]
    with pytest.raises(UnknownSymbol):
        om.place(Side.BUY, "ETH-USDT", D("1"), OrderType.LIMIT, D("100"))
    with pytest.raises(InvalidTradingPair):
        om.place(Side.BUY, "nonsense", D("1"), OrderType.LIMIT, D("100"))
    await settle()


@pytest.mark.parametrize(
    ("amount", "order_type", "price"),
    [
        (1.0, OrderType.LIMIT, D("100")),  # a float is never money
        (D("-1"), OrderType.LIMIT, D("100")),
        (D("NaN"), OrderType.LIMIT, D("100")),
        (D("1"), OrderType.LIMIT, None),  # a limit order needs a price
        (D("1"), OrderType.LIMIT, D("0")),
        (D("1"), "LIMIT", D("100")),  # not an OrderType
    ],
)
async def test_malformed_input_raises_and_tracks_nothing(
    h: Harness, amount: object, order_type: object, price: object
) -> None:
    om = manager(h)
    with pytest.raises(InvalidOrderData):
        om.place(Side.BUY, PAIR, amount, order_type, price)  # type: ignore[arg-type]
    assert len(h.ctx.tracker) == 0


async def test_rule_violation_fails_locally_after_place_returned(h: Harness) -> None:
    om = manager(h)
    cid = om.place(Side.BUY, PAIR, D("0.05"), OrderType.LIMIT, D("100"))  # notional 5 < 10
    assert h.events == []  # the id is handed out before any event about it
    await settle()
    [failed] = h.of(OrderFailed, cid)
    assert failed.reason is not None and failed.reason.startswith("rule min_notional")
    assert h.kinds(cid) == ["OrderFailed"]  # no Created: it never existed at the venue
    assert h.http.requests == [] and om.counters.refused_locally == 1
    assert h.ctx.tracker.get(cid).state is S.FAILED  # type: ignore[union-attr]


async def test_amount_below_one_step_fails_naming_the_rule(h: Harness) -> None:
    om = manager(h)
    cid = om.place(Side.BUY, PAIR, D("0.0004"), OrderType.LIMIT, D("100000"))
    await settle()
    [failed] = h.of(OrderFailed, cid)
    assert failed.reason is not None and "amount_positive" in failed.reason
    assert h.http.requests == []


async def test_unsupported_order_type_and_time_in_force_fail_locally() -> None:
    h = make_harness(venue_spec=spec(order_types=frozenset({OrderType.LIMIT}),
                                     time_in_force=frozenset({TimeInForce.GTC})))
    om = manager(h)
    a = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT_MAKER, D("100"))
    b = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"), TimeInForce.FOK)
    await settle()
    assert "rule order_type" in (h.of(OrderFailed, a)[0].reason or "")
    assert "rule time_in_force" in (h.of(OrderFailed, b)[0].reason or "")
    assert h.http.requests == []


async def test_budget_shortfall_fails_naming_the_token() -> None:
    h = make_harness(balances={"BTC": "0", "USDT": "50"})
    om = manager(h)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    [failed] = h.of(OrderFailed, cid)
    assert failed.reason is not None and "insufficient USDT" in failed.reason
    assert h.http.requests == []


async def test_orders_in_flight_reserve_their_collateral_for_the_next_budget_check() -> None:
    h = make_harness(balances={"BTC": "0", "USDT": "150"})
    om = manager(h)
    held = h.http.hold(PLACE)
    first = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    second = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert len(held) == 1  # only the first was sent
    [failed] = h.of(OrderFailed, second)
    assert "reserved by orders in flight 100" in (failed.reason or "")
    # Once the first is acknowledged its funds sit in the venue's locked balance instead.
    held[0].set_result(placed(first, h))
    await settle()
    assert h.ctx.balances.available("USDT") == D("50")
    third = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert "insufficient USDT" in (h.of(OrderFailed, third)[0].reason or "")


async def test_market_order_is_judged_at_the_worst_price_its_volume_reaches() -> None:
    h = make_harness(balances={"BTC": "0", "USDT": "250"})
    book = OrderBook.for_rule(rule(), "binance_spot")
    book.apply_snapshot([["99", "5"]], [["100", "1"], ["200", "1"]], 1)
    h.ctx.books[PAIR] = book
    om = manager(h)
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h, state=S.FILLED, filled="0"))  # type: ignore[index]
    ok = om.place(Side.BUY, PAIR, D("1"), OrderType.MARKET)  # needs 100 at worst
    too_big = om.place(Side.BUY, PAIR, D("2"), OrderType.MARKET)  # reaches 200: 400 > 250
    await settle()
    assert [r.params["cid"] for r in h.http.sent(PLACE)] == [ok]  # type: ignore[index]
    assert h.http.sent(PLACE)[0].params["price"] is None  # type: ignore[index]
    assert "insufficient USDT" in (h.of(OrderFailed, too_big)[0].reason or "")


async def test_market_order_without_book_or_price_fails_locally(h: Harness) -> None:
    om = manager(h)
    cid = om.place(Side.SELL, PAIR, D("1"), OrderType.MARKET)
    await settle()
    assert "no reference price" in (h.of(OrderFailed, cid)[0].reason or "")
    # A reference price given by the caller is enough.
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h))  # type: ignore[index]
    om.place(Side.SELL, PAIR, D("1"), OrderType.MARKET, D("100"))
    await settle()
    assert len(h.http.sent(PLACE)) == 1


@pytest.mark.parametrize(
    "error",
    [
        InsufficientFunds("Account has insufficient balance", code=-2010),
        RateLimited("too many orders", retry_after=1.0),
        ClockSkew("Timestamp for this request is outside of the recvWindow", code=-1021),
    ],
)
async def test_a_venue_refusal_fails_the_order_and_is_never_resent(h: Harness, error: Exception) -> None:
    om = manager(h)
    h.http.answer(PLACE, error)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert h.kinds(cid) == ["OrderFailed"]
    assert str(error) in (h.of(OrderFailed, cid)[0].reason or "")
    assert len(h.http.sent(PLACE)) == 1
    assert om.counters.rejected == 1
    assert h.ctx.balances.available("USDT") == D("100000")


async def test_clock_skew_rejection_says_it_was_not_executed(h: Harness) -> None:
    om = manager(h)
    h.http.answer(PLACE, ClockSkew("outside recvWindow", code=-1021))
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert "not executed" in (h.of(OrderFailed, cid)[0].reason or "")


@pytest.mark.parametrize(
    "error",
    [RequestTimeout("no answer"), ConnectionFailed("reset"), ServerError("HTTP 503", status=503),
     DuplicateOrder("Duplicate order sent.")],
)
async def test_transport_trouble_makes_the_order_unknown_not_failed(h: Harness, error: Exception) -> None:
    om = manager(h)
    woken: list[int] = []
    om.on_attention = lambda: woken.append(1)
    h.http.answer(PLACE, error)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert h.kinds(cid) == ["OrderUnknown"]
    assert h.ctx.tracker.get(cid).state is S.UNKNOWN  # type: ignore[union-attr]
    assert woken and om.counters.unknown == 1 and len(h.http.sent(PLACE)) == 1
    # The order's funds stay reserved until a query settles it.
    second = om.place(Side.BUY, PAIR, D("999.5"), OrderType.LIMIT, D("100"))
    await settle()
    assert "insufficient USDT" in (h.of(OrderFailed, second)[0].reason or "")


async def test_an_unreadable_placement_answer_is_unknown_too(h: Harness) -> None:
    om = manager(h)
    h.http.answer(PLACE, {"weird": True})
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert h.kinds(cid) == ["OrderUnknown"]
    assert "answer unreadable" in (h.of(OrderUnknown, cid)[0].reason or "")


async def test_stream_ack_before_a_timed_out_answer_keeps_the_order_open(h: Harness) -> None:
    om = manager(h)
    held = h.http.hold(PLACE)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    om.apply_updates([OrderUpdate(PAIR, START, S.OPEN, cid, "x1", D(0))])  # the private stream was first
    held[0].set_result(RequestTimeout("no answer"))
    await settle()
    assert h.ctx.tracker.get(cid).state is S.OPEN  # type: ignore[union-attr]
    assert h.kinds(cid) == ["OrderCreated"]


async def test_full_fill_in_the_placement_answer_completes_after_its_fills(h: Harness) -> None:
    om = manager(h)
    fills = [trade("t1", "0.4", xid="x9"), trade("t2", "0.6", xid="x9")]
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h, S.FILLED, "x9", "1", fills))  # type: ignore[index]
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert h.kinds(cid) == ["OrderCreated", "OrderFilled", "OrderFilled", "OrderCompleted"]
    done = h.of(OrderCompleted, cid)[0]
    assert done.executed_base == D("1") and done.executed_quote == D("100")
    # Balances: quote paid, base received, the USDT fee taken; nothing left locked.
    assert h.ctx.balances.total("USDT") == D("100000") - D("100") - D("0.2")
    assert h.ctx.balances.available("USDT") == h.ctx.balances.total("USDT")
    assert h.ctx.balances.total("BTC") == D("11")


async def test_duplicate_fills_are_counted_once(h: Harness) -> None:
    om = manager(h)
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h))  # type: ignore[index]
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    fill = trade("t1", "0.25", cid=cid)
    om.apply_updates([fill, fill])
    om.apply_updates([trade("t1", "0.25", cid=None, xid="x1")])  # the same fill from REST history
    assert len(h.of(OrderFilled, cid)) == 1
    assert h.ctx.tracker.get(cid).executed_base == D("0.25")  # type: ignore[union-attr]
    assert h.ctx.balances.total("BTC") == D("10.25")
    assert h.ctx.tracker.counters.duplicate_fill == 2


async def test_apply_updates_moves_balances_and_drops_junk(h: Harness) -> None:
    om = manager(h)
    om.apply_updates([BalanceUpdate((Balance("ETH", D("3"), D("2")),), START)])
    om.apply_updates(["junk"])  # type: ignore[list-item]
    om.apply_updates([OrderUpdate(PAIR, START, S.OPEN, "someone-else", "x77")])  # another bot's order
    assert h.ctx.balances.total("ETH") == D("3") and h.ctx.balances.available("ETH") == D("2")
    assert [e for e in h.events if isinstance(e, BalanceUpdated)][-1].asset == "ETH"
    assert om.counters.bad_updates == 1
    assert om.counters.refusals == {"unknown_order": 1}


# -- the IP ban circuit breaker -----------------------------------------------------------------


async def test_ban_refuses_new_orders_at_once_and_reports_when_trading_resumes(h: Harness) -> None:
    om = manager(h)
    h.ctx.throttler.ban(30.0)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert "IP banned" in (h.of(OrderFailed, cid)[0].reason or "")
    assert h.http.requests == []
    assert not h.ctx.status.ready and h.ctx.status.snapshot()[TRADING_PART].detail.startswith("IP banned")
    om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))  # one watcher, whatever the count
    await settle()
    h.clock.advance(30.0)
    await settle()
    assert h.ctx.status.ready
    last = [e for e in h.events if isinstance(e, ConnectorStatusChanged)][-1]
    assert last.ready
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h))  # type: ignore[index]
    after = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert h.kinds(after) == ["OrderCreated"]
    await h.ctx.supervisor.stop()


async def test_venue_ban_answer_fails_the_order_and_opens_the_breaker(h: Harness) -> None:
    om = manager(h)

    def banned(_req: object) -> IpBanned:
        h.ctx.throttler.ban(60.0)  # what the HTTP client does on a 418
        return IpBanned("way too many requests", retry_after=60.0, status=418)

    h.http.on(PLACE, banned)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    assert "IP banned" in (h.of(OrderFailed, cid)[0].reason or "")
    assert TRADING_PART in dict(h.ctx.status.not_ready())
    await h.ctx.supervisor.stop()


# -- cancelling ---------------------------------------------------------------------------------


async def open_order(h: Harness, om: OrderManager, xid: str = "x1", amount: str = "1") -> str:
    h.http.on(PLACE, lambda req: placed(str(req.params["cid"]), h, xid=xid))  # type: ignore[index]
    cid = om.place(Side.BUY, PAIR, D(amount), OrderType.LIMIT, D("100"))
    await settle()
    assert h.ctx.tracker.get(cid).state is S.OPEN  # type: ignore[union-attr]
    return cid


async def test_cancel_ok_unlocks_the_funds(h: Harness) -> None:
    om = manager(h)
    cid = await open_order(h, om)
    h.http.on(CANCEL, lambda req: OrderUpdate(PAIR, START + 1, S.CANCELED, cid, "x1", D(0)))
    om.cancel(PAIR, cid)
    await settle()
    assert h.http.sent(CANCEL)[0].params == {"symbol": "BTCUSDT", "cid": cid}
    assert h.kinds(cid) == ["OrderCreated", "OrderCancelled"]
    assert h.ctx.balances.available("USDT") == D("100000")
    om.cancel(PAIR, cid)  # already ended: nothing sent
    await settle()
    assert len(h.http.sent(CANCEL)) == 1


async def test_cancel_refuses_other_instances_ids(h: Harness) -> None:
    om = manager(h)
    with pytest.raises(ForeignOrder):
        om.cancel(PAIR, "t" + "BBTCUSDT" + "zzzz0001" + "00000001")
    with pytest.raises(ForeignOrder):
        om.cancel(PAIR, "somebody-else")
    own_but_unknown = h.ids.new(Side.BUY, PAIR)
    om.cancel(PAIR, own_but_unknown)  # long finished, say: a no-op
    cid = await open_order(h, om)
    with pytest.raises(UnknownSymbol):
        om.cancel("ETH-USDT", cid)
    await settle()
    assert h.http.sent(CANCEL) == []


async def test_cancel_naming_the_wrong_pair_raises() -> None:
    h = make_harness(rules=[rule(), rule(trading_pair="ETH-USDT")])
    om = manager(h)
    cid = await open_order(h, om)
    with pytest.raises(InvalidOrderData):
        om.cancel("ETH-USDT", cid)


async def test_cancel_not_found_counts_toward_lost_and_asks_for_a_query(h: Harness) -> None:
    om = manager(h)
    cid = await open_order(h, om)
    h.http.answer(CANCEL, OrderNotFound("Unknown order sent.", code=-2011))
    om.cancel(PAIR, cid)
    await settle()
    order = h.ctx.tracker.get(cid)
    assert order is not None and order.not_found_count == 1 and cid in om.needs_query
    assert order.state is S.PENDING_CANCEL  # a query decides, not the cancel's answer


async def test_cancel_waits_for_the_placement_in_flight(h: Harness) -> None:
    om = manager(h)
    held = h.http.hold(PLACE)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    h.http.on(CANCEL, lambda req: OrderUpdate(PAIR, START + 1, S.CANCELED, cid, "x1", D(0)))
    om.cancel(PAIR, cid)
    await settle()
    assert h.http.sent(CANCEL) == []  # never overtakes its placement
    held[0].set_result(placed(cid, h))
    await settle()
    assert h.kinds(cid) == ["OrderCreated", "OrderCancelled"]


async def test_cancel_all_gives_one_result_per_own_order(h: Harness) -> None:
    om = manager(h)
    a = await open_order(h, om, "xa")
    b = await open_order(h, om, "xb")
    c = await open_order(h, om, "xc")
    # A journal's order under an earlier instance id: handed over by restore, so ours to cancel.
    earlier = InFlightOrder("mlBold-1", PAIR, OrderType.LIMIT, Side.BUY, D("1"), D("100"), START,
                            exchange_order_id="xe", state=S.OPEN)
    om.restore([earlier])
    assert not om.client_ids.owns("mlBold-1") and om.owns("mlBold-1")

    def on_cancel(req: object) -> object:
        cid = req.params["cid"]  # type: ignore[attr-defined]
        if cid == a:
            return OrderUpdate(PAIR, START + 1, S.CANCELED, a, "xa", D(0))
        if cid == b:
            return InsufficientFunds("no")  # any refusal
        if cid == "mlBold-1":
            return OrderUpdate(PAIR, START + 1, S.CANCELED, cid, "xe", D(0))
        return OrderUpdate(PAIR, START + 1, S.FILLED, c, "xc", D(1))  # it filled first

    h.http.on(CANCEL, on_cancel)
    results = await om.cancel_all(5.0)
    by_id = {r.client_order_id: r for r in results}
    assert set(by_id) == {a, b, c, "mlBold-1"}
    assert by_id["mlBold-1"].outcome is CancelOutcome.CANCELLED
    assert by_id[a].outcome is CancelOutcome.CANCELLED and by_id[a].success
    assert by_id[b].outcome is CancelOutcome.FAILED and "InsufficientFunds" in (by_id[b].reason or "")
    assert not by_id[b].success
    assert by_id[c].outcome is CancelOutcome.ALREADY_DONE and by_id[c].state is S.FILLED
    assert b in om.needs_query


async def test_cancel_all_reports_timeouts_and_keeps_the_cancel_running(h: Harness) -> None:
    om = manager(h)
    cid = await open_order(h, om)
    held = h.http.hold(CANCEL)
    task = asyncio.ensure_future(om.cancel_all(2.0))
    await settle()
    assert len(held) == 1
    h.clock.advance(2.0)
    [result] = await task
    assert result.outcome is CancelOutcome.TIMED_OUT and result.state is S.PENDING_CANCEL
    held[0].set_result(OrderUpdate(PAIR, START + 3, S.CANCELED, cid, "x1", D(0)))  # the late answer
    await settle()
    assert h.kinds(cid)[-1] == "OrderCancelled"


async def test_cancel_all_waits_for_a_pending_cancel_to_be_confirmed(h: Harness) -> None:
    om = manager(h)
    cid = await open_order(h, om)
    h.http.answer(CANCEL, OrderUpdate(PAIR, START + 1, S.PENDING_CANCEL, cid, "x1", D(0)))
    task = asyncio.ensure_future(om.cancel_all(5.0))
    await settle()
    assert not task.done()
    om.apply_updates([OrderUpdate(PAIR, START + 2, S.CANCELED, cid, "x1", D(0))])  # via the stream
    [result] = await task
    assert result.outcome is CancelOutcome.CANCELLED


async def test_cancel_all_with_nothing_to_cancel(h: Harness) -> None:
    om = manager(h)
    assert await om.cancel_all(1.0) == []
    with pytest.raises(ValueError):
        await om.cancel_all(float("nan"))


# -- restore, adopt, stop -----------------------------------------------------------------------


async def test_restored_mid_placement_order_becomes_unknown_and_is_never_placed_again(h: Harness) -> None:
    om = manager(h)
    woken: list[int] = []
    om.on_attention = lambda: woken.append(1)
    cid = h.ids.new(Side.BUY, PAIR)
    om.restore([InFlightOrder(cid, PAIR, OrderType.LIMIT, Side.BUY, D("1"), D("100"), START - 50)])
    assert h.kinds(cid) == ["OrderUnknown"] and woken
    assert h.http.requests == []


async def test_adopting_an_own_order_found_at_the_venue(h: Harness) -> None:
    from test_orders_fakes import venue_order

    om = manager(h)
    cid = h.ids.new(Side.SELL, PAIR)
    assert om.adopt(venue_order(cid, side=Side.SELL, xid="x5", amount="2", executed="0"))
    assert h.kinds(cid) == ["OrderCreated"] and om.counters.adopted == 1
    assert h.ctx.balances.available("BTC") == D("8")  # its funds are locked like any order's
    assert not om.adopt(venue_order(cid, side=Side.SELL, xid="x5"))  # twice: refused, logged
    assert om.counters.adopted == 1


async def test_stop_cancels_requests_still_in_flight_after_the_bound(h: Harness) -> None:
    om = manager(h)
    h.http.hold(PLACE)
    cid = om.place(Side.BUY, PAIR, D("1"), OrderType.LIMIT, D("100"))
    await settle()
    await om.stop(timeout=0)
    # It may have reached the venue: unknown, for the next start's reconcile to settle.
    assert h.ctx.tracker.get(cid).state is S.UNKNOWN  # type: ignore[union-attr]
    assert not om.placing(cid)


async def test_stop_lets_answered_requests_finish(h: Harness) -> None:
    om = manager(h)
    cid = await open_order(h, om)
    await om.stop()
    assert h.ctx.tracker.get(cid).state is S.OPEN  # type: ignore[union-attr]


def test_place_without_a_running_loop_publishes_at_once() -> None:
    h = make_harness(config=ConnectorConfig(client_id_prefix="t"))
    om = OrderManager(h.ctx, h.ids)
    cid = om.place(Side.BUY, PAIR, D("0.01"), OrderType.LIMIT, D("100"))  # min_notional
    assert h.kinds(cid) == ["OrderFailed"]


def test_cancel_result_success_flags() -> None:
    from marketlink.engine.orders import CancelResult

    assert CancelResult("c", PAIR, CancelOutcome.ALREADY_DONE).success
    assert not CancelResult("c", PAIR, CancelOutcome.TIMED_OUT).success
