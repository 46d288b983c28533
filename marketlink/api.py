"""``marketlink.connect``: a started connector from a venue's name, in one call.

The engine's ``SpotConnector`` takes a ``Venue`` object, ``Credentials`` and ``Endpoints``; a user
has a venue name, two strings from a key store and maybe a sandbox. ``connect`` does that
translation and the start, and nothing more, so every behaviour documented for the connector
holds unchanged.

``connect`` is a plain function returning a ``Connecting``, not a coroutine function, because one
call should serve both ways a user holds a connection:

* ``conn = await marketlink.connect(...)``: a started connector, stopped by the caller;
* ``async with marketlink.connect(...) as conn:``: stopped when the block ends, however it ends.

Everything that can be checked without the network (the venue name, the domain, the keys, the
pairs, a sandbox that is not running) is checked in the call itself, so a mistake raises
``ConfigError`` on the line that made it rather than at the first ``await``. A start that fails
stops the half-started connector before the error propagates: no socket or task outlives it.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from marketlink.core.credentials import Credentials
from marketlink.core.errors import ConfigError, InvalidTradingPair
from marketlink.core.orders import InFlightOrder
from marketlink.core.pairs import TradingPair
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.venues.base import Endpoints
from marketlink.venues.registry import REGISTRY, VenueEntry, known_venues

if TYPE_CHECKING:
    from marketlink.sandbox.server import Sandbox

__all__ = ["Connecting", "connect", "known_venues"]

log = logging.getLogger(__name__)


class Connecting:
    """A connector on its way up: await it, or use it as ``async with``; either starts it once.

    ``connector`` is built already (not started), so a caller can subscribe to its bus before
    awaiting and hear the status changes of the start itself.
    """

    __slots__ = ("_restore", "_used", "_where", "_who", "connector", "timeout")

    def __init__(
        self,
        connector: SpotConnector,
        *,
        timeout: float,
        where: str,
        who: str,
        restore: Sequence[InFlightOrder] = (),
    ) -> None:
        self.connector = connector
        self.timeout = timeout
        self._restore = tuple(restore)
        self._where = where
        self._who = who  # "public only", or the credentials' repr (the key's last characters only)
        self._used = False

    def __await__(self) -> Generator[Any, None, SpotConnector]:
        return self._start().__await__()

    async def __aenter__(self) -> SpotConnector:
        return await self._start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.connector.stop()

    async def _start(self) -> SpotConnector:
        if self._used:
            raise RuntimeError("a connect(...) result starts its connector once; call connect() again")
        self._used = True
        conn = self.connector
        log.info("%s: connecting to %s, %d pairs, %s", conn.name, self._where, len(conn.trading_pairs),
                 self._who)
        try:
            await conn.start(self._restore, timeout=self.timeout)
        except BaseException:
            # Cancelled or failed half way: release sockets and tasks before the error goes up.
            try:
                await conn.stop()
            except Exception:
                log.exception("%s: stopping after a failed start failed too", conn.name)
            raise
        log.info("%s: ready", conn.name)
        return conn

    def __repr__(self) -> str:
        conn = self.connector
        return f"<Connecting {conn.name} to {self._where}, pairs {list(conn.trading_pairs)}, {self._who}>"


def connect(
    venue: str,
    trading_pairs: Iterable[str],
    *,
    api_key: str | None = None,
    api_secret: str | None = None,
    private_key_pem: str | None = None,
    domain: str = "com",
    endpoints: Endpoints | None = None,
    sandbox: Sandbox | None = None,
    config: ConnectorConfig | None = None,
    timeout: float = 30.0,
    restore: Iterable[InFlightOrder] = (),
) -> Connecting:
    """A connector to ``venue`` for ``trading_pairs``, started when awaited (see the module doc).

    Credentials: ``api_key`` with ``api_secret`` (HMAC) or ``private_key_pem`` (Ed25519); none
    at all gives a public-only connector (books, trades, tickers), except with ``sandbox=``,
    where the sandbox's funded demo account is used. Where it connects: ``sandbox=`` (a running
    ``Sandbox``), else ``endpoints=``, else the venue's ``domain``; naming two of them is an
    error rather than a silent choice. ``timeout`` bounds the start (``TimeoutError`` names the
    parts that were not ready). ``restore``: orders a journal saved, tracked again at the start
    (reconciled with the venue before ready, and ours to cancel).
    """
    entry = REGISTRY.lookup(venue)
    pairs = _pairs(trading_pairs)
    eps, where = _endpoints(entry, domain, endpoints, sandbox)
    credentials = _credentials(entry, api_key, api_secret, private_key_pem, sandbox)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < float("inf"):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    connector = SpotConnector(entry.venue, pairs, credentials, endpoints=eps, config=config)
    who = repr(credentials) if credentials is not None else "public only"
    orders = list(restore)
    if not all(isinstance(o, InFlightOrder) for o in orders):
        raise ConfigError("restore takes InFlightOrder objects (InFlightOrder.from_dict of saved ones)")
    return Connecting(connector, timeout=float(timeout), where=where, who=who, restore=orders)


def _pairs(trading_pairs: Iterable[str]) -> list[str]:
    # A lone string is an iterable of characters: "BTC-USDT" would become eight bad pairs.
    if isinstance(trading_pairs, str):
        raise ConfigError(f"trading_pairs is a list of pairs, e.g. [{trading_pairs!r}]")
    try:
        pairs = list(trading_pairs)
    except TypeError:
        raise ConfigError(f"trading_pairs must be a list of pairs, got {trading_pairs!r}") from None
    for pair in pairs:
        if not isinstance(pair, str):
            raise ConfigError(f"a trading pair is a BASE-QUOTE string, got {pair!r}")
        try:
            TradingPair.parse(pair)
        except InvalidTradingPair as exc:
            raise ConfigError(f"trading_pairs: {exc}") from None
    return pairs


def _endpoints(
    entry: VenueEntry, domain: str, endpoints: Endpoints | None, sandbox: Sandbox | None
) -> tuple[Endpoints, str]:
    if sandbox is not None:
        if endpoints is not None:
            raise ConfigError("give sandbox= or endpoints=, not both")
        if domain != "com":
            raise ConfigError(f"give sandbox= or domain={domain!r}, not both")
        if not sandbox.running:
            raise ConfigError("the sandbox is not running: start it first (async with Sandbox() as sandbox)")
        served = [f.name for f in sandbox.frontends]
        if entry.name not in served:
            raise ConfigError(
                f"this sandbox does not serve {entry.name} (it serves: {', '.join(served) or 'nothing'})"
            )
        return entry.local_endpoints(sandbox.base_url), f"the sandbox at {sandbox.base_url}"
    if endpoints is not None:
        if not isinstance(endpoints, Endpoints):
            raise ConfigError(f"endpoints must be an Endpoints value, got {type(endpoints).__name__}")
        return endpoints, endpoints.rest
    eps = entry.venue.spec.endpoints(domain)  # ConfigError listing the domains
    return eps, f"domain {domain} ({eps.rest})"


def _credentials(
    entry: VenueEntry,
    api_key: str | None,
    api_secret: str | None,
    private_key_pem: str | None,
    sandbox: Sandbox | None,
) -> Credentials | None:
    """Never put a key or a secret into an error message: they end up in logs and tracebacks."""
    if api_key is None:
        if api_secret is not None or private_key_pem is not None:
            raise ConfigError(f"{entry.name}: a secret or private key was given without api_key")
        if sandbox is None:
            return None
        demo = sandbox.demo_credentials
        return Credentials(demo.api_key, demo.api_secret)
    if not isinstance(api_key, str) or not api_key:
        raise ConfigError(f"{entry.name}: api_key must be a non-empty string")
    if api_secret is not None and private_key_pem is not None:
        raise ConfigError(f"{entry.name}: give api_secret (HMAC) or private_key_pem (Ed25519), not both")
    for name, value in (("api_secret", api_secret), ("private_key_pem", private_key_pem)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{entry.name}: {name} must be a non-empty string")
    if api_secret is None and private_key_pem is None:
        raise ConfigError(f"{entry.name}: api_key needs api_secret (HMAC) or private_key_pem (Ed25519)")
    return Credentials(api_key, api_secret=api_secret, private_key_pem=private_key_pem)
