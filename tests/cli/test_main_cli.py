"""The ``marketlink`` command's entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from marketlink import __version__
from marketlink.cli.main import app

runner = CliRunner()


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"marketlink {__version__}"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output and "sandbox" in result.output



_FORCED_TRACEBACK = """
import typer

_init = typer.Typer.__init__


def _old_default(self, *args, **kwargs):  # Typer < 0.23 showed locals unless told otherwise
    kwargs.setdefault("pretty_exceptions_show_locals", True)
    _init(self, *args, **kwargs)


typer.Typer.__init__ = _old_default

import marketlink.client.keystore as keystore


def _boom(self, venue, credentials, password):
    raise RuntimeError("forced failure with secrets in scope")


keystore.KeyStore.put = _boom
from marketlink.cli.main import app

app(["connect", "binance", "--from-env", "--no-check"], prog_name="marketlink")
"""


def test_a_forced_traceback_never_prints_a_key_secret_or_password(tmp_path: Path) -> None:
    """Audit F-8: with Typer's old default (locals shown), a traceback out of ``connect`` printed
    ``api_key = '...'`` and ``secret = '...'``. The app says ``pretty_exceptions_show_locals=False``
    itself, so whatever Typer's default, a traceback shows code, never values."""
    key, secret, password = "AKEYvisible0123456789WXYZ", "SUPERSECRETvalue0123456789", "pw-0123456789-pw"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKETLINK_", "_TYPER"))}
    env.update(MARKETLINK_HOME=str(tmp_path / "home"), MARKETLINK_API_KEY=key, MARKETLINK_API_SECRET=secret,
               MARKETLINK_PASSWORD=password, COLUMNS="200", TERM="dumb")
    done = subprocess.run([sys.executable, "-c", _FORCED_TRACEBACK], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "forced failure with secrets in scope" in out  # a traceback was printed
    for value in (key, secret, password, key[-12:], secret[-12:]):
        assert value not in out, out
