"""``marketlink connect``: check a venue's API keys and store them encrypted; ``--list`` them.

The keys are asked for with hidden prompts (they never reach the shell history), or read from
environment variables with ``--from-env`` for scripts. They are checked against the venue before
anything is written (see ``client/verify.py``), so a stored key is a key that worked. Every
failure is one line on stderr and exit code 1: a traceback would be noise to a user and could
carry local variables, which here are secrets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from marketlink.client.keystore import KeyStore

__all__ = ["ENV_API_KEY", "ENV_API_SECRET", "ENV_PRIVATE_KEY_FILE", "connect"]

ENV_API_KEY = "MARKETLINK_API_KEY"
ENV_API_SECRET = "MARKETLINK_API_SECRET"
ENV_PRIVATE_KEY_FILE = "MARKETLINK_PRIVATE_KEY_FILE"

_VENUE = typer.Argument(help="Venue to store keys for, e.g. binance.", show_default=False)
_LIST = typer.Option("--list", help="Show the stored venues with masked keys, and exit.")
_FROM_ENV = typer.Option(
    "--from-env",
    help=f"Read the keys from {ENV_API_KEY} and {ENV_API_SECRET} (or {ENV_PRIVATE_KEY_FILE}) "
    "instead of prompting.",
)
_PRIVATE_KEY = typer.Option(
    "--private-key-file", help="Ed25519 private key (PEM file) to sign with instead of an HMAC secret."
)
_DOMAIN = typer.Option("--domain", help="Venue domain to check the keys on (com, testnet...).")
_SANDBOX_URL = typer.Option("--sandbox-url", help="Check the keys against a marketlink sandbox at this URL.")
_NO_CHECK = typer.Option("--no-check", help="Store without asking the venue (offline setups).")
_READ_ONLY = typer.Option("--allow-read-only", help="Store a key that cannot trade (monitoring only).")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def connect(
    venue: Annotated[str | None, _VENUE] = None,
    list_keys: Annotated[bool, _LIST] = False,
    from_env: Annotated[bool, _FROM_ENV] = False,
    private_key_file: Annotated[Path | None, _PRIVATE_KEY] = None,
    domain: Annotated[str, _DOMAIN] = "com",
    sandbox_url: Annotated[str | None, _SANDBOX_URL] = None,
    no_check: Annotated[bool, _NO_CHECK] = False,
    allow_read_only: Annotated[bool, _READ_ONLY] = False,
) -> None:
    """Store a venue's API keys, encrypted under your password, after checking them."""
    from marketlink.client.home import keystore_path, marketlink_home
    from marketlink.client.keystore import KeyStore
    from marketlink.core.errors import MarketlinkError

    try:
        store = KeyStore(keystore_path(marketlink_home()))
        if list_keys:
            _list(store)
            return
        if venue is None:
            _fail("name a venue (marketlink connect binance) or use --list")
        _store(store, venue, from_env, private_key_file, domain, sandbox_url, no_check, allow_read_only)
    except MarketlinkError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{type(exc).__name__}: {exc.strerror or exc}")


def _list(store: KeyStore) -> None:
    entries = store.entries()
    if not entries:
        typer.echo(f"no keys stored in {store.path}; add some with: marketlink connect <venue>")
        return
    for e in entries:
        when = dt.datetime.fromtimestamp(e.created, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        typer.echo(f"{e.venue:<20} {e.kind:<8} key {e.key_hint:<8} stored {when}")


def _store(
    store: KeyStore,
    venue: str,
    from_env: bool,
    private_key_file: Path | None,
    domain: str,
    sandbox_url: str | None,
    no_check: bool,
    allow_read_only: bool,
) -> None:
    from marketlink.client.keystore import password_from_env
    from marketlink.client.verify import describe_failure, verify_keys
    from marketlink.core.credentials import Credentials
    from marketlink.core.errors import ConfigError
    from marketlink.venues.registry import REGISTRY

    entry = REGISTRY.lookup(venue)
    name = entry.name
    endpoints = entry.local_endpoints(sandbox_url.rstrip("/")) if sandbox_url else None
    if endpoints is None:
        entry.venue.spec.endpoints(domain)  # ConfigError naming the domains, before any prompt
    pem_path = private_key_file
    if from_env:
        api_key = os.environ.get(ENV_API_KEY, "")
        secret = os.environ.get(ENV_API_SECRET) or None
        if pem_path is None and os.environ.get(ENV_PRIVATE_KEY_FILE):
            pem_path = Path(os.environ[ENV_PRIVATE_KEY_FILE])
        if not api_key:
            raise ConfigError(f"--from-env: {ENV_API_KEY} is not set")
        if secret is None and pem_path is None:
            raise ConfigError(f"--from-env: set {ENV_API_SECRET} (HMAC) or {ENV_PRIVATE_KEY_FILE} (Ed25519)")
    else:
        api_key = typer.prompt(f"{name} API key", hide_input=True).strip()
        secret = None if pem_path is not None else typer.prompt(f"{name} API secret", hide_input=True).strip()
    pem = _read_pem(pem_path) if pem_path is not None else None
    if pem is not None:
        secret = None
    credentials = Credentials(api_key, api_secret=secret, private_key_pem=pem)

    if not no_check:
        where = sandbox_url or f"{name} ({domain})"
        typer.echo(f"checking the key {credentials.key_hint} on {where} ...")
        try:
            check = asyncio.run(verify_keys(name, credentials, endpoints, domain=domain))
        except Exception as exc:  # every failure becomes one line; the type decides the words
            _fail(describe_failure(name, exc))
        if check.clock_warning:
            typer.echo(f"warning: {check.clock_warning}", err=True)
        if check.can_trade is False and not allow_read_only:
            _fail(f"the key works but cannot trade on {name}: enable spot trading for it in the venue's "
                  "API settings (or pass --allow-read-only to store it for monitoring)")
        permission = {True: "can trade", False: "read only", None: "trading permission not checked"}
        typer.echo(f"ok: {name} accepted the key ({permission[check.can_trade]}, {check.assets} assets "
                   "with a balance)")

    password = password_from_env()
    if password is None:
        first = not store.entries()
        password = typer.prompt("key store password" if not first else "new key store password",
                                hide_input=True, confirmation_prompt=first)
    saved = store.put(name, credentials, password)
    typer.echo(f"stored {name} key {saved.key_hint} ({saved.kind}) in {store.path}")


def _read_pem(path: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from marketlink.core.errors import ConfigError

    try:
        text = path.expanduser().read_text(encoding="ascii")
        key = load_pem_private_key(text.encode("ascii"), password=None)
    except (OSError, ValueError, TypeError) as exc:
        # ``exc`` from the PEM parser never quotes the key material, only what is wrong with it.
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: the PEM holds a {type(key).__name__}, not an Ed25519 private key")
    return text
