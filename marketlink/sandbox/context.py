"""What the sandbox server hands each venue front-end, and what a front-end must provide.

The exchange engine is venue-neutral; a front-end (Binance Spot now, Bybit v5 and Binance USD-M
later) translates one venue's wire protocol onto it. The server owns the process-level things
(aiohttp app, market-flow timer, clock, credentials, faults) and passes them in one context, so
front-ends never reach for globals and several can serve the same exchange side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from marketlink.sandbox.exchange import Exchange
from marketlink.sandbox.faults import Faults


@dataclass(frozen=True, slots=True)
class ApiCredential:
    """One API key of a sandbox account.

    ``secret`` is set for HMAC keys; ``ed25519_public_key_pem`` for Ed25519 keys (the venue only
    holds the public half, as on the real exchange). ``repr`` never shows the secret.
    """

    api_key: str
    account: str
    secret: str | None = field(default=None, repr=False)
    ed25519_public_key_pem: str | None = field(default=None, repr=False)
    can_trade: bool = True
    #: Sandbox epoch ms from which the venue refuses the key (keys can be given an expiry date,
    #: or be revoked); ``None``: never.
    expires_at_ms: int | None = None


class SandboxClock:
    """Sandbox time in epoch milliseconds: the wall clock plus the armed fault shift.

    Real venues run on wall-clock time and clients compare timestamps with it, so the sandbox
    does too; the fault shift moves it to provoke clock-skew rejections.
    """

    def __init__(self, faults: Faults, wall_ms: Callable[[], int] | None = None) -> None:
        self._faults = faults
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)

    def now_ms(self) -> int:
        return self._wall_ms() + self._faults.clock_shift_ms


@dataclass
class SandboxContext:
    """Everything shared by the front-ends of one running sandbox."""

    exchange: Exchange
    faults: Faults
    clock: SandboxClock
    credentials: dict[str, ApiCredential]  # api_key -> credential
    options: Mapping[str, object] = field(default_factory=dict)  # per-venue knobs (rate limits, lifetimes)

    def credential(self, api_key: str) -> ApiCredential | None:
        return self.credentials.get(api_key)


class Frontend(Protocol):
    """A venue front-end plugged into the sandbox server."""

    name: str

    def install(self, app: web.Application) -> None:
        """Add this venue's routes (REST paths, WebSocket endpoints) to ``app``."""

    async def on_tick(self, now_ms: int) -> None:
        """Called after every market-flow step (every 100 ms) and after client orders: flush
        depth diffs, trades and tickers to stream subscribers, expire listen keys, close sockets
        past their lifetime, apply stream faults."""

    async def close(self) -> None:
        """Close every socket this front-end holds (server shutdown)."""
