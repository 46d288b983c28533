"""``marketlink run CONFIG --sandbox-url``: the real CLI session in a subprocess, killed with SIGKILL
mid-run and restarted, against a sandbox that outlives it (audit F-11).

The sandbox runs in this test's event loop on 127.0.0.1 (port picked by the OS); the bot is a
separate process, as a user runs it. After the kill the sandbox's market flow is paused, so the
orders the dead run left open stay open: the restart must cancel every one of them (confirmed)
before its strategy quotes (audit F-1). At the end the journal is compared with the sandbox's own
records of the account: every venue order is in the journal with the same final state, and the
journal's fills are exactly the venue's trades, none lost, none doubled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from marketlink.journal import Journal
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox

PAIR, SYMBOL = "BTC-USDT", "BTCUSDT"
KEY, SECRET = "crash-test-key-0123456789", "crash-test-secret-0123456789"
BOT = "crashbot"

# Two levels at the touch (filled by the flow within seconds), refreshed rarely so they rest.
CONFIG = """\
strategy: pure_market_making
connectors:
  binance:
    trading_pairs: [BTC-USDT]
runner:
  tick_interval: 0.2
  cancel_timeout: 5
parameters:
  connector: binance
  trading_pair: BTC-USDT
  bid_spread: 0
  ask_spread: 0
  order_amount: 0.01
  order_levels: 2
  order_level_spread: 0.002
  order_refresh_time: 30
  price_source: best
"""

_STATUS = {"NEW": "OPEN", "PARTIALLY_FILLED": "PARTIALLY_FILLED", "FILLED": "FILLED",
           "CANCELED": "CANCELED", "EXPIRED": "EXPIRED"}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETLINK_")}
    env.update(MARKETLINK_HOME=str(home), MARKETLINK_API_KEY=KEY, MARKETLINK_API_SECRET=SECRET,
               COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


async def _spawn(config: Path, url: str, home: Path, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketlink.cli.main", "run", str(config), "--sandbox-url", url, "--bot", BOT,
        *extra, env=_env(home), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _read_until(proc: asyncio.subprocess.Process, pattern: str, timeout: float) -> list[str]:
    """Lines of the bot's stdout up to the first matching ``pattern`` (bounded by ``timeout``)."""
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                raise AssertionError("the bot ended early:\n" + "".join(lines))
            lines.append(raw.decode())
            if re.search(pattern, lines[-1]):
                return lines


@pytest.mark.timeout(60)
async def test_a_killed_run_restarts_cancels_what_it_left_and_the_journal_matches_the_venue(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pmm.yml"
    config.write_text(CONFIG)
    home = tmp_path / "home"
    sandbox = Sandbox(SandboxConfig(markets=(PAIR,), seed=7, api_key=KEY, api_secret=SECRET))
    await sandbox.start()
    try:
        account = sandbox.demo_credentials.account
        ex = sandbox.exchange

        # Run 1: quoting, with fills and resting orders; then SIGKILL (no cleanup of any kind).
        first = await _spawn(config, sandbox.base_url, home)
        try:
            await _read_until(first, r"^t=.* orders=[1-9].* fills=[1-9]", timeout=20)
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        sandbox.flow.config = dataclasses.replace(sandbox.flow.config, enabled=False)
        left = {o.client_order_id for o in ex.open_orders(account, SYMBOL)}
        assert left, "the killed run left no order open: nothing to restore"

        # Run 2: the same bot restarts, cancels what run 1 left, quotes, stops cleanly.
        second = await _spawn(config, sandbox.base_url, home, "--duration", "1.5")
        out_b, err_b = await asyncio.wait_for(second.communicate(), 30)
        out, err = out_b.decode(), err_b.decode()
        assert second.returncode == 0, out + err
        assert "Traceback" not in err
        cancelled_at_start = set(re.findall(r"order (\S+) \(BTC-USDT\) left by the last run: cancelled", out))
        assert cancelled_at_start == left, out
        assert f"orders left by the last run: {len(left)} cancelled at the start" in out
        assert out.index("left by the last run") < out.index("running pure_market_making")
        assert "all orders cancelled" in out
        assert ex.open_orders(account, SYMBOL) == []

        # The journal against the venue's records of the account.
        with Journal.open(home / "journal.db") as journal:
            bots = [b for b in journal.bots() if b.name == BOT]
            assert [b.venue for b in bots] == ["binance@sandbox"]  # apart from any live bot
            bot_id = bots[0].bot_id
            assert journal.restore_orders(bot_id, "binance") == []  # nothing left to restore
            recorded = {o.client_order_id: o for o in journal.orders(bot_id)}
            fills = journal.fills(bot_id)
        venue_orders = {o.client_order_id: o for o in ex.all_orders(account, SYMBOL, limit=1000)}
        assert set(venue_orders) <= set(recorded)
        for cid, v in venue_orders.items():
            assert recorded[cid].state == _STATUS[v.status.value], (cid, v.status, recorded[cid].state)
            assert recorded[cid].executed_base == v.executed_qty
        for cid in left:
            assert venue_orders[cid].status.value == "CANCELED"
        trades = ex.my_trades(account, SYMBOL, limit=1000)
        assert trades, "no fill happened: the comparison would prove nothing"
        journal_trades = sorted((f.trade_id, f.amount) for f in fills)
        assert len(journal_trades) == len(set(journal_trades))  # none doubled
        assert journal_trades == sorted((str(t.trade_id), t.qty) for t in trades)  # none lost
        assert sum((f.amount for f in fills), Decimal(0)) == sum((t.qty for t in trades), Decimal(0))
    finally:
        await sandbox.stop()
