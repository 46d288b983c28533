"""``marketlink sandbox``: help, a bounded run that prints URLs and credentials, refusals with a
reason, Rich output on a terminal, and a clean stop on SIGINT in a real process."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from marketlink.cli.main import app
from marketlink.cli.sandbox_cmd import ADMIN_TOKEN_ENV, announce, serve
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox

runner = CliRunner()


def lines(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


def test_help_documents_the_options() -> None:
    result = runner.invoke(app, ["sandbox", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--markets", "--seed", "--no-flow", "--accounts", "--api-key",
                   "--api-secret", "--admin-token", "--allow-remote", "--duration"):
        assert option in result.output
    assert "sandbox" in runner.invoke(app, ["--help"]).output


def test_a_bounded_run_prints_urls_and_the_given_credentials() -> None:
    args = ["sandbox", "--duration", "0.2", "--markets", "btc-usdt,ETH-USDT", "--seed", "3", "--no-flow",
            "--api-key", "script-key", "--api-secret", "script-secret"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    shown = lines(result.output)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", shown["REST"])
    assert shown["WebSocket"] == shown["REST"].replace("http://", "ws://")
    assert shown["Markets"] == "BTC-USDT, ETH-USDT"
    assert shown["Flow"] == "off"
    assert shown["Demo account"] == "demo"
    assert (shown["API key"], shown["API secret"]) == ("script-key", "script-secret")
    assert "Admin" not in shown
    assert result.output.rstrip().endswith("sandbox stopped")


def test_random_credentials_and_admin_from_the_environment(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[[accounts]]\nname = "alice"\nbalances = { BTC = "1" }\n')
    result = runner.invoke(
        app, ["sandbox", "--duration", "0.1", "--markets", "BTC-USDT", "--accounts", str(accounts)],
        env={ADMIN_TOKEN_ENV: "env-admin-token"},
    )
    assert result.exit_code == 0, result.output
    shown = lines(result.output)
    assert re.fullmatch(r"[0-9a-f]{64}", shown["API key"])
    assert re.fullmatch(r"[0-9a-f]{64}", shown["API secret"])
    assert shown["Admin"] == f"{shown['REST']}/admin (header X-Admin-Token)"
    assert shown["Flow"] == "on, rate 1"
    assert "env-admin-token" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "refusing to listen on '0.0.0.0'"),
        (["--markets", "BTCUSDT"], "not a BASE-QUOTE"),
        (["--api-key", "k"], "both api_key and api_secret"),
        (["--accounts", "/nonexistent/accounts.toml"], "cannot read accounts file"),
        (["--admin-token", "short"], "admin_token"),
    ],
)
def test_refusals_exit_2_with_the_reason(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sandbox", "--duration", "0.1", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "REST" not in result.stdout


async def test_serve_stops_after_the_duration(capsys: pytest.CaptureFixture[str]) -> None:
    await serve(SandboxConfig(markets=("BTC-USDT",), flow=False, api_key="k", api_secret="s"), duration=0.05)
    out = capsys.readouterr().out
    assert "API secret: s" in out and "Press Ctrl-C to stop." in out


def test_rich_table_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setenv("COLUMNS", "160")
    sb = Sandbox(SandboxConfig(markets=("ETH-BTC",), api_key="tty-key", api_secret="tty-secret"), [])
    announce(sb)
    text = screen.getvalue()
    assert "marketlink sandbox" in text
    assert "tty-key" in text and "tty-secret" in text and "ETH-BTC" in text
    assert "Press Ctrl-C to stop." in text


def test_sigint_stops_a_real_process_cleanly() -> None:
    code = "from marketlink.cli.main import app; app()"
    args = ["sandbox", "--markets", "BTC-USDT", "--api-key", "sig-key", "--api-secret", "sig-secret"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:  # ends at EOF if the process dies early
            seen.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        shown = lines("".join(seen))
        assert shown["API key"] == "sig-key", seen
        _check_reachable(shown["REST"])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip() == "sandbox stopped"
    assert "Traceback" not in err


def _check_reachable(base_url: str) -> None:
    """The announced URL answers while the process runs (any HTTP status will do)."""
    import asyncio

    async def probe() -> int:
        async with aiohttp.ClientSession() as s, s.get(base_url + "/") as r:
            return r.status

    assert asyncio.run(probe()) in (200, 404)
