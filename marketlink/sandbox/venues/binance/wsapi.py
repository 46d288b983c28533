"""Binance's WebSocket API ``/ws-api/v3``: JSON requests in, ``{"id","status","result"|"error",
"rateLimits"}`` out, and user data subscriptions on the same socket.

Requests run the same ``Operation`` handlers as REST, so results and refusals are identical; only
the envelope and the signing differ (params sorted by name, raw UTF-8, ``apiKey`` among them).
``userDataStream.subscribe.signature`` attaches an account's events to the session, each wrapped
``{"subscriptionId":N,"event":{...}}``; ``userDataStream.unsubscribe`` or an expiry fault ends it
with ``eventStreamTerminated``. The answer to a request is sent before the user events that
request caused, and an order placement armed to lose its response is executed but never answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from marketlink.net import jsoncodec
from marketlink.sandbox.faults import Faults, StreamKind
from marketlink.sandbox.venues.binance import auth, errors, views
from marketlink.sandbox.venues.binance.config import BinanceSpotConfig
from marketlink.sandbox.venues.binance.endpoints import Call, Operation, Operations, Security
from marketlink.sandbox.venues.binance.errors import BinanceError
from marketlink.sandbox.venues.binance.gates import ApiGates
from marketlink.sandbox.venues.binance.limits import LimitType, RateLimiter, Usage
from marketlink.sandbox.venues.binance.params import Params
from marketlink.sandbox.venues.binance.rest import limit_error
from marketlink.sandbox.venues.binance.sockets import Heartbeat, Socket, new_websocket
from marketlink.sandbox.venues.binance.userdata import Sink, UserStreams

log = logging.getLogger(__name__)

_MAX_SUBSCRIPTIONS_EVER = 65_535


@dataclass(eq=False)
class Session:
    socket: Socket
    ip: str
    return_rate_limits: bool = True
    subscriptions: dict[int, Sink] = field(default_factory=dict)
    next_subscription: int = 0


class WsApi(ApiGates):
    def __init__(
        self,
        ops: Operations,
        limiter: RateLimiter,
        verifier: auth.Verifier,
        faults: Faults,
        now_ms: Callable[[], int],
        config: BinanceSpotConfig,
        user_streams: UserStreams,
    ) -> None:
        super().__init__(ops, limiter, verifier, faults, now_ms, config)
        self._users = user_streams
        self._heartbeat = Heartbeat(
            config.wsapi_ping_interval_ms, config.wsapi_pong_timeout_ms, config.connection_lifetime_ms
        )
        self._special: dict[str, tuple[Security, Callable[[Session, Call], Any]]] = {
            "userDataStream.subscribe.signature": (Security.USER_DATA, self._subscribe),
            "userDataStream.unsubscribe": (Security.NONE, self._unsubscribe),
            "session.subscriptions": (Security.NONE, self._subscriptions),
            "session.status": (Security.NONE, self._session_status),
        }
        self.sessions: dict[Session, None] = {}
        self.unexpected_errors = 0

    def install(self, app: web.Application) -> None:
        app.router.add_get("/ws-api/v3", self._handle)

    # -- connections --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ip = request.remote or "unknown"
        now = self._now()
        if self._limiter.is_banned(ip, now):
            verdict = self._limiter.admit(ip, 0, now)
            exc = limit_error(verdict, now)
            return web.json_response(exc.body(), status=exc.status,
                                     headers={"Retry-After": str(exc.retry_after_s)})
        self._limiter.admit(ip, self._config.wsapi_connect_weight, now)
        ws = new_websocket()
        await ws.prepare(request)
        socket = Socket(request, ws, kinds=[StreamKind.API], faults=self._faults, now_ms=self._now,
                        heartbeat=self._heartbeat, max_outbox=self._config.max_outbox)
        session = Session(socket, ip, request.query.get("returnRateLimits", "true").lower() != "false")
        self.sessions[session] = None
        socket.start()
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self.request(session, msg.data)
                elif msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    socket.on_pong(msg.data)
        finally:
            for sink in session.subscriptions.values():
                self._users.detach(sink)
            self.sessions.pop(session, None)
            await socket.finish()
        return ws

    # -- requests -----------------------------------------------------------------------------

    def request(self, session: Session, text: str) -> None:
        """Handle one request frame; the answer (if any) is queued on the session's socket."""
        now = self._now()
        rid: object = None
        try:
            req = jsoncodec.decode(text)
        except jsoncodec.JsonDecodeError as exc:
            self._reply(session, None, errors.invalid_json(str(exc)), (), True)
            return
        if not isinstance(req, dict):
            self._reply(session, None, errors.invalid_json("expected an object"), (), True)
            return
        rid = req.get("id")
        if isinstance(rid, bool) or not isinstance(rid, int | str | None):
            self._reply(session, None, errors.illegal_chars("id", "INT / STRING / null"), (), True)
            return
        raw_params = req.get("params")
        show_limits = session.return_rate_limits
        if isinstance(raw_params, dict) and isinstance(raw_params.get("returnRateLimits"), bool):
            show_limits = raw_params["returnRateLimits"]
        method = req.get("method")
        try:
            if not isinstance(method, str) or not method:
                raise errors.mandatory("method")
            name = method.removeprefix("v3/")
            op = self._ops.table.get(name)
            if op is None and name not in self._special:
                raise errors.unsupported(f"method '{method}'")
            params = Params.from_json(raw_params)
        except BinanceError as exc:
            self._reply(session, rid, exc, self._usage(session, now, None), show_limits)
            return

        weight = 2 if op is None else 1
        try:
            if op is not None:
                weight = op.weight(params)
        except BinanceError as exc:
            self._reply(session, rid, exc, self._usage(session, now, None), show_limits)
            return
        verdict = self._limiter.admit(session.ip, weight, now)
        if not verdict.ok:
            self._reply(session, rid, limit_error(verdict, now), self._weights(verdict.usage), show_limits)
            if verdict.status == 418:
                session.socket.close(WSCloseCode.POLICY_VIOLATION, "IP banned")
            return

        session.socket.defer_events()
        account: str | None = None
        try:
            if op is None:
                security, special = self._special[name]
                call = self._authorize(security, params, raw_params, now)
                result = special(session, call)
            else:
                call = self._authorize(op.security, params, raw_params, now)
                account = call.account
                if op.places_order:
                    self._admit_order(call, now)
                result = self._ops.run(op, call)
                if op.places_order and self._faults.take_lost_order_response():
                    self.lost_responses += 1
                    return
            self._reply(session, rid, result, self._usage(session, now, account if _counts(op) else None),
                        show_limits)
        except BinanceError as exc:
            self._reply(session, rid, exc, self._usage(session, now, account if _counts(op) else None),
                        show_limits)
        except Exception:  # a bug must cost one request, not the connection
            self.unexpected_errors += 1
            log.exception("binance ws-api: %s failed", name)
            self._reply(session, rid, errors.internal(), (), show_limits)
        finally:
            session.socket.release_events()

    def _authorize(self, security: Security, params: Params, raw: object, now: int) -> Call:
        def signed() -> tuple[bytes, str | None]:
            assert isinstance(raw, dict)
            return auth.wsapi_payload(raw), params.get("signature")

        return self._check(security, params, now, params.get("apiKey"), signed, encoded=False)

    def _usage(self, session: Session, now: int, account: str | None) -> tuple[Usage, ...]:
        orders = self._limiter.order_usage(account, now) if account is not None else ()
        return tuple(orders) + self._weights(self._limiter.ip_usage(session.ip, now))

    @staticmethod
    def _weights(usage: tuple[Usage, ...]) -> tuple[Usage, ...]:
        return tuple(u for u in usage if u.limit.kind is LimitType.REQUEST_WEIGHT)

    def _reply(
        self, session: Session, rid: object, outcome: object, usage: tuple[Usage, ...], show_limits: bool
    ) -> None:
        body: dict[str, Any] = {"id": rid}
        if isinstance(outcome, BinanceError):
            error: dict[str, Any] = outcome.body()
            if outcome.data is not None:
                error["data"] = outcome.data
            body["status"] = outcome.status
            body["error"] = error
        else:
            body["status"] = 200
            body["result"] = outcome
        if show_limits and usage:
            body["rateLimits"] = [u.as_json() for u in usage]
        session.socket.push(views.encode(body), StreamKind.API)

    # -- user data subscriptions --------------------------------------------------------------

    def _subscribe(self, session: Session, call: Call) -> dict[str, int]:
        call.params.ensure_all_read()
        assert call.account is not None
        if any(s.account == call.account for s in session.subscriptions.values()):
            raise BinanceError(-2035, "User Data Stream subscription already active.")
        if len(session.subscriptions) >= self._config.max_subscriptions_per_session:
            raise BinanceError(-1100, "Too many active subscriptions for this session.")
        if session.next_subscription >= _MAX_SUBSCRIPTIONS_EVER:
            raise BinanceError(-1100, "Maximum number of subscriptions for this session reached.")
        sub_id = session.next_subscription
        session.next_subscription += 1
        session.socket.add_kind(StreamKind.USER)
        session.subscriptions[sub_id] = self._users.subscribe(session.socket, call.account, sub_id)
        return {"subscriptionId": sub_id}

    def _unsubscribe(self, session: Session, call: Call) -> dict[str, Any]:
        sub_id = call.params.long("subscriptionId")
        call.params.ensure_all_read()
        self._prune(session)
        if sub_id is None:
            targets = list(session.subscriptions)
        elif sub_id in session.subscriptions:
            targets = [sub_id]
        else:
            raise BinanceError(-2036, "User Data Stream subscription not active.")
        for sid in targets:
            self._users.terminate(session.subscriptions.pop(sid), call.now)
        # Binance sends eventStreamTerminated before the answer to the unsubscribe request.
        session.socket.release_events()
        session.socket.defer_events()
        return {}

    def _subscriptions(self, session: Session, call: Call) -> list[dict[str, int]]:
        self._prune(session)
        return [{"subscriptionId": sid} for sid in session.subscriptions]

    def _session_status(self, session: Session, call: Call) -> dict[str, Any]:
        self._prune(session)
        return {
            "apiKey": None,
            "authorizedSince": None,
            "connectedSince": session.socket.opened_ms,
            "returnRateLimits": session.return_rate_limits,
            "serverTime": call.now,
            "userDataStream": bool(session.subscriptions),
        }

    @staticmethod
    def _prune(session: Session) -> None:
        """Forget subscriptions an expiry fault ended."""
        for sid in [sid for sid, sink in session.subscriptions.items() if not sink.active]:
            del session.subscriptions[sid]

    # -- time and shutdown --------------------------------------------------------------------

    async def tick_sockets(self, now_ms: int) -> None:
        for session in list(self.sessions):
            await session.socket.tick(now_ms)

    async def close(self) -> None:
        for session in list(self.sessions):
            session.socket.close(WSCloseCode.GOING_AWAY, "server shutdown")
        await asyncio.gather(*(s.socket.finish() for s in list(self.sessions)), return_exceptions=True)


def _counts(op: Operation | None) -> bool:
    return op is not None and op.places_order
