"""The HTTP client: the single place where a venue request meets the network.

A venue codec describes a request as data (:class:`RestRequest`); an :class:`Auth` turns it into
the exact bytes to send (:class:`PreparedRequest`); the venue's :class:`VenueProtocol` says what
an answer means. This module owns everything in between that involves I/O or time: throttling,
signing at the last moment (so a wait in the throttler never stales a timestamp), timeouts,
JSON decoding, calibrating the throttler from usage headers, and turning every failure into a
typed :mod:`marketlink.net.errors` error the engine can react to without reading text.

Retries are deliberately narrow. Only an idempotent request (GET unless the codec says
otherwise) is retried, only on :class:`Transient`, a bounded number of times. An order placement
that times out may have been executed, so it is never sent twice here: the ``Transient`` goes up
and the engine settles the order by querying it. aiohttp's own silent re-send of GET, PUT and
DELETE after a dropped keep-alive connection is switched off for the same reason.

Only a 2xx answer with a JSON body is an answer: a redirect, an informational status or an empty
success is a :class:`ServerError` (the outcome is unknown), and a body is read up to ``max_body``
bytes and no further. Text a venue sends back is redacted of the request's key and signature
before it can reach an exception or a log, in case the venue (or a proxy) echoes the request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote, unquote

import aiohttp
from yarl import URL

from marketlink.core.errors import ConfigError, MarketlinkError
from marketlink.net import jsoncodec
from marketlink.net.clock import Clock, SystemClock
from marketlink.net.errors import (
    ClockSkew,
    ConnectionFailed,
    IpBanned,
    MalformedMessage,
    OrderRateLimited,
    RateLimited,
    Rejected,
    RequestTimeout,
    ServerError,
    Transient,
    VenueError,
)
from marketlink.net.throttler import Cost, Usage
from marketlink.net.timesync import monotonic_ms

__all__ = [
    "MAX_BODY",
    "Auth",
    "ClientClosed",
    "HttpClient",
    "HttpStats",
    "ParamValue",
    "PreparedRequest",
    "RestRequest",
    "Throttle",
    "TimedAnswer",
    "VenueProtocol",
    "encode_query",
    "prepare_unsigned",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

ParamValue = str | int | Decimal | bool
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})
#: The default cap on an answer's body. Binance's largest answers (exchangeInfo of every symbol,
#: a 5000-level book) are a few MB; 64 MiB leaves a wide margin and still bounds the memory one
#: answer can take from the trading process.
MAX_BODY = 64 * 2**20


class ClientClosed(MarketlinkError, RuntimeError):
    """A request on a client after ``close()``: refused before anything is sent. A closed client
    never opens a new session, which would leak it and let an order out after shutdown."""


@dataclass(frozen=True, slots=True)
class RestRequest:
    """One venue request as a codec describes it: pure data, no I/O.

    ``params`` go in the query string (a ``None`` value means "omit this parameter"), in the
    mapping's order, since some venues sign the query exactly as sent. ``body`` is a JSON body.
    ``idempotent`` defaults to True for GET only: anything that may change venue state is not
    retried unless the codec vouches for it. ``is_order`` subjects it to the ban circuit breaker.
    """

    method: str
    path: str
    params: Mapping[str, ParamValue | None] | None = None
    body: Mapping[str, Any] | None = None
    signed: bool = False
    costs: tuple[Cost, ...] = ()
    idempotent: bool | None = None
    is_order: bool = False
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ConfigError(f"unsupported HTTP method {self.method!r} (use one of {sorted(_METHODS)})")
        if not self.path.startswith("/"):
            raise ConfigError(f"request path must start with '/', got {self.path!r}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"request timeout must be a positive number of seconds, got {self.timeout}")

    @property
    def is_idempotent(self) -> bool:
        return self.method == "GET" if self.idempotent is None else self.idempotent


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """Exactly what goes on the wire: the signature covers these bytes, so nothing re-encodes them."""

    method: str
    url_path_with_query: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Auth(Protocol):
    """A venue's signer: builds the final query, body and headers of a signed request. Pure."""

    def sign(self, request: RestRequest, timestamp_ms: int) -> PreparedRequest: ...


