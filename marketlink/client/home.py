"""Where marketlink keeps a user's files: ``$MARKETLINK_HOME``, or ``~/.marketlink``.

One directory holds the key store and the default journal, so one setting moves both (a test,
a second account, a container volume) and one permission protects both: the directory is
created with mode 0700, because the journal names the user's orders and balances and the key
store, although encrypted, is still worth keeping from other local users.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

__all__ = ["HOME_ENV", "JOURNAL_FILE", "KEYSTORE_FILE", "journal_path", "keystore_path", "marketlink_home"]

log = logging.getLogger(__name__)

HOME_ENV = "MARKETLINK_HOME"
KEYSTORE_FILE = "keys.json"
JOURNAL_FILE = "journal.db"


def marketlink_home(env: Mapping[str, str] | None = None, *, create: bool = True) -> Path:
    """The config directory, created (mode 0700) when ``create``. An existing directory that
    other users can read is left as it is (it may be shared on purpose) but logged."""
    env = os.environ if env is None else env
    raw = env.get(HOME_ENV, "").strip()
    home = Path(raw).expanduser() if raw else Path.home() / ".marketlink"
    if create and not home.exists():
        home.mkdir(mode=0o700, parents=True)
        os.chmod(home, 0o700)  # mkdir's mode is filtered by the umask
    elif home.is_dir() and stat.S_IMODE(home.stat().st_mode) & 0o077:
        log.warning("%s is accessible to other users; chmod 700 it to keep your journal private", home)
    return home


def keystore_path(home: Path | None = None) -> Path:
    return (home or marketlink_home()) / KEYSTORE_FILE


def journal_path(home: Path | None = None) -> Path:
    return (home or marketlink_home()) / JOURNAL_FILE
