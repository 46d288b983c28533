"""The key store: venue API keys at rest, encrypted under a password.

Design, and why:

* **scrypt → AES-256-GCM, per entry.** Each venue's entry has its own random salt and nonce, so
  re-storing one key never reuses a nonce and entries share nothing an attacker could
  correlate. scrypt (n=2^16, r=8, p=1: 64 MiB and ~170 ms per unlock) makes guessing a
  password expensive; GCM makes any change to the file detectable.
* **The venue name is the associated data**, so an entry copied under another venue's name
  fails to decrypt instead of sending Binance keys to another venue.
* **A wrong password is a ``WrongPassword`` error**, never a traceback and never a guess: GCM
  cannot tell a wrong password from a tampered file, and the message says so.
* **Only a hint is in clear**: the key's last four characters and its kind, so ``connect
  --list`` works without the password and a human can tell two keys apart.
* **Atomic, private writes.** The file is written to a temporary file with mode 0600 in the
  same directory, flushed, then renamed over the old one: a crash leaves the old store or the
  new one, never half of either.
* **KDF parameters are stored per entry** (so they can be raised later) but only read within
  bounds: a tampered file cannot make an unlock take minutes or gigabytes. scrypt needs
  128·r·n bytes and p times that work, so an entry is refused unless 128·r·n <= 256 MiB and
  p <= 4: at most 256 MiB and about four 256 MiB derivations (a few seconds on a laptop core).
* **A malformed file is a ``KeyStoreError``** (one line for the CLI), never a ``ValueError``
  from a field: a traceback could carry a secret in its locals.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from marketlink.core.credentials import Credentials
from marketlink.core.errors import ConfigError, MarketlinkError

__all__ = [
    "DEFAULT_SCRYPT_N",
    "MAX_SCRYPT_MEMORY",
    "MAX_SCRYPT_P",
    "PASSWORD_ENV",
    "KeyEntry",
    "KeyStore",
    "KeyStoreError",
    "NoSuchKey",
    "WrongPassword",
    "password_from_env",
    "scrypt_cost_problem",
]

PASSWORD_ENV = "MARKETLINK_PASSWORD"
DEFAULT_SCRYPT_N = 2**16  # ~170 ms and 64 MiB per unlock on a 2024 laptop core
_MIN_N, _MAX_N = 2**10, 2**20
#: The most an unlock may cost: scrypt's memory is 128·r·n bytes, its time that times p.
MAX_SCRYPT_MEMORY = 256 * 2**20
MAX_SCRYPT_P = 4
_MAX_R = 32
_FORMAT = "marketlink-keystore"
_VERSION = 1
_AAD_PREFIX = b"marketlink-keystore/v1/venue="


class KeyStoreError(MarketlinkError):
    """The key store cannot be read or written (corrupt file, bad permissions)."""


class WrongPassword(KeyStoreError):
    """The password does not open the entry (or the entry was altered: GCM cannot tell which)."""


class NoSuchKey(KeyStoreError):
    """No keys are stored for this venue."""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """What is known of a stored key without the password."""

    venue: str
    key_hint: str
    kind: str  # "hmac" or "ed25519"
    created: float


def password_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The password for scripts (``MARKETLINK_PASSWORD``); None when unset or empty."""
    value = (os.environ if env is None else env).get(PASSWORD_ENV)
    return value or None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyStoreError(f"key store entry: {what} is missing")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise KeyStoreError(f"key store entry: {what} is not base64") from None


