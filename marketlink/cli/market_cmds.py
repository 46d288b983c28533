"""``marketlink balance``, ``ticker`` and ``book``: one look at an account or a market, or a live view.

Each command starts a connector for just what it shows and stops it before returning, so a
command never leaves a socket or an order behind. ``ticker`` and ``book`` are public (no keys);
``balance`` reads the venue's keys from the key store (the password is asked, or read from
``MARKETLINK_PASSWORD``). ``--sandbox`` runs any of them against the embedded sandbox with its
demo account, so every command works offline and is tested the way a user runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from marketlink.core.credentials import Credentials
    from marketlink.engine.connector import SpotConnector

__all__ = ["balance", "book", "ticker"]

T = TypeVar("T")

_VENUE = typer.Option("--venue", help="Venue name (binance).")
_DOMAIN = typer.Option("--domain", help="Venue domain (com, testnet...).")
_SANDBOX = typer.Option("--sandbox", help="Use the embedded sandbox and its demo account (offline).")
_SEED = typer.Option("--seed", help="Seed of the sandbox's market flow (with --sandbox).")
_LIVE = typer.Option("--live", help="Follow it live until Ctrl-C.")
_DEPTH = typer.Option("--depth", min=1, max=100, help="Levels per side.")
_DURATION = typer.Option("--duration", min=0.0, help="With --live: stop after this many seconds.")
_PAIR = typer.Argument(help="Trading pair, BASE-QUOTE (e.g. BTC-USDT).", show_default=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _session(
    venue: str,
    pairs: list[str],
    *,
    sandbox: bool,
    seed: int,
    domain: str,
    credentials: Credentials | None,
    work: Callable[[SpotConnector], Awaitable[T]],
) -> T:
    """Start a connector (on a fresh sandbox with ``sandbox``), run ``work`` on it, stop it;
    every failure becomes one line on stderr and exit code 1 (2 for a usage mistake)."""
    from marketlink.core.errors import ConfigError, MarketlinkError

    async def main() -> T:
        import marketlink
        from marketlink.sandbox.config import SandboxConfig
        from marketlink.sandbox.server import Sandbox

        async with contextlib.AsyncExitStack() as stack:
            sb = None
            if sandbox:
                sb = await stack.enter_async_context(Sandbox(SandboxConfig(seed=seed, markets=tuple(pairs))))
            conn = await stack.enter_async_context(marketlink.connect(
                venue, pairs, sandbox=sb, domain=domain,
                api_key=credentials.api_key if credentials else None,
                api_secret=credentials.api_secret if credentials else None,
                private_key_pem=credentials.private_key_pem if credentials else None,
            ))
            return await work(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    except MarketlinkError as exc:
        raise _fail(str(exc)) from None
    except (TimeoutError, OSError) as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None


async def _until_stopped(
    console: Console, fingerprint: Callable[[], Hashable], render: Callable[[], RenderableType],
    line: Callable[[], str], duration: float | None,
) -> None:
    """A live view until Ctrl-C (SIGINT), SIGTERM or ``duration``."""
    from marketlink.cli.live import LiveDisplay, View, follow

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    timer = loop.call_later(duration, stop.set) if duration is not None else None
    try:
        with LiveDisplay(console) as display:
            await follow(display, View(fingerprint, render, line), stop)
    finally:
        if timer is not None:
            timer.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)


def _pair(pair: str) -> str:
    from marketlink.core.errors import InvalidTradingPair
    from marketlink.core.pairs import TradingPair

    try:
        return str(TradingPair.parse(pair.upper()))
    except InvalidTradingPair as exc:
        raise _fail(str(exc), 2) from None


# -- balance --------------------------------------------------------------------------------------


def balance(
    venue: Annotated[str, _VENUE] = "binance",
    domain: Annotated[str, _DOMAIN] = "com",
    sandbox: Annotated[bool, _SANDBOX] = False,
    seed: Annotated[int, _SEED] = 7,
) -> None:
    """The account's balances on a venue (keys from the key store), or on the sandbox."""
    from rich.console import Console
    from rich.table import Table

    from marketlink.core.errors import MarketlinkError

    try:
        credentials = None if sandbox else _stored_credentials(venue)
    except MarketlinkError as exc:
        raise _fail(str(exc)) from None

    async def work(conn: SpotConnector) -> None:
        rows = sorted((a, b) for a, b in conn.balances().items() if b.total != 0)
        console = Console(highlight=False)
        if not console.is_terminal:
            for asset, b in rows:
                typer.echo(f"{asset} total={b.total} available={b.available}")
            return
        table = Table(title=f"balances on {conn.name}{' (sandbox)' if sandbox else ''}", title_justify="left")
        for col in ("asset", "total", "available"):
            table.add_column(col, justify="left" if col == "asset" else "right")
        for asset, b in rows:
            table.add_row(asset, str(b.total), str(b.available))
        console.print(table)

    # The connector needs a market to start; balances do not depend on which.
    _session(venue, ["BTC-USDT"], sandbox=sandbox, seed=seed, domain=domain, credentials=credentials,
             work=work)


