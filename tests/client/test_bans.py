"""The IP-ban record: what one run saw, the next run obeys; nothing else survives in it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from marketlink.client.bans import BANS_FILE, MAX_BAN_SECONDS, ban_until, record_ban

URL, OTHER = "https://api.binance.com", "https://testnet.binance.vision"


def test_a_recorded_ban_holds_until_it_ends_and_only_expiry_removes_it(tmp_path: Path) -> None:
    assert ban_until(tmp_path, URL, now=1000.0) is None
    record_ban(tmp_path, URL, 1120.0, now=1000.0)
    record_ban(tmp_path, OTHER, 1500.0, now=1000.0)
    assert ban_until(tmp_path, URL, now=1000.0) == 1120.0
    assert ban_until(tmp_path, URL, now=1120.0) is None  # over
    assert ban_until(tmp_path, OTHER, now=1200.0) == 1500.0  # each host its own
    # A connector that saw no ban (another one on the same IP did) erases nothing ...
    record_ban(tmp_path, URL, None, now=1001.0)
    record_ban(tmp_path, URL, 1050.0, now=1001.0)  # ... nor does an earlier end shorten it
    assert ban_until(tmp_path, URL, now=1001.0) == 1120.0
    record_ban(tmp_path, URL, 1300.0, now=1001.0)  # a longer one lengthens it
    assert ban_until(tmp_path, URL, now=1001.0) == 1300.0
    record_ban(tmp_path, OTHER, None, now=1600.0)  # both over: the record empties
    assert json.loads((tmp_path / BANS_FILE).read_text()) == {}
    assert [p.name for p in tmp_path.iterdir()] == [BANS_FILE]  # no temporary file left


def test_expired_entries_are_dropped_and_no_file_is_made_for_nothing(tmp_path: Path) -> None:
    record_ban(tmp_path, URL, None, now=1000.0)
    record_ban(tmp_path, URL, 999.0, now=1000.0)  # already over
    assert not (tmp_path / BANS_FILE).exists()
    record_ban(tmp_path, URL, 1010.0, now=1000.0)
    record_ban(tmp_path, OTHER, 2000.0, now=1500.0)  # URL's ban ended meanwhile
    assert json.loads((tmp_path / BANS_FILE).read_text()) == {OTHER: 2000.0}


def test_a_ban_longer_than_any_venue_gives_is_ignored_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record_ban(tmp_path, URL, 1000.0 + 1_793_543_120, now=1000.0)  # milliseconds taken for seconds
    with caplog.at_level(logging.WARNING, logger="marketlink.client.bans"):
        assert ban_until(tmp_path, URL, now=1000.0) is None
    assert str(tmp_path / BANS_FILE) in caplog.text
    record_ban(tmp_path, OTHER, 1000.0 + MAX_BAN_SECONDS - 1, now=1000.0)
    assert ban_until(tmp_path, OTHER, now=1000.0) is not None  # three days: a real one


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", json.dumps({URL: "soon", OTHER: True, "x": float("nan")})]
)
def test_an_unreadable_record_or_entry_is_ignored(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / BANS_FILE).write_text(content)
    with caplog.at_level(logging.WARNING, logger="marketlink.client.bans"):
        assert ban_until(tmp_path, URL, now=0.0) is None
        assert ban_until(tmp_path, OTHER, now=0.0) is None
    record_ban(tmp_path, URL, 10.0, now=0.0)  # rewritten whole, readable again
    assert ban_until(tmp_path, URL, now=0.0) == 10.0
