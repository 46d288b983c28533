"""``marketlink.connect``, the venue registry, the package's public names, and the documentation:
the snippets of docs/python-api.md and examples/quickstart.py run against the sandbox here."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

import marketlink
from marketlink.api import Connecting, connect
from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError
from marketlink.core.events import ConnectorStatusChanged, OrderCancelled, OrderCreated
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.net.errors import AuthError, ConnectionFailed
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.venues.base import Endpoints
from marketlink.venues.binance import VENUE, local_endpoints
from marketlink.venues.registry import REGISTRY, VenueRegistry, known_venues, lookup, register

ROOT = Path(__file__).resolve().parents[2]
KEY = "apiKeyForTheTests0123456789abcdefWXYZ"
SECRET = "s3cr3t-never-in-a-log-0123456789abcdef"
D = Decimal


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(seed=5, api_key=KEY, api_secret=SECRET)) as sb:
        yield sb


def _open_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of this process's clients; the sandbox's request handlers end on their own time."""
    return {
        t for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and not t.done()
        and not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")
    }


# -- the registry ---------------------------------------------------------------------------------


def test_lookup_finds_binance_by_any_case_and_lists_known_venues_when_it_cannot() -> None:
    entry = lookup(" Binance ")
    assert entry.venue is VENUE and entry.name == "binance"
    assert entry.domains == ("com", "local", "testnet")
    assert entry.local_endpoints("http://127.0.0.1:1234").ws_user == "ws://127.0.0.1:1234/ws-api/v3"
    assert "binance" in known_venues() and "BINANCE" in REGISTRY and "nope" not in REGISTRY
    assert 42 not in REGISTRY
    with pytest.raises(ConfigError, match=r"unknown venue 'kraken' \(known venues: binance\)"):
        lookup("kraken")
    with pytest.raises(ConfigError, match="not a venue name"):
        lookup("bin ance")
    with pytest.raises(ConfigError, match="a venue name is a string"):
        lookup(7)  # type: ignore[arg-type]


def _fake_venue(name: str) -> Any:
    return types.SimpleNamespace(name=name, spec=VENUE.spec)


def test_register_refuses_a_second_claim_to_a_name_unless_replacing() -> None:
    reg = VenueRegistry({"binance": "marketlink.venues.binance"})
    with pytest.raises(ConfigError, match="already registered"):
        reg.register(VENUE, local_endpoints)  # listed lazily counts as registered
    entry = reg.register(VENUE, local_endpoints, replace=True)
    assert reg.lookup("binance") is entry
    with pytest.raises(ConfigError, match="already registered"):
        reg.register(VENUE, local_endpoints)
    with pytest.raises(ConfigError, match="must be callable"):
        reg.register(VENUE, "http://x", replace=True)  # type: ignore[arg-type]
    reg.unregister("BINANCE")
    assert reg.names() == ()
    with pytest.raises(ConfigError, match=r"known venues: none"):
        reg.lookup("binance")


def test_a_lazily_listed_module_is_imported_once_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    good = types.ModuleType("fake_good")
    good.VENUE = VENUE  # type: ignore[attr-defined]
    good.local_endpoints = local_endpoints  # type: ignore[attr-defined]
    empty = types.ModuleType("fake_empty")
    misnamed = types.ModuleType("fake_misnamed")
    misnamed.VENUE = VENUE  # type: ignore[attr-defined]
    misnamed.local_endpoints = local_endpoints  # type: ignore[attr-defined]
    for module in (good, empty, misnamed):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    reg = VenueRegistry({"binance": "fake_good", "empty": "fake_empty", "other": "fake_misnamed"})
    first = reg.lookup("binance")
    monkeypatch.delitem(sys.modules, "fake_good")  # a second import would now fail
    assert reg.lookup("binance") is first
    with pytest.raises(ConfigError, match="must define VENUE and local_endpoints"):
        reg.lookup("empty")
    with pytest.raises(ConfigError, match="defines 'binance', not 'other'"):
        reg.lookup("other")


