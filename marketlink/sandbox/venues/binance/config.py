"""Knobs of the Binance Spot front-end: Binance's production values by default, every one of them
small enough in tests to reach a limit, a ping or a 24-hour disconnect in a few calls.

Times are sandbox milliseconds (``SandboxClock``), so a test moves them by moving the clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from marketlink.core.errors import ConfigError
from marketlink.sandbox.venues.binance.limits import (
    DEFAULT_LIMITS,
    DEPTH_WEIGHT_TIERS,
    Interval,
    LimitType,
    RateLimit,
)

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class BinanceSpotConfig:
    rate_limits: tuple[RateLimit, ...] = DEFAULT_LIMITS
    violations_before_ban: int = 3  # 429 answers an IP may ignore in one window before a ban
    ban_ms: int = 120_000  # Binance's first ban lasts 2 minutes
    depth_weight_tiers: tuple[tuple[int, int], ...] = DEPTH_WEIGHT_TIERS
    wsapi_connect_weight: int = 2

    default_recv_window_ms: int = 5_000
    max_recv_window_ms: int = 60_000
    future_tolerance_ms: int = 1_000  # a timestamp this far ahead of server time is refused

    connection_lifetime_ms: int = 24 * HOUR_MS
    stream_ping_interval_ms: int = 20_000
    stream_pong_timeout_ms: int = 60_000
    wsapi_ping_interval_ms: int = 20_000
    wsapi_pong_timeout_ms: int = 60_000
    stream_max_incoming_per_s: int = 5  # 0 disables Binance's "5 incoming messages per second"
    max_streams_per_connection: int = 1024
    # BSD web-socket-streams.md: "There is a limit of 300 connections per attempt every 5 minutes
    # per IP". Every upgrade request to the stream host counts, refused ones included; past the
    # limit the handshake is answered 429 with Retry-After, as REST limits are. 0 disables.
    stream_connection_attempts: int = 300
    stream_connection_window_ms: int = 300_000
    max_outbox: int = 100_000  # frames queued for one slow socket before it is dropped
    slow_depth_ms: int = 1_000  # the cadence of @depth and @depthN without @100ms

    listen_key_ttl_ms: int = HOUR_MS
    max_subscriptions_per_session: int = 1_000

    # Binance always publishes finite maxima; where a market has none, exchangeInfo shows this.
    unbounded_display: Decimal = Decimal("9000000000")
    account_uid_base: int = 100_000_000

    def __post_init__(self) -> None:
        positive = (
            "ban_ms", "connection_lifetime_ms", "stream_ping_interval_ms", "stream_pong_timeout_ms",
            "wsapi_ping_interval_ms", "wsapi_pong_timeout_ms", "max_streams_per_connection", "max_outbox",
            "slow_depth_ms", "listen_key_ttl_ms", "max_recv_window_ms", "default_recv_window_ms",
            "max_subscriptions_per_session", "violations_before_ban", "stream_connection_window_ms",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"binance config: {name} must be a positive int, got {value!r}")
        non_negative = (
            self.stream_max_incoming_per_s, self.wsapi_connect_weight, self.future_tolerance_ms,
            self.stream_connection_attempts,
        )
        if min(non_negative) < 0:
            raise ConfigError(
                "binance config: incoming rate, connect weight, tolerance and connection attempts "
                "must be >= 0"
            )
        if self.default_recv_window_ms > self.max_recv_window_ms:
            raise ConfigError("binance config: default recvWindow above the maximum")
        if not any(lim.kind is LimitType.REQUEST_WEIGHT for lim in self.rate_limits):
            raise ConfigError("binance config: a REQUEST_WEIGHT limit is required")
        if not self.depth_weight_tiers:
            raise ConfigError("binance config: depth_weight_tiers must not be empty")

    @classmethod
    def from_options(cls, raw: Mapping[str, object]) -> BinanceSpotConfig:
        """Build from plain configuration data (the server's per-venue options).

        ``rate_limits`` is a list of ``{"rateLimitType", "interval", "intervalNum", "limit"}``
        objects, as exchangeInfo prints them; every other key is a field name.
        """
        kwargs: dict[str, object] = {}
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in raw.items():
            if key not in names:
                raise ConfigError(f"binance config: unknown option {key!r}")
            kwargs[key] = value
        if "rate_limits" in kwargs:
            kwargs["rate_limits"] = _parse_limits(kwargs["rate_limits"])
        if "unbounded_display" in kwargs:
            kwargs["unbounded_display"] = Decimal(str(kwargs["unbounded_display"]))
        if "depth_weight_tiers" in kwargs:
            tiers = kwargs["depth_weight_tiers"]
            if not isinstance(tiers, list | tuple):
                raise ConfigError("binance config: depth_weight_tiers must be a list of [upto, weight]")
            kwargs["depth_weight_tiers"] = tuple((int(a), int(b)) for a, b in tiers)
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigError(f"binance config: {exc}") from exc


def _parse_limits(raw: object) -> tuple[RateLimit, ...]:
    if isinstance(raw, tuple) and all(isinstance(x, RateLimit) for x in raw):
        return raw
    if not isinstance(raw, list | tuple):
        raise ConfigError("binance config: rate_limits must be a list")
    out: list[RateLimit] = []
    for item in raw:
        if isinstance(item, RateLimit):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"binance config: bad rate limit {item!r}")
        try:
            out.append(
                RateLimit(
                    LimitType(str(item["rateLimitType"])),
                    Interval(str(item["interval"])),
                    int(str(item["intervalNum"])),
                    int(str(item["limit"])),
                )
            )
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"binance config: bad rate limit {item!r}: {exc}") from exc
    return tuple(out)
