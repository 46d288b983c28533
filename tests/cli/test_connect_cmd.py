"""``marketlink connect``: keys checked against an in-process sandbox, then stored encrypted;
``--list`` masks them; every failure is one line and exit code 1; and after a whole session
(store, connect, trade with the journal attached) the key and secret appear nowhere."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from typer.testing import CliRunner

import marketlink
from marketlink.cli.main import app
from marketlink.client import KeyStore, keystore_path
from marketlink.client.verify import KeyCheck, describe_failure, verify_keys
from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType
from marketlink.core.events import Event, OrderCompleted
from marketlink.engine.context import ConnectorConfig
from marketlink.journal import Journal
from marketlink.net.errors import (
    AuthError,
    ClockSkew,
    ConnectionFailed,
    IpBanned,
    MalformedMessage,
    RateLimited,
    Rejected,
)
from marketlink.sandbox.config import AccountConfig, SandboxConfig
from marketlink.sandbox.context import ApiCredential
from marketlink.sandbox.server import Sandbox
from marketlink.venues.binance import local_endpoints

T = TypeVar("T")
KEY = "cliTestKeyAbcdefghijklmnop0123456789WXYZ"
SECRET = "cli-test-secret-never-printed-0123456789abcdef"
RO_KEY = "readOnlyKeyAbcdefghijklmnop0123456789RO42"
RO_SECRET = "read-only-secret-0123456789abcdef0123456789"
ED_KEY = "ed25519KeyAbcdefghijklmnop0123456789ED99"
ED_PRIVATE = Ed25519PrivateKey.generate()
ED_PEM = ED_PRIVATE.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
ED_PUBLIC = ED_PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
PASSWORD = "a long test password"


class ThreadedSandbox:
    """A sandbox on its own loop and thread: the CLI runs ``asyncio.run`` in the test's thread."""

    def __init__(self, config: SandboxConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sandbox = Sandbox(config, autotick=False)
        self.call(self.sandbox.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    @property
    def url(self) -> str:
        return self.sandbox.base_url

    def close(self) -> None:
        self.call(self.sandbox.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    config = SandboxConfig(
        seed=3, api_key=KEY, api_secret=SECRET,
        accounts=(
            AccountConfig("watcher", {"USDT": Decimal(5)}, (ApiCredential(RO_KEY, "watcher", secret=RO_SECRET,
                                                                          can_trade=False),)),
            AccountConfig("signer", {"USDT": Decimal(5)}, (ApiCredential(ED_KEY, "signer",
                                                                         ed25519_public_key_pem=ED_PUBLIC),)),
        ),
    )
    sb = ThreadedSandbox(config)
    yield sb
    sb.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARKETLINK_HOME", str(tmp_path / "mlhome"))
    monkeypatch.setenv("MARKETLINK_PASSWORD", PASSWORD)
    for name in ("MARKETLINK_API_KEY", "MARKETLINK_API_SECRET", "MARKETLINK_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "mlhome"


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Any:
    return CliRunner().invoke(app, ["connect", *args], env=env, input=input)


def _no_traceback(result: Any) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# -- storing --------------------------------------------------------------------------------------


def test_from_env_checks_then_stores_and_list_masks(sandbox: ThreadedSandbox, home: Path) -> None:
    env = {"MARKETLINK_API_KEY": KEY, "MARKETLINK_API_SECRET": SECRET}
    result = invoke("binance", "--from-env", "--sandbox-url", sandbox.url, env=env)
    assert result.exit_code == 0, result.output
    assert "ok: binance accepted the key (can trade" in result.output
    assert "stored binance key …WXYZ (hmac)" in result.output
    assert KEY not in result.output and SECRET not in result.output
    store = KeyStore(keystore_path(home))
    assert store.get("binance", PASSWORD) == Credentials(KEY, SECRET)
    listed = invoke("--list")
    assert listed.exit_code == 0 and "binance" in listed.output and "…WXYZ" in listed.output
    assert KEY not in listed.output


def test_prompts_hide_input_and_ask_a_new_password_twice(
    sandbox: ThreadedSandbox, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MARKETLINK_PASSWORD")
    result = invoke("binance", "--sandbox-url", sandbox.url, input=f"{KEY}\n{SECRET}\nnew-pw\nnew-pw\n")
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and SECRET not in result.output and "new-pw" not in result.output
    assert KeyStore(keystore_path(home)).get("binance", "new-pw").api_secret == SECRET
    again = invoke("binance", "--sandbox-url", sandbox.url, input=f"{KEY}\n{SECRET}\nwrong-pw\n")
    assert again.exit_code == 1 and "error: wrong password" in again.output
    _no_traceback(again)


def test_an_ed25519_key_from_a_pem_file(sandbox: ThreadedSandbox, home: Path, tmp_path: Path) -> None:
    pem = tmp_path / "ed.pem"
    pem.write_text(ED_PEM)
    env = {"MARKETLINK_API_KEY": ED_KEY, "MARKETLINK_PRIVATE_KEY_FILE": str(pem)}
    result = invoke("binance", "--from-env", "--sandbox-url", sandbox.url, env=env)
    assert result.exit_code == 0, result.output
    assert "(ed25519)" in result.output
    assert KeyStore(keystore_path(home)).get("binance", PASSWORD).private_key_pem == ED_PEM


def test_list_with_nothing_stored(home: Path) -> None:
    result = invoke("--list")
    assert result.exit_code == 0 and "no keys stored" in result.output


# -- refusals: one line, exit 1, nothing stored ---------------------------------------------------


def test_an_invalid_key_is_reported_clearly_and_not_stored(sandbox: ThreadedSandbox, home: Path) -> None:
    env = {"MARKETLINK_API_KEY": KEY, "MARKETLINK_API_SECRET": "not-the-secret-0123456789"}
    result = invoke("binance", "--from-env", "--sandbox-url", sandbox.url, env=env)
    assert result.exit_code == 1
    assert "error: binance refused the key (code -1022)" in result.output
    assert "not-the-secret" not in result.output
    _no_traceback(result)
    assert not keystore_path(home).exists()
    unknown = invoke("binance", "--from-env", "--sandbox-url", sandbox.url,
                     env={"MARKETLINK_API_KEY": "nobodysKey0123456789", "MARKETLINK_API_SECRET": "x"})
    assert unknown.exit_code == 1 and "refused the key (code -2015)" in unknown.output


def test_a_key_without_trading_permission(sandbox: ThreadedSandbox, home: Path) -> None:
    env = {"MARKETLINK_API_KEY": RO_KEY, "MARKETLINK_API_SECRET": RO_SECRET}
    result = invoke("binance", "--from-env", "--sandbox-url", sandbox.url, env=env)
    assert result.exit_code == 1 and "cannot trade on binance" in result.output
    assert not keystore_path(home).exists()
    allowed = invoke("binance", "--from-env", "--sandbox-url", sandbox.url, "--allow-read-only", env=env)
    assert allowed.exit_code == 0 and "read only" in allowed.output


def test_clock_skew_is_corrected_with_a_warning_or_reported(sandbox: ThreadedSandbox, home: Path) -> None:
    sandbox.sandbox.faults.shift_clock(90_000)
    try:
        env = {"MARKETLINK_API_KEY": KEY, "MARKETLINK_API_SECRET": SECRET}
        result = invoke("binance", "--from-env", "--sandbox-url", sandbox.url, env=env)
        assert result.exit_code == 0, result.output
        assert re.search(r"clock is (89\.9|90\.0|90\.1) s behind binance's", result.output), result.output
        eps = local_endpoints(sandbox.url)
        skewed = verify_keys("binance", Credentials(KEY, SECRET), eps, time_ms=lambda: 1_000_000)
        with pytest.raises(ClockSkew):
            asyncio.run(skewed)
    finally:
        sandbox.sandbox.faults.clear()
    assert "clock is too far off" in describe_failure("binance", ClockSkew("x", code=-1021))


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["kraken", "--from-env"], {}, "unknown venue 'kraken'"),
        (["binance", "--from-env", "--domain", "moon"], {}, "moon"),
        (["binance", "--from-env"], {}, "MARKETLINK_API_KEY is not set"),
        (["binance", "--from-env"], {"MARKETLINK_API_KEY": "k" * 20}, "set MARKETLINK_API_SECRET"),
        ([], {}, "name a venue"),
    ],
)
def test_usage_errors(home: Path, args: list[str], env: dict[str, str], message: str) -> None:
    result = invoke(*args, env=env)
    assert result.exit_code == 1 and message in result.output
    _no_traceback(result)


def test_a_bad_pem_file_is_refused(home: Path, tmp_path: Path) -> None:
    env = {"MARKETLINK_API_KEY": "k" * 20}
    bad = tmp_path / "bad.pem"
    bad.write_text("not a pem")
    result = invoke("binance", "--from-env", "--private-key-file", str(bad), "--no-check", env=env)
    assert result.exit_code == 1 and "not an unencrypted PEM private key" in result.output
    rsa_like = tmp_path / "missing.pem"
    result = invoke("binance", "--from-env", "--private-key-file", str(rsa_like), "--no-check", env=env)
    assert result.exit_code == 1 and "missing.pem" in result.output


def test_no_check_stores_offline(home: Path) -> None:
    env = {"MARKETLINK_API_KEY": KEY, "MARKETLINK_API_SECRET": SECRET}
    result = invoke("binance", "--from-env", "--no-check", env=env)
    assert result.exit_code == 0 and "checking" not in result.output
    assert "binance" in KeyStore(keystore_path(home))


def test_a_corrupt_key_store_entry_is_one_line_and_exit_1(home: Path) -> None:
    """Audit F-8: a malformed ``created`` made ``connect --list`` (and ``connect binance``, which
    lists to decide which password prompt to show) crash with a traceback."""
    import json

    env = {"MARKETLINK_API_KEY": KEY, "MARKETLINK_API_SECRET": SECRET}
    assert invoke("binance", "--from-env", "--no-check", env=env).exit_code == 0
    path = keystore_path(home)
    data = json.loads(path.read_text())
    data["entries"]["binance"]["created"] = "not a time"
    path.write_text(json.dumps(data))
    no_password: dict[str, str | None] = {**env, "MARKETLINK_PASSWORD": None}  # it lists, to pick the prompt
    for args in (("--list",), ("binance", "--from-env", "--no-check")):
        result = invoke(*args, env=no_password)  # type: ignore[arg-type]
        assert result.exit_code == 1, result.output
        assert result.output.startswith("error: ") and "created is not a time" in result.output
        assert result.output.count("\n") == 1
        _no_traceback(result)


def test_an_unreachable_venue(home: Path) -> None:
    env = {"MARKETLINK_API_KEY": KEY, "MARKETLINK_API_SECRET": SECRET}
    result = invoke("binance", "--from-env", "--sandbox-url", "http://127.0.0.1:9", env=env)
    assert result.exit_code == 1 and "cannot reach binance" in result.output
    _no_traceback(result)


def test_every_failure_type_has_words() -> None:
    cases = {
        AuthError("x", code=-2015): "refused the key (code -2015)",
        IpBanned("x"): "banned",
        RateLimited("x"): "rate limiting",
        ConnectionFailed("refused"): "cannot reach binance",
        MalformedMessage("odd"): "unexpected",
        Rejected("nope", code=-1): "refused the check (code -1)",
        RuntimeError(SECRET): "the key check failed: RuntimeError",
    }
    for exc, words in cases.items():
        text = describe_failure("binance", exc)
        assert words in text and SECRET not in text
    assert KeyCheck("binance", 10.0, True, 1).clock_warning is None
    assert "ahead of" in (KeyCheck("binance", -5000.0, True, 1).clock_warning or "")


# -- the secrets test -----------------------------------------------------------------------------


def test_keys_appear_nowhere_after_a_whole_session(
    sandbox: ThreadedSandbox, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"MARKETLINK_API_KEY": KEY, "MARKETLINK_API_SECRET": SECRET}
    stored = invoke("binance", "--from-env", "--sandbox-url", sandbox.url, env=env)
    assert stored.exit_code == 0
    store = KeyStore(keystore_path(home))
    journal_file = home / "journal.db"
    reprs: list[str] = [stored.output, repr(store)]

    async def session() -> None:
        creds = store.get("binance", PASSWORD)
        journal = Journal.open(journal_file)
        bot = journal.bot("secret-test", "binance")
        connecting = marketlink.connect(
            "binance", ["BTC-USDT"], api_key=creds.api_key, api_secret=creds.api_secret,
            endpoints=local_endpoints(sandbox.url),
            config=ConnectorConfig(client_id_instance=bot.client_id_instance),
        )
        reprs.extend([repr(connecting), repr(creds), str(creds), repr(journal), repr(bot)])
        conn = connecting.connector
        rec = journal.attach(conn, bot.bot_id)
        done = asyncio.Event()

        def on(e: Event) -> None:
            if isinstance(e, OrderCompleted):
                done.set()

        conn.bus.subscribe_callback(on)
        async with connecting:
            conn.buy("BTC-USDT", Decimal("0.001"), OrderType.MARKET)
            await asyncio.wait_for(done.wait(), 10)
            reprs.extend([repr(conn), repr(conn.ctx.auth), repr(conn.ctx.http), str(conn.status())])
        await rec.aclose()
        assert journal.fills(bot.bot_id), "the session traded"
        journal.close()

    asyncio.run(session())
    haystacks = {
        "journal": b"".join(p.read_bytes() for p in home.glob("journal.db*")),
        "keystore": keystore_path(home).read_bytes(),
        "logs": caplog.text.encode(),
        "reprs": "\n".join(reprs).encode(),
    }
    assert len(caplog.records) > 5, "logging was captured"
    for where, data in haystacks.items():
        for secret in (KEY, SECRET):
            assert secret.encode() not in data, f"a credential leaked into the {where}"
