"""Binance Spot's server-side rate limits, as plain data and fixed-window counters.

Binance counts in *fixed* intervals that start on the clock ("a 1 MINUTE interval starts every
minute ... the count resets to zero when the next minute starts", ``web-socket-api.md``), not
sliding windows, so a counter here is a window start and a count. Request weight and raw request
counts are kept per IP, order counts per account. Going over a request limit answers 429 with
``Retry-After`` (seconds to the window's end); an IP that keeps sending after
``violations_before_ban`` such answers in one window is banned (418, ``Retry-After`` = seconds to
the ban's end), as Binance bans clients that do not back off.

Pure: every call takes ``now_ms``; nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from marketlink.core.errors import ConfigError


class LimitType(StrEnum):
    REQUEST_WEIGHT = "REQUEST_WEIGHT"
    ORDERS = "ORDERS"
    RAW_REQUESTS = "RAW_REQUESTS"


class Interval(StrEnum):
    SECOND = "SECOND"
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"

    @property
    def ms(self) -> int:
        return _INTERVAL_MS[self]

    @property
    def letter(self) -> str:
        return self.value[0]


_INTERVAL_MS = {
    Interval.SECOND: 1_000, Interval.MINUTE: 60_000, Interval.HOUR: 3_600_000, Interval.DAY: 86_400_000,
}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limiter as ``exchangeInfo.rateLimits`` lists it."""

    kind: LimitType
    interval: Interval
    interval_num: int
    limit: int

    def __post_init__(self) -> None:
        if self.interval_num < 1 or self.limit < 1:
            raise ConfigError(f"rate limit {self}: interval_num and limit must be positive")

    @property
    def window_ms(self) -> int:
        return self.interval.ms * self.interval_num

    @property
    def tag(self) -> str:
        """The header suffix: ``1M`` in ``X-MBX-USED-WEIGHT-1M``, ``10S`` in ``X-MBX-ORDER-COUNT-10S``."""
        return f"{self.interval_num}{self.interval.letter}"

    @property
    def per(self) -> str:
        """The wording of Binance's messages: ``1 MINUTE``, ``10 SECOND``."""
        return f"{self.interval_num} {self.interval.value}"

    def as_json(self) -> dict[str, object]:
        return {
            "rateLimitType": self.kind.value,
            "interval": self.interval.value,
            "intervalNum": self.interval_num,
            "limit": self.limit,
        }


# The production values Binance serves in exchangeInfo today (BSD enums.md and web-socket-api.md).
DEFAULT_LIMITS: tuple[RateLimit, ...] = (
    RateLimit(LimitType.REQUEST_WEIGHT, Interval.MINUTE, 1, 6000),
    RateLimit(LimitType.ORDERS, Interval.SECOND, 10, 50),
    RateLimit(LimitType.ORDERS, Interval.DAY, 1, 160_000),
    RateLimit(LimitType.RAW_REQUESTS, Interval.MINUTE, 5, 61_000),
)


class _Window:
    """A fixed-interval counter: the count of the interval that contains ``now``."""

    __slots__ = ("count", "limit", "start")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.start = -1
        self.count = 0

    def current(self, now_ms: int) -> int:
        size = self.limit.window_ms
        start = now_ms - now_ms % size
        if start != self.start:
            self.start, self.count = start, 0
        return self.count

    def ends_at(self) -> int:
        return self.start + self.limit.window_ms


@dataclass(frozen=True, slots=True)
class Usage:
    """A limiter and its count after a request, for headers and the WS-API ``rateLimits``."""

    limit: RateLimit
    count: int

    def as_json(self) -> dict[str, object]:
        out = self.limit.as_json()
        out["count"] = self.count
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """The limiter's answer for one request: admitted (``status`` 200), 429 or 418."""

    status: int
    usage: tuple[Usage, ...] = ()
    retry_after_s: int = 0
    banned_until_ms: int = 0
    broken: RateLimit | None = None  # the limit that refused, for the error message

    @property
    def ok(self) -> bool:
        return self.status == 200


def _seconds_until(end_ms: int, now_ms: int) -> int:
    return max(1, math.ceil((end_ms - now_ms) / 1000))