class VenueProtocol(Protocol):
    """The parts of a venue codec the HTTP client needs to understand an answer."""

    def classify_error(self, status: int, headers: Mapping[str, str], payload: Any) -> VenueError | None:
        """``None`` means success. Called for every response (Bybit reports errors inside HTTP 200).

        ``payload`` is the decoded JSON, or ``None`` when the body was empty or not JSON.
        """
        ...

    def usage_from_headers(self, headers: Mapping[str, str]) -> Sequence[Usage]:
        """The venue's own usage counts, one per pool and window it reports, to calibrate the
        throttler (e.g. Binance's ``X-MBX-ORDER-COUNT-10S`` and ``-1D`` are two ``Usage`` values
        for one pool). Empty when the answer carries none."""
        ...


class Throttle(Protocol):
    """What the client needs from :class:`marketlink.net.throttler.Throttler`."""

    def validate(self, costs: Sequence[Cost]) -> None: ...

    async def acquire(self, costs: Sequence[Cost], *, is_order: bool = False) -> None: ...

    def calibrate(self, limit_id: str, used: int, window_seconds: float | None = None) -> None: ...

    def back_off(self, seconds: float) -> None: ...

    def ban(self, seconds: float) -> None: ...

    def hold_orders(self, seconds: float) -> None: ...


def _param_text(name: str, value: ParamValue) -> str:
    # bool before int: bool is an int subclass, and venues want "true", not "True" or "1".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        try:
            return jsoncodec.plain_decimal(value)
        except ValueError as exc:
            raise ConfigError(f"parameter {name!r}: {exc}") from None
    if isinstance(value, int | str):
        return str(value)
    # A float here would already have lost exactness; refuse rather than send a rounded price.
    raise ConfigError(f"parameter {name!r} has unsupported type {type(value).__name__} (use str/int/Decimal)")


def encode_query(params: Mapping[str, ParamValue | None] | None) -> str:
    """``k=v&...`` in the mapping's order, RFC 3986 percent-encoding; ``None`` values omitted.

    Exposed so venue signers build the query with exactly the encoding this client sends.
    """
    if not params:
        return ""
    parts = []
    names = _QUOTED_NAMES
    for name, value in params.items():
        if value is None:
            continue
        quoted = names.get(name)
        if quoted is None:
            quoted = _quoted(name)
            if len(names) < 1024:  # parameter names are a venue's small fixed vocabulary
                names[name] = quoted
        parts.append(f"{quoted}={_quoted(_param_text(name, value))}")
    return "&".join(parts)


_QUOTED_NAMES: dict[str, str] = {}


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _quoted(text: str) -> str:
    # Almost every value (symbols, amounts, ids, timestamps) is already unreserved: skip the
    # per-character work of quote() for them; it is on every order's path.
    return text if _UNRESERVED.issuperset(text) else quote(text, safe="")


def prepare_unsigned(request: RestRequest) -> PreparedRequest:
    """The default preparation of a public request: params in the query, body as JSON."""
    query = encode_query(request.params)
    target = f"{request.path}?{query}" if query else request.path
    if request.body is None:
        return PreparedRequest(request.method, target)
    return PreparedRequest(
        request.method, target, jsoncodec.encode(request.body), {"Content-Type": "application/json"}
    )


@dataclass(slots=True)
class HttpStats:
    """Counters for health reporting: attempts on the wire, retries, and errors by type name."""

    requests: int = 0
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class TimedAnswer:
    """A decoded answer with the instants its request left and its answer arrived, in ms on
    :func:`~marketlink.net.timesync.monotonic_ms` (the clock time samples are taken on).

    ``sent_ms`` is read after the throttler admitted the request and after it was signed, right
    before it goes on the wire; ``received_ms`` when the answer's head arrived. A server-time
    answer read between the two makes a time sample that excludes every wait of ours."""

    payload: Any
    sent_ms: float
    received_ms: float


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _path_only(target: str) -> str:
    # Queries may hold signatures or listen keys: logs and error texts show the path only.
    return target.split("?", 1)[0]


