"""The recorder between a connector's bus and the journal: every order event, fill and balance
lands as rows; changes no event announces are caught by the scan; writes happen off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from marketlink.core.enums import OrderType, PositionSide, Side
from marketlink.core.events import BalanceUpdated, Event, FundingPayment, PositionUpdated
from marketlink.core.fees import FeeKind, TradeFee
from marketlink.core.orders import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from marketlink.core.tracker import OrderTracker
from marketlink.engine.bus import EventBus
from marketlink.journal import Journal, Recorder

D = Decimal


class FakeConnector:
    """What the recorder reads of a connector: its name, bus, tracker and clock."""

    def __init__(self) -> None:
        self.name = "binance"
        self.bus: EventBus[Event] = EventBus()
        self.ctx = SimpleNamespace(tracker=OrderTracker(), now=lambda: 50.0)

    def feed(self, item: OrderUpdate | TradeUpdate) -> None:
        tracker = self.ctx.tracker
        events = (tracker.process_trade_update(item) if isinstance(item, TradeUpdate)
                  else tracker.process_order_update(item))
        for e in events:
            self.bus.publish(e)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "j.db") as j:
        yield j


def _order(cid: str, amount: str = "1") -> InFlightOrder:
    return InFlightOrder(cid, "BTC-USDT", OrderType.LIMIT, Side.BUY, D(amount), D("100"), 1.0)


def _trade(cid: str, tid: str, amount: str, ts: float) -> TradeUpdate:
    fee = TradeFee.reported("BNB", D("0.0001"), FeeKind.ADDED_TO_COST)
    return TradeUpdate(tid, cid, "x1", "BTC-USDT", ts, D("100"), D(amount), fee, False)


async def test_an_orders_life_is_recorded_with_every_state_and_fill(journal: Journal) -> None:
    conn = FakeConnector()
    bot = journal.bot("mm", "binance").bot_id
    rec = journal.attach(conn, bot, scan_every=0)  # type: ignore[arg-type]
    conn.ctx.tracker.start_tracking(_order("c1"))  # queued for writing at once, before any send
    assert rec.scan() == 0  # so a scan finds nothing new
    conn.feed(OrderUpdate("BTC-USDT", 2.0, OrderState.OPEN, "c1", "x1"))
    conn.feed(OrderUpdate("BTC-USDT", 2.5, OrderState.PENDING_CANCEL, "c1"))  # no event for this one
    await asyncio.sleep(0)  # the scan scheduled after the burst... runs on the next loop turn
    rec.scan()
    conn.feed(_trade("c1", "t1", "0.4", 3.0))
    conn.feed(_trade("c1", "t1", "0.4", 3.0))  # duplicate: the tracker drops it, nothing new
    conn.feed(_trade("c1", "t2", "0.6", 4.0))
    conn.bus.publish(BalanceUpdated(5.0, "USDT", D("900"), None))
    assert await rec.drain()
    history = [(s.state, s.event) for s in journal.order_history(bot, "c1")]
    assert history == [
        ("PENDING_CREATE", "submitted"),
        ("OPEN", "OrderCreated"),
        ("PENDING_CANCEL", "scan"),
        ("FILLED", "OrderFilled"),
    ]
    [row] = journal.orders(bot)
    assert row.state == "FILLED" and row.executed_base == D("1") and row.exchange_order_id == "x1"
    assert [(f.trade_id, f.amount) for f in journal.fills(bot)] == [("t1", D("0.4")), ("t2", D("0.6"))]
    assert journal.fills(bot)[0].fees[0].token == "BNB"
    assert journal.balances(bot)["USDT"].total == D("900")
    assert journal.restore_orders(bot, "binance") == []
    await rec.aclose()
    assert rec.stats.rows_pending == 0 and rec.stats.batches >= 1 and rec.stats.events >= 5


async def test_restored_orders_come_back_equal(journal: Journal) -> None:
    conn = FakeConnector()
    bot = journal.bot("mm", "binance").bot_id
    rec = journal.attach(conn, bot, scan_every=0)  # type: ignore[arg-type]
    conn.ctx.tracker.start_tracking(_order("c1", "2"))
    conn.feed(OrderUpdate("BTC-USDT", 2.0, OrderState.OPEN, "c1", "x1"))
    conn.feed(_trade("c1", "t1", "0.5", 3.0))
    await rec.aclose()
    live = conn.ctx.tracker.get("c1")
    [back] = journal.restore_orders(bot, "binance")
    assert back.to_dict() == live.to_dict()
    fresh = OrderTracker()
    assert fresh.restore([back]) == 1 and fresh.get("c1") is back


async def test_perp_events_and_the_periodic_scan(journal: Journal) -> None:
    conn = FakeConnector()
    bot = journal.bot("perp", "binance").bot_id
    rec = journal.attach(conn, bot, scan_every=0.01)  # type: ignore[arg-type]
    conn.bus.publish(PositionUpdated(1.0, "BTC-USDT", PositionSide.LONG, D("0.1"), D("30000"), D("1"), 5))
    conn.bus.publish(FundingPayment(2.0, "BTC-USDT", "USDT", D("-0.3"), D("0.0001")))
    conn.ctx.tracker.start_tracking(_order("c1"))
    conn.feed(OrderUpdate("BTC-USDT", 1.5, OrderState.PENDING_CANCEL, "c1"))  # publishes no event
    recorded = asyncio.Event()
    original = rec.scan

    def scan() -> int:
        n = original()
        if n:
            recorded.set()
        return n

    rec.scan = scan  # type: ignore[method-assign]
    await asyncio.wait_for(recorded.wait(), 5)  # the timer's scan, not an event, found the change
    await rec.aclose()
    await rec.aclose()  # idempotent
    assert [o.state for o in journal.orders(bot)] == ["PENDING_CANCEL"]
    assert [(h.state, h.event) for h in journal.order_history(bot, "c1")] == [
        ("PENDING_CREATE", "submitted"), ("PENDING_CANCEL", "scan")]
    assert rec._on_tracked not in conn.ctx.tracker.on_tracked  # closed: it no longer listens
    import sqlite3

    db = sqlite3.connect(journal.path)
    assert db.execute("SELECT amount, leverage FROM positions").fetchall() == [("0.1", 5)]
    assert db.execute("SELECT amount FROM funding_payments").fetchall() == [("-0.3",)]
    db.close()


async def test_a_batch_that_cannot_be_written_is_kept_and_retried_until_it_can(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    """Audit F-2: a write failing for a reason other than a lock was dropped for good. Here every
    attempt fails (no such bot: the foreign key refuses it) until the bot row appears; the rows,
    and the rows queued behind them, are then written, in order."""
    conn = FakeConnector()
    rec = Recorder(journal, conn, 999_999, scan_every=0, retry_pause=0.001, max_retry_pause=0.01)  # type: ignore[arg-type]
    conn.bus.publish(BalanceUpdated(1.0, "USDT", D("1"), D("1")))
    assert not await rec.drain(timeout=0.3)  # not written: still failing
    assert rec.stats.write_retries >= 1 and rec.stats.failing and rec.stats.rows_pending == 1
    assert rec.stats.last_error is not None and "FOREIGN KEY" in rec.stats.last_error
    assert "kept, retrying" in caplog.text
    conn.bus.publish(BalanceUpdated(2.0, "USDT", D("2"), D("2")))
    journal.write([])  # the journal itself is fine: only the recorder's bot is missing
    import sqlite3

    db = sqlite3.connect(journal.path)
    db.execute("INSERT INTO bots (bot_id, name, venue, client_id_instance, created) "
               "VALUES (999999, 'late', 'binance', 'abcdefgh', 0)")
    db.commit()
    db.close()
    assert await rec.drain(timeout=10)
    assert not rec.stats.failing and rec.stats.rows_pending == 0 and rec.stats.rows_written == 2
    assert journal.balances(999_999)["USDT"].total == D("2")
    rec.close()
    rec.close()
    assert rec.flush() is True  # after close: nothing to wait for


async def test_a_full_disk_keeps_the_fill_and_its_order_and_writes_them_when_space_returns(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_FULL on the writer (simulated): the batch with a fill is not lost, not half written,
    and the scan's signatures do not hide the order afterwards."""
    import sqlite3
    import threading

    import marketlink.journal.recorder as recorder_mod

    full = threading.Event()
    full.set()
    real = recorder_mod.write_rows

    def flaky(c: Any, rows: Any) -> int:
        if full.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        return real(c, rows)

    monkeypatch.setattr(recorder_mod, "write_rows", flaky)
    conn = FakeConnector()
    bot = journal.bot("mm", "binance").bot_id
    rec = Recorder(journal, conn, bot, scan_every=0, retry_pause=0.001, max_retry_pause=0.01)  # type: ignore[arg-type]
    conn.ctx.tracker.start_tracking(_order("c1"))
    conn.feed(OrderUpdate("BTC-USDT", 2.0, OrderState.OPEN, "c1", "x1"))
    conn.feed(_trade("c1", "t1", "0.4", 3.0))
    assert not await rec.drain(timeout=0.2)
    assert rec.stats.failing and "disk is full" in (rec.stats.last_error or "")
    assert journal.fills(bot) == [] and journal.orders(bot) == []
    rec.scan()  # nothing changed since recorded: the scan adds nothing, the batch still holds it
    full.clear()
    assert await rec.drain(timeout=10)
    assert [f.trade_id for f in journal.fills(bot)] == ["t1"]
    (order,) = journal.orders(bot)
    assert order.state == "PARTIALLY_FILLED" and order.executed_base == D("0.4")
    await rec.aclose()


