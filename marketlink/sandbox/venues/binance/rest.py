"""The REST API ``/api/v3``: HTTP in, one ``Operation`` run, Binance's JSON and headers out.

Each request passes the gates in the order a venue applies them: the armed REST fault for its
path (5xx, a hang, a delay), the IP's request weight (429, then 418), the parameters, the
security type (API key; signature over the raw query and body; timestamp), the account's order
count for order placements, and only then the handler. Every answer, refusals included, carries
``X-MBX-USED-WEIGHT-1M``; successful orders carry ``X-MBX-ORDER-COUNT-10S`` / ``-1D``.

An order placement armed to lose its response runs in full and then the connection is cut with
nothing written: the client cannot know whether the order exists, which is the point.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from marketlink.sandbox.faults import RestAction
from marketlink.sandbox.venues.binance import auth, errors, views
from marketlink.sandbox.venues.binance.endpoints import Call, Operation
from marketlink.sandbox.venues.binance.errors import BinanceError
from marketlink.sandbox.venues.binance.gates import ApiGates
from marketlink.sandbox.venues.binance.limits import Verdict, order_headers, weight_headers
from marketlink.sandbox.venues.binance.params import Params

log = logging.getLogger(__name__)

ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/api/v3/ping", "ping"),
    ("GET", "/api/v3/time", "time"),
    ("GET", "/api/v3/exchangeInfo", "exchangeInfo"),
    ("GET", "/api/v3/depth", "depth"),
    ("GET", "/api/v3/trades", "trades.recent"),
    ("GET", "/api/v3/avgPrice", "avgPrice"),
    ("GET", "/api/v3/ticker/price", "ticker.price"),
    ("GET", "/api/v3/ticker/bookTicker", "ticker.book"),
    ("GET", "/api/v3/ticker/24hr", "ticker.24hr"),
    ("GET", "/api/v3/account", "account.status"),
    ("GET", "/api/v3/rateLimit/order", "account.rateLimits.orders"),
    ("POST", "/api/v3/order", "order.place"),
    ("POST", "/api/v3/order/test", "order.test"),
    ("DELETE", "/api/v3/order", "order.cancel"),
    ("GET", "/api/v3/order", "order.status"),
    ("GET", "/api/v3/openOrders", "openOrders.status"),
    ("DELETE", "/api/v3/openOrders", "openOrders.cancelAll"),
    ("GET", "/api/v3/allOrders", "allOrders"),
    ("GET", "/api/v3/myTrades", "myTrades"),
    ("POST", "/api/v3/userDataStream", "userDataStream.start"),
    ("PUT", "/api/v3/userDataStream", "userDataStream.ping"),
    ("DELETE", "/api/v3/userDataStream", "userDataStream.stop"),
)

_JSON = "application/json"
_SERVER_ERROR = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


def error_response(exc: BinanceError, headers: dict[str, str]) -> web.Response:
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    return web.Response(status=exc.status, body=views.encode(exc.body()), content_type=_JSON, headers=headers)


def limit_error(verdict: Verdict, now_ms: int) -> BinanceError:
    if verdict.status == 418:
        return errors.banned(verdict.banned_until_ms, verdict.retry_after_s, now_ms)
    assert verdict.broken is not None
    return errors.too_much_weight(verdict.broken, verdict.retry_after_s, now_ms)


class RestApi(ApiGates):
    def install(self, app: web.Application) -> None:
        for method, path, name in ROUTES:
            app.router.add_route(method, path, self._handler(self._ops.table[name]))

    def _handler(self, op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.serve(request, op)

        return handle

    async def serve(self, request: web.Request, op: Operation) -> web.StreamResponse:
        decision = self._faults.take_rest(request.path)
        if decision is not None and decision.action is RestAction.ERROR:
            if decision.retry_after_s is not None:
                limit = self._limiter.ip_limits[0]  # which limit "broke" only words the message
                return error_response(errors.too_much_weight(limit, decision.retry_after_s, self._now()), {})
            return web.Response(status=decision.status, body=views.encode(_SERVER_ERROR), content_type=_JSON)
        if decision is not None and decision.action is RestAction.TIMEOUT:
            await asyncio.sleep(self._faults.hang_seconds)
            return self._cut(request)

        now = self._now()
        raw_query = request.raw_path.partition("?")[2]
        raw_body = ""
        if request.method != "GET" and request.can_read_body:
            raw_body = (await request.read()).decode("utf-8", "surrogateescape")
        params: Params | None = None
        parse_error: BinanceError | None = None
        weight = 1
        try:
            params = Params.from_rest(raw_query, raw_body)
            weight = op.weight(params)
        except BinanceError as exc:
            parse_error = exc
        verdict = self._limiter.admit(request.remote or "unknown", weight, now)
        headers = weight_headers(verdict.usage)
        if not verdict.ok:
            return error_response(limit_error(verdict, now), headers)
        if parse_error is not None:
            return error_response(parse_error, headers)
        assert params is not None

        try:
            call = self._authorize(request, op, params, raw_query, raw_body, now)
            if op.places_order:
                self._admit_order(call, now)
            result: Any = self._ops.run(op, call)
        except BinanceError as exc:
            return error_response(exc, headers)
        body = views.encode(result)
        if op.places_order:
            headers.update(order_headers(self._limiter.order_usage(call.account or "", now)))
            if self._faults.take_lost_order_response():
                self.lost_responses += 1
                return self._cut(request)
        if decision is not None and decision.action is RestAction.DELAY:
            await asyncio.sleep(decision.seconds)
        return web.Response(body=body, content_type=_JSON, headers=headers)

    def _authorize(
        self, request: web.Request, op: Operation, params: Params, raw_query: str, raw_body: str, now: int
    ) -> Call:
        return self._check(
            op.security, params, now, request.headers.get("X-MBX-APIKEY"),
            lambda: auth.rest_payload(raw_query, raw_body), encoded=True,
        )

    @staticmethod
    def _cut(request: web.Request) -> web.StreamResponse:
        """Close the connection with nothing written (a lost response, a timed-out request)."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError
