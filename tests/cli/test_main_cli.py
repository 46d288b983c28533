"""The ``marketlink`` command's entry points and the interim main job."""

from __future__ import annotations

import io
import re

from rich.console import Console
from typer.testing import CliRunner

from marketlink import __version__
from marketlink.cli.demo import run_demo
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


def test_the_interim_main_job_quotes_on_the_sandbox_and_balances_agree() -> None:
    out = io.StringIO()
    status = run_demo(duration=2.0, seed=3, console=Console(file=out, width=300))
    text = out.getvalue()
    assert status == 0, text
    assert "balances agree with the exchange" in text
    created = int(re.search(r"done: (\d+) orders created", text).group(1))  # type: ignore[union-attr]
    assert created >= 2  # one bid and one ask at least
    assert re.search(r"t=\s*1\.\ds bid=\d", text)  # plain lines when stdout is not a terminal
