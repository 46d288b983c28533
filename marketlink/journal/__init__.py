"""The journal: a SQLite file of each bot's orders, state changes, fills and balances.

``Journal.open(path)`` → ``journal.bot(name, venue)`` → ``journal.attach(connector, bot_id)``
while running, ``journal.restore_orders(bot_id, venue)`` before the next start, and the read
methods (``orders``, ``fills``, ``order_history``, ``balances``, ``summary``) for reports.
"""

from marketlink.journal.pnl import PairTotals, Summary
from marketlink.journal.recorder import Recorder, RecorderStats
from marketlink.journal.records import BalanceRecord, BotRecord, FillRecord, OrderRecord, StateRecord
from marketlink.journal.schema import SCHEMA_VERSION, JournalVersionError
from marketlink.journal.store import Journal, JournalError, JournalStats

__all__ = [
    "SCHEMA_VERSION",
    "BalanceRecord",
    "BotRecord",
    "FillRecord",
    "Journal",
    "JournalError",
    "JournalStats",
    "JournalVersionError",
    "OrderRecord",
    "PairTotals",
    "Recorder",
    "RecorderStats",
    "StateRecord",
    "Summary",
]
