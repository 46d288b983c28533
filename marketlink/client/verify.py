"""Checking API keys against the venue before they are stored.

A key stored unchecked fails hours later, at the first order of a bot, with a venue error code
the user has to look up. So ``marketlink connect`` asks the venue once, through the same codec,
auth and HTTP client the connector uses: a server-time sample (our clock's offset) and a signed
account request (the key, the secret, the signature, the key's IP whitelist), then reads whether
the key may trade. Each way this can fail becomes one plain sentence (``describe_failure``);
none of them ever contains the key or the secret.

Whether a key may trade is a field of the account answer that the codecs do not parse yet, so it
is read here from a small per-venue table (``TRADE_PERMISSION``); a venue without a row reports
"not checked" rather than a guess. It belongs in each codec once a second venue needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from marketlink.core.credentials import Credentials
from marketlink.net.clock import SystemClock
from marketlink.net.errors import (
    AuthError,
    ClockSkew,
    ConnectionFailed,
    IpBanned,
    MalformedMessage,
    RateLimited,
    RequestTimeout,
    ServerError,
    VenueError,
)
from marketlink.net.http import HttpClient
from marketlink.net.throttler import Throttler
from marketlink.net.timesync import monotonic_ms
from marketlink.venues.base import Endpoints
from marketlink.venues.registry import REGISTRY

__all__ = ["SKEW_WARNING_MS", "TRADE_PERMISSION", "KeyCheck", "describe_failure", "verify_keys"]

#: venue -> the account answer's boolean field saying the key may place orders.
TRADE_PERMISSION: Final[Mapping[str, str]] = {"binance": "canTrade"}
#: Beyond this offset the user is told to fix the machine's clock (marketlink corrects for it,
#: but a clock this far off also breaks TLS, logs and every other tool on the machine).
SKEW_WARNING_MS: Final = 1000.0


@dataclass(frozen=True, slots=True)
class KeyCheck:
    venue: str
    clock_offset_ms: float  # venue time minus local time
    can_trade: bool | None  # None: this venue's permission is not checked
    assets: int  # assets with a balance, for a reassuring "found 3 assets"

    @property
    def clock_warning(self) -> str | None:
        if abs(self.clock_offset_ms) < SKEW_WARNING_MS:
            return None
        direction = "behind" if self.clock_offset_ms > 0 else "ahead of"
        seconds = abs(self.clock_offset_ms) / 1000
        return (f"this machine's clock is {seconds:.1f} s {direction} {self.venue}'s; marketlink "
                "corrects for it, but please enable time synchronisation (NTP)")


def _wall_ms() -> float:
    return time.time() * 1000


async def verify_keys(
    venue: str,
    credentials: Credentials,
    endpoints: Endpoints | None = None,
    *,
    domain: str = "com",
    time_ms: Callable[[], int] | None = None,
    timeout: float = 10.0,
) -> KeyCheck:
    """Ask ``venue`` whether ``credentials`` work; raises the venue's typed error otherwise.

    ``time_ms`` replaces the corrected clock used to sign (tests use it to sign with a skewed
    clock); by default requests are signed with local time plus the measured offset, exactly as
    the connector signs.
    """
    entry = REGISTRY.lookup(venue)
    codec = entry.venue.codec
    eps = endpoints or entry.venue.spec.endpoints(domain)
    offset = 0.0  # venue time minus monotonic_ms(), once measured

    def corrected_ms() -> int:
        # On the monotonic clock, as the connector signs: a wall-clock step between the sample
        # and the signed request must not move the timestamp.
        return int(monotonic_ms() + offset) if measured else int(_wall_ms())

    measured = False

    http = HttpClient(
        eps.rest,
        throttler=Throttler(entry.venue.spec.rate_limits, clock=SystemClock()),
        venue=codec,
        auth=entry.venue.make_auth(credentials),
        time_ms=time_ms or corrected_ms,
        timeout=timeout,
        retries=1,
    )
    try:
        # Timed around the actual send (after the throttler and signing), not around the call.
        answer = await http.timed_request(codec.server_time_request())
        server = codec.parse_server_time(answer.payload)
        offset = server - (answer.sent_ms + answer.received_ms) / 2
        measured = True
        payload: Any = await http.request(codec.balances_request())
        balances = codec.parse_balances(payload)
    finally:
        await http.close()
    field = TRADE_PERMISSION.get(entry.name)
    can_trade: bool | None = None
    if field is not None and isinstance(payload, dict) and isinstance(payload.get(field), bool):
        can_trade = payload[field]
    assets = sum(1 for b in balances.balances if b.total > 0)
    wall_offset = offset + monotonic_ms() - _wall_ms()  # venue minus this machine's wall clock
    return KeyCheck(entry.name, wall_offset, can_trade, assets)


def describe_failure(venue: str, exc: BaseException) -> str:
    """One line a user can act on. Venue messages are quoted as the venue sent them: they name
    codes and reasons, never the key (the key travels in a header the venue does not echo)."""
    code = f" (code {exc.code})" if isinstance(exc, VenueError) and exc.code is not None else ""
    if isinstance(exc, ClockSkew):
        return (f"{venue} refused the request's timestamp{code}: this machine's clock is too far off; "
                "enable time synchronisation (NTP) and try again")
    if isinstance(exc, AuthError):
        return (f"{venue} refused the key{code}: the key or secret is wrong, or the key is disabled, "
                "expired or deleted, or lacks the permission this needs, or its IP whitelist leaves "
                "out this machine; check them on the venue's API management page")
    if isinstance(exc, IpBanned):
        return f"{venue} has banned this IP for now{code}; wait and try again"
    if isinstance(exc, RateLimited):
        return f"{venue} is rate limiting this IP{code}; try again in a minute"
    if isinstance(exc, ConnectionFailed | RequestTimeout | ServerError):
        return f"cannot reach {venue}: {type(exc).__name__}: {exc}"
    if isinstance(exc, MalformedMessage):
        return f"{venue} answered something unexpected: {exc}"
    if isinstance(exc, VenueError):
        return f"{venue} refused the check{code}: {exc}"
    return f"the key check failed: {type(exc).__name__}"
