"""The ``marketlink`` command's entry points."""

from __future__ import annotations

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

