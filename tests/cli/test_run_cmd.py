"""``marketlink run``: the main job as a user runs it (a subprocess, no terminal), its journal
read back by ``marketlink history``, Ctrl-C (SIGINT) stopping it cleanly, and ``run CONFIG.yml``
on the sandbox."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marketlink.cli.run_cmd import _main_job_yaml, main_job_parameters
from marketlink.cli.status_cmd import MAIN_BOT, read_snapshot, status_path
from marketlink.strategy import parse_config

SEED = 7  # the flow trades through the touch about once a second with this seed


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETLINK_")}
    env.update(MARKETLINK_HOME=str(home), COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def _cli(*args: str, home: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "marketlink.cli.main", *args], env=_env(home),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _summary_count(text: str, what: str) -> int:
    match = re.search(rf"^  {what}: (\d+)", text, re.M)
    assert match, text
    return int(match.group(1))


def test_the_main_job_config_is_valid_and_quotes_from_the_touch() -> None:
    config = parse_config(_main_job_yaml())
    assert config.strategy == "pure_market_making"
    assert config.parameters.order_amount == main_job_parameters()["order_amount"]
    assert str(config.parameters.price_source) == "best"
    assert config.parameters.order_refresh_time <= 10


def test_main_job_fills_then_history_lists_the_fills(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _cli("run", "--duration", "5", "--seed", str(SEED), home=home)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Traceback" not in done.stderr
    assert "\x1b[" not in out  # not a terminal: no cursor movement, no colours
    assert re.search(r"^t=\s*\d+\.\ds BTC-USDT \d+\.\d+/\d+\.\d+ orders=\d+", out, re.M), out
    fills = _summary_count(out, "fills")
    assert fills > 0, out
    assert "all orders cancelled" in out
    assert re.search(r"inventory BTC: [\d.]+ -> [\d.]+", out)
    assert re.search(r"PnL BTC-USDT: -?[\d.]+ USDT", out)
    snap = read_snapshot(status_path(home, MAIN_BOT))
    assert snap is not None and snap["running"] is False and snap["fills"] >= 1

    hist = _cli("history", "--verbose", "--csv", str(tmp_path / "fills.csv"), home=home)
    assert hist.returncode == 0, hist.stdout + hist.stderr
    assert re.search(r"^fills: (\d+)", hist.stdout, re.M).group(1) == str(fills)  # type: ignore[union-attr]
    listed = [line for line in hist.stdout.splitlines() if " BTC-USDT " in line and " @ " in line]
    assert len(listed) == fills
    rows = (tmp_path / "fills.csv").read_text().splitlines()
    assert len(rows) == fills + 1 and rows[0].startswith("timestamp,venue,trading_pair")

    status = _cli("status", home=home)
    assert status.returncode == 0
    assert "no bot named 'main' is running" in status.stdout
    assert f"fills: {fills}" in status.stdout


def test_sigint_cancels_the_orders_prints_the_summary_and_exits_0(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "marketlink.cli.main", "run", "--seed", str(SEED)],
                            env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    try:
        # Wait for live lines that show an open order of ours, then interrupt.
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if re.match(r"t=.* orders=[1-9]", line):
                break
        assert any(re.match(r"t=.* orders=[1-9]", s) for s in seen), "".join(seen)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 0, out + err
    assert "stopping (interrupted)" in out
    assert "summary of bot 'main' (interrupted" in out
    assert "all orders cancelled" in out
    assert "Traceback" not in err
    assert _summary_count(out, "orders") >= 1


def test_run_a_config_file_on_the_sandbox(tmp_path: Path) -> None:
    config = tmp_path / "taker.yml"
    config.write_text(
        "strategy: periodic_taker\n"
        "connectors:\n  binance:\n    trading_pairs: [BTC-USDT]\n"
        "runner:\n  tick_interval: 0.2\n"
        "parameters:\n  connector: binance\n  trading_pair: BTC-USDT\n  side: buy\n"
        "  order_amount: 0.001\n  interval: 0.5\n  max_orders: 2\n"
    )
    home = tmp_path / "home"
    done = _cli("run", str(config), "--sandbox", "--duration", "3", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running periodic_taker as bot 'taker'" in done.stdout
    assert _summary_count(done.stdout, "fills") >= 2
    hist = _cli("history", "--bot", "taker", home=home)
    assert hist.returncode == 0 and re.search(r"^fills: [1-9]", hist.stdout, re.M), hist.stdout
    snap = json.loads(status_path(home, "taker").read_text())
    assert snap["strategy"] == "periodic_taker" and snap["running"] is False


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("strategy: pure_market_making\nconnectors: {binance: {trading_pairs: [BTC-USDT]}}\n"
                      "parameters: {connector: binance, trading_pair: BTC-USDT, bid_sprd: 1}\n")
    done = _cli("run", str(config), "--sandbox", home=tmp_path / "home", timeout=30)
    assert done.returncode == 2
    assert "error: parameters.bid_sprd: unknown key (did you mean 'bid_spread'?)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["run", "--duration", "-1"]])
def test_a_negative_duration_is_refused(tmp_path: Path, args: list[str]) -> None:
    done = _cli(*args, home=tmp_path / "home", timeout=30)
    assert done.returncode == 2


def test_main_job_in_process_writes_a_stopped_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from marketlink.cli.main import app

    monkeypatch.setenv("MARKETLINK_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["run", "--duration", "3", "--seed", str(SEED), "--bot", "inproc"])
    assert result.exit_code == 0, result.output
    assert "summary of bot 'inproc' (duration reached" in result.output
    assert "starting ... " in result.output
    snap = read_snapshot(status_path(tmp_path / "home", "inproc"))
    assert snap is not None and snap["running"] is False and snap["stop_reason"] == "duration reached"
    assert snap["orders_placed"] >= 2