@dataclass
class RateLimiter:
    """Binance's limiters for every IP and account the sandbox has seen."""

    limits: Sequence[RateLimit] = DEFAULT_LIMITS
    violations_before_ban: int = 3
    ban_ms: int = 120_000
    _ip: dict[str, list[_Window]] = field(default_factory=dict)
    _account: dict[str, list[_Window]] = field(default_factory=dict)
    _violations: dict[str, tuple[int, int]] = field(default_factory=dict)  # ip -> (window start, n)
    _banned: dict[str, int] = field(default_factory=dict)  # ip -> until (ms)

    def __post_init__(self) -> None:
        if self.violations_before_ban < 1 or self.ban_ms < 1:
            raise ConfigError("violations_before_ban and ban_ms must be positive")
        self.limits = tuple(self.limits)
        self._ip_limits = [lim for lim in self.limits if lim.kind is not LimitType.ORDERS]
        self._order_limits = [lim for lim in self.limits if lim.kind is LimitType.ORDERS]

    @property
    def order_limits(self) -> list[RateLimit]:
        return list(self._order_limits)

    @property
    def ip_limits(self) -> list[RateLimit]:
        return list(self._ip_limits)

    @staticmethod
    def _windows(table: dict[str, list[_Window]], key: str, limits: Iterable[RateLimit]) -> list[_Window]:
        windows = table.get(key)
        if windows is None:
            windows = table[key] = [_Window(lim) for lim in limits]
        return windows

    def admit(self, ip: str, weight: int, now_ms: int) -> Verdict:
        """Count one request of ``weight`` from ``ip``; every request counts, refused or not."""
        until = self._banned.get(ip)
        if until is not None:
            if now_ms < until:
                return Verdict(418, self.ip_usage(ip, now_ms), _seconds_until(until, now_ms), until)
            del self._banned[ip]
        broken: _Window | None = None
        for w in self._windows(self._ip, ip, self._ip_limits):
            w.count = w.current(now_ms) + (weight if w.limit.kind is LimitType.REQUEST_WEIGHT else 1)
            if w.count > w.limit.limit and broken is None:
                broken = w
        usage = self.ip_usage(ip, now_ms)
        if broken is None:
            return Verdict(200, usage)
        start, n = self._violations.get(ip, (broken.start, 0))
        n = n + 1 if start == broken.start else 1
        self._violations[ip] = (broken.start, n)
        if n > self.violations_before_ban:
            until = self._banned[ip] = now_ms + self.ban_ms
            return Verdict(418, usage, _seconds_until(until, now_ms), until, broken.limit)
        return Verdict(429, usage, _seconds_until(broken.ends_at(), now_ms), 0, broken.limit)

    def admit_order(self, account: str, now_ms: int) -> Verdict:
        """Count one new order of ``account`` unless that would break an ORDERS limit."""
        windows = self._windows(self._account, account, self._order_limits)
        for w in windows:
            if w.current(now_ms) + 1 > w.limit.limit:
                return Verdict(429, self.order_usage(account, now_ms), _seconds_until(w.ends_at(), now_ms),
                               0, w.limit)
        for w in windows:
            w.count += 1
        return Verdict(200, self.order_usage(account, now_ms))

    def ip_usage(self, ip: str, now_ms: int) -> tuple[Usage, ...]:
        return tuple(Usage(w.limit, w.current(now_ms)) for w in self._windows(self._ip, ip, self._ip_limits))

    def order_usage(self, account: str, now_ms: int) -> tuple[Usage, ...]:
        windows = self._windows(self._account, account, self._order_limits)
        return tuple(Usage(w.limit, w.current(now_ms)) for w in windows)

    def is_banned(self, ip: str, now_ms: int) -> bool:
        until = self._banned.get(ip)
        return until is not None and now_ms < until


def weight_headers(usage: Iterable[Usage]) -> dict[str, str]:
    """``X-MBX-USED-WEIGHT-1M`` for every weight limiter; the bare legacy header Binance still
    sends carries the first one's count."""
    out: dict[str, str] = {}
    for u in usage:
        if u.limit.kind is LimitType.REQUEST_WEIGHT:
            out.setdefault("X-MBX-USED-WEIGHT", str(u.count))
            out[f"X-MBX-USED-WEIGHT-{u.limit.tag}"] = str(u.count)
    return out


def order_headers(usage: Iterable[Usage]) -> dict[str, str]:
    return {f"X-MBX-ORDER-COUNT-{u.limit.tag}": str(u.count) for u in usage}


# -- endpoint weights (BSD rest-api.md, current values) -------------------------------------------

DEPTH_WEIGHT_TIERS: tuple[tuple[int, int], ...] = ((100, 5), (500, 25), (1000, 50), (5000, 250))


def depth_weight(limit: int, tiers: Sequence[tuple[int, int]] = DEPTH_WEIGHT_TIERS) -> int:
    """``GET /api/v3/depth`` costs by ``limit``: 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, more -> 250."""
    for upto, weight in tiers:
        if limit <= upto:
            return weight
    return tiers[-1][1]


def ticker_24h_weight(symbols: int | None) -> int:
    """One symbol 2; a ``symbols`` list 2 (1-20), 40 (21-100), 80 (more); none (all symbols) 80."""
    if symbols is None:
        return 80
    if symbols <= 20:
        return 2
    return 40 if symbols <= 100 else 80