def test_the_module_level_register_feeds_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("marketlink.venues.registry.REGISTRY", VenueRegistry())
    monkeypatch.setattr("marketlink.api.REGISTRY", marketlink.venues.registry.REGISTRY)
    assert known_venues() == ()
    register(VENUE, local_endpoints)
    assert known_venues() == ("binance",)
    assert isinstance(connect("binance", ["BTC-USDT"]), Connecting)


# -- connect(): what is refused before any network ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"venue": "bitfinex"}, r"unknown venue 'bitfinex' \(known venues: binance\)"),
        ({"trading_pairs": "BTC-USDT"}, r"a list of pairs, e\.g\. \['BTC-USDT'\]"),
        ({"trading_pairs": 5}, "must be a list of pairs"),
        ({"trading_pairs": [b"BTC-USDT"]}, "a BASE-QUOTE string"),
        ({"trading_pairs": []}, "at least one trading pair"),
        ({"trading_pairs": ["BTCUSDT"]}, "BTCUSDT"),
        ({"domain": "us"}, r"unknown domain 'us' \(known: com, local, testnet\)"),
        ({"api_secret": SECRET}, "without api_key"),
        ({"private_key_pem": SECRET}, "without api_key"),
        ({"api_key": KEY}, "needs api_secret"),
        ({"api_key": ""}, "non-empty"),
        ({"api_key": KEY, "api_secret": ""}, "api_secret must be a non-empty string"),
        ({"api_key": KEY, "api_secret": SECRET, "private_key_pem": SECRET}, "not both"),
        ({"api_key": KEY, "private_key_pem": "not a pem"}, "not a readable unencrypted PEM"),
        ({"endpoints": "http://127.0.0.1:1"}, "must be an Endpoints value"),
        ({"timeout": 0}, "positive number of seconds"),
        ({"timeout": float("inf")}, "positive number of seconds"),
        ({"timeout": True}, "positive number of seconds"),
        # The prefix is checked against the venue's own client id alphabet (Binance: no "!").
        ({"config": ConnectorConfig(client_id_prefix="ml!")}, r"characters the venue refuses: \['!'\]"),
    ],
)
def test_mistakes_raise_config_error_in_the_call_and_never_show_secrets(
    kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"venue": "binance", "trading_pairs": ["BTC-USDT"], **kwargs}
    with pytest.raises(ConfigError, match=message) as info:
        connect(args.pop("venue"), args.pop("trading_pairs"), **args)
    assert KEY not in str(info.value) and SECRET not in str(info.value)


async def test_sandbox_conflicts_and_a_stopped_or_foreign_sandbox_are_refused(sandbox: Sandbox) -> None:
    eps = local_endpoints(sandbox.base_url)
    with pytest.raises(ConfigError, match="sandbox= or endpoints="):
        connect("binance", ["BTC-USDT"], sandbox=sandbox, endpoints=eps)
    with pytest.raises(ConfigError, match="sandbox= or domain='testnet'"):
        connect("binance", ["BTC-USDT"], sandbox=sandbox, domain="testnet")
    with pytest.raises(ConfigError, match="not running"):
        connect("binance", ["BTC-USDT"], sandbox=Sandbox(SandboxConfig()))
    async with Sandbox(SandboxConfig(), frontends=[], autotick=False) as bare:
        with pytest.raises(ConfigError, match=r"does not serve binance \(it serves: nothing\)"):
            connect("binance", ["BTC-USDT"], sandbox=bare)


