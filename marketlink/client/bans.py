"""IP bans outlive the process that earned them.

A venue's ban (Binance 418) is on the IP, not on the connector: a bot restarted by its supervisor
while the ban holds would call the banned API again at once, and Binance lengthens bans for
repeat offenders (2 minutes up to 3 days). The end of a ban a run saw is kept here, per REST base
URL, in epoch seconds (a process's monotonic clock means nothing to the next process), and the
next start refuses to send anything before it.

Entries are only ever added or lengthened, and leave by expiring: several connectors (or bots
sharing a home) share the IP but not their view of the ban, so one that saw none must not erase
what another saw. A value further ahead than any ban a venue gives is taken for garbage.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

__all__ = ["BANS_FILE", "MAX_BAN_SECONDS", "ban_until", "record_ban"]

log = logging.getLogger(__name__)

BANS_FILE = "bans.json"
#: Binance's longest ban is 3 days; a record further ahead is a mistake (ms for s, say), not a ban
MAX_BAN_SECONDS = 3 * 86_400 + 3_600


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
    path = home / BANS_FILE
    until = _load(path).get(rest_url)
    now = time.time() if now is None else now
    if until is None or until <= now:
        return None
    if until - now > MAX_BAN_SECONDS:
        log.warning("ignoring the ban on %s in %s: it ends %.0fs from now, longer than any ban",
                    rest_url, path, until - now)
        return None
    return until


def record_ban(home: Path, rest_url: str, until: float | None, now: float | None = None) -> None:
    """Keep the ban on ``rest_url`` (the later end wins); ``None`` records nothing new. Expired
    entries are dropped. Written whole to a file of its own and renamed over the record, so
    neither a crash nor a second writer leaves half a record."""
    path = home / BANS_FILE
    now = time.time() if now is None else now
    old = _load(path)
    bans = {k: v for k, v in old.items() if v > now}
    if until is not None and until > bans.get(rest_url, now):
        bans[rest_url] = until
    if bans == old:
        return
    fd, tmp = tempfile.mkstemp(prefix=".bans-", suffix=".json", dir=home)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(bans, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
