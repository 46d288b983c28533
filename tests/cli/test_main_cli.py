"""The ``marketlink`` command's entry points and the interim main job."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from marketlink import __version__
from marketlink.cli.demo import DemoStats, _build, _snapshot, run_demo, step
from marketlink.cli.main import app

runner = CliRunner()


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"marketlink {__version__}"


def test_help_lists_the_run_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output


def test_demo_mirrors_the_exchange_book_exactly() -> None:
    out = io.StringIO()
    status = run_demo(duration=6.0, seed=3, realtime=False, console=Console(file=out, width=200))
    text = out.getvalue()
    assert status == 0
    assert "agrees with the exchange (0 mismatches" in text
    assert "t=  6.0s" in text  # plain lines when not a terminal


def test_demo_resyncs_after_a_lost_diff() -> None:
    exchange, flow, book, _ = _build(seed=5)
    stats = DemoStats()
    _snapshot(exchange, book, stats)
    now = 1_700_000_000_000
    step(exchange, flow, book, stats, now)
    # Lose one diff on the way: the next one no longer continues the sequence.
    flow.step(now + 100)
    assert exchange.drain_depth_changes("BTCUSDT") is not None
    for i in range(2, 40):
        step(exchange, flow, book, stats, now + i * 100)
    assert stats.resyncs >= 2
    assert book.in_sync
    truth = exchange.depth("BTCUSDT", None)
    assert dict(truth.bids) == book.to_dict()["bids"]
    assert dict(truth.asks) == book.to_dict()["asks"]