def test_where_it_connects_follows_domain_or_endpoints() -> None:
    live = connect("binance", ["btc-usdt"])
    assert live.connector.ctx.endpoints == VENUE.spec.endpoints("com")
    assert live.connector.trading_pairs == ("BTC-USDT",)
    assert repr(live) == (
        "<Connecting binance to domain com (https://api.binance.com), pairs ['BTC-USDT'], public only>"
    )
    test = connect("binance", ("BTC-USDT",), domain="testnet", api_key=KEY, api_secret=SECRET)
    assert test.connector.ctx.endpoints.rest == "https://testnet.binance.vision"
    assert "Credentials(hmac, key …WXYZ)" in repr(test) and SECRET not in repr(test) and KEY not in repr(test)
    eps = Endpoints("http://127.0.0.1:1", "ws://127.0.0.1:1", "ws://127.0.0.1:1/ws-api/v3")
    own = connect("binance", iter(["ETH-BTC"]), endpoints=eps, config=ConnectorConfig(client_id_prefix="zz"))
    assert own.connector.ctx.endpoints is eps and own.connector.config.client_id_prefix == "zz"
    # The venue's own client id alphabet applies: Binance Spot takes "-" and "_", not "." or ":"
    # (those are USD-M's), and a prefix it would refuse is a mistake caught before any order.
    dashed = connect("binance", ["BTC-USDT"], endpoints=eps, config=ConnectorConfig(client_id_prefix="m_l-"))
    cid = dashed.connector.client_ids.new(Side.BUY, "BTC-USDT")
    assert cid.startswith("m_l-") and dashed.connector.client_ids.owns(cid)
    with pytest.raises(ConfigError, match="refuses"):
        connect("binance", ["BTC-USDT"], endpoints=eps, config=ConnectorConfig(client_id_prefix="m.l:"))


def test_an_ed25519_key_is_used_for_signing() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    conn = connect("binance", ["BTC-USDT"], api_key=KEY, private_key_pem=pem)
    assert "ed25519" in repr(conn) and "PRIVATE KEY" not in repr(conn)


# -- connect(): starting against the sandbox ------------------------------------------------------


async def test_await_gives_a_ready_connector_on_the_demo_account(sandbox: Sandbox) -> None:
    conn = await connect("binance", ["BTC-USDT", "ETH-USDT"], sandbox=sandbox, config=ConnectorConfig(seed=1))
    try:
        assert isinstance(conn, SpotConnector) and conn.ready
        assert all(part.ready for part in conn.status().values())
        usdt = next(b for b in sandbox.exchange.balances("demo") if b.asset == "USDT")
        assert conn.total_balance("USDT") == usdt.free + usdt.locked > 0  # the demo keys were used
        assert conn.best_bid("ETH-USDT") == sandbox.exchange.depth("ETHUSDT", 1).bids[0][0]
    finally:
        await conn.stop()


async def test_restore_hands_saved_orders_to_the_new_connector(sandbox: Sandbox) -> None:
    from marketlink.core.enums import OrderType
    from marketlink.core.orders import InFlightOrder

    first = await connect("binance", ["BTC-USDT"], sandbox=sandbox, config=ConnectorConfig(seed=1))
    cid = first.buy("BTC-USDT", Decimal("0.01"), OrderType.LIMIT, Decimal("40000"))
    sub = first.bus.subscribe()
    async with asyncio.timeout(10):
        async for event in sub:
            if isinstance(event, OrderCreated) and event.client_order_id == cid:
                break
    sub.close()
    saved = [o.to_dict() for o in first.in_flight_orders().values()]
    await first.stop()
    with pytest.raises(ConfigError, match="InFlightOrder"):
        connect("binance", ["BTC-USDT"], sandbox=sandbox, restore=saved)  # type: ignore[arg-type]
    second = await connect(
        "binance", ["BTC-USDT"], sandbox=sandbox, config=ConnectorConfig(seed=2),
        restore=[InFlightOrder.from_dict(d) for d in saved],
    )
    try:
        assert cid in second.in_flight_orders()
        [result] = await second.cancel_all(10.0)  # another instance id, still ours: restored
        assert result.client_order_id == cid and result.success
    finally:
        await second.stop()