def _stored_credentials(venue: str) -> Credentials:
    from marketlink.client.home import keystore_path, marketlink_home
    from marketlink.client.keystore import KeyStore, password_from_env
    from marketlink.venues.registry import REGISTRY

    name = REGISTRY.lookup(venue).name
    store = KeyStore(keystore_path(marketlink_home()))
    if name not in store:
        store.get(name, "-")  # NoSuchKey, naming the stored venues and the command to add keys
    password = password_from_env() or typer.prompt("key store password", hide_input=True)
    return store.get(name, password)


# -- ticker and book ------------------------------------------------------------------------------


def ticker(
    pair: Annotated[str, _PAIR],
    live: Annotated[bool, _LIVE] = False,
    venue: Annotated[str, _VENUE] = "binance",
    domain: Annotated[str, _DOMAIN] = "com",
    sandbox: Annotated[bool, _SANDBOX] = False,
    seed: Annotated[int, _SEED] = 7,
    duration: Annotated[float | None, _DURATION] = None,
) -> None:
    """Best bid and ask, mid, spread and last trade of a pair (public data, no keys)."""
    from rich.console import Console

    from marketlink.cli.live import ticker_line

    pair = _pair(pair)

    async def work(conn: SpotConnector) -> None:
        def line() -> str:
            return ticker_line(pair, conn.best_bid(pair), conn.best_ask(pair), conn.last_trade_price(pair))

        if not live:
            typer.echo(line())
            return
        await _until_stopped(Console(highlight=False), line, line, line, duration)

    _session(venue, [pair], sandbox=sandbox, seed=seed, domain=domain, credentials=None, work=work)


def book(
    pair: Annotated[str, _PAIR],
    depth: Annotated[int, _DEPTH] = 10,
    live: Annotated[bool, _LIVE] = False,
    venue: Annotated[str, _VENUE] = "binance",
    domain: Annotated[str, _DOMAIN] = "com",
    sandbox: Annotated[bool, _SANDBOX] = False,
    seed: Annotated[int, _SEED] = 7,
    duration: Annotated[float | None, _DURATION] = None,
) -> None:
    """The order book of a pair, ``--depth`` levels per side (public data, no keys)."""
    from rich.console import Console

    from marketlink.cli.live import book_line, book_table
    from marketlink.core.enums import Side

    pair = _pair(pair)

    async def work(conn: SpotConnector) -> None:
        console = Console(highlight=False)

        def fingerprint() -> Hashable:
            return tuple(conn.book_rows(pair, Side.BUY, depth)), tuple(conn.book_rows(pair, Side.SELL, depth))

        def render() -> RenderableType:
            bids, asks = conn.book_rows(pair, Side.BUY, depth), conn.book_rows(pair, Side.SELL, depth)
            return book_table(pair, bids, asks, title=f"{pair} on {conn.name}")

        def line() -> str:
            bids, asks = conn.book_rows(pair, Side.BUY, depth), conn.book_rows(pair, Side.SELL, depth)
            return book_line(pair, bids, asks)

        if not live:
            if console.is_terminal:
                console.print(render())
            else:
                bids, asks = conn.book_rows(pair, Side.BUY, depth), conn.book_rows(pair, Side.SELL, depth)
                typer.echo(f"{pair} on {conn.name}")
                typer.echo("bid size\tbid\task\task size")
                for i in range(max(len(bids), len(asks))):
                    bp, bq = bids[i] if i < len(bids) else ("", "")
                    ap, aq = asks[i] if i < len(asks) else ("", "")
                    typer.echo(f"{bq}\t{bp}\t{ap}\t{aq}")
            return
        await _until_stopped(console, fingerprint, render, line, duration)

    _session(venue, [pair], sandbox=sandbox, seed=seed, domain=domain, credentials=None, work=work)