def retry_after_seconds(value: str, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now`` (epoch seconds): either form RFC 9110 allows,
    delay-seconds or an HTTP-date (a date already past is 0). ``None`` when it is neither."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": HTTP-dates are always GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _duration(venue_says: float | None, headers: Mapping[str, str], default: float) -> float:
    """How long to back off: the codec's figure, else ``Retry-After``, else ``default``."""
    if venue_says is not None and math.isfinite(venue_says) and venue_says >= 0:
        return venue_says
    header = headers.get("Retry-After")
    if header is not None:
        seconds = retry_after_seconds(header, time.time())
        if seconds is not None:
            return seconds
    return default


# A venue or proxy may echo the request line or its headers in an error text. Anything that looks
# like a signature parameter goes, whatever its value; so do the exact secrets of the request.
_SIGNATURE_PARAM = re.compile(r"(?i)\b(signature|sign)=[^&\s\"'<>]+")
_REDACTED = "<redacted>"
#: Header values shorter than this are settings (a receive window, a content type), not secrets.
_MIN_SECRET = 8
_PUBLIC_HEADERS = frozenset({"content-type", "accept", "user-agent"})


def _secrets_of(prepared: PreparedRequest) -> tuple[str, ...]:
    """The values of ``prepared`` that must never be shown: its auth headers (API key, signature,
    passphrase) and its signature parameter, raw and percent-decoded. Longest first, so a secret
    that contains another is replaced whole."""
    found: set[str] = set()
    for name, value in prepared.headers.items():
        if name.lower() not in _PUBLIC_HEADERS and len(value) >= _MIN_SECRET:
            found.add(value)
    query = prepared.url_path_with_query.partition("?")[2]
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if value and "sign" in name.lower():
            found.update((value, unquote(value)))
    return tuple(sorted(found, key=len, reverse=True))


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _REDACTED)
    return _SIGNATURE_PARAM.sub(lambda m: f"{m.group(1)}={_REDACTED}", text)


def _redact_error(err: VenueError, secrets: Sequence[str]) -> None:
    # Both the text str() shows and the args repr() and tracebacks show.
    clean = _redact(err.message, secrets)
    if clean != err.message:
        err.message = clean
        err.args = (clean or type(err).__name__,)


