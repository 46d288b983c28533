"""The sandbox harness: lifecycle on loopback, ticking, accounts, configuration and market defaults.

Servers bind 127.0.0.1 on a port the OS picks. Ticks are driven by hand (``autotick=False``) on a
fixed wall clock, except where the timer itself is under test; there the test waits on an event
the fake front-end sets, never on elapsed time.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from marketlink.core.errors import ConfigError, InvalidTradingPair
from marketlink.sandbox.config import (
    AccountConfig,
    SandboxConfig,
    is_loopback,
    load_accounts,
    parse_accounts,
    parse_market_list,
)
from marketlink.sandbox.context import ApiCredential, SandboxContext
from marketlink.sandbox.markets_default import DEFAULT_PAIRS, demo_balance, market_setup
from marketlink.sandbox.server import Sandbox

T0 = 1_700_000_000_000
STEP = 5.0  # safety net for awaiting an event; never reached when the code is right


class FakeFrontend:
    """A two-route venue that records ticks and can be told to fail."""

    name = "fake"

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.ticks: list[int] = []
        self.closed = False
        self.fail_ticks = False
        self.fail_close = False
        self.wanted = 0
        self.reached = asyncio.Event()

    def install(self, app: web.Application) -> None:
        app.router.add_get("/fake/ping", self._ping)
        app.router.add_get("/fake/book", self._book)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({"now": self.ctx.clock.now_ms(), "keys": sorted(self.ctx.credentials)})

    async def _book(self, request: web.Request) -> web.Response:
        book = self.ctx.exchange.depth("BTCUSDT", 5)
        return web.json_response({"bids": [[str(p), str(q)] for p, q in book.bids]})

    async def on_tick(self, now_ms: int) -> None:
        self.ticks.append(now_ms)
        if self.wanted and len(self.ticks) >= self.wanted:
            self.reached.set()
        if self.fail_ticks:
            raise RuntimeError("front-end bug")

    async def close(self) -> None:
        self.closed = True
        if self.fail_close:
            raise RuntimeError("close bug")


def fixed_clock(start: int = T0) -> Callable[[], int]:
    return lambda: start


def config(**kw: object) -> SandboxConfig:
    base: dict[str, object] = {"markets": ("BTC-USDT", "ETH-USDT"), "seed": 3}
    base.update(kw)
    return SandboxConfig(**base)  # type: ignore[arg-type]


def fake_sandbox(cfg: SandboxConfig | None = None, **kw: object) -> tuple[Sandbox, list[FakeFrontend]]:
    made: list[FakeFrontend] = []

    def factory(ctx: SandboxContext) -> FakeFrontend:
        made.append(FakeFrontend(ctx))
        return made[-1]

    sb = Sandbox(cfg or config(), [factory], **kw)  # type: ignore[arg-type]
    return sb, made


async def get_json(url: str) -> object:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return await r.json()


# -- lifecycle ------------------------------------------------------------------------------------


async def test_starts_on_a_free_loopback_port_and_stops_without_leaking_tasks() -> None:
    before = asyncio.all_tasks()
    sb, (fe,) = fake_sandbox(config(tick_seconds=0.01))
    await sb.start()
    assert sb.running and sb.port > 0
    assert sb.base_url == f"http://127.0.0.1:{sb.port}"
    assert sb.ws_url == f"ws://127.0.0.1:{sb.port}"
    body = await get_json(f"{sb.base_url}/fake/ping")
    assert body == {"now": body["now"], "keys": [sb.demo_credentials.api_key]}  # type: ignore[index]

    await sb.stop()
    assert fe.closed and not sb.running
    assert asyncio.all_tasks() == before
    with pytest.raises(aiohttp.ClientConnectionError):
        await get_json(f"{sb.base_url}/fake/ping")
    await sb.stop()  # idempotent


async def test_async_with_and_two_sandboxes_at_once() -> None:
    a, _ = fake_sandbox(autotick=False)
    b, _ = fake_sandbox(autotick=False)
    async with a, b:
        assert a.port != b.port
        keys_a = await get_json(f"{a.base_url}/fake/ping")
        keys_b = await get_json(f"{b.base_url}/fake/ping")
        assert keys_a["keys"] == [a.demo_credentials.api_key]  # type: ignore[index]
        assert keys_b["keys"] == [b.demo_credentials.api_key]  # type: ignore[index]
        assert a.demo_credentials.api_key != b.demo_credentials.api_key
    assert not a.running and not b.running


async def test_a_sandbox_starts_once() -> None:
    sb, _ = fake_sandbox(autotick=False)
    async with sb:
        with pytest.raises(RuntimeError, match="starts once"):
            await sb.start()
    with pytest.raises(RuntimeError):
        await sb.start()


async def test_stop_before_start_is_harmless() -> None:
    sb, (fe,) = fake_sandbox()
    await sb.stop()
    assert fe.closed and not sb.running


async def test_a_busy_port_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sb, _ = fake_sandbox(config(port=port), autotick=False)
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await sb.start()
        assert not sb.running
        await sb.stop()


async def test_localhost_binds_one_loopback_port() -> None:
    sb, _ = fake_sandbox(config(host="localhost"), autotick=False)
    async with sb:
        assert sb.base_url == f"http://localhost:{sb.port}"
        assert "now" in await get_json(f"http://127.0.0.1:{sb.port}/fake/ping")  # type: ignore[operator]


def test_urls_for_wildcard_and_ipv6_hosts() -> None:
    assert Sandbox(config(host="0.0.0.0", allow_remote=True), []).base_url == "http://127.0.0.1:0"
    assert Sandbox(config(host="::", allow_remote=True), []).ws_url == "ws://[::1]:0"
    assert Sandbox(config(host="::1"), []).base_url == "http://[::1]:0"


async def test_the_default_front_end_is_binance_spot() -> None:
    async with Sandbox(config(), autotick=False, wall_ms=fixed_clock()) as sb:
        assert [f.name for f in sb.frontends] == ["binance"]
        assert await get_json(f"{sb.base_url}/api/v3/ping") == {}
        assert await get_json(f"{sb.base_url}/api/v3/time") == {"serverTime": T0}
        sb.faults.shift_clock(-2000)
        assert await get_json(f"{sb.base_url}/api/v3/time") == {"serverTime": T0 - 2000}
        info = await get_json(f"{sb.base_url}/api/v3/exchangeInfo")
        assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT"}  # type: ignore[index]
        depth = await get_json(f"{sb.base_url}/api/v3/depth?symbol=BTCUSDT&limit=5")
        assert depth["lastUpdateId"] == sb.exchange.depth("BTCUSDT").last_update_id  # type: ignore[index]
        assert len(depth["bids"]) == 5  # type: ignore[index]  # the flow filled the book at start


def test_venue_options_reach_the_front_end() -> None:
    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        Sandbox(config(venue_options={"binance": {"bogus": 1}}))
    sb = Sandbox(config(venue_options={"binance": {"listen_key_ttl_ms": 5_000}}))
    assert sb.frontends[0].config.listen_key_ttl_ms == 5_000  # type: ignore[attr-defined]


# -- ticking --------------------------------------------------------------------------------------


async def test_manual_ticks_move_the_book_and_reach_front_ends() -> None:
    sb, (fe,) = fake_sandbox(autotick=False, wall_ms=fixed_clock())
    async with sb:
        assert fe.ticks == [T0]  # start fills the books with one step
        before = sb.exchange.depth("BTCUSDT", None)
        assert before.bids and before.asks
        for i in range(1, 4):
            assert await sb.tick(T0 + 100 * i) == T0 + 100 * i
        after = sb.exchange.depth("BTCUSDT", None)
        assert after.last_update_id > before.last_update_id
        assert (after.bids, after.asks) != (before.bids, before.asks)
        assert fe.ticks == [T0, T0 + 100, T0 + 200, T0 + 300]
        assert await sb.tick() == T0  # default: the sandbox clock
        health = sb.health()
        assert health["ticks"] == 5
        assert health["flow"]["orders"] > 0  # type: ignore[index]


async def test_same_seed_same_market() -> None:
    books = []
    for _ in range(2):
        sb, _ = fake_sandbox(autotick=False, wall_ms=fixed_clock())
        async with sb:
            for i in range(1, 20):
                await sb.tick(T0 + 100 * i)
            books.append((sb.exchange.depth("ETHUSDT", None), sb.exchange.recent_trades("ETHUSDT")))
    assert books[0] == books[1]
    assert books[0][1]  # the flow traded


async def test_no_flow_keeps_books_empty() -> None:
    sb, (fe,) = fake_sandbox(config(flow=False), autotick=False, wall_ms=fixed_clock())
    async with sb:
        await sb.tick(T0 + 100)
        assert sb.exchange.depth("BTCUSDT", None).bids == ()
        assert fe.ticks == [T0, T0 + 100]


async def test_the_timer_ticks_front_ends() -> None:
    sb, (fe,) = fake_sandbox(config(tick_seconds=0.005))
    fe.wanted = 4
    async with sb:
        await asyncio.wait_for(fe.reached.wait(), STEP)
        assert sb.health()["ticks"] >= 4  # type: ignore[operator]
        assert fe.ticks == sorted(fe.ticks)


async def test_failures_in_front_ends_and_flow_are_counted_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    sb, (fe,) = fake_sandbox(config(tick_seconds=0.005))
    fe.fail_ticks = True
    fe.fail_close = True
    fe.wanted = 3

    def broken_step(now_ms: int) -> None:
        raise ArithmeticError("flow bug")

    monkeypatch.setattr(sb.flow, "step", broken_step)
    async with sb:
        await asyncio.wait_for(fe.reached.wait(), STEP)  # the timer survived every failure
        errors = sb.health()["errors"]
        assert errors["flow"] >= 3 and errors["frontend"] >= 3  # type: ignore[index]
    assert sb.counters["frontend_errors"] >= 4  # the failed close too


# -- accounts and credentials ---------------------------------------------------------------------


async def test_demo_account_is_funded_with_the_given_credentials() -> None:
    sb, _ = fake_sandbox(config(api_key="my-key", api_secret="my-secret"), autotick=False)
    demo = sb.demo_credentials
    assert (demo.account, demo.api_key, demo.api_secret) == ("demo", "my-key", "my-secret")
    cred = sb.context.credential("my-key")
    assert cred == ApiCredential("my-key", "demo", secret="my-secret")
    assert "my-secret" not in repr(demo) and "my-secret" not in repr(cred)
    assert "my-secret" not in repr(sb.config)
    balances = {b.asset: b.free for b in sb.exchange.balances("demo")}
    assert balances == {"BTC": Decimal(100), "USDT": Decimal(1_000_000), "ETH": Decimal(10_000)}


def test_random_demo_credentials_differ_per_sandbox() -> None:
    a, b = Sandbox(config(), []).demo_credentials, Sandbox(config(), []).demo_credentials
    assert len(a.api_key) == 64 and len(a.api_secret) == 64
    assert a.api_key != b.api_key and a.api_secret != b.api_secret
    assert a.api_secret not in repr(a)


def test_configured_accounts_get_keys_balances_and_fees() -> None:
    pem = _ed25519_pem()
    alice = AccountConfig(
        "alice",
        {"BTC": Decimal("1.5")},
        (
            ApiCredential("a-hmac", "alice", secret="s"),
            ApiCredential("a-ed", "alice", ed25519_public_key_pem=pem),
        ),
        maker_fee=Decimal("0.0002"),
    )
    sb = Sandbox(config(accounts=(alice,), demo_balances={"USDT": "5"}), [])
    assert sb.exchange.balance("alice", "BTC").free == Decimal("1.5")
    assert {b.asset: b.free for b in sb.exchange.balances("demo")} == {"USDT": Decimal(5)}
    assert sb.context.credential("a-ed") == ApiCredential("a-ed", "alice", ed25519_public_key_pem=pem)
    assert sb.context.credential("a-hmac") is not None
    spec = sb.exchange.market("BTCUSDT")
    assert sb.exchange.ledger.fee_rates("alice", spec) == (Decimal("0.0002"), spec.taker_fee)


def test_ground_truth_covers_every_market_and_account() -> None:
    sb = Sandbox(config(), [])
    truth = sb.ground_truth()
    assert set(truth.books) == {"BTCUSDT", "ETHUSDT"}
    assert truth.balances["demo"]["BTC"].free == Decimal(100)


# -- configuration --------------------------------------------------------------------------------


X_WITH_KEY_K = AccountConfig("x", keys=(ApiCredential("k", "x"),))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"host": "0.0.0.0"}, "refusing to listen on '0.0.0.0'"),
        ({"host": "example.com"}, "allow_remote"),
        ({"host": ""}, "host must not be empty"),
        ({"port": -1}, "port must be"),
        ({"port": True}, "port must be"),
        ({"seed": "7"}, "seed must be an int"),
        ({"tick_seconds": 0}, "tick_seconds"),
        ({"tick_seconds": float("nan")}, "tick_seconds"),
        ({"fault_hang_seconds": -1.0}, "fault_hang_seconds"),
        ({"flow_rate": -0.5}, "flow_rate"),
        ({"markets": ()}, "at least one market"),
        ({"markets": "BTC-USDT"}, "sequence"),
        ({"markets": ("BTC-USDT", "btc-usdt")}, "BTC-USDT is listed twice"),
        ({"markets": ("BTCUSDT",)}, "not a BASE-QUOTE"),
        ({"markets": (1,)}, "not a BASE-QUOTE"),
        ({"markets": ("AB-CD", "ABC-D")}, "share the symbol ABCD"),
        ({"api_key": "k"}, "both api_key and api_secret"),
        ({"api_key": "k", "api_secret": ""}, "api_secret must not be empty"),
        ({"api_key": "has space", "api_secret": "s"}, "printable ASCII"),
        ({"admin_token": "short"}, "admin_token"),
        ({"demo_account": "flow-maker"}, "reserved"),
        ({"accounts": (AccountConfig("demo"),)}, "used twice"),
        ({"accounts": (AccountConfig("flow-taker"),)}, "reserved"),
        ({"api_key": "k", "api_secret": "s", "accounts": (X_WITH_KEY_K,)}, "API key 'k' is used twice"),
        ({"accounts": (X_WITH_KEY_K, AccountConfig("y", keys=X_WITH_KEY_K.keys))}, "'k' is used twice"),
        ({"market_overrides": {"SOL-USDT": {}}}, "not one of the configured markets"),
        ({"market_overrides": {"BTC-USDT": {"symbol": "X"}}}, "cannot set 'symbol'"),
        ({"market_overrides": {"BTC-USDT": {"bogus": 1}}}, "cannot set 'bogus'"),
        ({"market_overrides": {"BTC-USDT": {"tick_size": "abc"}}}, "tick_size"),
        ({"market_overrides": {"BTC-USDT": {"initial_price": "0"}}}, "must be positive"),
        ({"demo_balances": {"BTC": 1.5}}, "write amounts as strings"),
        ({"demo_balances": {"btc": "1"}}, "not an asset name"),
        ({"demo_balances": {"BTC": "-1"}}, "non-negative"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=_re(message)):
        config(**kw)


def test_config_normalises_markets_and_allows_loopback_hosts() -> None:
    assert config(markets=(" eth-btc ", "BTC-USDT")).markets == ("ETH-BTC", "BTC-USDT")
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host)
        config(host=host)
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")
    assert config(host="10.0.0.1", allow_remote=True).host == "10.0.0.1"
    assert parse_market_list("btc-usdt, ETH-USDT,,") == ("BTC-USDT", "ETH-USDT")
    with pytest.raises(ConfigError):
        parse_market_list("BTC/USDT")


def test_market_overrides_change_filters_and_starting_price() -> None:
    override = {"max_num_orders": 3, "tick_size": "0.1", "initial_price": "100"}
    cfg = config(market_overrides={"btc-usdt": override})
    btc = next(s for s in cfg.market_setups() if s.pair == "BTC-USDT")
    assert (btc.spec.max_num_orders, btc.spec.tick_size) == (3, Decimal("0.1"))
    assert btc.initial_price == Decimal(100)
    sb = Sandbox(cfg, [])
    assert sb.flow.fair_price("BTCUSDT") == Decimal(100)


# -- accounts files -------------------------------------------------------------------------------


def test_toml_accounts_file(tmp_path: Path) -> None:
    pem = _ed25519_pem()
    path = tmp_path / "accounts.toml"
    path.write_text(
        f'''
[[accounts]]
name = "alice"
maker_fee = "0.0005"
taker_fee = 0.001
balances = {{ BTC = "10.5", USDT = 250000 }}

[[accounts.keys]]
api_key = "alice-hmac"
secret = "alice-secret"
expires_at_ms = 1893456000000

[[accounts.keys]]
api_key = "alice-ed"
ed25519_public_key = """{pem}"""
can_trade = false

[[accounts]]
name = "bob"
'''
    )
    alice, bob = load_accounts(path)
    assert alice.name == "alice" and bob == AccountConfig("bob")
    assert alice.balances == {"BTC": Decimal("10.5"), "USDT": Decimal(250000)}
    assert (alice.maker_fee, alice.taker_fee) == (Decimal("0.0005"), Decimal("0.001"))
    assert alice.keys == (
        ApiCredential("alice-hmac", "alice", secret="alice-secret", expires_at_ms=1_893_456_000_000),
        ApiCredential("alice-ed", "alice", ed25519_public_key_pem=pem, can_trade=False),
    )


def test_json_accounts_file_keeps_exact_numbers(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text('{"accounts": [{"name": "carol", "balances": {"ETH": 0.1}}]}')
    (carol,) = load_accounts(str(path))
    assert carol.balances == {"ETH": Decimal("0.1")}  # the file's digits, not the float's


def _key(**fields: object) -> str:
    """An accounts file whose one account "x" has one key with ``fields``."""
    return json.dumps({"accounts": [{"name": "x", "keys": [fields]}]})


def _acct(**fields: object) -> str:
    return json.dumps({"accounts": [{"name": "x", **fields}]})


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.yaml", "accounts: []", "use a .toml or .json file"),
        ("a.toml", "accounts = [", "not valid TOML"),
        ("a.json", "{", "not valid JSON"),
        ("a.json", '{"accounts": [{"name": "x", "balances": {"BTC": NaN}}]}', "not a finite number"),
        ("a.json", '{"accounts": [{"name": "x", "balances": {"BTC": 1e999999}}]}', "BTC"),
        ("a.json", "[]", "top-level key"),
        ("a.json", '{"accounts": {}}', "must be a list"),
        ("a.json", '{"accounts": [1]}', r"accounts\[0\]: must be a table"),
        ("a.json", '{"accounts": [{"balances": {}}]}', r"accounts\[0\].name"),
        ("a.json", '{"accounts": [{"name": "x"}, {"name": "x"}]}', "defined twice"),
        ("a.json", _acct(colour=1), "unknown field.*colour"),
        ("a.json", _acct(name="flow-maker"), "reserved"),
        ("a.json", _acct(balances=[]), "balances: must be a table"),
        ("a.json", _acct(balances={"BTC": True}), "amount string"),
        ("a.json", _acct(balances={"BTC": "ten"}), "not a number"),
        ("a.json", _acct(maker_fee="1"), "rate below 1"),
        ("a.json", _acct(keys={}), "keys: must be a list"),
        ("a.json", _acct(keys=[1]), r"keys\[0\]: must be a table"),
        ("a.json", _key(secret="s"), "api_key: a string is required"),
        ("a.json", _key(api_key="k"), "exactly one of"),
        ("a.json", _key(api_key="k", secret=""), "secret: a non-empty"),
        ("a.json", _key(api_key="k", ed25519_public_key=5), "PEM string"),
        ("a.json", _key(api_key="k", ed25519_public_key="junk"), "not a PEM public key"),
        ("a.json", _key(api_key="k", secret="s", can_trade=1), "true or false"),
        ("a.json", _key(api_key="k", secret="s", expires_at_ms="2030"), "epoch milliseconds"),
        ("a.json", _key(api_key="k", secret="s", expires_at_ms=-1), "epoch milliseconds"),
        ("a.json", _key(api_key="k", secret="s", extra=1), "unknown field.*extra"),
    ],
)
def test_bad_accounts_files_say_what_is_wrong(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_accounts(path)
    assert str(path) in str(info.value)


def test_a_missing_accounts_file_and_a_non_ed25519_pem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read accounts file"):
        load_accounts(tmp_path / "nope.toml")
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    data = {"accounts": [{"name": "x", "keys": [{"api_key": "k", "ed25519_public_key": ec_pem}]}]}
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        parse_accounts(data)
    with pytest.raises(ConfigError, match="write amounts as strings"):
        parse_accounts({"accounts": [{"name": "x", "balances": {"BTC": 0.5}}]})


# -- default markets ------------------------------------------------------------------------------


def test_default_markets_look_like_binance() -> None:
    btc = market_setup("BTC-USDT")
    assert btc.symbol == "BTCUSDT" and btc.initial_price == Decimal("60000.00")
    spec = btc.spec
    assert (spec.tick_size, spec.step_size, spec.min_qty, spec.min_notional) == (
        Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(5),
    )
    for name in DEFAULT_PAIRS:
        assert market_setup(name).pair == name
    assert market_setup("eth-btc").spec.min_notional == Decimal("0.0001")
    with pytest.raises(InvalidTradingPair):
        market_setup("ETHBTC")


@pytest.mark.parametrize(
    ("pair", "price", "tick", "step", "min_notional"),
    [
        ("SOL-BTC", "0.0025000", "0.0000001", "0.001", "0.00009"),  # both prices known: their ratio
        ("DOGE-USDC", "0.15000", "0.00001", "1", "5"),
        ("LINK-ETH", "0.0050000", "0.0000001", "0.01", "0.002"),
        ("FOO-BAR", "91.373", "0.001", "0.01", "0"),  # unknown: from the name's CRC-32
    ],
)
def test_generated_markets(pair: str, price: str, tick: str, step: str, min_notional: str) -> None:
    s = market_setup(pair)
    assert (s.initial_price, s.spec.tick_size, s.spec.step_size, s.spec.min_notional) == (
        Decimal(price), Decimal(tick), Decimal(step), Decimal(min_notional),
    )


def test_fifty_generated_markets_start_with_two_sided_books() -> None:
    names = [f"C{i:02d}-USDT" for i in range(40)] + [f"T{i}-X{i}" for i in range(15)]
    sb = Sandbox(config(markets=tuple(names), flow=True), [])
    for setup in sb.markets:
        spec = setup.spec
        assert spec.min_price <= setup.initial_price <= spec.max_price
        assert setup.initial_price % spec.tick_size == 0
        assert "E" not in str(spec.max_qty) and "E" not in str(spec.max_price)
    sb.flow.step(T0)
    for setup in sb.markets:
        book = sb.exchange.depth(setup.symbol, 1)
        assert book.bids and book.asks, setup.pair
        assert book.bids[0][0] < book.asks[0][0]
    assert sb.exchange.audit() == []


def test_demo_balances_default_per_asset() -> None:
    assert demo_balance("BTC") == Decimal(100)
    assert demo_balance("USDT") == Decimal(1_000_000)
    assert demo_balance("XRP") == Decimal(10_000_000)
    assert demo_balance("NEWCOIN") == Decimal(1_000_000)
    assert str(demo_balance("BTC")) == "100"


# -- helpers --------------------------------------------------------------------------------------


def _ed25519_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def _re(text: str) -> str:
    import re

    return re.escape(text)
