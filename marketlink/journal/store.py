"""``Journal``: the SQLite file that remembers a bot's orders, fills and balances across restarts.

Why it is built this way:

* **WAL, busy timeout, immediate transactions, retries.** Several bots (processes) may share one
  file. WAL lets readers run beside the one writer; every write transaction starts with
  ``BEGIN IMMEDIATE`` so it takes the write lock up front (a deferred transaction that upgrades
  from read to write can fail at once with "locked" instead of waiting); and a lock still held
  after the busy timeout is retried with backoff rather than crashing the bot.
* **One transaction per batch.** A fill and the order row it changes are written together, so a
  crash or a kill never leaves a fill without its order update (or the reverse): SQLite rolls
  back the unfinished transaction when the file is next opened.
* **Idempotent fills.** ``fills`` is unique on (venue, client order id, trade id): a fill
  recorded twice (REST and stream, or a replay after restart) is kept once. The order is part of
  the key because a self-trade gives two of our orders the same venue trade id.
* **Scoped reads.** Every read takes a ``bot_id`` and returns that bot's rows only, so two bots
  sharing a file never see (or restore, or cancel) each other's orders.

Writes from a running connector go through ``Recorder`` (see ``recorder.py``), which batches
them on a writer thread so the event loop never waits for the disk or for another process's lock.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError, MarketlinkError
from marketlink.core.orders import TERMINAL_STATES, InFlightOrder, InvalidOrderData
from marketlink.journal.pnl import Summary, summarize
from marketlink.journal.records import (
    BalanceRecord,
    BalanceRow,
    BotRecord,
    FillRecord,
    FillRow,
    FundingRow,
    OrderRecord,
    OrderRow,
    PositionRow,
    Row,
    StateRecord,
    StateRow,
    fees_from_json,
)
from marketlink.journal.schema import JournalVersionError, migrate

if TYPE_CHECKING:
    from marketlink.engine.connector import SpotConnector
    from marketlink.journal.recorder import Recorder

__all__ = ["Journal", "JournalError", "JournalStats"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
#: Crockford base32, lower case: what ``ClientOrderIdFactory`` accepts for an instance id.
_INSTANCE_DIGITS = "0123456789abcdefghjkmnpqrstvwxyz"
_INSTANCE_CHARS = 8
_TERMINAL = tuple(sorted(s.value for s in TERMINAL_STATES))


class JournalError(MarketlinkError):
    """The journal file cannot be opened or written (not a database, locked for too long)."""


@dataclass(slots=True)
class JournalStats:
    """Counters a status page shows; each is a drop or a wait that did not crash anything."""

    lock_retries: int = 0  # write transactions retried because another process held the lock
    duplicate_fills: int = 0  # fills already recorded (kept once)
    restore_dropped: int = 0  # stored orders that could not be rebuilt (corrupt record)


#: Page cache per connection, in KiB. SQLite's compiled-in default (2 MB unless a distribution
#: changed it) fills slowly as the file grows and shows as resident memory creeping for minutes;
#: a fixed bound makes the ceiling ours. The writer only touches the right edges of the tables
#: and indexes (new rows, recent orders), and the reader's cache is discarded whenever another
#: connection has written, so a larger cache buys nothing here.
CACHE_KIB = 1024
#: After a checkpoint, a WAL file larger than this (bytes) is truncated to it, so one large
#: transaction does not leave a large file on disk for good.
WAL_SIZE_LIMIT = 8 * 1024 * 1024


def connect_db(path: str | Path, *, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """One connection with the journal's settings. Autocommit mode (``isolation_level=None``):
    transactions are opened explicitly, never implicitly by the sqlite3 module."""
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and str(path) != ":memory:":
            log.warning("journal %s: WAL not available (mode %s); concurrent bots will wait more", path, mode)
        # FULL: a committed fill survives a power cut too, not only a crash of this process.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = {-CACHE_KIB}")  # negative: KiB, not pages
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(f"{path} is not a marketlink journal: {exc}") from None
    return conn


def run_write(
    conn: sqlite3.Connection,
    work: Callable[[sqlite3.Connection], _T],
    *,
    attempts: int = 8,
    backoff: float = 0.05,
    on_retry: Callable[[], None] | None = None,
) -> _T:
    """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction, retrying while the file is locked.

    Any exception inside ``work`` rolls the whole transaction back: nothing of it is kept.
    """
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or attempt == attempts:
                raise JournalError(f"journal write failed: {exc}") from None
            if on_retry is not None:
                on_retry()
            time.sleep(delay)  # a worker thread or a CLI command, never the event loop
            delay = min(delay * 2, 2.0)
            continue
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


# -- writing rows -------------------------------------------------------------------------------

_UPSERT_ORDER = """
INSERT INTO orders (venue, client_order_id, bot_id, exchange_order_id, trading_pair, side, order_type,
    time_in_force, amount, price, state, executed_base, executed_quote, missing_fill, created, updated, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (venue, client_order_id) DO UPDATE SET
    exchange_order_id = excluded.exchange_order_id, amount = excluded.amount, price = excluded.price,
    state = excluded.state, executed_base = excluded.executed_base,
    executed_quote = excluded.executed_quote, missing_fill = excluded.missing_fill,
    updated = excluded.updated, data = excluded.data
WHERE orders.bot_id = excluded.bot_id
"""
_INSERT_STATE = """
INSERT INTO order_states (bot_id, venue, client_order_id, state, event, reason, timestamp)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_FILL = """
INSERT OR IGNORE INTO fills (bot_id, venue, client_order_id, trade_id, exchange_order_id, trading_pair,
    side, price, amount, quote_amount, fees, is_taker, late, timestamp)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_BALANCE = """
INSERT INTO balances (bot_id, venue, asset, total, available, timestamp) VALUES (?, ?, ?, ?, ?, ?)
"""
_INSERT_POSITION = """
INSERT INTO positions (bot_id, venue, trading_pair, position_side, amount, entry_price, unrealized_pnl,
    leverage, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_FUNDING = """
INSERT INTO funding_payments (bot_id, venue, trading_pair, asset, amount, funding_rate, timestamp)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


def write_rows(conn: sqlite3.Connection, rows: Iterable[Row]) -> int:
    """Write ``rows`` inside the caller's transaction, in order; returns duplicate fills seen."""
    duplicates = 0
    for r in rows:
        if isinstance(r, OrderRow):
            conn.execute(_UPSERT_ORDER, (
                r.venue, r.client_order_id, r.bot_id, r.exchange_order_id, r.trading_pair, r.side,
                r.order_type, r.time_in_force, r.amount, r.price, r.state, r.executed_base,
                r.executed_quote, int(r.missing_fill), r.created, r.updated, r.data,
            ))
        elif isinstance(r, FillRow):
            cur = conn.execute(_INSERT_FILL, (
                r.bot_id, r.venue, r.client_order_id, r.trade_id, r.exchange_order_id, r.trading_pair,
                r.side, r.price, r.amount, r.quote_amount, r.fees, int(r.is_taker), int(r.late), r.timestamp,
            ))
            duplicates += cur.rowcount == 0
        elif isinstance(r, StateRow):
            conn.execute(_INSERT_STATE, (
                r.bot_id, r.venue, r.client_order_id, r.state, r.event, r.reason, r.timestamp,
            ))
        elif isinstance(r, BalanceRow):
            conn.execute(_INSERT_BALANCE, (r.bot_id, r.venue, r.asset, r.total, r.available, r.timestamp))
        elif isinstance(r, PositionRow):
            conn.execute(_INSERT_POSITION, (
                r.bot_id, r.venue, r.trading_pair, r.position_side, r.amount, r.entry_price,
                r.unrealized_pnl, r.leverage, r.timestamp,
            ))
        elif isinstance(r, FundingRow):
            conn.execute(_INSERT_FUNDING, (
                r.bot_id, r.venue, r.trading_pair, r.asset, r.amount, r.funding_rate, r.timestamp,
            ))
        else:
            raise TypeError(f"not a journal row: {type(r).__name__}")
    return duplicates


# -- the journal --------------------------------------------------------------------------------


class Journal:
    """One journal file. ``Journal.open(path)``; read with the ``bot_id`` of a ``bot(...)``."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.stats = JournalStats()
        self._conn = conn
        self._lock = threading.Lock()  # the reader connection may be used from a CLI thread too
        self._closed = False

    @classmethod
    def open(cls, path: str | Path) -> Journal:
        """Open (creating and migrating if needed) the journal at ``path``. The file is created
        with mode 0600: it names the user's orders and balances."""
        p = Path(path).expanduser()
        if not p.parent.is_dir():
            raise ConfigError(f"journal directory {p.parent} does not exist")
        if not p.exists():
            fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        try:
            conn = connect_db(p)
            migrate(conn)
        except JournalVersionError:
            raise
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{p} is not a marketlink journal: {exc}") from None
        return cls(p, conn)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"

    # -- writes ---------------------------------------------------------------------------------

    def write(self, rows: Sequence[Row]) -> None:
        """Write ``rows`` in one transaction: all of them, or (on any error) none."""
        with self._lock:
            dup = run_write(self._conn, lambda c: write_rows(c, rows), on_retry=self._count_retry)
        self.stats.duplicate_fills += dup

    def _count_retry(self) -> None:
        self.stats.lock_retries += 1

    def bot(self, name: str, venue: str, *, prefix: str | None = None) -> BotRecord:
        """The bot called ``name`` on ``venue``, created on first use with a fresh client-id
        instance that every later run reuses."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a bot name is a non-empty string, got {name!r}")
        if not isinstance(venue, str) or not venue:
            raise ConfigError(f"a venue name is a non-empty string, got {venue!r}")
        instance = "".join(secrets.choice(_INSTANCE_DIGITS) for _ in range(_INSTANCE_CHARS))

        def work(c: sqlite3.Connection) -> tuple[Any, ...]:
            c.execute(
                "INSERT OR IGNORE INTO bots (name, venue, prefix, client_id_instance, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, venue, prefix, instance, time.time()),
            )
            row: tuple[Any, ...] = c.execute(
                "SELECT bot_id, name, venue, prefix, client_id_instance, created FROM bots "
                "WHERE name = ? AND venue = ?",
                (name, venue),
            ).fetchone()
            return row

        with self._lock:
            row = run_write(self._conn, work, on_retry=self._count_retry)
        return BotRecord(*row)

    def attach(self, connector: SpotConnector, bot_id: int, *, scan_every: float = 1.0) -> Recorder:
        """Record ``connector``'s events as bot ``bot_id`` from now on; ``await rec.aclose()``
        (after stopping the connector) writes the rest and stops the writer thread."""
        from marketlink.journal.recorder import Recorder

        return Recorder(self, connector, bot_id, scan_every=scan_every)

    # -- reads ----------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def bots(self) -> list[BotRecord]:
        rows = self._query(
            "SELECT bot_id, name, venue, prefix, client_id_instance, created FROM bots ORDER BY bot_id"
        )
        return [BotRecord(*r) for r in rows]

    def restore_orders(self, bot_id: int, venue: str) -> list[InFlightOrder]:
        """The bot's orders to hand to ``connector.start(restore=...)``: every non-terminal one,
        and terminal ones still missing fills (the tracker holds those until the fills come).
        A record that cannot be rebuilt is logged and counted, not restored: its id still carries
        this bot's instance, so the reconciler adopts the order if the venue holds it."""
        marks = ",".join("?" * len(_TERMINAL))
        rows = self._query(
            f"SELECT client_order_id, data FROM orders WHERE bot_id = ? AND venue = ? "
            f"AND (state NOT IN ({marks}) OR missing_fill = 1) ORDER BY created, client_order_id",
            (bot_id, venue, *_TERMINAL),
        )
        out: list[InFlightOrder] = []
        for cid, data in rows:
            try:
                out.append(InFlightOrder.from_dict(json.loads(data)))
            except (InvalidOrderData, ValueError) as exc:
                self.stats.restore_dropped += 1
                log.error("journal: order %s cannot be restored: %s", cid, exc)
        return out

    def orders(
        self,
        bot_id: int,
        *,
        states: Iterable[str] | None = None,
        trading_pair: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[OrderRecord]:
        """The bot's orders, newest first; ``since`` filters on creation time."""
        sql = [f"SELECT {_ORDER_COLUMNS} FROM orders WHERE bot_id = ?"]
        params: list[object] = [bot_id]
        if states is not None:
            wanted = [str(s) for s in states]
            sql.append(f"AND state IN ({','.join('?' * len(wanted))})")
            params.extend(wanted)
        query, args = _filtered(sql, params, trading_pair, ("created", since),
                                "ORDER BY created DESC, client_order_id DESC", limit)
        return [_order_record(r) for r in self._query(query, args)]

    def order_history(self, bot_id: int, client_order_id: str) -> list[StateRecord]:
        """Every recorded state change of one order, oldest first."""
        rows = self._query(
            "SELECT client_order_id, state, event, reason, timestamp FROM order_states "
            "WHERE bot_id = ? AND client_order_id = ? ORDER BY id",
            (bot_id, client_order_id),
        )
        return [StateRecord(*r) for r in rows]

    def fills(
        self,
        bot_id: int,
        *,
        since: float | None = None,
        trading_pair: str | None = None,
        limit: int | None = None,
    ) -> list[FillRecord]:
        """The bot's fills in time order (oldest first), from ``since`` (seconds) on."""
        sql = [
            "SELECT bot_id, venue, client_order_id, trade_id, exchange_order_id, trading_pair, side, price, "
            "amount, quote_amount, fees, is_taker, late, timestamp FROM fills WHERE bot_id = ?"
        ]
        query, args = _filtered(sql, [bot_id], trading_pair, ("timestamp", since),
                                "ORDER BY timestamp, id", limit)
        return [_fill_record(r) for r in self._query(query, args)]

    def balances(self, bot_id: int) -> dict[str, BalanceRecord]:
        """The latest recorded total and available of each asset (a side the venue did not
        report in the latest update keeps its latest reported value)."""
        rows = self._query(
            "SELECT asset, total, available, timestamp FROM balances WHERE bot_id = ? ORDER BY timestamp, id",
            (bot_id,),
        )
        out: dict[str, BalanceRecord] = {}
        for asset, total, available, ts in rows:
            prev = out.get(asset)
            out[asset] = BalanceRecord(
                asset,
                Decimal(total) if total is not None else (prev.total if prev else None),
                Decimal(available) if available is not None else (prev.available if prev else None),
                ts,
            )
        return out

    def summary(self, bot_id: int, *, since: float | None = None) -> Summary:
        """Counts, volume, fees per token and realised PnL (average cost; see ``pnl.py``)."""
        sql = "SELECT state, COUNT(*) FROM orders WHERE bot_id = ?"
        params: list[object] = [bot_id]
        if since is not None:
            sql += " AND created >= ?"
            params.append(since)
        counts = {state: n for state, n in self._query(sql + " GROUP BY state", params)}
        return summarize(bot_id, counts, self.fills(bot_id, since=since))


_ORDER_COLUMNS = (
    "venue, client_order_id, bot_id, exchange_order_id, trading_pair, side, order_type, time_in_force, "
    "amount, price, state, executed_base, executed_quote, created, updated, data"
)


def _order_record(r: tuple[Any, ...]) -> OrderRecord:
    (venue, cid, bot_id, xid, pair, side, otype, tif, amount, price, state, base, quote, created, updated,
     data) = r
    return OrderRecord(
        bot_id=bot_id, venue=venue, client_order_id=cid, exchange_order_id=xid, trading_pair=pair,
        side=Side(side), order_type=otype, time_in_force=tif, amount=Decimal(amount),
        price=None if price is None else Decimal(price), state=state, executed_base=Decimal(base),
        executed_quote=Decimal(quote), created=created, updated=updated, data=data,
    )


def _fill_record(r: tuple[Any, ...]) -> FillRecord:
    bot_id, venue, cid, tid, xid, pair, side, price, amount, quote, fees, taker, late, ts = r
    return FillRecord(
        bot_id=bot_id, venue=venue, client_order_id=cid, trade_id=tid, exchange_order_id=xid,
        trading_pair=pair, side=Side(side), price=Decimal(price), amount=Decimal(amount),
        quote_amount=Decimal(quote), fees=fees_from_json(fees), is_taker=bool(taker), late=bool(late),
        timestamp=ts,
    )


def _filtered(
    sql: list[str], params: list[object], trading_pair: str | None, since: tuple[str, float | None],
    order_by: str, limit: int | None,
) -> tuple[str, list[object]]:
    """A listing query with its optional filters (one pair; ``column >= since``), order and limit."""
    if trading_pair is not None:
        sql.append("AND trading_pair = ?")
        params.append(trading_pair)
    column, start = since
    if start is not None:
        sql.append(f"AND {column} >= ?")  # a column name of ours, never input
        params.append(start)
    sql.append(order_by)
    if limit is not None:
        sql.append("LIMIT ?")
        params.append(int(limit))
    return " ".join(sql), params

