"""``marketlink run``'s session, in process: the orders a last run left (cancelled before the
strategy starts, or the start refused), the strategy stopping itself (the session ends, exit 3),
one journal bot per connector, and a failing journal shown in the status."""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from marketlink.cli.live import status_line, status_view
from marketlink.cli.main import app
from marketlink.cli.run_cmd import EXIT_STRATEGY_FAILED, Session, journal_identities
from marketlink.client.bans import ban_until, record_ban
from marketlink.core.credentials import Credentials
from marketlink.core.events import ConnectorStatusChanged, OrderCreated
from marketlink.core.orders import OrderState
from marketlink.engine.orders import CancelOutcome, CancelResult
from marketlink.journal import Journal
from marketlink.net.errors import IpBanned
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.strategy import REGISTRY, parse_config
from marketlink.strategy.api import Strategy, StrategyContext
from marketlink.strategy.registry import StrategyEntry
from marketlink.venues.registry import REGISTRY as VENUES

PMM = """\
strategy: pure_market_making
connectors:
  binance:
    trading_pairs: [BTC-USDT]
runner:
  cancel_timeout: 2
{runner}
parameters:
  connector: binance
  trading_pair: BTC-USDT
  bid_spread: 1
  ask_spread: 1
  order_amount: 0.001
"""


class _Leftovers:
    """A started connector as the session sees it when it cancels what the last run left."""

    def __init__(self, results: list[CancelResult]) -> None:
        self.results = results
        self.timeouts: list[float] = []

    async def cancel_all(self, timeout: float = 10.0) -> list[CancelResult]:
        self.timeouts.append(timeout)
        return self.results


def _session(runner: str = "") -> tuple[Session, io.StringIO]:
    out = io.StringIO()
    config = parse_config(PMM.format(runner=runner))
    return Session(config, "b", Console(file=out, width=200), sandbox=True), out


def _result(cid: str, outcome: CancelOutcome, reason: str | None = None) -> CancelResult:
    return CancelResult(cid, "BTC-USDT", outcome, reason, OrderState.OPEN)


async def test_orders_left_by_the_last_run_are_cancelled_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="marketlink.cli.run_cmd")
    session, out = _session()
    conn = _Leftovers([_result("old-1", CancelOutcome.CANCELLED),
                       _result("old-2", CancelOutcome.ALREADY_DONE)])
    session.connectors = {"binance": conn}  # type: ignore[dict-item]
    assert await session._cancel_leftovers()
    assert conn.timeouts == [2.0]  # bounded by the runner's cancel_timeout
    text = out.getvalue()
    assert "binance: order old-1 (BTC-USDT) left by the last run: cancelled" in text
    assert "old-2 (BTC-USDT) left by the last run: already_done" in text
    assert "old-1" in caplog.text  # in the log as well
    assert not session.leftovers_refused
    session.connectors = {}
    assert session.snapshot()["leftovers"] == {"cancelled": 2, "not_cancelled": []}


async def test_an_order_that_cannot_be_cancelled_is_named_and_the_strategy_does_not_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    session, out = _session()
    session.connectors = {"binance": _Leftovers([  # type: ignore[dict-item]
        _result("old-1", CancelOutcome.CANCELLED),
        _result("stuck-9", CancelOutcome.TIMED_OUT, "not confirmed")])}
    assert not await session._cancel_leftovers()
    assert session.leftovers_refused and "could not be cancelled" in session.reason
    err = capsys.readouterr().err
    assert "error: not starting the strategy next to 1 orders" in err and "stuck-9" in err
    assert "start_with_uncancelled_orders" in err
    assert "stuck-9 (BTC-USDT) left by the last run: NOT cancelled: timed_out" in out.getvalue()
    session._print_summary([])
    assert "orders left by the last run: 1 cancelled at the start; NOT cancelled: stuck-9 (timed_out)" in (
        out.getvalue())


