"""The typed error set every venue's answers are classified into (ARCHITECTURE §4).

The engine reacts to the *type* (and to fields such as ``retry_after``), never to message text.
A codec turns a venue's status, code and body into one of these; the HTTP client raises it.
Like wsproto's errors carry the close code, ours carry the venue's code and raw message, for
logs and for humans, not for decisions.
"""

from __future__ import annotations

from marketlink.core.errors import MarketlinkError, RuleViolation

__all__ = [
    "AuthError",
    "ClockSkew",
    "ConnectionFailed",
    "DuplicateOrder",
    "FilterRejected",
    "InsufficientFunds",
    "IpBanned",
    "MalformedMessage",
    "OrderNotFound",
    "OrderRateLimited",
    "RateLimited",
    "Rejected",
    "RequestTimeout",
    "RuleViolation",
    "ServerError",
    "Transient",
    "VenueError",
]


class VenueError(MarketlinkError):
    """Something a venue (or the road to it) answered. ``code`` is the venue's own code."""

    def __init__(
        self,
        message: str = "",
        *,
        code: int | str | None = None,
        status: int | None = None,
        venue: str | None = None,
    ) -> None:
        super().__init__(message or type(self).__name__)
        self.message = message
        self.code = code
        self.status = status
        self.venue = venue

    def __str__(self) -> str:
        where = f"{self.venue} " if self.venue else ""
        code = f" [{self.code}]" if self.code is not None else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{type(self).__name__}{code}{status}: {self.message}"


class Transient(VenueError):
    """The outcome is unknown or temporarily impossible; an idempotent request may be retried.

    A non-idempotent request (order placement) that ends in ``Transient`` must be settled by a
    query, never by sending it again.
    """


class RequestTimeout(Transient):
    """No answer in time: the request may or may not have been executed."""


class ConnectionFailed(Transient):
    """The connection could not be made or broke mid-request."""


class ServerError(Transient):
    """The venue answered 5xx (or its own 'unknown outcome' code such as Binance -1007)."""


class RateLimited(VenueError):
    """Over a rate limit (HTTP 429 or the venue's code). Wait ``retry_after`` seconds."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class OrderRateLimited(RateLimited):
    """Over the account's order-count limit (Binance -1015): new orders must wait ``retry_after``
    seconds, but reads and cancels do not count against it, so they go on (a trader must still be
    able to pull orders). ``local`` when the throttler refused the order without sending it."""

    def __init__(self, message: str = "", *, retry_after: float | None = None, local: bool = False,
                 **kw: object) -> None:
        super().__init__(message, retry_after=retry_after, **kw)
        self.local = local


class IpBanned(VenueError):
    """Banned (HTTP 418, Bybit 403) for ``retry_after`` more seconds.

    Raised by the venue, or locally by the throttler's circuit breaker (``local=True``) when an
    order is attempted while the ban holds; reads are not refused (the HTTP client holds them until
    the ban ends). ``until`` is set on local refusals only: the ban's end on the throttler clock's
    time line (monotonic seconds, as ``Clock.time`` counts them), not an epoch time, so compare it
    with that clock only.
    """

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, until: float | None = None,
        local: bool = False, **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.until = until
        self.local = local


class ClockSkew(VenueError):
    """The venue judged our timestamp outside its window: resync the clock, retry once."""


class AuthError(VenueError):
    """Bad key, bad signature, or missing permission. Never retried."""


class OrderNotFound(VenueError):
    """The venue says it does not know the order. Only this counts toward LOST."""


class InsufficientFunds(VenueError):
    """Balance or margin too small for the order."""


class DuplicateOrder(VenueError):
    """The client order id was already used (may mean a first attempt did get through)."""


class Rejected(VenueError):
    """The venue refused the request for a reason of its own (``reason`` is its text)."""

    @property
    def reason(self) -> str:
        return self.message


class FilterRejected(Rejected):
    """The venue refused an order for breaking one of its filters; ``rule`` names it.

    Our own quantization should make this rare: when it happens our trading rules are stale.
    """

    def __init__(self, message: str = "", *, rule: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.rule = rule


class MalformedMessage(VenueError):
    """A venue payload could not be decoded into what its schema promises."""
