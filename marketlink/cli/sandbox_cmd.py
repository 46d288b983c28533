"""``marketlink sandbox``: run the local exchange until Ctrl-C.

It prints what a user needs to point a client at it (URLs, the demo account's API key and
secret) and nothing else; the secret is printed on purpose, once, and never logged. Heavy
imports happen inside the command so ``marketlink --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from marketlink.sandbox.config import SandboxConfig
    from marketlink.sandbox.server import Sandbox

DEFAULT_MARKETS = "BTC-USDT,ETH-USDT,SOL-USDT,BNB-USDT,XRP-USDT,ETH-BTC"
# Where each venue's clients point, relative to the sandbox's http:// and ws:// bases.
VENUE_URLS: dict[str, tuple[tuple[str, str], ...]] = {
    "binance": (
        ("Binance REST", "{http}/api/v3"),
        ("Binance streams", "{ws}/ws  {ws}/stream"),
        ("Binance WS API", "{ws}/ws-api/v3"),
    ),
}
ADMIN_TOKEN_ENV = "MARKETLINK_SANDBOX_ADMIN_TOKEN"


_HOST = typer.Option("--host", help="Address to listen on (loopback unless --allow-remote).")
_PORT = typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a free one.")
_MARKETS = typer.Option("--markets", help="Comma-separated BASE-QUOTE pairs.")
_SEED = typer.Option("--seed", help="Seed of the market flow and of fault randomness.")
_FLOW = typer.Option("--flow/--no-flow", help="Simulated traders keep the books moving.")
_FLOW_RATE = typer.Option("--flow-rate", min=0.0, help="Flow activity; 2.0 is twice as busy.")
_ACCOUNTS = typer.Option("--accounts", help="TOML or JSON file of extra accounts (keys, balances, fees).")
_API_KEY = typer.Option("--api-key", help="Demo account API key (random if omitted).")
_API_SECRET = typer.Option("--api-secret", help="Demo account HMAC secret (with --api-key).")
_ADMIN_TOKEN = typer.Option(
    "--admin-token", envvar=ADMIN_TOKEN_ENV, help="Enable the /admin routes with this token."
)
_ALLOW_REMOTE = typer.Option(
    "--allow-remote", help="Allow a non-loopback --host: anyone who can reach it can trade and fault it."
)
_DURATION = typer.Option("--duration", min=0.0, help="Stop after this many seconds (default: until Ctrl-C).")


def sandbox(
    host: Annotated[str, _HOST] = "127.0.0.1",
    port: Annotated[int, _PORT] = 0,
    markets: Annotated[str, _MARKETS] = DEFAULT_MARKETS,
    seed: Annotated[int, _SEED] = 7,
    flow: Annotated[bool, _FLOW] = True,
    flow_rate: Annotated[float, _FLOW_RATE] = 1.0,
    accounts: Annotated[Path | None, _ACCOUNTS] = None,
    api_key: Annotated[str | None, _API_KEY] = None,
    api_secret: Annotated[str | None, _API_SECRET] = None,
    admin_token: Annotated[str | None, _ADMIN_TOKEN] = None,
    allow_remote: Annotated[bool, _ALLOW_REMOTE] = False,
    duration: Annotated[float | None, _DURATION] = None,
) -> None:
    """Run the local sandbox exchange until Ctrl-C, printing its URLs and demo credentials."""
    from marketlink.core.errors import ConfigError
    from marketlink.sandbox.config import SandboxConfig, load_accounts, parse_market_list

    try:
        config = SandboxConfig(
            host=host,
            port=port,
            markets=parse_market_list(markets),
            seed=seed,
            flow=flow,
            flow_rate=flow_rate,
            api_key=api_key,
            api_secret=api_secret,
            accounts=load_accounts(accounts) if accounts is not None else (),
            admin_token=admin_token,
            allow_remote=allow_remote,
        )
        asyncio.run(serve(config, duration=duration))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # where signal handlers cannot be installed (Windows)
        pass
    typer.echo("sandbox stopped")


async def serve(config: SandboxConfig, *, duration: float | None = None) -> None:
    """Start a sandbox, announce it, and run until SIGINT/SIGTERM or ``duration`` seconds."""
    from marketlink.sandbox.server import Sandbox

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not supported here / not main thread
            pass
    try:
        async with Sandbox(config) as sb:
            announce(sb)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def announce_lines(sb: Sandbox) -> list[tuple[str, str]]:
    """What to tell the user, as (label, value) rows."""
    demo = sb.demo_credentials
    rows = [
        ("REST", sb.base_url),
        ("WebSocket", sb.ws_url),
        ("Venues", ", ".join(f.name for f in sb.frontends) or "(none)"),
    ]
    for frontend in sb.frontends:
        for label, template in VENUE_URLS.get(frontend.name, ()):
            rows.append((label, template.format(http=sb.base_url, ws=sb.ws_url)))
    rows += [
        ("Markets", ", ".join(s.pair for s in sb.markets)),
        ("Flow", f"on, rate {sb.config.flow_rate:g}" if sb.config.flow else "off"),
    ]
    if sb.config.admin_token is not None:
        rows.append(("Admin", f"{sb.base_url}/admin (header X-Admin-Token)"))
    rows += [("Demo account", demo.account), ("API key", demo.api_key), ("API secret", demo.api_secret)]
    return rows


def announce(sb: Sandbox) -> None:
    """Print the rows: a Rich table on a terminal, plain ``label: value`` lines otherwise (so
    scripts can read them), flushed at once so a reader of the pipe sees them now."""
    rows = announce_lines(sb)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="marketlink sandbox", show_header=False, title_justify="left")
        table.add_column(style="bold cyan")
        table.add_column()
        for label, value in rows:
            table.add_row(label, value)
        console = Console()
        console.print(table)
        console.print("Press Ctrl-C to stop.")
        return
    typer.echo("marketlink sandbox is running")
    for label, value in rows:
        typer.echo(f"{label}: {value}")
    typer.echo("Press Ctrl-C to stop.")
