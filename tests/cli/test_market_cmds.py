"""``marketlink balance``, ``ticker`` and ``book`` on the embedded sandbox (``--sandbox``), in one
look and live, with plain lines when the output is not a terminal; and the one-line refusals."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from marketlink.cli.main import app

D = Decimal


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARKETLINK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARKETLINK_PASSWORD", "test password")
    return tmp_path / "home"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_balance_on_the_sandbox_lists_the_demo_account() -> None:
    result = invoke("balance", "--sandbox")
    assert result.exit_code == 0, result.output
    lines = dict(re.findall(r"^(\w+) total=([\d.]+) available=[\d.]+$", result.output, re.M))
    assert D(lines["BTC"]) > 0 and D(lines["USDT"]) > 0


def test_balance_without_stored_keys_is_one_line() -> None:
    result = invoke("balance")
    assert result.exit_code == 1
    assert "error: no keys stored for binance" in result.output
    assert "marketlink connect binance" in result.output
    assert "Traceback" not in result.output


def test_ticker_shows_an_uncrossed_top_of_book() -> None:
    result = invoke("ticker", "btc-usdt", "--sandbox", "--seed", "3")
    assert result.exit_code == 0, result.output
    m = re.search(r"^BTC-USDT bid=([\d.]+) ask=([\d.]+) mid=([\d.]+) spread=([\d.]+)", result.output, re.M)
    assert m, result.output
    bid, ask, mid, spread = (D(x) for x in m.groups())
    assert bid < mid < ask and spread == ask - bid


def test_book_prints_depth_levels_in_order() -> None:
    result = invoke("book", "BTC-USDT", "--sandbox", "--depth", "3")
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.output.splitlines()[2:]]
    assert len(rows) == 3
    bids = [D(r[1]) for r in rows]
    asks = [D(r[2]) for r in rows]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]


def test_live_ticker_and_book_print_plain_lines_until_the_duration() -> None:
    ticker = invoke("ticker", "BTC-USDT", "--sandbox", "--live", "--duration", "1.5")
    assert ticker.exit_code == 0, ticker.output
    lines = ticker.output.strip().splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("BTC-USDT bid=") for line in lines)
    assert "\x1b[" not in ticker.output
    book = invoke("book", "BTC-USDT", "--sandbox", "--live", "--duration", "1", "--depth", "2")
    assert book.exit_code == 0, book.output
    first = book.output.splitlines()[0]
    level = r"[\d.]+x[\d.]+"
    assert re.fullmatch(rf"BTC-USDT bids {level} {level} \| asks {level} {level}", first)


@pytest.mark.parametrize("args, message", [
    (("ticker", "BTCUSDT", "--sandbox"), "error:"),
    (("book", "BTC-USDT", "--venue", "nowhere"), "error:"),
])
def test_mistakes_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
