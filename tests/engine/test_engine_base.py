"""StatusBoard, Supervisor and Balances: the small engine parts the lead wrote."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from marketlink.core.enums import OrderType, PositionAction, Side, TimeInForce
from marketlink.core.events import (
    BalanceUpdated,
    ConnectorStatusChanged,
    OrderCancelled,
    OrderCreated,
    OrderFailed,
    OrderFilled,
)
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.core.market import Balance, BalanceUpdate
from marketlink.engine import balances as balances_module
from marketlink.engine.balances import Balances
from marketlink.engine.status import StatusBoard
from marketlink.engine.supervisor import Supervisor
from marketlink.net.clock import VirtualClock

D = Decimal


# -- status ---------------------------------------------------------------------------------------


def test_status_is_ready_only_when_every_part_is_and_says_why_not() -> None:
    seen: list[ConnectorStatusChanged] = []
    board = StatusBoard("x", ["a", "b"], seen.append, lambda: 1.0)
    board.ok("a")
    assert not board.ready
    assert board.not_ready() == (("b", "not started"),)
    board.ok("b", "fine")
    assert board.ready
    board.fail("a", "reconnecting")
    assert not board.ready and board.not_ready() == (("a", "reconnecting"),)
    assert [e.ready for e in seen] == [False, True, False]
    assert seen[-1].not_ready == (("a", "reconnecting"),)


def test_status_publishes_nothing_when_nothing_changes() -> None:
    seen: list[ConnectorStatusChanged] = []
    board = StatusBoard("x", ["a"], seen.append, lambda: 1.0)
    board.ok("a")
    board.ok("a")
    board.set("extra", True)  # a new ready part does not change the picture
    assert len(seen) == 1
    assert set(board.snapshot()) == {"a", "extra"}


# -- supervisor -----------------------------------------------------------------------------------


async def test_a_crashing_task_is_restarted_with_growing_backoff() -> None:
    clock = VirtualClock()
    crashes: list[str] = []
    runs = 0
    done = asyncio.Event()

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs < 4:
            raise ValueError(f"boom {runs}")
        done.set()

    sup = Supervisor(clock, backoff_base=1.0, backoff_max=30.0, on_crash=lambda n, e: crashes.append(n))
    sup.spawn("job", job)
    for expected_delay in (1.0, 2.0, 4.0):
        await clock.wait_for_sleepers(1)
        assert clock.next_deadline == pytest.approx(clock.time() + expected_delay)
        clock.advance(expected_delay)
    await asyncio.wait_for(done.wait(), 5)
    assert runs == 4 and crashes == ["job"] * 3
    record = sup.records["job"]
    assert record.restarts == 3 and "boom 3" in record.last_error
    await sup.stop()


async def test_a_task_that_returns_is_not_restarted_and_stop_cancels_the_rest() -> None:
    clock = VirtualClock()
    sup = Supervisor(clock)
    finished = asyncio.Event()
    forever_started = asyncio.Event()

    async def once() -> None:
        finished.set()

    async def forever() -> None:
        forever_started.set()
        await asyncio.Event().wait()

    sup.spawn("once", once)
    sup.spawn("forever", forever)
    await asyncio.wait_for(finished.wait(), 5)
    await asyncio.wait_for(forever_started.wait(), 5)
    with pytest.raises(RuntimeError):
        sup.spawn("forever", forever)
    await sup.cancel("forever")
    sup.spawn("forever", forever)  # a cancelled name can run again
    await sup.stop()
    assert all(r.task is None for r in sup.records.values())


async def test_no_restart_means_one_crash_ends_the_task() -> None:
    runs = 0

    async def job() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("x")

    sup = Supervisor(VirtualClock())
    sup.spawn("j", job, restart=False)
    task = sup.records["j"].task
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert runs == 1 and sup.records["j"].restarts == 1
    await sup.stop()


# -- balances -------------------------------------------------------------------------------------


def _balances() -> tuple[Balances, list[BalanceUpdated]]:
    seen: list[BalanceUpdated] = []
    b = Balances(seen.append)
    b.apply(
        BalanceUpdate(
            (
                Balance("USDT", D("1000"), D("1000")),
                Balance("BTC", D("1"), D("1")),
                Balance("BNB", D("5"), D("5")),
            ),
            timestamp=100.0,
            complete=True,
        )
    )
    return b, seen


def _order_event(cls: type, ts: float, side: Side = Side.BUY, **kw: object) -> object:
    common = dict(
        timestamp=ts, client_order_id="c1", exchange_order_id="1", trading_pair="BTC-USDT", side=side,
        order_type=OrderType.LIMIT,
    )
    if cls is OrderCreated:
        common.update(amount=D("0.1"), price=D("100"), creation_timestamp=ts, time_in_force=TimeInForce.GTC,
                      position_action=PositionAction.NIL, leverage=1)
    if cls is OrderFilled:
        fee = TradeFee.reported("BTC", D("0.0001"), FeeKind.DEDUCTED_FROM_RETURNS)
        common.update(trade_id="t1", price=D("90"), amount=D("0.1"), quote_amount=D("9"), fee=fee,
                      fee_amounts=(TokenAmount("BTC", D("0.0001")),), is_taker=False,
                      position_action=PositionAction.NIL, leverage=1)
    if cls in (OrderCancelled, OrderFailed):
        common.update(executed_base=D(0), executed_quote=D(0), average_price=None, fees=(), missing_base=D(0),
                      reason=None)
    common.update(kw)
    return cls(**common)


def test_a_complete_snapshot_zeroes_assets_it_does_not_list() -> None:
    b, seen = _balances()
    b.apply(BalanceUpdate((Balance("USDT", D("10"), D("8")),), timestamp=200.0, complete=True))
    assert b.total("BTC") == 0 and b.available("USDT") == D("8")
    assert b.all()["USDT"] == Balance("USDT", D("10"), D("8"))
    assert {e.asset for e in seen if e.timestamp == 200.0} == {"USDT", "BTC", "BNB"}


def test_an_older_push_does_not_undo_a_newer_one() -> None:
    b, _ = _balances()
    b.apply(BalanceUpdate((Balance("USDT", D("900"), D("900")),), timestamp=300.0))
    b.apply(BalanceUpdate((Balance("USDT", D("1000"), D("1000")),), timestamp=250.0))
    assert b.total("USDT") == D("900")


def test_a_buy_locks_then_fills_then_unlocks_the_rest() -> None:
    b, _ = _balances()
    b.on_order_event(_order_event(OrderCreated, 101.0), D("100"), D("0.1"))  # type: ignore[arg-type]
    assert b.available("USDT") == D("990") and b.total("USDT") == D("1000")
    # Filled 0.1 at 90 (better than the limit): pay 9, unlock the 10 reserved.
    b.on_order_event(_order_event(OrderFilled, 102.0), D("100"), D(0))  # type: ignore[arg-type]
    assert b.total("USDT") == D("991") and b.available("USDT") == D("991")
    assert b.total("BTC") == D("1.0999") and b.available("BTC") == D("1.0999")


def test_a_cancel_unlocks_the_remaining_amount_and_a_failed_order_unlocks_nothing() -> None:
    b, _ = _balances()
    b.on_order_event(_order_event(OrderCreated, 101.0, side=Side.SELL), D("100"), D("0.1"))  # type: ignore[arg-type]
    assert b.available("BTC") == D("0.9")
    b.on_order_event(_order_event(OrderCancelled, 102.0, side=Side.SELL), D("100"), D("0.1"))  # type: ignore[arg-type]
    assert b.available("BTC") == D("1")
    b.on_order_event(  # never created: nothing was locked, nothing to free
        _order_event(OrderFailed, 103.0, client_order_id="c2"), D("100"), D("0.1")  # type: ignore[arg-type]
    )
    assert b.available("USDT") == D("1000")


def test_adjustments_already_included_in_a_snapshot_are_skipped() -> None:
    b, _ = _balances()
    b.apply(BalanceUpdate((Balance("USDT", D("991"), D("991")), Balance("BTC", D("1.0999"), D("1.0999"))),
                          timestamp=150.0))
    # The fill (stamped 102) happened before the venue's snapshot (150): already counted there.
    b.on_order_event(_order_event(OrderFilled, 102.0), D("100"), D(0))  # type: ignore[arg-type]
    assert b.total("USDT") == D("991") and b.total("BTC") == D("1.0999")


def test_a_snapshot_older_than_local_adjustments_is_rebased_onto_them() -> None:
    """Taken at the venue at 101.5 (after the lock, before the fill), read after the fill: the
    fill (102) is applied again on top of it, the lock (101) is not (the snapshot holds it)."""
    b, seen = _balances()
    b.on_order_event(_order_event(OrderCreated, 101.0), D("100"), D("0.1"))  # type: ignore[arg-type]
    b.on_order_event(_order_event(OrderFilled, 102.0), D("100"), D(0))  # type: ignore[arg-type]
    assert (b.total("USDT"), b.available("USDT")) == (D("991"), D("991"))
    b.apply(BalanceUpdate(
        (Balance("USDT", D("1000"), D("990")), Balance("BTC", D("1"), D("1"))), timestamp=101.5
    ))
    assert (b.total("USDT"), b.available("USDT")) == (D("991"), D("991"))
    assert (b.total("BTC"), b.available("BTC")) == (D("1.0999"), D("1.0999"))
    assert not [e for e in seen if e.timestamp == 101.5]  # nothing moved
    # A later value holds the fill itself: nothing is applied twice, and nothing is kept.
    b.apply(BalanceUpdate((Balance("USDT", D("991"), D("991")),), timestamp=103.0))
    assert b.total("USDT") == D("991")
    b.apply(BalanceUpdate((Balance("USDT", D("991"), D("991")),), timestamp=102.5))
    assert b.total("USDT") == D("991") and b.stale_refused == 1


def test_adjustments_kept_for_rebasing_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound the oldest adjustment is dropped, and a value older than it is refused
    rather than rebased without it; one at or after it is still taken."""
    monkeypatch.setattr(balances_module, "PENDING_KEPT", 2)
    b, _ = _balances()
    for ts in (110.0, 120.0, 130.0):
        b.adjust("USDT", D("1"), D("1"), ts)
    assert b.total("USDT") == D("1003")
    b.apply(BalanceUpdate((Balance("USDT", D("1000"), D("1000")),), timestamp=105.0))  # needs 110
    assert b.total("USDT") == D("1003") and b.stale_refused == 1
    b.apply(BalanceUpdate((Balance("USDT", D("1001"), D("1001")),), timestamp=110.0))  # holds 110
    assert b.total("USDT") == D("1003") and b.available("USDT") == D("1003")


