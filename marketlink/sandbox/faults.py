"""Fault injection for the sandbox: what to break next, seeded and reproducible.

Tests (through the Python API) and the admin HTTP route (token-guarded, off by default) *arm*
faults here; venue front-ends *consume* them at the points where a real venue would misbehave
(a REST request, an order acknowledgement, a depth diff, a stream frame). Each armed fault is a
counter of how many more times it fires, so a scenario is exact: "the next 2 order requests get
a 503" means exactly two. Randomness (which message to reorder, jitter) comes from one seeded
``random.Random`` so a failing scenario replays identically.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class StreamKind(StrEnum):
    """Which sockets a stream fault applies to."""

    MARKET = "market"  # public market-data streams
    USER = "user"  # private user-data delivery (WS-API subscription or listen-key stream)
    API = "api"  # WebSocket API request/response sockets
    ANY = "any"

    def matches(self, kind: StreamKind) -> bool:
        return self is StreamKind.ANY or kind is StreamKind.ANY or self is kind


class RestAction(StrEnum):
    ERROR = "error"  # answer with an HTTP 5xx status (outcome unknown for the client)
    TIMEOUT = "timeout"  # hold the request until the client gives up; nothing is executed
    DELAY = "delay"  # execute normally, answer after a delay


@dataclass(slots=True)
class RestFault:
    action: RestAction
    remaining: int
    path_prefix: str = ""
    status: int = 503
    seconds: float = 0.0
    retry_after_s: int | None = None


@dataclass(frozen=True, slots=True)
class RestDecision:
    """What a front-end must do with one request (consumed from an armed fault)."""

    action: RestAction
    status: int = 503
    seconds: float = 0.0
    retry_after_s: int | None = None  # a 429's Retry-After: the front-end answers as over its limit


@dataclass(slots=True)
class _Counter:
    remaining: int
    kind: StreamKind = StreamKind.ANY


@dataclass
class Faults:
    """The armed faults of one sandbox. All methods are cheap and synchronous."""

    seed: int = 0
    rng: random.Random = field(init=False)
    clock_shift_ms: int = 0
    hang_seconds: float = 30.0
    _rest: list[RestFault] = field(default_factory=list)
    _lost_order_acks: int = 0
    _depth_skips: dict[str, int] = field(default_factory=dict)
    _duplicates: list[_Counter] = field(default_factory=list)
    _reorders: list[_Counter] = field(default_factory=list)
    _drop_generation: dict[StreamKind, int] = field(default_factory=dict)
    _stall_until_ms: dict[StreamKind, int] = field(default_factory=dict)
    _listen_key_expiry_generation: int = 0
    _refused_subscriptions: int = 0
    refusal_message: str = "Invalid request: too many streams"
    fired: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -- arming (tests and the admin route) ----------------------------------------------------

    def fail_requests(
        self, n: int, *, status: int = 503, path_prefix: str = "", retry_after_s: int | None = None
    ) -> None:
        """The next ``n`` REST requests under ``path_prefix`` get ``status`` and are not executed.
        With ``retry_after_s``, the answer is the venue's own "over the limit" 429 telling to
        come back then (as another process on the IP had spent the weight)."""
        if retry_after_s is not None and (status != 429 or retry_after_s < 0):
            raise ValueError("retry_after_s goes with status 429 and is >= 0")
        self._rest.append(RestFault(
            RestAction.ERROR, _positive(n), path_prefix, status=status, retry_after_s=retry_after_s,
        ))

    def timeout_requests(self, n: int, *, path_prefix: str = "") -> None:
        """The next ``n`` requests are held ``hang_seconds`` and never executed or answered."""
        self._rest.append(RestFault(RestAction.TIMEOUT, _positive(n), path_prefix))

    def delay_responses(self, seconds: float, n: int, *, path_prefix: str = "") -> None:
        """The next ``n`` requests are executed at once but answered ``seconds`` later."""
        self._rest.append(RestFault(RestAction.DELAY, _positive(n), path_prefix, seconds=seconds))

    def lose_order_responses(self, n: int = 1) -> None:
        """The next ``n`` order placements are executed, but their response never arrives."""
        self._lost_order_acks += _positive(n)

    def skip_update_ids(self, symbol: str, n: int = 1) -> None:
        """The next ``n`` depth diffs of ``symbol`` are not sent (a sequence gap downstream)."""
        self._depth_skips[symbol] = self._depth_skips.get(symbol, 0) + _positive(n)

    def duplicate_messages(self, n: int, kind: StreamKind = StreamKind.ANY) -> None:
        """The next ``n`` stream messages of ``kind`` are sent twice."""
        self._duplicates.append(_Counter(_positive(n), kind))

    def reorder_messages(self, n: int, kind: StreamKind = StreamKind.ANY) -> None:
        """The next ``n`` stream messages of ``kind`` are swapped with the message after them."""
        self._reorders.append(_Counter(_positive(n), kind))

    def drop_streams(self, kind: StreamKind = StreamKind.ANY) -> None:
        """Close every currently open socket of ``kind`` (the front-ends poll the generation)."""
        for k in _kinds(kind):
            self._drop_generation[k] = self._drop_generation.get(k, 0) + 1
        self._count("drop_streams")

    def stall_streams(self, until_ms: int, kind: StreamKind = StreamKind.ANY) -> None:
        """Hold every message of ``kind`` until sandbox time ``until_ms`` (held, not lost).

        A socket carrying several kinds keeps delivering the others; it stops answering pings
        only when every kind it carries is stalled (a silent connection, as a stuck venue)."""
        for k in _kinds(kind):
            self._stall_until_ms[k] = until_ms

    def refuse_subscriptions(self, n: int = 1, message: str | None = None) -> None:
        """The next ``n`` live SUBSCRIBE requests on market streams are refused with an error frame
        for their id (the venue's code 2, ``message``) and subscribe nothing: a client that takes
        any answer for success then waits for diffs that never come."""
        self._refused_subscriptions += _positive(n)
        if message is not None:
            self.refusal_message = message

    def expire_listen_keys(self) -> None:
        """Expire every listen key / user-data subscription now (``listenKeyExpired`` is sent)."""
        self._listen_key_expiry_generation += 1
        self._count("expire_listen_keys")

    def shift_clock(self, ms: int) -> None:
        """Move the sandbox's clock by ``ms`` (cumulative): exercises clock-skew rejections."""
        self.clock_shift_ms += ms

    def clear(self) -> None:
        """Disarm everything (the clock shift included)."""
        self._rest.clear()
        self._lost_order_acks = 0
        self._depth_skips.clear()
        self._duplicates.clear()
        self._reorders.clear()
        self._stall_until_ms.clear()
        self._refused_subscriptions = 0
        self.clock_shift_ms = 0

    # -- consuming (venue front-ends) ----------------------------------------------------------

    def take_rest(self, path: str) -> RestDecision | None:
        for fault in self._rest:
            if path.startswith(fault.path_prefix) and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._rest.remove(fault)
                self._count(f"rest_{fault.action.value}")
                return RestDecision(fault.action, fault.status, fault.seconds, fault.retry_after_s)
        return None

    def take_lost_order_response(self) -> bool:
        if self._lost_order_acks > 0:
            self._lost_order_acks -= 1
            self._count("lost_order_response")
            return True
        return False

    def take_subscription_refusal(self) -> str | None:
        """The error message to refuse one SUBSCRIBE with, or None to serve it."""
        if self._refused_subscriptions <= 0:
            return None
        self._refused_subscriptions -= 1
        self._count("refused_subscription")
        return self.refusal_message

    def take_depth_skip(self, symbol: str) -> bool:
        left = self._depth_skips.get(symbol, 0)
        if left <= 0:
            return False
        if left == 1:
            del self._depth_skips[symbol]
        else:
            self._depth_skips[symbol] = left - 1
        self._count("depth_skip")
        return True

    def take_duplicate(self, kind: StreamKind) -> bool:
        return self._take(self._duplicates, kind, "duplicate")

    def take_reorder(self, kind: StreamKind) -> bool:
        return self._take(self._reorders, kind, "reorder")

    def drop_generation(self, kind: StreamKind) -> int:
        """A socket opened at generation g must close once this returns more than g."""
        return self._drop_generation.get(kind, 0)

    def stalled(self, kind: StreamKind, now_ms: int) -> bool:
        return now_ms < self._stall_until_ms.get(kind, 0)

    @property
    def listen_key_generation(self) -> int:
        return self._listen_key_expiry_generation

    def _take(self, counters: list[_Counter], kind: StreamKind, name: str) -> bool:
        for c in counters:
            if c.kind.matches(kind) and c.remaining > 0:
                c.remaining -= 1
                if c.remaining == 0:
                    counters.remove(c)
                self._count(name)
                return True
        return False

    def _count(self, name: str) -> None:
        self.fired[name] = self.fired.get(name, 0) + 1


def _kinds(kind: StreamKind) -> list[StreamKind]:
    if kind is StreamKind.ANY:
        return [StreamKind.MARKET, StreamKind.USER, StreamKind.API]
    return [kind]


def _positive(n: int) -> int:
    if n <= 0:
        raise ValueError(f"a fault count must be positive, got {n}")
    return n