def scrypt_cost_problem(n: object, r: object, p: object) -> str | None:
    """Why these scrypt parameters are refused, or None when an unlock with them stays within
    ``MAX_SCRYPT_MEMORY`` and ``MAX_SCRYPT_P`` times that work."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p)):
        return "n, r and p must be whole numbers"
    assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
    if not _MIN_N <= n <= _MAX_N or n & (n - 1):
        return f"n={n} is not a power of two in [{_MIN_N}, {_MAX_N}]"
    if not 1 <= r <= _MAX_R:
        return f"r={r} is not in [1, {_MAX_R}]"
    if not 1 <= p <= MAX_SCRYPT_P:
        return f"p={p} is not in [1, {MAX_SCRYPT_P}]"
    if 128 * r * n > MAX_SCRYPT_MEMORY:
        return f"n={n}, r={r} need {128 * r * n // 2**20} MiB (at most {MAX_SCRYPT_MEMORY // 2**20} MiB)"
    return None


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    problem = scrypt_cost_problem(n, r, p)
    if problem is not None:  # the last gate before the memory and time are spent
        raise KeyStoreError(f"scrypt parameters out of bounds: {problem}")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode("utf-8"))


def _check_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise ConfigError("the key store password must be a non-empty string")
    return password


class KeyStore:
    """The encrypted keys of one user, in one JSON file (``keys.json`` in the marketlink home)."""

    def __init__(self, path: str | Path, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> None:
        problem = scrypt_cost_problem(scrypt_n, 8, 1)
        if problem is not None:
            raise ConfigError(f"scrypt_n: {problem}")
        self.path = Path(path).expanduser()
        self.scrypt_n = scrypt_n

    def __repr__(self) -> str:
        return f"<KeyStore {self.path}>"

    # -- file -------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": _FORMAT, "version": _VERSION, "entries": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"cannot read the key store {self.path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(
            data.get("entries"), dict
        ):
            raise KeyStoreError(f"{self.path} is not a marketlink key store")
        if data.get("version") != _VERSION:
            raise KeyStoreError(f"{self.path}: key store version {data.get('version')!r} is not supported")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- entries ----------------------------------------------------------------------------------

    def entries(self) -> list[KeyEntry]:
        """Every stored venue with its key hint, sorted; no password needed."""
        return [self._entry(venue, e) for venue, e in sorted(self._load()["entries"].items())]

    def _entry(self, venue: str, e: object) -> KeyEntry:
        if not isinstance(e, dict):
            raise KeyStoreError(f"{self.path}: key store entry {venue!r} is malformed")
        hint, kind, created = e.get("key_hint", "…"), e.get("kind", "?"), e.get("created", 0.0)
        if not isinstance(hint, str) or not isinstance(kind, str):
            raise KeyStoreError(f"{self.path}: key store entry {venue!r}: key_hint and kind must be text")
        if isinstance(created, bool) or not isinstance(created, int | float) or not math.isfinite(created):
            raise KeyStoreError(f"{self.path}: key store entry {venue!r}: created is not a time")
        return KeyEntry(venue, hint, kind, float(created))

    def __contains__(self, venue: object) -> bool:
        return isinstance(venue, str) and venue in self._load()["entries"]

    def put(self, venue: str, credentials: Credentials, password: str) -> KeyEntry:
        """Store (or replace) ``venue``'s keys. When the store already holds entries (this
        venue's included), the password must open them: one store, one password, so a typo
        cannot split it in two or silently re-key it."""
        password = _check_password(password)
        if not isinstance(credentials, Credentials):
            raise ConfigError("put() takes a Credentials value")
        data = self._load()
        if data["entries"]:
            first = sorted(data["entries"])[0]
            self._open(first, data["entries"][first], password)  # WrongPassword if it differs
        plain = json.dumps({
            "api_key": credentials.api_key,
            "api_secret": credentials.api_secret,
            "private_key_pem": credentials.private_key_pem,
            "passphrase": credentials.passphrase,
        }).encode("utf-8")
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        key = _derive(password, salt, self.scrypt_n, 8, 1)
        sealed = AESGCM(key).encrypt(nonce, plain, _AAD_PREFIX + venue.encode("utf-8"))
        entry = KeyEntry(venue, credentials.key_hint, "ed25519" if credentials.private_key_pem else "hmac",
                         time.time())
        data["entries"][venue] = {
            "kdf": {"name": "scrypt", "n": self.scrypt_n, "r": 8, "p": 1, "salt": _b64(salt)},
            "cipher": {"name": "aes-256-gcm", "nonce": _b64(nonce)},
            "ciphertext": _b64(sealed),
            "key_hint": entry.key_hint,
            "kind": entry.kind,
            "created": entry.created,
        }
        self._save(data)
        return entry

    def get(self, venue: str, password: str) -> Credentials:
        """``venue``'s keys; ``NoSuchKey`` or ``WrongPassword`` (both without any secret)."""
        password = _check_password(password)
        entries = self._load()["entries"]
        if venue not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise NoSuchKey(f"no keys stored for {venue} (stored: {known}); run: marketlink connect {venue}")
        return self._open(venue, entries[venue], password)

    def remove(self, venue: str) -> bool:
        data = self._load()
        if data["entries"].pop(venue, None) is None:
            return False
        self._save(data)
        return True

    def check_password(self, password: str) -> None:
        """``WrongPassword`` unless ``password`` opens the store (any entry; none is fine)."""
        password = _check_password(password)
        entries = self._load()["entries"]
        if entries:
            venue = sorted(entries)[0]
            self._open(venue, entries[venue], password)

    def _open(self, venue: str, entry: object, password: str) -> Credentials:
        if not isinstance(entry, dict) or not isinstance(entry.get("kdf"), dict) or not isinstance(
            entry.get("cipher"), dict
        ):
            raise KeyStoreError(f"key store entry {venue!r} is malformed")
        kdf, cipher = entry["kdf"], entry["cipher"]
        n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
        if kdf.get("name") != "scrypt" or cipher.get("name") != "aes-256-gcm":
            raise KeyStoreError(f"key store entry {venue!r}: unsupported algorithms")
        problem = scrypt_cost_problem(n, r, p)
        if problem is not None:
            raise KeyStoreError(f"key store entry {venue!r}: scrypt parameters out of bounds ({problem})")
        assert isinstance(n, int) and isinstance(r, int) and isinstance(p, int)
        key = _derive(password, _unb64(kdf.get("salt"), "salt"), n, r, p)
        try:
            plain = AESGCM(key).decrypt(
                _unb64(cipher.get("nonce"), "nonce"), _unb64(entry.get("ciphertext"), "ciphertext"),
                _AAD_PREFIX + venue.encode("utf-8"),
            )
        except (InvalidTag, ValueError):
            raise WrongPassword(
                f"wrong password for the key store {self.path} (or its {venue} entry was altered)"
            ) from None
        try:
            d = json.loads(plain)
            return Credentials(
                d["api_key"], api_secret=d.get("api_secret"), private_key_pem=d.get("private_key_pem"),
                passphrase=d.get("passphrase"),
            )
        except (ValueError, KeyError, TypeError, ConfigError):
            raise KeyStoreError(f"key store entry {venue!r} decrypted to something unusable") from None
