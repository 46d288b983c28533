"""``marketlink status`` (the snapshot file a running bot writes) and ``marketlink history`` (the
journal, this bot's fills only, exact decimals in CSV), plus the live-view machinery they share."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from marketlink.cli import status_cmd
from marketlink.cli.live import (
    LiveDisplay,
    RedrawGate,
    View,
    book_line,
    book_table,
    follow,
    status_line,
    status_view,
    ticker_line,
)
from marketlink.cli.main import app
from marketlink.cli.status_cmd import (
    SnapshotWriter,
    is_running,
    read_snapshot,
    status_path,
    write_snapshot,
)
from marketlink.journal import Journal
from marketlink.journal.records import FillRow

D = Decimal


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MARKETLINK_HOME", str(h))
    return h


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _snapshot(running: bool = True, pid: int | None = None) -> dict[str, Any]:
    return {
        "bot": "main", "pid": os.getpid() if pid is None else pid, "running": running, "elapsed": 12.5,
        "strategy": "pure_market_making", "state": "running", "where": "sandbox", "fills": 3,
        "orders_placed": 5, "orders_failed": 0, "errors": 1, "last_error": "on_tick: boom",
        "books": {"BTC-USDT": {"bid": "59999.5", "ask": "60000.5"}},
        "orders": [{"id": "x1", "connector": "binance", "pair": "BTC-USDT", "side": "BUY", "price": "59999.5",
                    "amount": "0.01", "executed": "0", "state": "OPEN"}],
        "balances": {"binance": {"BTC": {"total": "1.5", "available": "1.49"}}},
        "pnl": [{"connector": "binance", "pair": "BTC-USDT", "fills": 3, "base_delta": "0.01",
                 "quote_delta": "-600.1", "value": "-0.1"}],
        "strategy_status": {"quotes": "1"},
    }


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- snapshot files ---------------------------------------------------------------------------------


def test_snapshot_round_trip_and_unreadable_files(tmp_path: Path) -> None:
    path = status_path(tmp_path, "my bot/../x")
    assert path.parent == tmp_path / "status" and "/" not in path.name
    write_snapshot(path, _snapshot())
    assert read_snapshot(path) == _snapshot()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    path.write_text("{half a file")
    assert read_snapshot(path) is None
    path.write_text("[1, 2]")
    assert read_snapshot(path) is None
    assert read_snapshot(tmp_path / "missing.json") is None


def test_is_running_needs_the_flag_and_a_live_process() -> None:
    assert is_running(_snapshot())
    assert not is_running(_snapshot(running=False))
    assert not is_running(_snapshot(pid=_dead_pid()))
    assert not is_running({"running": True, "pid": "12"})
    assert not is_running(None)


def test_snapshot_writer_writes_changes_throttled_and_forced(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "s.json", min_interval=1.0)
    assert writer.offer({"a": 1, "elapsed": 1}, now=10.0)
    assert not writer.offer({"a": 1, "elapsed": 2}, now=20.0)  # only the clock moved: no write
    assert not writer.offer({"a": 2}, now=10.5)  # changed, but too soon
    assert writer.offer({"a": 2}, now=11.0)
    assert writer.offer({"a": 2, "running": False}, now=11.1, force=True)
    assert read_snapshot(tmp_path / "s.json") == {"a": 2, "running": False}
    assert writer.writes == 3
    blocked = SnapshotWriter(tmp_path / "file" / "s.json")
    (tmp_path / "file").write_text("not a directory")
    assert not blocked.offer({"a": 1}) and blocked.failures == 1


# -- live view machinery --------------------------------------------------------------------------


def test_redraw_gate_draws_changes_at_most_at_the_cap() -> None:
    gate = RedrawGate(0.1)
    assert gate.due("a", 0.0)
    assert not gate.due("a", 5.0)  # nothing changed
    assert gate.due("b", 5.0)  # changed, and long enough after the last draw
    gate2 = RedrawGate(0.1)
    assert gate2.due(1, 0.0) and not gate2.due(2, 0.05) and gate2.due(2, 0.1) and not gate2.due(2, 0.2)


def test_plain_display_prints_one_line_per_change() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    state = {"v": 1}
    view = View(lambda: state["v"], lambda: "rich", lambda: f"value {state['v']}")
    with LiveDisplay(console, plain_every=1.0) as display:
        assert not display.tty
        assert display.offer(view, now=0.0)
        assert not display.offer(view, now=2.0)
        state["v"] = 2
        assert not display.offer(view, now=0.5)
        assert display.offer(view, now=3.0)
    assert out.getvalue().splitlines() == ["value 1", "value 2"]


def test_terminal_display_redraws_in_place() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True)
    state = {"v": 1}
    view = View(lambda: state["v"], lambda: book_table("BTC-USDT", [(D(1), D(2))], []),
                lambda: "line")
    with LiveDisplay(console) as display:
        assert display.tty and display.offer(view, now=0.0)
        state["v"] = 2
        assert display.offer(view, now=1.0)
    text = out.getvalue()
    assert "line" not in text and "bid size" in text and "\x1b[" in text


async def test_follow_stops_when_asked() -> None:
    out = io.StringIO()
    stop = asyncio.Event()
    calls = {"n": 0}

    def fingerprint() -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            stop.set()
        return calls["n"]

    with LiveDisplay(Console(file=out), plain_every=0.0) as display:
        view = View(fingerprint, lambda: "", lambda: "x")
        await asyncio.wait_for(follow(display, view, stop, poll=0.01), 5)
    assert out.getvalue().count("x") == 3


def test_renderers_show_the_values() -> None:
    assert book_line("BTC-USDT", [(D("1.5"), D("2"))], []) == "BTC-USDT bids 1.5x2 | asks -"
    assert ticker_line("BTC-USDT", D("10"), D("12"), None) == \
        "BTC-USDT bid=10 ask=12 mid=11 spread=2 last=-"
    # The last trade, as the venue spells it, at the book's decimals when that loses nothing.
    assert ticker_line("BTC-USDT", D("1.50"), D("1.60"), D("1.55000000")).endswith(" last=1.55")
    assert ticker_line("BTC-USDT", D("1.50"), None, D("1.555")).endswith(" last=1.555")
    assert ticker_line("BTC-USDT", None, None, D("1.55000000")).endswith(" last=1.55000000")
    assert ticker_line("BTC-USDT", D("NaN"), None, D("1.5")).endswith(" last=1.5")
    line = status_line(_snapshot())
    assert "BTC-USDT 59999.5/60000.5" in line and "orders=1" in line and "fills=3" in line
    assert "pnl=-0.1" in line
    assert "pnl=-" in status_line({"pnl": [{"value": None}]})
    out = io.StringIO()
    Console(file=out, width=160).print(status_view(_snapshot()))
    text = out.getvalue()
    for needle in ("pure_market_making", "x1", "59999.5", "1.49", "-600.1", "last error: on_tick: boom",
                   "quotes: 1"):
        assert needle in text


# -- status -------------------------------------------------------------------------------------------


def test_status_of_a_running_bot(home: Path) -> None:
    write_snapshot(status_path(home, "main"), _snapshot())
    result = invoke("status")
    assert result.exit_code == 0
    assert "orders=1" in result.output and "fills=3" in result.output


def test_status_without_a_bot_or_journal(home: Path) -> None:
    result = invoke("status")
    assert result.exit_code == 0
    assert "no bot named 'main' is running" in result.output and "journal is empty" in result.output
    write_snapshot(status_path(home, "main"), _snapshot(pid=_dead_pid()))
    gone = invoke("status")
    assert "(its process has gone)" in gone.output


async def test_status_live_follows_until_the_bot_stops(home: Path) -> None:
    path = status_path(home, "main")
    write_snapshot(path, _snapshot())
    out = io.StringIO()
    task = asyncio.create_task(status_cmd._follow_status(path, Console(file=out, width=200)))
    async with asyncio.timeout(10):
        while "fills=3" not in out.getvalue():
            await asyncio.sleep(0.02)  # polling a condition, bounded by the timeout
        stopped = _snapshot(running=False)
        stopped["fills"] = 4
        write_snapshot(path, stopped)
        await task


# -- history ------------------------------------------------------------------------------------------


def _fill(bot_id: int, cid: str, trade: str, side: str, price: str, amount: str, ts: float) -> FillRow:
    quote = str(D(price) * D(amount))
    return FillRow(bot_id=bot_id, venue="binance", client_order_id=cid, trade_id=trade, exchange_order_id="9",
                   trading_pair="BTC-USDT", side=side, price=price, amount=amount, quote_amount=quote,
                   fees='[["USDT","0.000000000000000001"]]', is_taker=False, late=False, timestamp=ts)


@pytest.fixture
def journal(home: Path) -> Journal:
    home.mkdir(mode=0o700, parents=True)
    j = Journal.open(home / "journal.db")
    main = j.bot("main", "binance").bot_id
    other = j.bot("other", "binance").bot_id
    j.write([
        _fill(main, "b1", "t1", "BUY", "100.000000000000000001", "2", 1.0),
        _fill(main, "s1", "t2", "SELL", "110", "1", 2.0),
        _fill(other, "o1", "t3", "BUY", "5", "7", 3.0),
    ])
    return j


def test_history_lists_only_this_bots_fills_with_totals(journal: Journal, tmp_path: Path) -> None:
    journal.close()
    result = invoke("history", "--verbose", "--csv", str(tmp_path / "f.csv"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "fills: 2" in out
    assert "order o1" not in out and "order b1" in out and "order s1" in out
    # 1 x (110 - 100.000000000000000001), less the two fees of 0.000000000000000001 USDT
    assert "realised PnL 9.999999999999999997 USDT (fees included)" in out
    assert "fees: 0.000000000000000002 USDT" in out
    rows = list(csv.DictReader((tmp_path / "f.csv").open()))
    assert [r["client_order_id"] for r in rows] == ["b1", "s1"]
    assert rows[0]["price"] == "100.000000000000000001"
    assert rows[0]["quote_amount"] == "200.000000000000000002"
    assert rows[0]["fees"] == "0.000000000000000001 USDT"
    other = invoke("history", "--bot", "other")
    assert "fills: 1" in other.output and "volume 7 BTC / 35 USDT" in other.output


def test_history_of_an_unknown_bot_and_an_empty_home(journal: Journal, home: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    journal.close()
    missing = invoke("history", "--bot", "nobody")
    assert missing.exit_code == 1 and "no bot named 'nobody' (bots: main, other)" in missing.output
    summary = invoke("status", "--bot", "other")
    assert "last recorded totals of 'other'" in summary.output and "fills: 1" in summary.output
    assert "has no bot named" in invoke("status", "--bot", "nobody").output
    monkeypatch.setenv("MARKETLINK_HOME", str(tmp_path / "empty"))
    assert "journal is empty" in invoke("history").output
