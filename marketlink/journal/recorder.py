"""``Recorder``: a running connector's events, written to the journal without stalling the loop.

Two halves, because the event loop must never wait for a disk flush or for another bot's lock
on a shared file:

* **On the loop** (a bus callback, synchronous inside ``publish``): each event becomes rows,
  built from the event and from the tracker's order as it is at that instant, and the rows go on
  a queue. Building rows is all the loop pays.
* **On a writer thread**: it takes everything queued since its last write and commits it in one
  transaction (a burst of events costs one fsync). A write that fails, for whatever reason
  (another process holding the lock, a full disk, an I/O error), is kept and retried with a
  bounded back-off, never dropped: the rows hold fills. ``stats.failing`` / ``rows_pending`` /
  ``last_error`` say so, for the status page and the live view.

A new order is queued for writing the moment the tracker admits it (``OrderTracker.on_tracked``),
before its placement request is even signed, so the journal knows it within one commit of the
writer thread (milliseconds) rather than at the next scan. Order events do not cover every later
state change (a cancel request in flight publishes nothing), so the recorder also **scans** the
tracker's live orders: after each burst of events and every ``scan_every`` seconds, any order whose
state, fills or ids changed since last recorded is written. An order lost in a crash before its
row is committed still carries this bot's client-id instance, so the reconciler adopts it from the
venue after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from marketlink.core.events import (
    BalanceUpdated,
    Event,
    FundingPayment,
    OrderEvent,
    OrderFilled,
    PositionUpdated,
)
from marketlink.core.orders import InFlightOrder
from marketlink.journal.records import (
    BalanceRow,
    FillRow,
    FundingRow,
    OrderRow,
    PositionRow,
    Row,
    StateRow,
    fees_json,
)
from marketlink.journal.store import Journal, connect_db, run_write, write_rows

if TYPE_CHECKING:
    from marketlink.engine.bus import CallbackSubscription
    from marketlink.engine.connector import SpotConnector

__all__ = ["Recorder", "RecorderStats"]

log = logging.getLogger(__name__)

_Signature = tuple[str, str | None, str, int, bool]


@dataclass(slots=True)
class RecorderStats:
    events: int = 0
    rows_queued: int = 0
    rows_written: int = 0
    batches: int = 0
    #: failed write attempts (locked past every attempt, disk full, I/O error, ...): each one is
    #: kept and retried, never dropped
    write_retries: int = 0
    last_error: str | None = None  # of the latest failed attempt; None once a write succeeds again
    duplicate_fills: int = 0

    @property
    def rows_pending(self) -> int:
        """Rows recorded but not committed yet (queued, or held by a failing write)."""
        return self.rows_queued - self.rows_written

    @property
    def failing(self) -> bool:
        """The latest write attempt failed and its rows are waiting for the next one."""
        return self.last_error is not None


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class Recorder:
    """Records one connector's events for one bot; built by ``Journal.attach``."""

    def __init__(
        self, journal: Journal, connector: SpotConnector, bot_id: int, *, scan_every: float = 1.0,
        retry_pause: float = 0.5, max_retry_pause: float = 5.0,
    ) -> None:
        self.journal = journal
        self.connector = connector
        self.bot_id = bot_id
        self.venue = connector.name
        self.scan_every = scan_every
        self.stats = RecorderStats()
        self._retry_pause = retry_pause
        self._max_retry_pause = max(retry_pause, max_retry_pause)
        self._seen: dict[str, _Signature] = {}
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._conn = connect_db(journal.path)
        self._thread = threading.Thread(target=self._write_loop, name=f"journal-{self.venue}", daemon=True)
        self._thread.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._scan_pending = False
        self._closed = False
        self._sub: CallbackSubscription[Event] = connector.bus.subscribe_callback(
            self._on_event, name=f"journal-{self.venue}"
        )
        connector.ctx.tracker.on_tracked.append(self._on_tracked)
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._arm_timer()

    # -- on the event loop ----------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self.stats.events += 1
        rows = list(self._rows_of(event))
        if rows:
            self._put(rows)
        if isinstance(event, OrderEvent) and not self._scan_pending and self._loop is not None:
            self._scan_pending = True
            self._loop.call_soon(self._scan_soon)

    def _on_tracked(self, order: InFlightOrder) -> None:
        try:
            rows = list(self._order_rows(order, "submitted", order.creation_timestamp))
        except Exception:  # never in the way of an order: the next scan writes it instead
            log.exception("journal: could not record new order %s", order.client_order_id)
            return
        if rows:
            self._put(rows)

    def _rows_of(self, event: Event) -> Iterable[Row]:
        bot, venue = self.bot_id, self.venue
        if isinstance(event, OrderEvent):
            order = self.connector.ctx.tracker.get(event.client_order_id)
            if isinstance(event, OrderFilled):
                # The fill and its order's row travel in one batch, hence one transaction.
                yield FillRow(
                    bot_id=bot, venue=venue, client_order_id=event.client_order_id, trade_id=event.trade_id,
                    exchange_order_id=event.exchange_order_id, trading_pair=event.trading_pair,
                    side=event.side.value, price=str(event.price), amount=str(event.amount),
                    quote_amount=str(event.quote_amount), fees=fees_json(event.fee_amounts),
                    is_taker=event.is_taker, late=event.late, timestamp=event.timestamp,
                )
            if order is not None:
                yield from self._order_rows(order, type(event).__name__, event.timestamp)
        elif isinstance(event, BalanceUpdated):
            yield BalanceRow(
                bot, venue, event.asset, _opt(event.total), _opt(event.available), event.timestamp
            )
        elif isinstance(event, PositionUpdated):
            yield PositionRow(
                bot, venue, event.trading_pair, event.position_side.value, str(event.amount),
                str(event.entry_price), str(event.unrealized_pnl), event.leverage, event.timestamp,
            )
        elif isinstance(event, FundingPayment):
            yield FundingRow(
                bot, venue, event.trading_pair, event.asset, str(event.amount), str(event.funding_rate),
                event.timestamp,
            )

    def _order_rows(self, order: InFlightOrder, cause: str, timestamp: float) -> Iterable[Row]:
        cid = order.client_order_id
        # A terminal order is restorable only while the tracker holds it for missing fills; once
        # released (its terminal event went out with ``missing_base``) it is done for good.
        held = cid in self.connector.ctx.tracker.held if order.is_terminal else None
        missing = order.missing_fill if held is None else held and order.missing_fill
        sig: _Signature = (
            order.state.value, order.exchange_order_id, str(order.executed_base), len(order.fills), missing,
        )
        before = self._seen.get(cid)
        if before == sig:
            return
        yield OrderRow.of(self.bot_id, self.venue, order, held=held)  # built only when it changed
        if before is None or before[0] != sig[0]:
            yield StateRow(self.bot_id, self.venue, cid, order.state.value, cause, order.reason, timestamp)
        elif before[4] and not missing and order.is_terminal:
            why = f"released: {order.fill_gap} base of its fills never came"
            yield StateRow(self.bot_id, self.venue, cid, order.state.value, cause, why, timestamp)
        self._seen[cid] = sig

    def scan(self) -> int:
        """Record every live order that changed since it was last recorded; returns how many."""
        tracker = self.connector.ctx.tracker
        now = self.connector.ctx.now()
        rows: list[Row] = []
        for cid in [c for c in self._seen if tracker.get(c) is None]:
            del self._seen[cid]  # the tracker forgot it (finished long enough): so can we
        for orders in (tracker.active, tracker.lost, tracker.held):
            for order in list(orders.values()):
                rows.extend(self._order_rows(order, "scan", now))
        if rows:
            self._put(rows)
        return sum(isinstance(r, OrderRow) for r in rows)

    def _scan_soon(self) -> None:
        self._scan_pending = False
        if not self._closed:
            self.scan()

    def _arm_timer(self) -> None:
        if self._loop is not None and not self._closed and self.scan_every > 0:
            self._timer = self._loop.call_later(self.scan_every, self._tick)

    def _tick(self) -> None:
        try:
            self.scan()
        except Exception:  # a scan must never kill the timer: log and carry on
            log.exception("journal: scan failed")
        self._arm_timer()

    def _put(self, rows: list[Row]) -> None:
        self.stats.rows_queued += len(rows)
        self._queue.put(rows)

    # -- lifecycle ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until everything queued so far is committed; False on timeout (a write still
        failing: its rows are kept and retried)."""
        if not self._thread.is_alive():
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    async def drain(self, timeout: float | None = 10.0) -> bool:
        """``flush`` without blocking the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Record what changed, write everything queued, stop the writer. Idempotent; blocks, so
        from async code prefer ``aclose``."""
        if self._stop():
            self._finish(timeout)

    async def aclose(self, timeout: float | None = 10.0) -> None:
        if self._stop():
            await asyncio.to_thread(self._finish, timeout)

    def _stop(self) -> bool:
        if self._closed:
            return False
        self._sub.close()
        observers = self.connector.ctx.tracker.on_tracked
        if self._on_tracked in observers:
            observers.remove(self._on_tracked)
        if self._timer is not None:
            self._timer.cancel()
        self.scan()
        self._closed = True
        self._queue.put(_STOP)
        return True

    def _finish(self, timeout: float | None) -> None:
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._conn.close()
        else:
            log.error("journal: %d rows not written yet (%s); still retrying while this process lives",
                      self.stats.rows_pending, self.stats.last_error)

    # -- on the writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            batch: list[Row] = []
            markers: list[_Flush] = []
            stop = self._absorb(self._queue.get(), batch, markers)
            if batch:
                stop = self._write(batch, markers) or stop
            for m in markers:
                m.done.set()
            if stop:
                return

    def _absorb(self, item: object, batch: list[Row], markers: list[_Flush]) -> bool:
        """Take ``item`` and everything queued after it into ``batch``/``markers``; True if the
        stop marker was among them."""
        stop = False
        while True:
            if item is _STOP:
                stop = True
            elif isinstance(item, _Flush):
                markers.append(item)
            else:
                assert isinstance(item, list)
                batch.extend(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return stop

    def _write(self, batch: list[Row], markers: list[_Flush]) -> bool:
        """Commit ``batch``, however long it takes: a failed attempt (the file locked past every
        attempt, a full disk, an I/O error, anything) keeps the rows, which hold fills, and tries
        again after a bounded back-off; rows queued meanwhile join the batch behind them, in
        order. A flush waits for the commit. Returns True if the stop marker came meanwhile.
        (A batch is dropped only with the process: the thread is a daemon.)"""
        stop = False
        pause = self._retry_pause
        while True:
            try:
                dup = run_write(self._conn, lambda c: write_rows(c, batch))
            except Exception as exc:
                self.stats.write_retries += 1
                first = self.stats.last_error is None
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.log(logging.ERROR if first else logging.WARNING,
                        "journal: write of %d rows failed (%s); kept, retrying in %.2fs",
                        len(batch), self.stats.last_error, pause)
                time.sleep(pause)
                pause = min(pause * 2, self._max_retry_pause)
                with contextlib.suppress(queue.Empty):
                    stop = self._absorb(self._queue.get_nowait(), batch, markers) or stop
                continue
            if self.stats.last_error is not None:
                log.warning("journal: write recovered after failures; %d rows written", len(batch))
                self.stats.last_error = None
            self.stats.batches += 1
            self.stats.rows_written += len(batch)
            self.stats.duplicate_fills += dup
            return stop


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
