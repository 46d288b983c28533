"""The journal's tables, as an ordered list of migrations keyed by ``PRAGMA user_version``.

A database file outlives the code that wrote it: a user upgrades marketlink and expects last
month's history to open. So the schema is never edited in place; each change is a new entry at
the end of ``MIGRATIONS`` and runs once, inside the same transaction that bumps the version, so
a crash half way leaves the previous version intact. A file newer than this code is refused
rather than written with assumptions it no longer meets.

Money columns are TEXT holding ``str(Decimal)``: SQLite's REAL is a float and would round.
Timestamps are REAL seconds (they are floats in the events already, and only ever compared).
The perpetual tables (positions, funding_payments) exist from version 1 so a perp connector
needs no migration to start recording.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from marketlink.core.errors import MarketlinkError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "JournalVersionError", "migrate"]


class JournalVersionError(MarketlinkError):
    """The journal file was written by a newer marketlink (or is not a journal at all)."""


_V1: Final = """
CREATE TABLE bots (
    bot_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    venue TEXT NOT NULL,
    prefix TEXT,
    client_id_instance TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (name, venue)
);
CREATE TABLE orders (
    venue TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    bot_id INTEGER NOT NULL REFERENCES bots(bot_id),
    exchange_order_id TEXT,
    trading_pair TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    time_in_force TEXT NOT NULL,
    amount TEXT NOT NULL,
    price TEXT,
    state TEXT NOT NULL,
    executed_base TEXT NOT NULL,
    executed_quote TEXT NOT NULL,
    missing_fill INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (venue, client_order_id)
);
CREATE INDEX orders_by_bot_state ON orders (bot_id, state);
CREATE INDEX orders_by_bot_created ON orders (bot_id, created);
CREATE TABLE order_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id INTEGER NOT NULL REFERENCES bots(bot_id),
    venue TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    reason TEXT,
    timestamp REAL NOT NULL
);
CREATE INDEX order_states_by_order ON order_states (venue, client_order_id);
CREATE TABLE fills (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id INTEGER NOT NULL REFERENCES bots(bot_id),
    venue TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    exchange_order_id TEXT,
    trading_pair TEXT NOT NULL,
    side TEXT NOT NULL,
    price TEXT NOT NULL,
    amount TEXT NOT NULL,
    quote_amount TEXT NOT NULL,
    fees TEXT NOT NULL,
    is_taker INTEGER NOT NULL,
    late INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    UNIQUE (venue, client_order_id, trade_id)
);
CREATE INDEX fills_by_bot_time ON fills (bot_id, timestamp);
CREATE TABLE balances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id INTEGER NOT NULL REFERENCES bots(bot_id),
    venue TEXT NOT NULL,
    asset TEXT NOT NULL,
    total TEXT,
    available TEXT,
    timestamp REAL NOT NULL
);
CREATE INDEX balances_by_bot_time ON balances (bot_id, timestamp);
CREATE TABLE positions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id INTEGER NOT NULL REFERENCES bots(bot_id),
    venue TEXT NOT NULL,
    trading_pair TEXT NOT NULL,
    position_side TEXT NOT NULL,
    amount TEXT NOT NULL,
    entry_price TEXT NOT NULL,
    unrealized_pnl TEXT NOT NULL,
    leverage INTEGER NOT NULL,
    timestamp REAL NOT NULL
);
CREATE TABLE funding_payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id INTEGER NOT NULL REFERENCES bots(bot_id),
    venue TEXT NOT NULL,
    trading_pair TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount TEXT NOT NULL,
    funding_rate TEXT NOT NULL,
    timestamp REAL NOT NULL
);
"""

#: Migration i (1-based) takes a database from version i-1 to version i. Append, never edit.
MIGRATIONS: Final[tuple[str, ...]] = (_V1,)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn``'s database to ``SCHEMA_VERSION``; returns the version it started at.

    Runs under ``BEGIN IMMEDIATE``: two processes opening a fresh file at once serialize here,
    and the second finds the work done. ``executescript`` is avoided because it commits on its
    own, which would split a migration from its version bump.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if start > SCHEMA_VERSION:
            raise JournalVersionError(
                f"journal schema version {start} is newer than this marketlink understands "
                f"({SCHEMA_VERSION}); upgrade marketlink"
            )
        for version in range(start + 1, SCHEMA_VERSION + 1):
            for statement in _statements(MIGRATIONS[version - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return start
