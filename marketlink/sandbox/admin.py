"""The sandbox's admin HTTP routes: arm faults, read the ground truth, check health.

They let a test or a person break a running sandbox from outside the process (another language,
a shell with curl), so they are off unless a token is configured, and every request must carry
it in ``X-Admin-Token`` (compared in constant time). Without a token the routes do not exist
(404); with a missing or wrong token they answer 401 and do nothing.

Arming is validated field by field against a table of the ``Faults`` methods, so a typo gets a
400 that names the field instead of a fault that silently never fires.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import fields, is_dataclass
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import Protocol

from aiohttp import web

from marketlink.core.errors import InvalidTradingPair
from marketlink.core.pairs import TradingPair
from marketlink.sandbox.context import SandboxContext
from marketlink.sandbox.exchange import GroundTruth
from marketlink.sandbox.faults import StreamKind

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Admin-Token"
MAX_COUNT = 1_000_000
MAX_SECONDS = 3600.0
MAX_SHIFT_MS = 30 * 24 * 3600 * 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminTarget(Protocol):
    """What the admin routes act on (the running ``Sandbox``)."""

    @property
    def context(self) -> SandboxContext: ...

    def health(self) -> dict[str, object]: ...


class AdminRequestError(ValueError):
    """A fault request that cannot be armed; the message is sent back with a 400."""


def install_admin(app: web.Application, target: AdminTarget, token: str) -> None:
    """Add the admin routes to ``app``, each guarded by ``token``."""
    expected = token.encode()

    def guarded(handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            given = request.headers.get(TOKEN_HEADER)
            if given is None:
                return _error(401, f"missing {TOKEN_HEADER} header")
            if not hmac.compare_digest(given.encode(), expected):
                return _error(401, "bad admin token")
            return await handler(request)

        return check

    async def arm_fault(request: web.Request) -> web.StreamResponse:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the body must be a JSON object")
        try:
            result = arm(target.context, payload)
        except AdminRequestError as exc:
            return _error(400, str(exc))
        log.info("admin armed fault %s", result)
        return web.json_response({"ok": True, **result, "fired": dict(target.context.faults.fired)})

    async def clear_faults(request: web.Request) -> web.StreamResponse:
        target.context.faults.clear()
        log.info("admin cleared every fault")
        return web.json_response({"ok": True})

    async def ground_truth(request: web.Request) -> web.StreamResponse:
        return web.json_response(ground_truth_json(target.context.exchange.ground_truth()))

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response(to_json(target.health()))

    app.router.add_post("/admin/faults", guarded(arm_fault))
    app.router.add_post("/admin/faults/clear", guarded(clear_faults))
    app.router.add_get("/admin/ground-truth", guarded(ground_truth))
    app.router.add_get("/admin/health", guarded(health))


# -- arming (pure apart from the Faults it arms) ---------------------------------------------------


class _Args:
    """The fields of one fault request; each read marks the field as used."""

    def __init__(self, ctx: SandboxContext, payload: Mapping[str, object]) -> None:
        self.ctx = ctx
        self.faults = ctx.faults
        self._payload = payload
        self._used = {"fault"}

    def _get(self, name: str) -> object:
        self._used.add(name)
        return self._payload.get(name)

    def leftover(self) -> list[str]:
        return sorted(k for k in self._payload if k not in self._used)

    def integer(self, name: str, default: int | None, low: int, high: int) -> int:
        value = self._get(name)
        if value is None:
            if default is None:
                raise AdminRequestError(f"'{name}' is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise AdminRequestError(f"'{name}' must be an integer in [{low}, {high}], got {value!r}")
        return value

    def count(self, name: str = "n", default: int | None = None) -> int:
        return self.integer(name, default, 1, MAX_COUNT)

    def seconds(self, name: str) -> float:
        value = self._get(name)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if (
            isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not 0 < value <= MAX_SECONDS
        ):
            raise AdminRequestError(f"'{name}' must be a number of seconds in (0, {MAX_SECONDS:g}]")
        return float(value)

    def path_prefix(self) -> str:
        value = self._get("path_prefix")
        if value is None:
            return ""
        if not isinstance(value, str) or (value and not value.startswith("/")) or len(value) > 256:
            raise AdminRequestError("'path_prefix' must start with '/' (or be empty: every path)")
        return value

    def kind(self) -> StreamKind:
        value = self._get("kind")
        if value is None:
            return StreamKind.ANY
        try:
            return StreamKind(str(value).lower())
        except ValueError:
            allowed = ", ".join(k.value for k in StreamKind)
            raise AdminRequestError(f"'kind' must be one of {allowed}, got {value!r}") from None

    def symbol(self) -> str:
        """An exchange symbol (``BTCUSDT``) or a pair (``BTC-USDT``) of a configured market."""
        value = self._get("symbol")
        if not isinstance(value, str) or not value:
            raise AdminRequestError("'symbol' is required (e.g. BTCUSDT or BTC-USDT)")
        symbol = value.upper()
        if "-" in symbol:
            try:
                pair = TradingPair.parse(symbol)
            except InvalidTradingPair:
                raise AdminRequestError(f"'symbol' {value!r} is neither a symbol nor a pair") from None
            symbol = pair.base + pair.quote
        if symbol not in self.ctx.exchange.symbols:
            raise AdminRequestError(f"'symbol' {value!r} is not a market of this sandbox")
        return symbol


# Each parser reads and checks every field first and returns the arming as a call still to make
# (plus what to report), so a request with any bad or unknown field arms nothing.
_Arming = tuple[Callable[[], None], dict[str, object]]


def _fail_requests(a: _Args) -> _Arming:
    n, status, prefix = a.count(), a.integer("status", 503, 500, 599), a.path_prefix()
    return partial(a.faults.fail_requests, n, status=status, path_prefix=prefix), {}


def _timeout_requests(a: _Args) -> _Arming:
    n, prefix = a.count(), a.path_prefix()
    return partial(a.faults.timeout_requests, n, path_prefix=prefix), {}


def _delay_responses(a: _Args) -> _Arming:
    seconds, n, prefix = a.seconds("seconds"), a.count(), a.path_prefix()
    return partial(a.faults.delay_responses, seconds, n, path_prefix=prefix), {}


def _lose_order_responses(a: _Args) -> _Arming:
    return partial(a.faults.lose_order_responses, a.count(default=1)), {}


def _skip_update_ids(a: _Args) -> _Arming:
    symbol, n = a.symbol(), a.count(default=1)
    return partial(a.faults.skip_update_ids, symbol, n), {"symbol": symbol}


def _duplicate_messages(a: _Args) -> _Arming:
    n, kind = a.count(), a.kind()
    return partial(a.faults.duplicate_messages, n, kind), {}


def _reorder_messages(a: _Args) -> _Arming:
    n, kind = a.count(), a.kind()
    return partial(a.faults.reorder_messages, n, kind), {}


def _drop_streams(a: _Args) -> _Arming:
    return partial(a.faults.drop_streams, a.kind()), {}


def _stall_streams(a: _Args) -> _Arming:
    """Either ``until_ms`` (sandbox time) or ``duration_ms`` from now: a remote caller rarely
    knows the sandbox's (possibly shifted) clock."""
    kind = a.kind()
    until = a.integer("until_ms", 0, 0, 2**53)
    duration = a.integer("duration_ms", 0, 0, MAX_SHIFT_MS)
    if (until > 0) == (duration > 0):
        raise AdminRequestError("give exactly one of 'until_ms' and 'duration_ms' (positive)")
    until_ms = until or a.ctx.clock.now_ms() + duration
    return partial(a.faults.stall_streams, until_ms, kind), {"until_ms": until_ms}


