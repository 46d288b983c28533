"""The journal file: schema and migrations, bots, rows in and records out, idempotent fills,
per-bot scoping, all-or-nothing transactions, restore, and the summary's PnL arithmetic."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import ConfigError
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.core.orders import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from marketlink.journal import SCHEMA_VERSION, Journal, JournalError, JournalVersionError
from marketlink.journal.pnl import PairTotals, summarize
from marketlink.journal.records import (
    BalanceRow,
    FillRecord,
    FillRow,
    FundingRow,
    OrderRow,
    PositionRow,
    StateRow,
    fees_json,
)
from marketlink.journal.schema import MIGRATIONS, migrate
from marketlink.journal.store import CACHE_KIB, WAL_SIZE_LIMIT, connect_db, run_write

D = Decimal


def order(cid: str, *, side: Side = Side.BUY, amount: str = "1", price: str = "100", ts: float = 1.0,
          state: OrderState = OrderState.OPEN) -> InFlightOrder:
    o = InFlightOrder(cid, "BTC-USDT", OrderType.LIMIT, side, D(amount), D(price), ts)
    if state is not OrderState.PENDING_CREATE:
        o.apply_update(OrderUpdate("BTC-USDT", ts, state, cid, f"x-{cid}"))
    return o


def trade(o: InFlightOrder, tid: str, amount: str, price: str, ts: float = 2.0) -> TradeUpdate:
    fee = TradeFee.reported("USDT", D("0.01"), FeeKind.DEDUCTED_FROM_RETURNS)
    return TradeUpdate(tid, o.client_order_id, o.exchange_order_id, "BTC-USDT", ts, D(price), D(amount), fee,
                       True)


def fill_row(bot: int, o: InFlightOrder, tid: str, amount: str, price: str, ts: float = 2.0,
             fee: str = "0.01") -> FillRow:
    return FillRow(bot, "binance", o.client_order_id, tid, o.exchange_order_id, o.trading_pair, o.side.value,
                   price, amount, str(D(price) * D(amount)), fees_json((TokenAmount("USDT", D(fee)),)), True,
                   False, ts)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.db") as j:
        yield j


# -- file and schema ------------------------------------------------------------------------------


def test_a_new_journal_is_private_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path) as j:
        assert repr(j) == f"<Journal {path}>"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"bots", "orders", "order_states", "fills", "balances", "positions", "funding_payments"} <= tables
    conn.close()


def test_every_connection_bounds_its_page_cache_and_wal_file(tmp_path: Path) -> None:
    conn = connect_db(tmp_path / "j.db")
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT
    conn.close()


def test_reopening_does_not_migrate_again_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path) as j:
        bot = j.bot("mm", "binance")
    conn = connect_db(path)
    assert migrate(conn) == SCHEMA_VERSION  # already current: nothing ran
    conn.close()
    with Journal.open(path) as j:
        assert j.bots() == [bot]


def test_a_failing_migration_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marketlink.journal.schema as schema

    monkeypatch.setattr(schema, "MIGRATIONS", (*MIGRATIONS, "CREATE TABLE x (a); THIS IS NOT SQL"))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(MIGRATIONS) + 1)
    conn = connect_db(tmp_path / "j.db")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('x', 'bots')").fetchone()[0] == 0
    conn.close()


def test_a_newer_journal_is_refused_and_so_is_a_file_that_is_not_one(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalVersionError, match="newer"):
        Journal.open(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is no sqlite file at all" * 100)
    with pytest.raises(JournalError, match="not a marketlink journal"):
        Journal.open(junk)
    with pytest.raises(ConfigError, match="does not exist"):
        Journal.open(tmp_path / "missing" / "j.db")


# -- bots ----------------------------------------------------------------------------------------


def test_a_bot_is_created_once_and_keeps_its_client_id_instance(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path) as j:
        first = j.bot("mm", "binance", prefix="ml")
        other = j.bot("mm", "bybit")
    with Journal.open(path) as j:
        again = j.bot("mm", "binance", prefix="ignored")
    assert again == first and first.prefix == "ml"
    assert other.bot_id != first.bot_id
    assert len(first.client_id_instance) == 8
    assert set(first.client_id_instance) <= set("0123456789abcdefghjkmnpqrstvwxyz")
    with Journal.open(path) as j, pytest.raises(ConfigError):
        j.bot(" ", "binance")
    with Journal.open(path) as j, pytest.raises(ConfigError):
        j.bot("mm", "")


def test_the_instance_is_accepted_by_the_client_id_factory(journal: Journal) -> None:
    from marketlink.core.client_ids import ClientOrderIdFactory

    bot = journal.bot("mm", "binance")
    ids = ClientOrderIdFactory("ml", 36, instance_id=bot.client_id_instance)
    assert ids.instance_id == bot.client_id_instance


# -- rows in, records out ------------------------------------------------------------------------


def test_orders_fills_and_history_round_trip_exactly(journal: Journal) -> None:
    bot = journal.bot("mm", "binance").bot_id
    o = order("c1", amount="0.123456789012345678", price="27123.45")
    journal.write([OrderRow.of(bot, "binance", o),
                   StateRow(bot, "binance", "c1", "OPEN", "OrderCreated", None, 1.0)])
    o.apply_trade(trade(o, "t1", "0.1", "27123.45"))
    journal.write([fill_row(bot, o, "t1", "0.1", "27123.45"), OrderRow.of(bot, "binance", o),
                   StateRow(bot, "binance", "c1", "PARTIALLY_FILLED", "OrderFilled", None, 2.0)])
    [rec] = journal.orders(bot)
    assert rec.amount == D("0.123456789012345678") and rec.price == D("27123.45")
    assert rec.state == "PARTIALLY_FILLED" and rec.executed_base == D("0.1")
    assert rec.side is Side.BUY and rec.exchange_order_id == "x-c1"
    rebuilt = rec.to_order()
    assert rebuilt.to_dict() == o.to_dict()
    [f] = journal.fills(bot)
    assert (f.trade_id, f.price, f.amount, f.quote_amount) == ("t1", D("27123.45"), D("0.1"), D("2712.345"))
    assert f.fees == (TokenAmount("USDT", D("0.01")),) and f.is_taker and not f.late
    assert [(s.state, s.event) for s in journal.order_history(bot, "c1")] == [
        ("OPEN", "OrderCreated"), ("PARTIALLY_FILLED", "OrderFilled")
    ]


def test_a_fill_recorded_twice_is_kept_once_but_a_self_trade_keeps_both_sides(journal: Journal) -> None:
    bot = journal.bot("mm", "binance").bot_id
    buy, sell = order("b1"), order("s1", side=Side.SELL)
    journal.write([OrderRow.of(bot, "binance", buy), OrderRow.of(bot, "binance", sell)])
    journal.write([fill_row(bot, buy, "t9", "1", "100"), fill_row(bot, sell, "t9", "1", "100")])
    journal.write([fill_row(bot, buy, "t9", "1", "100")])
    assert [(f.client_order_id, f.trade_id) for f in journal.fills(bot)] == [("b1", "t9"), ("s1", "t9")]
    assert journal.stats.duplicate_fills == 1


def test_reads_return_only_the_asking_bots_rows(journal: Journal) -> None:
    a = journal.bot("a", "binance").bot_id
    b = journal.bot("b", "binance").bot_id
    oa, ob = order("ca"), order("cb")
    journal.write([OrderRow.of(a, "binance", oa), fill_row(a, oa, "t1", "1", "100"),
                   BalanceRow(a, "binance", "USDT", "10", "5", 1.0)])
    journal.write([OrderRow.of(b, "binance", ob), fill_row(b, ob, "t2", "1", "100")])
    assert [o.client_order_id for o in journal.orders(a)] == ["ca"]
    assert [f.trade_id for f in journal.fills(b)] == ["t2"]
    assert [o.client_order_id for o in journal.restore_orders(b, "binance")] == ["cb"]
    assert journal.balances(b) == {}
    assert journal.summary(b).fill_count == 1
    # another bot's row under a colliding order id is never overwritten
    journal.write([OrderRow.of(b, "binance", order("ca", amount="9"))])
    assert journal.orders(a)[0].amount == D("1")
    assert journal.orders(b, states=["OPEN"])[0].client_order_id == "cb"


def test_order_filters_and_fill_filters(journal: Journal) -> None:
    bot = journal.bot("mm", "binance").bot_id
    rows = [OrderRow.of(bot, "binance", order(f"c{i}", ts=float(i))) for i in range(5)]
    done = order("c9", ts=9.0)
    done.apply_update(OrderUpdate("BTC-USDT", 9.5, OrderState.CANCELED, "c9"))
    journal.write([*rows, OrderRow.of(bot, "binance", done)])
    assert [o.client_order_id for o in journal.orders(bot, limit=2)] == ["c9", "c4"]
    assert [o.client_order_id for o in journal.orders(bot, since=3.0, states=["OPEN"])] == ["c4", "c3"]
    assert journal.orders(bot, trading_pair="ETH-USDT") == []
    o = order("f")
    journal.write([fill_row(bot, o, f"t{i}", "1", "100", ts=float(i)) for i in range(4)])
    assert [f.trade_id for f in journal.fills(bot, since=2.0)] == ["t2", "t3"]
    assert [f.trade_id for f in journal.fills(bot, limit=1, trading_pair="BTC-USDT")] == ["t0"]


def test_balances_keep_the_latest_value_of_each_side(journal: Journal) -> None:
    bot = journal.bot("mm", "binance").bot_id
    journal.write([BalanceRow(bot, "binance", "USDT", "100", "90", 1.0),
                   BalanceRow(bot, "binance", "USDT", None, "80", 2.0),
                   BalanceRow(bot, "binance", "BTC", "0.5", None, 3.0)])
    bal = journal.balances(bot)
    assert (bal["USDT"].total, bal["USDT"].available, bal["USDT"].timestamp) == (D("100"), D("80"), 2.0)
    assert (bal["BTC"].total, bal["BTC"].available) == (D("0.5"), None)


def test_perp_rows_are_accepted(journal: Journal, tmp_path: Path) -> None:
    bot = journal.bot("perp", "binance_perpetual").bot_id
    journal.write([PositionRow(bot, "binance_perpetual", "BTC-USDT", "LONG", "0.1", "30000", "5", 10, 1.0),
                   FundingRow(bot, "binance_perpetual", "BTC-USDT", "USDT", "-0.12", "0.0001", 2.0)])
    conn = sqlite3.connect(tmp_path / "journal.db")
    assert conn.execute("SELECT amount, leverage FROM positions").fetchall() == [("0.1", 10)]
    assert conn.execute("SELECT amount FROM funding_payments").fetchall() == [("-0.12",)]
    conn.close()


def test_a_write_is_all_or_nothing(journal: Journal) -> None:
    bot = journal.bot("mm", "binance").bot_id
    o = order("c1")
    o.apply_trade(trade(o, "t1", "0.5", "100"))
    with pytest.raises(TypeError, match="not a journal row"):
        journal.write([fill_row(bot, o, "t1", "0.5", "100"), "garbage"])  # type: ignore[list-item]
    assert journal.fills(bot) == [] and journal.orders(bot) == []


def test_restore_returns_live_orders_and_terminal_ones_missing_fills(journal: Journal) -> None:
    bot = journal.bot("mm", "binance").bot_id
    live, done, gapped, pending = order("live"), order("done"), order("gap"), order(
        "pend", state=OrderState.PENDING_CREATE)
    done.apply_update(OrderUpdate("BTC-USDT", 3, OrderState.CANCELED, "done"))
    gapped.apply_update(OrderUpdate("BTC-USDT", 3, OrderState.FILLED, "gap", cumulative_filled=D("1")))
    assert gapped.missing_fill
    journal.write([OrderRow.of(bot, "binance", x) for x in (live, done, gapped, pending)])
    restored = {o.client_order_id: o for o in journal.restore_orders(bot, "binance")}
    assert set(restored) == {"live", "gap", "pend"}
    assert restored["gap"].state is OrderState.FILLED and restored["pend"].state is OrderState.PENDING_CREATE
    assert journal.restore_orders(bot, "bybit") == []


def test_a_corrupt_order_record_is_counted_and_skipped(journal: Journal, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bot = journal.bot("mm", "binance").bot_id
    journal.write([OrderRow.of(bot, "binance", order("ok")), OrderRow.of(bot, "binance", order("bad"))])
    conn = sqlite3.connect(tmp_path / "journal.db")
    data = json.loads(conn.execute("SELECT data FROM orders WHERE client_order_id = 'bad'").fetchone()[0])
    data["amount"] = 1.5  # a float: never accepted as money
    conn.execute("UPDATE orders SET data = ? WHERE client_order_id = 'bad'", (json.dumps(data),))
    conn.commit()
    conn.close()
    assert [o.client_order_id for o in journal.restore_orders(bot, "binance")] == ["ok"]
    assert journal.stats.restore_dropped == 1 and "bad cannot be restored" in caplog.text


def test_a_locked_file_is_retried_then_reported(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal.open(path).close()
    holder = connect_db(path)
    holder.execute("BEGIN IMMEDIATE")
    conn = connect_db(path, busy_timeout_ms=1)
    retries: list[int] = []
    with pytest.raises(JournalError, match="locked"):
        run_write(conn, lambda c: None, attempts=3, backoff=0.001, on_retry=lambda: retries.append(1))
    assert len(retries) == 2
    holder.execute("ROLLBACK")
    assert run_write(conn, lambda c: 7) == 7
    holder.close()
    conn.close()


# -- summary -------------------------------------------------------------------------------------


def _fill(side: Side, amount: str, price: str, fee: tuple[str, str] = ("USDT", "0")) -> FillRecord:
    a, p = D(amount), D(price)
    return FillRecord(1, "binance", "c", "t", None, "BTC-USDT", side, p, a, a * p,
                      (TokenAmount(fee[0], D(fee[1])),), False, False, 0.0)


def test_average_cost_pnl_with_partial_closes_and_a_flip() -> None:
    fills = [
        _fill(Side.BUY, "1", "100", ("USDT", "0.1")),
        _fill(Side.BUY, "1", "200", ("BNB", "0.001")),  # average 150
        _fill(Side.SELL, "0.5", "180", ("USDT", "0.09")),  # +15
        _fill(Side.SELL, "2", "120"),  # closes 1.5 at -30 each = -45; opens short 0.5 at 120
        _fill(Side.BUY, "0.5", "100"),  # short closed: +10
    ]
    s = summarize(1, {"FILLED": 5}, fills)
    t = s.pairs["BTC-USDT"]
    # -20 from prices, less the 0.19 USDT of quote fees; the BNB fee stays apart.
    assert t.realized_pnl == D("-20.19") and s.realized_pnl("BTC-USDT") == D("-20.19")
    assert t.fees_quote == D("0.19") and t.fees_base == 0 and t.other_fees == {"BNB": D("0.001")}
    assert t.position == 0 and t.average_price == 0
    assert t.volume_base == D("5") and t.volume_quote == D("100") + D("200") + D("90") + D("240") + D("50")
    assert s.fees == {"USDT": D("0.19"), "BNB": D("0.001")}
    assert s.fill_count == 5 and s.order_count == 5 and s.realized_pnl("ETH-USDT") == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 50), st.integers(1, 500)), min_size=1, max_size=30))
def test_round_trips_realise_exactly_the_cash_difference(trades: list[tuple[bool, int, int]]) -> None:
    """Close the position at the end: realised PnL then equals cash in minus cash out (up to the
    40-digit rounding of the average price, far below any venue's precision)."""
    t = PairTotals("BTC-USDT")
    cash = D(0)
    for is_buy, amount, price in trades:
        a, p = D(amount) / 10, D(price)
        t.add(Side.BUY if is_buy else Side.SELL, a, p, a * p)
        cash += -a * p if is_buy else a * p
    if t.position:
        side = Side.SELL if t.position > 0 else Side.BUY
        a = abs(t.position)
        t.add(side, a, D(100), a * 100)
        cash += a * 100 if side is Side.SELL else -a * 100
    assert t.position == 0
    assert abs(t.realized_pnl - cash) < D("1e-20")


def test_fees_in_the_pairs_assets_are_in_the_pnl_and_the_position() -> None:
    """Audit F-5: buy 1 @100 paying 0.001 BTC, sell the 0.999 received @100.1 paying 0.1 USDT. The
    account is flat and lost 0.1001 USDT; the journal must say exactly that."""
    s = summarize(1, {"FILLED": 2}, [
        _fill(Side.BUY, "1", "100", ("BTC", "0.001")),
        _fill(Side.SELL, "0.999", "100.1", ("USDT", "0.1")),
    ])
    t = s.pairs["BTC-USDT"]
    assert t.position == 0 and t.average_price == 0
    assert t.realized_pnl == D("-0.1001")
    assert (t.fees_base, t.fees_quote, t.other_fees) == (D("0.001"), D("0.1"), {})
    assert s.fees == {"BTC": D("0.001"), "USDT": D("0.1")}


def test_a_base_fee_on_a_short_and_a_rebate_keep_the_cash_identity() -> None:
    """Sell 1 @100 paying 0.002 BTC (the short grows to 1.002), buy back 1.002 @90 with a 0.01
    USDT rebate: realised = 100 - 90.18 + 0.01 = 9.83, and flat."""
    s = summarize(1, {}, [
        _fill(Side.SELL, "1", "100", ("BTC", "0.002")),
        _fill(Side.BUY, "1.002", "90", ("USDT", "-0.01")),
    ])
    t = s.pairs["BTC-USDT"]
    assert t.position == 0 and t.realized_pnl == D("9.83")


def test_third_asset_fees_are_reported_apart_per_pair() -> None:
    s = summarize(1, {}, [_fill(Side.BUY, "1", "100", ("BNB", "0.01")),
                          _fill(Side.SELL, "1", "101", ("BNB", "0.02"))])
    t = s.pairs["BTC-USDT"]
    assert t.realized_pnl == D("1") and t.other_fees == {"BNB": D("0.03")}


def test_summary_from_the_journal(journal: Journal) -> None:
    bot = journal.bot("mm", "binance").bot_id
    b, s = order("b"), order("s", side=Side.SELL)
    journal.write([OrderRow.of(bot, "binance", b), OrderRow.of(bot, "binance", s),
                   fill_row(bot, b, "t1", "2", "100", ts=1.0), fill_row(bot, s, "t2", "1", "110", ts=2.0)])
    summary = journal.summary(bot)
    assert summary.orders_by_state == {"OPEN": 2}
    # 10 from prices, less the two 0.01 USDT fees
    assert summary.realized_pnl("BTC-USDT") == D("9.98") and summary.fees == {"USDT": D("0.02")}
    assert journal.summary(bot, since=1.5).fill_count == 1