async def test_async_with_stops_the_connector_when_the_block_ends_even_on_error(sandbox: Sandbox) -> None:
    before = _open_tasks()
    connecting = connect("binance", ["BTC-USDT"], sandbox=sandbox)
    statuses: list[Any] = []  # ConnectorStatusChanged only (the filter)
    connecting.connector.bus.subscribe_callback(statuses.append, (ConnectorStatusChanged,))
    with pytest.raises(ZeroDivisionError):
        async with connecting as conn:
            assert conn is connecting.connector and conn.ready
            created = asyncio.Event()
            conn.bus.subscribe_callback(lambda e: created.set(), (OrderCreated,))
            bid = conn.best_bid("BTC-USDT")
            assert bid is not None
            conn.buy("BTC-USDT", D("0.001"), marketlink.OrderType.LIMIT, bid * D("0.9"))
            await asyncio.wait_for(created.wait(), 10)
            1 / 0  # noqa: B018
    assert statuses[0].ready is False and statuses[-1].ready is True  # heard the start itself
    assert conn.bus.closed and _open_tasks() <= before
    # Stopping does not cancel: the order still rests at the venue.
    assert len(sandbox.exchange.open_orders("demo")) == 1


async def test_a_connect_result_starts_once(sandbox: Sandbox) -> None:
    connecting = connect("binance", ["BTC-USDT"], sandbox=sandbox)
    conn = await connecting
    try:
        with pytest.raises(RuntimeError, match="starts its connector once"):
            await connecting
        with pytest.raises(RuntimeError, match="starts its connector once"):
            async with connecting:
                pass
    finally:
        await conn.stop()


async def test_explicit_keys_win_over_the_demo_account(sandbox: Sandbox) -> None:
    async with connect("binance", ["BTC-USDT"], sandbox=sandbox, api_key=KEY, api_secret=SECRET) as conn:
        assert conn.ready and conn.total_balance("BTC") > 0


async def test_a_failed_start_stops_the_connector_before_raising(sandbox: Sandbox) -> None:
    before = _open_tasks()
    bad_secret = connect("binance", ["BTC-USDT"], sandbox=sandbox, api_key=KEY, api_secret="wrong-secret")
    with pytest.raises(AuthError):
        await bad_secret
    assert bad_secret.connector.bus.closed
    unknown_pair = connect("binance", ["DOGE-USDT"], sandbox=sandbox)
    with pytest.raises(ConfigError, match="DOGE-USDT"):
        async with unknown_pair:
            raise AssertionError("never entered")
    assert unknown_pair.connector.bus.closed
    nobody_home = connect("binance", ["BTC-USDT"], endpoints=local_endpoints("http://127.0.0.1:9"))
    conn = nobody_home.connector
    real_stop = conn.stop

    async def stop_then_fail(**kwargs: Any) -> Any:
        await real_stop(**kwargs)
        raise RuntimeError("stop failed too")

    conn.stop = stop_then_fail  # type: ignore[method-assign]
    with pytest.raises(ConnectionFailed):  # the start's error, not the stop's
        await nobody_home
    assert conn.bus.closed and _open_tasks() <= before


async def test_a_start_cut_short_by_its_timeout_or_a_cancel_cleans_up(sandbox: Sandbox) -> None:
    before = _open_tasks()
    # Books never sync while every depth snapshot fails: the start times out naming them.
    sandbox.faults.fail_requests(1_000, status=503, path_prefix="/api/v3/depth")
    slow = connect("binance", ["BTC-USDT"], sandbox=sandbox, timeout=0.5)
    with pytest.raises(TimeoutError, match="order_books"):
        await slow
    assert slow.connector.bus.closed
    started = asyncio.Event()
    cancelled = connect("binance", ["BTC-USDT"], sandbox=sandbox)
    cancelled.connector.bus.subscribe_callback(lambda e: started.set(), (ConnectorStatusChanged,))
    task = asyncio.create_task(_await(cancelled))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.connector.bus.closed and _open_tasks() <= before
    sandbox.faults.clear()


async def _await(connecting: Connecting) -> SpotConnector:
    return await connecting


