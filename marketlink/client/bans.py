"""IP bans outlive the process that earned them.

A venue's ban (Binance 418) is on the IP, not on the connector: a bot restarted by its supervisor
while the ban holds would call the banned API again at once, and Binance lengthens bans for
repeat offenders (2 minutes up to 3 days). The end of a ban a run saw is kept here, per REST base
URL, in epoch seconds (a process's monotonic clock means nothing to the next process), and the
next start refuses to send anything before it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

__all__ = ["BANS_FILE", "ban_until", "record_ban"]

log = logging.getLogger(__name__)

BANS_FILE = "bans.json"


def _load(path: Path) -> dict[str, float]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # unreadable: start as if no ban was known, and say so
        log.warning("ignoring the ban record %s: %s", path, exc)
        return {}
    if not isinstance(raw, dict):
        log.warning("ignoring the ban record %s: not an object", path)
        return {}
    return {
        k: float(v) for k, v in raw.items()
        if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def ban_until(home: Path, rest_url: str, now: float | None = None) -> float | None:
    """When the ban recorded for ``rest_url`` ends (epoch seconds), or ``None`` if none holds."""
    until = _load(home / BANS_FILE).get(rest_url)
    now = time.time() if now is None else now
    return until if until is not None and until > now else None


def record_ban(home: Path, rest_url: str, until: float | None, now: float | None = None) -> None:
    """Keep (or, with ``None``, forget) the ban on ``rest_url``; expired entries are dropped.
    Written whole to a temporary file and renamed, so a crash never leaves half a record."""
    path = home / BANS_FILE
    now = time.time() if now is None else now
    bans = {k: v for k, v in _load(path).items() if v > now and k != rest_url}
    if until is not None and until > now:
        bans[rest_url] = until
    if not bans and not path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(bans, sort_keys=True))
    os.replace(tmp, path)