def _expire_listen_keys(a: _Args) -> _Arming:
    return a.faults.expire_listen_keys, {}


def _shift_clock(a: _Args) -> _Arming:
    ms = a.integer("ms", None, -MAX_SHIFT_MS, MAX_SHIFT_MS)
    return partial(a.faults.shift_clock, ms), {"clock_shift_ms": a.faults.clock_shift_ms + ms}


_PARSERS: dict[str, Callable[[_Args], _Arming]] = {
    "fail_requests": _fail_requests,
    "timeout_requests": _timeout_requests,
    "delay_responses": _delay_responses,
    "lose_order_responses": _lose_order_responses,
    "skip_update_ids": _skip_update_ids,
    "duplicate_messages": _duplicate_messages,
    "reorder_messages": _reorder_messages,
    "drop_streams": _drop_streams,
    "stall_streams": _stall_streams,
    "expire_listen_keys": _expire_listen_keys,
    "shift_clock": _shift_clock,
}
FAULT_NAMES = tuple(_PARSERS)


def arm(ctx: SandboxContext, payload: object) -> dict[str, object]:
    """Arm the fault ``payload`` describes on ``ctx.faults`` and say what was armed; raises
    ``AdminRequestError``, with nothing armed, when any field is missing, bad or unknown."""
    if not isinstance(payload, Mapping) or not all(isinstance(k, str) for k in payload):
        raise AdminRequestError('the body must be a JSON object like {"fault": "fail_requests", "n": 1}')
    name = payload.get("fault")
    parser = _PARSERS.get(name) if isinstance(name, str) else None
    if parser is None:
        raise AdminRequestError(f"'fault' must be one of {', '.join(FAULT_NAMES)}, got {name!r}")
    args = _Args(ctx, payload)
    arming, report = parser(args)
    unknown = args.leftover()
    if unknown:
        raise AdminRequestError(f"unknown field(s) for {name}: {', '.join(unknown)}")
    arming()
    return {"fault": name, **report}


# -- JSON views -----------------------------------------------------------------------------------


def ground_truth_json(truth: GroundTruth) -> dict[str, object]:
    """The ground truth with Decimals as plain strings and enums as their values."""
    out = to_json(truth)
    assert isinstance(out, dict)
    return out


def to_json(value: object) -> object:
    """Dataclasses, mappings and sequences to JSON-ready values; Decimal as a plain string
    (``"100"``, never ``"1E+2"``), so clients parse money exactly."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