def test_a_rebased_value_is_published_with_the_stamp_of_its_newest_change() -> None:
    """The journal keeps each asset's latest balance by stamp: a value rebased onto a fill (102)
    holds that fill, so it must not be stamped older (101.5) than the fill's own update."""
    b, seen = _balances()
    b.on_order_event(_order_event(OrderCreated, 101.0), D("100"), D("0.1"))  # type: ignore[arg-type]
    b.on_order_event(_order_event(OrderFilled, 102.0), D("100"), D(0))  # type: ignore[arg-type]
    # Taken after the lock and a deposit of 5 we never heard of, before the fill:
    b.apply(BalanceUpdate((Balance("USDT", D("1005"), D("995")),), timestamp=101.5))
    assert (b.total("USDT"), b.available("USDT")) == (D("996"), D("996"))
    usdt = [e for e in seen if e.asset == "USDT"]
    assert (usdt[-1].total, usdt[-1].timestamp) == (D("996"), 102.0)
    assert [e.timestamp for e in usdt] == sorted(e.timestamp for e in usdt)


def test_updates_of_an_asset_are_published_in_time_order_when_events_are_not() -> None:
    """Two orders' fills reach us out of venue order (106, then 105): the second update holds
    both, so it is stamped 106 too, never older than what it follows."""
    b, seen = _balances()
    b.on_order_event(_order_event(OrderFilled, 106.0, client_order_id="a"), D("100"), D(0))  # type: ignore[arg-type]
    b.on_order_event(_order_event(OrderFilled, 105.0, client_order_id="b"), D("100"), D(0))  # type: ignore[arg-type]
    usdt = [e for e in seen if e.asset == "USDT" and e.timestamp > 100.0]
    assert [(e.total, e.timestamp) for e in usdt] == [(D("991"), 106.0), (D("982"), 106.0)]