async def test_the_config_switch_starts_beside_an_uncancelled_order() -> None:
    session, out = _session("  start_with_uncancelled_orders: true")
    session.connectors = {"binance": _Leftovers([_result("stuck-9", CancelOutcome.FAILED, "refused")])}  # type: ignore[dict-item]
    assert await session._cancel_leftovers()
    assert not session.leftovers_refused and "starting beside 1 uncancelled orders" in out.getvalue()


# -- the strategy stopping itself ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _BrokenParams:
    connector: str
    trading_pair: str

    def markets(self) -> list[tuple[str, str]]:
        return [(self.connector, self.trading_pair)]

    def problems(self) -> list[tuple[str, str]]:
        return []


class _Broken(Strategy):
    """Places one resting order, then fails every tick."""

    name = "broken"

    def __init__(self, params: _BrokenParams) -> None:
        self.params = params
        self.placed = False

    def on_tick(self, ctx: StrategyContext) -> None:
        if not self.placed:
            bid = ctx.best_bid(self.params.connector, self.params.trading_pair)
            if bid is None:
                return
            from decimal import Decimal

            pair = self.params.trading_pair
            ctx.buy(self.params.connector, pair, Decimal("0.001"), price=bid * Decimal("0.9"))
            self.placed = True
            return
        raise RuntimeError("bug in my strategy")


