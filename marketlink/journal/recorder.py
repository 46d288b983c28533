"""``Recorder``: a running connector's events, written to the journal without stalling the loop.

Two halves, because the event loop must never wait for a disk flush or for another bot's lock
on a shared file:

* **On the loop** (a bus callback, synchronous inside ``publish``): each event becomes rows,
  built from the event and from the tracker's order as it is at that instant, and the rows go on
  a queue. Building rows is all the loop pays.
* **On a writer thread**: it takes everything queued since its last write and commits it in one
  transaction (a burst of events costs one fsync), retrying while another process holds the lock.

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
from marketlink.journal.store import Journal, JournalError, connect_db, run_write, write_rows

if TYPE_CHECKING:
    from marketlink.engine.bus import CallbackSubscription
    from marketlink.engine.connector import SpotConnector

__all__ = ["Recorder", "RecorderStats"]

log = logging.getLogger(__name__)

_Signature = tuple[str, str | None, str, int]


@dataclass(slots=True)
class RecorderStats:
    events: int = 0
    rows_queued: int = 0
    rows_written: int = 0
    batches: int = 0
    write_retries: int = 0  # a batch retried after the file stayed locked past every attempt
    rows_dropped: int = 0  # rows of a batch that failed for another reason (logged)
    duplicate_fills: int = 0


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class Recorder:
    """Records one connector's events for one bot; built by ``Journal.attach``."""

    def __init__(
        self, journal: Journal, connector: SpotConnector, bot_id: int, *, scan_every: float = 1.0,
        retry_pause: float = 0.5,
    ) -> None:
        self.journal = journal
        self.connector = connector
        self.bot_id = bot_id
        self.venue = connector.name
        self.scan_every = scan_every
        self.stats = RecorderStats()
        self._retry_pause = retry_pause
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
        sig: _Signature = (
            order.state.value, order.exchange_order_id, str(order.executed_base), len(order.fills)
        )
        before = self._seen.get(cid)
        if before == sig:
            return
        yield OrderRow.of(self.bot_id, self.venue, order)
        if before is None or before[0] != sig[0]:
            yield StateRow(self.bot_id, self.venue, cid, order.state.value, cause, order.reason, timestamp)
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
        """Block until everything queued so far is committed (or failed); False on timeout."""
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

    # -- on the writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[Row] = []
            markers: list[_Flush] = []
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    assert isinstance(item, list)
                    batch.extend(item)
                if stop:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            for m in markers:
                m.done.set()
            if stop:
                return

    def _write(self, batch: list[Row]) -> None:
        while True:
            try:
                dup = run_write(self._conn, lambda c: write_rows(c, batch))
            except JournalError as exc:
                # Still locked after every attempt: keep the batch (it holds fills) and try again.
                self.stats.write_retries += 1
                log.warning("journal: write of %d rows delayed: %s", len(batch), exc)
                time.sleep(self._retry_pause)
                continue
            except Exception:
                self.stats.rows_dropped += len(batch)
                log.exception("journal: %d rows could not be written", len(batch))
                return
            self.stats.batches += 1
            self.stats.rows_written += len(batch)
            self.stats.duplicate_fills += dup
            return


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
