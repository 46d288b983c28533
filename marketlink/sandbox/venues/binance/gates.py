"""What REST and the WebSocket API share: the same dependencies and the same gates (key, signature,
time, trading permission; the account's order count) in front of the same operations, so a request
is admitted or refused alike whichever envelope carried it. Only where the key, the signed bytes and
the signature come from differs, and the caller supplies those.
"""

from __future__ import annotations

from collections.abc import Callable

from marketlink.sandbox.faults import Faults
from marketlink.sandbox.venues.binance import auth, errors
from marketlink.sandbox.venues.binance.config import BinanceSpotConfig
from marketlink.sandbox.venues.binance.endpoints import Call, Operations, Security
from marketlink.sandbox.venues.binance.limits import RateLimiter
from marketlink.sandbox.venues.binance.params import Params


class ApiGates:
    """The base both API front-ends compose their request handling on."""

    def __init__(
        self,
        ops: Operations,
        limiter: RateLimiter,
        verifier: auth.Verifier,
        faults: Faults,
        now_ms: Callable[[], int],
        config: BinanceSpotConfig,
    ) -> None:
        self._ops = ops
        self._limiter = limiter
        self._verifier = verifier
        self._faults = faults
        self._now = now_ms
        self._config = config
        self._windows = (config.default_recv_window_ms, config.max_recv_window_ms, config.future_tolerance_ms)
        self.lost_responses = 0

    def _check(
        self,
        security: Security,
        params: Params,
        now: int,
        api_key: str | None,
        signed: Callable[[], tuple[bytes, str | None]],
        *,
        encoded: bool,
    ) -> Call:
        """``signed`` yields the signed bytes and the signature; it runs only for SIGNED security,
        so an unsigned request never has its payload built."""
        if security is Security.NONE:
            return Call(params, now)
        if security is Security.USER_STREAM:
            cred = self._verifier.credential(api_key)
        else:
            payload, signature = signed()
            cred = auth.authenticate(
                self._verifier, api_key, payload, signature, params.get("timestamp"),
                params.get("recvWindow"), now, encoded=encoded, windows=self._windows,
            )
            if security is Security.TRADE and not cred.can_trade:
                raise errors.rejected_key()
        if cred.expires_at_ms is not None and now >= cred.expires_at_ms:
            raise errors.rejected_key()  # Binance says no more for an expired key than a bad one
        return Call(params, now, cred.account, cred.api_key, cred.can_trade)

    def _admit_order(self, call: Call, now: int) -> None:
        """Count an order placement against its account's order limits before it runs."""
        assert call.account is not None
        orders = self._limiter.admit_order(call.account, now)
        if not orders.ok:
            assert orders.broken is not None
            raise errors.too_many_orders(orders.broken, orders.retry_after_s, now)