def test_too_many_strategy_errors_end_the_session_with_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit F-7: the runner stopped after max_consecutive_errors, but `run` kept the connectors and
    the live view up until --duration (or forever) and exited 0."""
    monkeypatch.setenv("MARKETLINK_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(REGISTRY._entries, "broken", StrategyEntry("broken", _BrokenParams, _Broken, ""))
    config = tmp_path / "broken.yml"
    config.write_text("strategy: broken\nconnectors:\n  binance:\n    trading_pairs: [BTC-USDT]\n"
                      "runner:\n  tick_interval: 0.1\n  max_consecutive_errors: 2\n"
                      "parameters:\n  connector: binance\n  trading_pair: BTC-USDT\n")
    result = CliRunner().invoke(app, ["run", str(config), "--sandbox", "--duration", "60"])
    assert result.exit_code == EXIT_STRATEGY_FAILED, result.output
    out = result.output
    assert "summary of bot 'broken' (the strategy stopped: 2 consecutive errors" in out
    assert "duration reached" not in out
    assert "ERROR: the strategy stopped itself" in out
    assert "error: the strategy stopped after too many errors: 2 consecutive errors" in out
    assert "all orders cancelled" in out  # its order was cancelled, as on a normal stop
    assert re.search(r"^  orders: 1 \(1 canceled\)", out, re.M), out


# -- one journal bot per connector ---------------------------------------------------------------------


def test_each_connector_is_its_own_bot_and_the_first_on_a_venue_keeps_the_name() -> None:
    ids = journal_identities({"a": "binance", "b": "binance", "c": "Bybit"}, "two")
    assert ids == {"a": ("two", "binance"), "b": ("two/b", "binance"), "c": ("two", "bybit")}
    assert journal_identities({"solo": "binance"}, "mm") == {"solo": ("mm", "binance")}  # unchanged
    assert journal_identities({"a": "binance"}, "mm", sandbox_url="http://127.0.0.1:1") == {
        "a": ("mm", "binance@sandbox")}


def test_two_connectors_on_one_venue_are_summed_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit F-9: both connectors were one bot, so each restored the other's orders and the summary
    printed the same totals once per connector."""
    home = tmp_path / "home"
    monkeypatch.setenv("MARKETLINK_HOME", str(home))
    config = tmp_path / "two.yml"
    config.write_text(
        "strategy: pure_market_making\nconnectors:\n"
        "  a:\n    venue: binance\n    trading_pairs: [BTC-USDT]\n"
        "  b:\n    venue: binance\n    trading_pairs: [ETH-USDT]\n"
        "parameters:\n  connector: b\n  trading_pair: ETH-USDT\n  bid_spread: 1\n  ask_spread: 1\n"
        "  order_amount: 0.1\n  order_refresh_time: 600\n")
    result = CliRunner().invoke(app, ["run", str(config), "--sandbox", "--duration", "1.5"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^  a: orders: 0 ", result.output, re.M), result.output
    assert re.search(r"^  b: orders: 2 ", result.output, re.M), result.output
    with Journal.open(home / "journal.db") as journal:
        bots = {b.name: b for b in journal.bots()}
        assert set(bots) == {"two", "two/b"}
        assert bots["two"].client_id_instance != bots["two/b"].client_id_instance
        assert len(journal.orders(bots["two"].bot_id)) == 0 and len(journal.orders(bots["two/b"].bot_id)) == 2
    history = CliRunner().invoke(app, ["history", "--bot", "two"])
    assert history.exit_code == 0, history.output  # both of the bot's journal ids, each summed once
    assert history.output.count("orders:") == 2 and "orders: 2 (2 canceled)" in history.output


# -- a failing journal, shown ------------------------------------------------------------------------


def test_a_failing_journal_write_is_shown_in_the_status_and_the_summary() -> None:
    session, out = _session()
    stats = SimpleNamespace(write_retries=3, rows_pending=11, last_error="OperationalError: disk is full")
    session.recorders = [SimpleNamespace(stats=stats)]  # type: ignore[list-item]
    snap: dict[str, Any] = session.snapshot()
    assert snap["journal"] == {"failing": True, "write_failures": 3, "rows_pending": 11,
                               "last_error": "OperationalError: disk is full"}
    assert "JOURNAL-FAILING rows_pending=11 (OperationalError: disk is full)" in status_line(snap)
    view = io.StringIO()
    Console(file=view, width=200).print(status_view(snap))
    assert "journal writes failing (3 attempts, 11 rows kept and retried)" in view.getvalue()
    session._print_summary([])
    assert "journal: 3 failed writes (kept and retried); 11 rows still unwritten" in out.getvalue()
    stats.last_error = None
    assert "JOURNAL" not in status_line(session.snapshot())


# -- an IP ban outliving the run that saw it -----------------------------------------------------


async def test_a_ban_an_earlier_run_saw_refuses_the_next_start_and_stays_recorded(tmp_path: Path) -> None:
    """A supervisor restarting the bot during a ban must not call the banned API again."""
    sandbox = Sandbox(SandboxConfig(markets=("BTC-USDT",), flow=False))
    await sandbox.start()
    try:
        rest = VENUES.lookup("binance").local_endpoints(sandbox.base_url).rest
        until = time.time() + 600
        record_ban(tmp_path, rest, until)
        demo = sandbox.demo_credentials
        session = Session(
            parse_config(PMM.format(runner="")), "b", Console(file=io.StringIO(), width=200), sandbox=False,
            credentials={"binance": Credentials(demo.api_key, demo.api_secret)}, home=tmp_path,
            sandbox_url=sandbox.base_url, start_timeout=5.0,
        )
        with pytest.raises(IpBanned) as info:
            await session.run(1.0)
        assert info.value.local and "recorded by an earlier run" in str(info.value)
        recorded = ban_until(tmp_path, rest)
        assert recorded is not None and abs(recorded - until) < 5  # kept for the run after
    finally:
        await sandbox.stop()


def test_a_ban_is_recorded_the_moment_it_shows_in_the_status(tmp_path: Path) -> None:
    """Not at shutdown only: a SIGKILL after a grace period would lose it."""
    session, _ = _session()
    session.home = tmp_path
    until = time.time() + 120
    conn = SimpleNamespace(name="binance", ip_ban_until=lambda: until,
                           ctx=SimpleNamespace(endpoints=SimpleNamespace(rest="https://api.binance.com")))
    session._on_status(conn, OrderCreated.__new__(OrderCreated))  # type: ignore[arg-type]  # not a status
    assert ban_until(tmp_path, "https://api.binance.com") is None
    changed = ConnectorStatusChanged(time.time(), "binance", False, (("trading", "IP banned"),))
    session._on_status(conn, changed)  # type: ignore[arg-type]
    assert ban_until(tmp_path, "https://api.binance.com") == until