async def test_secrets_never_reach_the_logs(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect("binance", ["BTC-USDT"], sandbox=sandbox, api_key=KEY, api_secret=SECRET) as conn:
        done = asyncio.Event()
        conn.bus.subscribe_callback(lambda e: done.set(), (OrderCancelled,))
        bid = conn.best_bid("BTC-USDT")
        assert bid is not None
        cid = conn.buy("BTC-USDT", D("0.001"), marketlink.OrderType.LIMIT, bid * D("0.9"))
        conn.cancel("BTC-USDT", cid)
        await asyncio.wait_for(done.wait(), 10)
    with pytest.raises(AuthError):
        await connect("binance", ["BTC-USDT"], sandbox=sandbox, api_key=KEY, api_secret="wrong-" + SECRET)
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "binance: connecting to the sandbox" in text and "key …WXYZ" in text  # the log is there
    assert KEY not in text and SECRET not in text


# -- the package's public names -------------------------------------------------------------------


def test_every_public_name_resolves_and_the_list_is_complete() -> None:
    exports = marketlink._EXPORTS
    assert sorted(marketlink.__all__) == sorted(["__version__", *exports])
    for name, module in exports.items():
        value = getattr(marketlink, name)
        assert value is getattr(sys.modules[module], name)
    assert marketlink.connect is connect and "connect" in dir(marketlink)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        marketlink.nope  # noqa: B018


def test_import_marketlink_stays_light() -> None:
    code = "import sys, marketlink; print([m for m in ('aiohttp', 'marketlink.engine') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# -- the documentation runs -----------------------------------------------------------------------

_BLOCK = re.compile(r"^(?:<!--(?P<note>[^>]*)-->\n)?```python\n(?P<code>.*?)^```", re.M | re.S)


def _doc_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """(first line, code, runnable) per python block; a block right after a "not run" comment
    is shown, not run."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code")) + 1
        runnable = "not run" not in (m.group("note") or "")
        blocks.append((line, m.group("code"), runnable))
    return blocks


def _python_api_ended_cleanly(ns: dict[str, Any]) -> bool:
    return ns["results"] == [] and not ns["sandbox"].running  # its last block ran


def _sandbox_doc_ended_cleanly(ns: dict[str, Any]) -> bool:
    return bool(ns["resynced"].is_set()) and not ns["sandbox"].running


@pytest.mark.parametrize(
    ("doc", "shown_only", "ended_cleanly"),
    [("python-api.md", 2, _python_api_ended_cleanly), ("sandbox.md", 0, _sandbox_doc_ended_cleanly)],
)
async def test_every_python_snippet_of_the_docs_runs_in_order(
    doc: str, shown_only: int, ended_cleanly: Any
) -> None:
    path = ROOT / "docs" / doc
    blocks = _doc_blocks(path)
    runnable = [b for b in blocks if b[2]]
    assert len(runnable) >= 4 and len(blocks) - len(runnable) == shown_only
    namespace: dict[str, Any] = {"__name__": doc}
    try:
        for line, code, _ in runnable:
            # Padding makes a traceback point at the line of the Markdown file.
            source = "\n" * (line - 1) + code
            compiled = compile(source, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(compiled, namespace)
            if inspect.iscoroutine(result):
                await asyncio.wait_for(result, 30)
    finally:
        conn, sb = namespace.get("conn"), namespace.get("sandbox")
        if isinstance(conn, SpotConnector):
            await conn.stop()
        if isinstance(sb, Sandbox):
            await sb.stop()
    assert ended_cleanly(namespace)


def test_the_quickstart_example_runs_by_itself() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "connected to binance, ready: True"
    market_buy = re.compile(r"market buy \S+: \d fill\(s\), 0\.00100000 BTC at [\d.]+, fees .+")
    assert any(market_buy.fullmatch(ln) for ln in lines)
    assert any(ln.startswith("refused locally: rule ") for ln in lines)
    assert any(ln.startswith("cancel_all: ") and ln.count("cancelled") == 2 for ln in lines)
    assert any(ln.endswith("agree with the exchange") for ln in lines)
    assert lines[-1] == "connector stopped"