async def test_a_locked_file_delays_the_write_but_loses_nothing(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import marketlink.journal.recorder as recorder_mod
    from marketlink.journal.store import JournalError, connect_db, run_write

    refused = threading.Event()

    def one_attempt(conn: Any, work: Any, **kw: Any) -> Any:
        try:
            return run_write(conn, work, attempts=1)
        except JournalError:
            refused.set()
            raise

    monkeypatch.setattr(recorder_mod, "run_write", one_attempt)
    conn = FakeConnector()
    bot = journal.bot("mm", "binance").bot_id
    rec = recorder_mod.Recorder(journal, conn, bot, scan_every=0, retry_pause=0.01)  # type: ignore[arg-type]
    rec._conn.execute("PRAGMA busy_timeout = 1")
    holder = connect_db(journal.path)
    holder.execute("BEGIN IMMEDIATE")
    conn.bus.publish(BalanceUpdated(1.0, "USDT", D("7"), D("7")))
    assert await asyncio.to_thread(refused.wait, 10)
    holder.execute("ROLLBACK")
    holder.close()
    assert await rec.drain()
    assert rec.stats.write_retries >= 1
    assert journal.balances(bot)["USDT"].total == D("7")
    await rec.aclose()


def test_attach_outside_a_loop_still_records(journal: Journal) -> None:
    conn = FakeConnector()
    bot = journal.bot("mm", "binance").bot_id
    rec = journal.attach(conn, bot)  # type: ignore[arg-type]
    conn.ctx.tracker.start_tracking(_order("c1"))
    conn.feed(OrderUpdate("BTC-USDT", 2.0, OrderState.OPEN, "c1", "x1"))
    rec.close()
    assert [o.state for o in journal.orders(bot)] == ["OPEN"]


async def test_a_new_order_is_queued_before_any_event_or_scan_and_survives_an_unanswered_placement(
    journal: Journal,
) -> None:
    conn = FakeConnector()
    bot = journal.bot("mm", "binance").bot_id
    rec = journal.attach(conn, bot, scan_every=0)  # type: ignore[arg-type]  # no timer
    conn.ctx.tracker.start_tracking(_order("c9"))  # what buy() does before it sends anything
    assert await rec.drain()  # the writer thread committed it: no scan, no event was needed
    [row] = journal.orders(bot)
    assert (row.client_order_id, row.state) == ("c9", "PENDING_CREATE")
    [back] = journal.restore_orders(bot, "binance")  # a crash now: the restart knows the order
    assert back.client_order_id == "c9" and back.state is OrderState.PENDING_CREATE
    await rec.aclose()


async def test_an_order_released_with_missing_fills_is_not_restored_again(journal: Journal) -> None:
    """Audit F-6: a FILLED order whose fills never came is restored (held), then released by the
    engine; from then on it must not come back at every start."""
    bot = journal.bot("mm", "binance").bot_id
    gap = _order("g1")
    gap.apply_update(OrderUpdate("BTC-USDT", 2.0, OrderState.OPEN, "g1", "x1"))
    gap.apply_update(OrderUpdate("BTC-USDT", 3.0, OrderState.FILLED, "g1", "x1", cumulative_filled=D("1")))
    from marketlink.journal.records import OrderRow

    journal.write([OrderRow.of(bot, "binance", gap)])
    (restored,) = journal.restore_orders(bot, "binance")
    conn = FakeConnector()
    rec = journal.attach(conn, bot, scan_every=0)  # type: ignore[arg-type]
    conn.ctx.tracker.restore([restored])
    assert "g1" in conn.ctx.tracker.held
    rec.scan()  # recorded as held: still restorable if we crash now
    assert await rec.drain()
    assert [o.client_order_id for o in journal.restore_orders(bot, "binance")] == ["g1"]
    for event in conn.ctx.tracker.release("g1", 4.0):  # the engine gave up on the fills
        conn.bus.publish(event)
    await rec.aclose()
    assert journal.restore_orders(bot, "binance") == []
    last = journal.order_history(bot, "g1")[-1]
    assert last.state == "FILLED" and last.event == "OrderCompleted"
    assert last.reason is not None and last.reason.startswith("released: 1 base")