class HttpClient:
    """Sends :class:`RestRequest` values to one venue base URL and returns decoded JSON.

    ``time_ms`` gives the timestamp to sign with (normally the venue's clock from
    :class:`~marketlink.net.timesync.TimeSync`). ``resync_time``, if given, is awaited once when
    the venue rejects our timestamp; the request (which the venue did not act on) is then sent
    once more, unless it is an order placement.
    ``rate_limit_backoff`` and ``ban_seconds`` apply when a 429 or ban comes without a duration.
    A 429 backs the throttler off, except the venue's order-count limit, which holds new orders
    only (``OrderRateLimited``); a ban (418) also opens its circuit breaker, so orders fail at
    once with a local :class:`IpBanned` while reads wait for the ban to end. ``max_body`` caps the
    bytes of one answer. ``stamp_ms`` is the clock of :meth:`timed_request`'s instants: it must
    be the local clock of the :class:`~marketlink.net.timesync.TimeSync` the samples go to.
    A session handed in gets aiohttp's silent re-send switched off too: our retry policy holds
    for every request this client sends, whoever owns the session.
    """

    def __init__(
        self,
        base_url: str,
        *,
        throttler: Throttle,
        venue: VenueProtocol,
        auth: Auth | None = None,
        time_ms: Callable[[], int] = _wall_ms,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        retry_backoff: float = 0.2,
        clock: Clock | None = None,
        resync_time: Callable[[], Awaitable[None]] | None = None,
        rate_limit_backoff: float = 1.0,
        ban_seconds: float = 60.0,
        max_body: int = MAX_BODY,
        stamp_ms: Callable[[], float] = monotonic_ms,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"timeout must be positive, got {timeout}")
        if retries < 0 or retry_backoff < 0:
            raise ConfigError("retries and retry_backoff must not be negative")
        if max_body < 1:
            raise ConfigError(f"max_body must be a positive number of bytes, got {max_body}")
        self._base_url = base_url.rstrip("/")
        self._throttler = throttler
        self._venue = venue
        self._auth = auth
        self._time_ms = time_ms
        self._session = session if session is None else _never_resend(session)
        self._owns_session = session is None
        self._timeout = timeout
        self._retries = retries
        self._retry_backoff = retry_backoff
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._resync_time = resync_time
        self._rate_limit_backoff = rate_limit_backoff
        self._ban_seconds = ban_seconds
        self._max_body = max_body
        self._stamp_ms = stamp_ms
        self._closed = False
        self.stats = HttpStats()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it; a caller's session is left to the caller.
        Either way the client takes no more requests."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, req: RestRequest, *, on_send: Callable[[], None] | None = None) -> Any:
        """Decoded JSON of a successful answer; otherwise a typed :class:`VenueError` is raised.

        Configuration mistakes (unknown limit id, signed request without an auth) raise
        :class:`ConfigError` before anything is sent; so does :class:`ClientClosed` after ``close()``.
        ``on_send`` is called once the throttler admits an attempt, just before it is handed to
        the socket: until then, cancelling the caller's task withdraws a request the venue never
        saw (an order cancelled while it waits behind a back-off must not go out later).
        """
        return (await self.timed_request(req, on_send=on_send)).payload

    async def timed_request(
        self, req: RestRequest, *, on_send: Callable[[], None] | None = None
    ) -> TimedAnswer:
        """:meth:`request`, with when the answered attempt left and its answer came back: what a
        time sample needs (see :class:`TimedAnswer`). Waits in the throttler, in back-offs and in
        failed attempts before it are outside that interval."""
        if self._closed:
            raise ClientClosed(f"{req.method} {req.path}: the HTTP client is closed")
        if req.signed and self._auth is None:
            raise ConfigError(f"{req.method} {req.path} is signed but the client has no auth")
        self._throttler.validate(req.costs)
        failures = 0
        resynced = False
        while True:
            try:
                return await self._attempt(req, on_send)
            except Transient as exc:
                if not req.is_idempotent or failures >= self._retries:
                    raise
                failures += 1
                delay = self._retry_backoff * 2 ** (failures - 1)
                log.info("retrying %s %s in %.3fs after %s", req.method, req.path, delay, type(exc).__name__)
            except ClockSkew:
                if resynced or self._resync_time is None:
                    raise
                resynced = True
                await self._resync_quietly()
                # The venue checks the timestamp before it acts, so the refused request did
                # nothing and may go once more, a cancel too (left unsent, its order would keep
                # working while cancel_all reports a failure). Not a placement: an order is
                # never sent twice, and the caller reports it failed instead.
                if req.is_order:
                    raise
                delay = 0.0
            self.stats.retries += 1
            if delay > 0:
                await self._clock.sleep(delay)

    async def _resync_quietly(self) -> None:
        assert self._resync_time is not None
        try:
            await self._resync_time()
        except Exception:  # the original ClockSkew is the error worth reporting, not this one
            log.warning("time resync after a clock-skew rejection failed", exc_info=True)

    async def _attempt(self, req: RestRequest, on_send: Callable[[], None] | None = None) -> TimedAnswer:
        await self._throttler.acquire(req.costs, is_order=req.is_order)
        if on_send is not None:
            on_send()  # from here on the request may reach the venue: no await before the socket
        if req.signed:
            assert self._auth is not None
            prepared = self._auth.sign(req, self._time_ms())
        else:
            prepared = prepare_unsigned(req)
        where = f"{prepared.method} {_path_only(prepared.url_path_with_query)}"
        url = URL(self._base_url + prepared.url_path_with_query, encoded=True)
        timeout = req.timeout if req.timeout is not None else self._timeout
        session = self._ensure_session()
        self.stats.requests += 1
        sent = self._stamp_ms()
        try:
            async with (
                asyncio.timeout(timeout),
                session.request(
                    prepared.method, url, data=prepared.body, headers=dict(prepared.headers),
                    allow_redirects=False,
                ) as resp,
            ):
                received = self._stamp_ms()
                status = resp.status
                headers = resp.headers
                raw = await self._read_capped(where, resp)
        except TimeoutError:
            raise self._count(RequestTimeout(f"{where}: no answer within {timeout}s")) from None
        except aiohttp.ClientResponseError as exc:  # its text carries the full URL: keep it out
            raise self._count(ConnectionFailed(f"{where}: {type(exc).__name__}")) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._count(ConnectionFailed(f"{where}: {type(exc).__name__}: {exc}")) from exc
        log.debug("%s -> %s in %.1f ms", where, status, received - sent)
        payload = self._interpret(where, status, headers, raw, prepared)
        return TimedAnswer(payload, sent, received)

    async def _read_capped(self, where: str, resp: aiohttp.ClientResponse) -> bytes:
        """The body, refused once it is known to exceed the cap: by its announced length before
        a byte is read, otherwise after at most ``max_body + 1`` bytes."""
        cap = self._max_body
        announced = resp.content_length
        if announced is not None:
            if announced > cap:
                raise self._count(MalformedMessage(
                    f"{where}: answer of {announced} bytes announced, above the {cap}-byte cap",
                    status=resp.status,
                ))
            return await resp.read()  # the protocol holds the body to its announced length
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = await resp.content.read(cap + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        raise self._count(MalformedMessage(f"{where}: answer above the {cap}-byte cap", status=resp.status))

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = _never_resend(aiohttp.ClientSession())
        return self._session

    def _interpret(
        self, where: str, status: int, headers: Mapping[str, str], raw: bytes, prepared: PreparedRequest
    ) -> Any:
        self._calibrate(headers)
        if not 200 <= status < 300 and status < 400:
            # A redirect (never followed: it could lead anywhere, with our signed query) or an
            # informational answer is not the venue's API answer; whether the request was
            # executed is unknown. The path only: a Location header may carry the query back.
            raise self._count(ServerError(f"{where}: HTTP {status} is not an API answer", status=status))
        payload: Any = None
        decoded = True
        if raw:
            try:
                payload = jsoncodec.decode(raw)
            except jsoncodec.JsonDecodeError:
                decoded = False
        try:
            err = self._venue.classify_error(status, headers, payload)
        except Exception as exc:
            # A codec that chokes on an odd payload must not crash the caller; the outcome is
            # unknown to us, which is what MalformedMessage says.
            log.exception("%s: venue codec failed to classify an HTTP %s answer", where, status)
            raise self._count(MalformedMessage(f"{where}: unclassifiable answer", status=status)) from exc
        if err is None:
            if status >= 500:
                err = ServerError(f"{where}: HTTP {status}", status=status)
            elif not decoded:
                kind = headers.get("Content-Type", "unknown type")
                err = MalformedMessage(f"{where}: non-JSON body ({len(raw)} bytes, {kind})", status=status)
            elif status >= 400:
                log.warning("%s: HTTP %s not classified by the venue codec", where, status)
                err = Rejected(f"{where}: HTTP {status}", status=status)
            elif not raw:
                # Every venue answer we read is JSON; an empty success (a 204 from a proxy, say)
                # says nothing about what happened, so an order behind it stays unknown.
                err = ServerError(f"{where}: HTTP {status} without a body", status=status)
            else:
                return payload
        else:
            _redact_error(err, _secrets_of(prepared))
        if err.status is None:
            err.status = status
        if isinstance(err, OrderRateLimited):
            # The account's order count, not the IP's weight: only new orders wait it out; the
            # reads and cancels that let a trader pull orders meanwhile do not count against it.
            err.retry_after = _duration(err.retry_after, headers, self._rate_limit_backoff)
            self._throttler.hold_orders(err.retry_after)
        elif isinstance(err, RateLimited):
            err.retry_after = _duration(err.retry_after, headers, self._rate_limit_backoff)
            self._throttler.back_off(err.retry_after)
        elif isinstance(err, IpBanned):
            # The ban covers every REST call from our IP, and each call made during it can extend
            # it: reads wait it out (back_off) and orders are refused at once (ban). Back-off
            # first: refusing queued orders frees the reads behind them, which must then wait.
            # WebSocket streams do not go through this client and are left alone.
            err.retry_after = _duration(err.retry_after, headers, self._ban_seconds)
            self._throttler.back_off(err.retry_after)
            self._throttler.ban(err.retry_after)
        raise self._count(err)

    def _calibrate(self, headers: Mapping[str, str]) -> None:
        # Calibration is advisory: a codec or limit-id bug here must never hide an order's ack,
        # and one bad count must not keep the others (say the 1-day one after the 10 s one) out.
        try:
            usages = list(self._venue.usage_from_headers(headers))
        except Exception:
            self.stats.errors["calibration"] += 1
            log.warning("reading usage headers failed", exc_info=True)
            return
        for usage in usages:
            try:
                self._throttler.calibrate(usage.limit_id, usage.used, usage.window_seconds)
            except Exception:
                self.stats.errors["calibration"] += 1
                log.warning("throttler calibration of %r failed", usage, exc_info=True)

    def _count(self, err: VenueError) -> VenueError:
        self.stats.errors[type(err).__name__] += 1
        return err


def _never_resend(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """Switch off aiohttp's silent second send of GET, PUT and DELETE after a kept-alive
    connection drops (aiohttp 3.14 client.py, ``ClientSession._request``: the request is sent
    again once on ``ServerDisconnectedError``/``ClientOSError``). A cancel (DELETE) the venue
    executed before the drop would be sent twice, and its second answer ("unknown order") would
    hide the first; retries are this client's decision alone. aiohttp has no public switch, only
    this attribute; tests/net/test_http.py counts a DELETE on the wire to catch an aiohttp that
    renames or ignores it."""
    session._retry_connection = False
    return session
