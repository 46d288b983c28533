"""The key store: round trips, wrong passwords, entries bound to their venue, private atomic
files, bounded KDF parameters read from disk, and the config directory."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketlink.client import (
    HOME_ENV,
    KeyStore,
    KeyStoreError,
    NoSuchKey,
    WrongPassword,
    journal_path,
    keystore_path,
    marketlink_home,
    password_from_env,
)
from marketlink.core.credentials import Credentials
from marketlink.core.errors import ConfigError

KEY = "apiKeyForTheKeystoreTests0123WXYZ"
SECRET = "hmac-secret-that-must-never-appear-anywhere-1234"
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBrTcNFh1ZN2zbbCJ0f0pu6Fv8ZjJ5cSWlE3bBh6sIlP\n"
    "-----END PRIVATE KEY-----\n"
)
FAST = 2**10  # the format and the code paths are the same; only the unlock is cheaper


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "home" / "keys.json", scrypt_n=FAST)


def test_keys_round_trip_and_the_file_holds_no_secret(store: KeyStore) -> None:
    entry = store.put("binance", Credentials(KEY, SECRET), "correct horse")
    assert (entry.venue, entry.key_hint, entry.kind) == ("binance", "…WXYZ", "hmac")
    back = store.get("binance", "correct horse")
    assert (back.api_key, back.api_secret, back.private_key_pem) == (KEY, SECRET, None)
    text = store.path.read_text()
    assert KEY not in text and SECRET not in text and "correct horse" not in text
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert "binance" in store and "bybit" not in store and 3 not in store
    assert [e.venue for e in store.entries()] == ["binance"]
    assert repr(store) == f"<KeyStore {store.path}>"
    assert [p.name for p in store.path.parent.iterdir()] == ["keys.json"]  # no temp file left


def test_ed25519_keys_are_stored_too(store: KeyStore) -> None:
    store.put("binance", Credentials(KEY, private_key_pem=PEM), "pw")
    back = store.get("binance", "pw")
    assert back.private_key_pem == PEM and back.api_secret is None
    assert store.entries()[0].kind == "ed25519"


def test_a_wrong_password_is_a_clear_typed_error(store: KeyStore) -> None:
    store.put("binance", Credentials(KEY, SECRET), "right")
    with pytest.raises(WrongPassword, match="wrong password") as info:
        store.get("binance", "wrong")
    assert KEY not in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(WrongPassword):
        store.check_password("wrong")
    store.check_password("right")
    with pytest.raises(ConfigError, match="non-empty"):
        store.get("binance", "")


def test_a_second_venue_must_use_the_stores_password(store: KeyStore) -> None:
    store.put("binance", Credentials(KEY, SECRET), "one")
    with pytest.raises(WrongPassword):
        store.put("bybit", Credentials(KEY, SECRET), "two")
    store.put("bybit", Credentials("other-key-0000", "s"), "one")
    store.put("binance", Credentials("replaced-key-1111", "s2"), "one")  # replacing is fine
    assert store.get("binance", "one").api_key == "replaced-key-1111"
    assert [e.venue for e in store.entries()] == ["binance", "bybit"]
    assert store.remove("bybit") and not store.remove("bybit")
    with pytest.raises(NoSuchKey, match="no keys stored for bybit"):
        store.get("bybit", "one")


def test_an_entry_moved_to_another_venue_does_not_decrypt(store: KeyStore) -> None:
    store.put("binance", Credentials(KEY, SECRET), "pw")
    data = json.loads(store.path.read_text())
    data["entries"]["bybit"] = data["entries"].pop("binance")
    store.path.write_text(json.dumps(data))
    with pytest.raises(WrongPassword, match="altered"):
        store.get("bybit", "pw")


def test_a_flipped_ciphertext_bit_is_detected(store: KeyStore) -> None:
    store.put("binance", Credentials(KEY, SECRET), "pw")
    data = json.loads(store.path.read_text())
    raw = bytearray(base64.b64decode(data["entries"]["binance"]["ciphertext"]))
    raw[0] ^= 1
    data["entries"]["binance"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    store.path.write_text(json.dumps(data))
    with pytest.raises(WrongPassword):
        store.get("binance", "pw")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e["kdf"].update(n=2**30), "out of bounds"),
        (lambda e: e["kdf"].update(n=1000), "out of bounds"),
        (lambda e: e["kdf"].update(name="pbkdf2"), "unsupported"),
        (lambda e: e["kdf"].update(salt="%%%"), "not base64"),
        (lambda e: e.pop("ciphertext"), "missing"),
        (lambda e: e.pop("kdf"), "malformed"),
    ],
)
def test_a_tampered_entry_is_refused_before_any_expensive_work(
    store: KeyStore, mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    store.put("binance", Credentials(KEY, SECRET), "pw")
    data = json.loads(store.path.read_text())
    mutate(data["entries"]["binance"])
    store.path.write_text(json.dumps(data))
    with pytest.raises(KeyStoreError, match=message):
        store.get("binance", "pw")


@pytest.mark.parametrize(
    ("n", "r", "p", "why"),
    [
        (2**20, 32, 16, "p=16"),  # the audit's 4 GiB, minutes-long entry
        (2**20, 8, 1, "1024 MiB"),  # within the old bounds, 1 GiB
        (2**19, 8, 1, "512 MiB"),
        (2**16, 64, 1, "r=64"),
        (2**16, 8, 5, "p=5"),
        (2**16, 8, True, "whole numbers"),
    ],
)
def test_scrypt_parameters_that_would_cost_more_than_the_documented_maximum_are_refused(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch, n: int, r: int, p: int, why: str
) -> None:
    """Audit F-10: the file's KDF parameters bound what an unlock costs: 128·r·n <= 256 MiB, p <= 4.
    The refusal comes before any derivation (which would take the memory and the time)."""
    import marketlink.client.keystore as ks

    store.put("binance", Credentials(KEY, SECRET), "pw")
    data = json.loads(store.path.read_text())
    data["entries"]["binance"]["kdf"].update(n=n, r=r, p=p)
    store.path.write_text(json.dumps(data))

    def no_derivation(*args: object) -> bytes:
        raise AssertionError("derived with out-of-bounds parameters")

    monkeypatch.setattr(ks, "Scrypt", no_derivation)
    with pytest.raises(KeyStoreError, match="out of bounds") as err:
        store.get("binance", "pw")
    assert why in str(err.value)


def test_the_largest_allowed_cost_is_the_documented_maximum() -> None:
    from marketlink.client.keystore import MAX_SCRYPT_MEMORY, MAX_SCRYPT_P, scrypt_cost_problem

    assert MAX_SCRYPT_MEMORY == 256 * 2**20 and MAX_SCRYPT_P == 4
    assert scrypt_cost_problem(2**18, 8, 4) is None  # exactly 256 MiB, p=4
    assert scrypt_cost_problem(2**20, 2, 4) is None
    assert scrypt_cost_problem(2**20, 4, 1) is not None
    with pytest.raises(ConfigError, match="MiB"):
        KeyStore("x", scrypt_n=2**19)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"created": "yesterday"}, "created"),
        ({"created": None}, "created"),
        ({"created": float("inf")}, "created"),
        ({"key_hint": 7}, "key_hint"),
        ("not an entry", "malformed"),
    ],
)
def test_a_corrupt_entry_is_a_key_store_error_when_listing(store: KeyStore, entry: object, why: str) -> None:
    """Audit F-8: ``float(e["created"])`` raised ValueError/TypeError out of ``connect --list``."""
    store.put("binance", Credentials(KEY, SECRET), "pw")
    data = json.loads(store.path.read_text())
    if isinstance(entry, dict):
        data["entries"]["binance"].update(entry)
    else:
        data["entries"]["binance"] = entry
    store.path.write_text(json.dumps(data))
    with pytest.raises(KeyStoreError, match=why) as err:
        store.entries()
    assert KEY not in str(err.value) and SECRET not in str(err.value)


def test_files_that_are_not_key_stores_are_refused(store: KeyStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(KeyStoreError, match="cannot read"):
        store.entries()
    store.path.write_text(json.dumps({"format": "other", "entries": {}}))
    with pytest.raises(KeyStoreError, match="not a marketlink key store"):
        store.entries()
    store.path.write_text(json.dumps({"format": "marketlink-keystore", "version": 9, "entries": {}}))
    with pytest.raises(KeyStoreError, match="version 9"):
        store.entries()


def test_scrypt_cost_is_validated() -> None:
    with pytest.raises(ConfigError):
        KeyStore("x", scrypt_n=3000)
    with pytest.raises(ConfigError):
        KeyStore("x", scrypt_n=2**8)
    with pytest.raises(ConfigError, match="Credentials"):
        KeyStore("x", scrypt_n=FAST).put("binance", (KEY, SECRET), "pw")  # type: ignore[arg-type]


def test_the_default_cost_is_the_documented_one(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.json")
    store.put("binance", Credentials(KEY, SECRET), "pw")
    assert json.loads(store.path.read_text())["entries"]["binance"]["kdf"]["n"] == 2**16


def test_home_comes_from_the_environment_and_is_private(tmp_path: Path) -> None:
    home = marketlink_home({HOME_ENV: str(tmp_path / "mh")})
    assert home == tmp_path / "mh" and stat.S_IMODE(home.stat().st_mode) == 0o700
    assert keystore_path(home) == home / "keys.json" and journal_path(home) == home / "journal.db"
    default = marketlink_home({}, create=False)
    assert default == Path.home() / ".marketlink"


def test_an_open_home_is_kept_but_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    assert marketlink_home({HOME_ENV: str(shared)}) == shared
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755 and "accessible to other users" in caplog.text


def test_password_from_env() -> None:
    assert password_from_env({"MARKETLINK_PASSWORD": "pw"}) == "pw"
    assert password_from_env({"MARKETLINK_PASSWORD": ""}) is None and password_from_env({}) is None
