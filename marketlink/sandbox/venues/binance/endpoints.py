"""What each Binance Spot request does, once, for the REST API and the WebSocket API alike.

An ``Operation`` is data about one request (its security type, its weight as a function of the
parameters, whether it places an order) plus a synchronous handler that reads validated
parameters, calls the engine and returns a payload from ``views``. The REST layer maps
``(method, path)`` and the WS-API layer maps method names onto the same operations, so both
speak identical JSON and refuse with identical codes; neither knows what an order is.

Names are the WebSocket API's method names (``order.place``, ``openOrders.status`` ...).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from marketlink.core.enums import OrderType, TimeInForce
from marketlink.sandbox.exchange import Exchange, ExchangeRejection, OrderStatus, money
from marketlink.sandbox.exchange.intake import normalize
from marketlink.sandbox.venues.binance import errors, views
from marketlink.sandbox.venues.binance.config import BinanceSpotConfig
from marketlink.sandbox.venues.binance.errors import BinanceError
from marketlink.sandbox.venues.binance.limits import RateLimiter, depth_weight, ticker_24h_weight
from marketlink.sandbox.venues.binance.params import Params, RespType, parse_new_order
from marketlink.sandbox.venues.binance.userdata import UserStreams

log = logging.getLogger(__name__)


class Security(StrEnum):
    NONE = "NONE"
    USER_STREAM = "USER_STREAM"  # API key, no signature
    USER_DATA = "USER_DATA"  # signed
    TRADE = "TRADE"  # signed, and the key must be allowed to trade

    @property
    def signed(self) -> bool:
        return self in (Security.USER_DATA, Security.TRADE)


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated request: who (``account``, ``api_key``) and when (sandbox ms)."""

    params: Params
    now: int
    account: str | None = None
    api_key: str | None = None
    can_trade: bool = True


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    security: Security
    weight: Callable[[Params], int]
    handler: Callable[[Call], Any]
    places_order: bool = False


def _fixed(n: int) -> Callable[[Params], int]:
    return lambda _p: n


def _one_or_all(one: int, many: int) -> Callable[[Params], int]:
    return lambda p: one if "symbol" in p else many


class Operations:
    """The handlers, bound to one exchange, limiter and listen-key registry."""

    def __init__(
        self, exchange: Exchange, config: BinanceSpotConfig, limiter: RateLimiter, user_streams: UserStreams
    ) -> None:
        self.exchange = exchange
        self.config = config
        self.limiter = limiter
        self.user_streams = user_streams
        self._formats = {s: views.Formats(exchange.market(s)) for s in exchange.symbols}
        self._symbol_info = {
            s: views.symbol_info(exchange.market(s), config.unbounded_display) for s in exchange.symbols
        }
        tiers = config.depth_weight_tiers
        ops = [
            Operation("ping", Security.NONE, _fixed(1), self.ping),
            Operation("time", Security.NONE, _fixed(1), self.time),
            Operation("exchangeInfo", Security.NONE, _fixed(20), self.exchange_info),
            Operation("depth", Security.NONE, lambda p: depth_weight(_depth_limit(p), tiers), self.depth),
            Operation("trades.recent", Security.NONE, _fixed(25), self.trades),
            Operation("avgPrice", Security.NONE, _fixed(2), self.avg_price),
            Operation("ticker.price", Security.NONE, _one_or_all(2, 4), self.ticker_price),
            Operation("ticker.book", Security.NONE, _one_or_all(2, 4), self.ticker_book),
            Operation("ticker.24hr", Security.NONE, self._ticker_24h_weight, self.ticker_24h),
            Operation("account.status", Security.USER_DATA, _fixed(20), self.account),
            Operation("account.rateLimits.orders", Security.USER_DATA, _fixed(40), self.order_rate_limits),
            Operation("order.place", Security.TRADE, _fixed(1), self.place, places_order=True),
            Operation("order.test", Security.TRADE, self._test_weight, self.test_order),
            Operation("order.cancel", Security.TRADE, _fixed(1), self.cancel),
            Operation("order.status", Security.USER_DATA, _fixed(4), self.status),
            Operation("openOrders.status", Security.USER_DATA, _one_or_all(6, 80), self.open_orders),
            Operation("openOrders.cancelAll", Security.TRADE, _fixed(1), self.cancel_all),
            Operation("allOrders", Security.USER_DATA, _fixed(20), self.all_orders),
            Operation("myTrades", Security.USER_DATA, self._my_trades_weight, self.my_trades),
            Operation("userDataStream.start", Security.USER_STREAM, _fixed(2), self.listen_key_start),
            Operation("userDataStream.ping", Security.USER_STREAM, _fixed(2), self.listen_key_ping),
            Operation("userDataStream.stop", Security.USER_STREAM, _fixed(2), self.listen_key_stop),
        ]
        self.table: dict[str, Operation] = {op.name: op for op in ops}
        self.unexpected_errors = 0

    def run(self, op: Operation, call: Call) -> Any:
        """Run ``op``: every refusal becomes a ``BinanceError``; a bug in a handler is logged,
        counted and answered as Binance answers its own internal errors (-1000), never a crash."""
        try:
            return op.handler(call)
        except BinanceError:
            raise
        except ExchangeRejection as exc:
            raise errors.from_rejection(exc, "query") from None
        except Exception:
            self.unexpected_errors += 1
            log.exception("binance: %s failed", op.name)
            raise errors.internal() from None

    def formats(self, symbol: str) -> views.Formats:
        return self._formats[symbol]

    def _symbol(self, p: Params) -> str:
        return p.symbol(self._formats)

    def _symbols(self, p: Params) -> list[str]:
        """``symbol``, else ``symbols``, else every symbol; both at once is refused."""
        if "symbol" in p and "symbols" in p:
            raise BinanceError(-1128, "Combination of optional parameters invalid.")
        if "symbol" in p:
            return [self._symbol(p)]
        listed = p.symbol_list("symbols", self._formats)
        return listed if listed is not None else list(self._formats)

    # -- general and market data ------------------------------------------------------------------

    def ping(self, call: Call) -> dict[str, Any]:
        return {}

    def time(self, call: Call) -> dict[str, Any]:
        return {"serverTime": call.now}

    def exchange_info(self, call: Call) -> dict[str, Any]:
        p = call.params
        symbols = self._symbols(p)
        p.get("permissions")
        p.get("showPermissionSets")
        status = p.get("symbolStatus")
        if status is not None and status != "TRADING":
            symbols = []
        return views.exchange_info(call.now, self.config.rate_limits, (self._symbol_info[s] for s in symbols))

    def depth(self, call: Call) -> views.Depth:
        symbol = self._symbol(call.params)
        limit = _depth_limit(call.params)
        return views.depth(self.exchange.depth(symbol, limit), self._formats[symbol])

    def trades(self, call: Call) -> list[views.PublicTrade]:
        symbol = self._symbol(call.params)
        limit = call.params.limit("limit", default=500, maximum=1000)
        f = self._formats[symbol]
        return [views.public_trade(t, f) for t in self.exchange.recent_trades(symbol, limit)]

    def avg_price(self, call: Call) -> views.AvgPrice:
        """The volume-weighted price of the last 5 minutes' trades, else the last price."""
        symbol = self._symbol(call.params)
        horizon = call.now - 5 * 60_000
        qty = quote = money.ZERO
        close = 0
        for t in self.exchange.recent_trades(symbol, 1000):
            if t.time > horizon:
                qty, quote, close = money.add(qty, t.qty), money.add(quote, t.quote_qty), t.time
        f = self._formats[symbol]
        if qty > 0:
            price = money.divide(quote, qty, f.quote)
        else:
            price = self.exchange.last_price(symbol) or money.ZERO
        return views.AvgPrice(5, f.price(price), close or call.now)

    def ticker_price(self, call: Call) -> views.PriceTicker | list[views.PriceTicker]:
        symbols = self._symbols(call.params)
        out = [
            views.PriceTicker(s, self._formats[s].price(self.exchange.last_price(s) or money.ZERO))
            for s in symbols
        ]
        return out[0] if "symbol" in call.params else out

    def ticker_book(self, call: Call) -> views.BookTickerView | list[views.BookTickerView]:
        symbols = self._symbols(call.params)
        out = [views.book_ticker(self.exchange.book_ticker(s), self._formats[s]) for s in symbols]
        return out[0] if "symbol" in call.params else out

    def _ticker_24h_weight(self, p: Params) -> int:
        if "symbol" in p:
            return 2
        raw = p.get("symbols")
        return ticker_24h_weight(None if raw is None else max(1, raw.count(",") + 1))

    def ticker_24h(self, call: Call) -> Any:
        p = call.params
        symbols = self._symbols(p)
        kind = p.get("type") or "FULL"
        if kind not in ("FULL", "MINI"):
            raise BinanceError(-1139, "Invalid ticker type.")
        out = [
            views.ticker_24h(self.exchange.ticker_24h(s, call.now), self._formats[s], mini=kind == "MINI")
            for s in symbols
        ]
        return out[0] if "symbol" in p else out

    # -- account ----------------------------------------------------------------------------------

    def account(self, call: Call) -> views.Account:
        account = _account(call)
        omit_zero = call.params.boolean("omitZeroBalances") or False
        balances = self.exchange.balances(account)
        if omit_zero:
            balances = tuple(b for b in balances if b.free or b.locked)
        maker, taker = self._fee_rates(account)
        uid = self.config.account_uid_base + zlib.crc32(account.encode()) % 100_000_000
        changed = self.exchange.balances_changed_at(account)  # not "now": the balances' own time
        return views.account(balances, maker, taker, can_trade=call.can_trade, update_time=changed, uid=uid)

    def _fee_rates(self, account: str) -> tuple[Decimal, Decimal]:
        first = self.exchange.symbols[0] if self.exchange.symbols else None
        if first is None:
            return money.ZERO, money.ZERO
        return self.exchange.ledger.fee_rates(account, self.exchange.market(first))

    def order_rate_limits(self, call: Call) -> list[dict[str, object]]:
        return [u.as_json() for u in self.limiter.order_usage(_account(call), call.now)]

    # -- orders -----------------------------------------------------------------------------------

    def place(self, call: Call) -> views.OrderResponse:
        p = call.params
        symbol = self._symbol(p)
        spec = self.exchange.market(symbol)
        req = parse_new_order(p, spec)
        p.ensure_all_read()
        try:
            result = self.exchange.place_order(
                _account(call), symbol, req.side, req.order_type,
                quantity=req.quantity, quote_order_qty=req.quote_order_qty, price=req.price,
                time_in_force=req.time_in_force, client_order_id=req.client_order_id,
                stp_mode=req.stp_mode, now_ms=call.now,
            )
        except ExchangeRejection as exc:
            raise errors.from_rejection(exc, "place") from None
        f = self._formats[symbol]
        if req.resp_type is RespType.ACK:
            return views.order_ack(result.order, result.transact_time)
        fills = result.fills if req.resp_type is RespType.FULL else None
        return views.order_result(result.order, result.transact_time, f, fills)

    def _test_weight(self, p: Params) -> int:
        return 20 if (p.get("computeCommissionRates") or "").lower() == "true" else 1

    def test_order(self, call: Call) -> dict[str, Any]:
        """Every check ``order.place`` makes before matching, and nothing else (BSD: "Test new
        order creation ... does not send it into the matching engine")."""
        p = call.params
        symbol = self._symbol(p)
        spec = self.exchange.market(symbol)
        req = parse_new_order(p, spec)
        compute = p.boolean("computeCommissionRates") or False
        p.ensure_all_read()
        last = self.exchange.last_price(symbol)
        try:
            normalize(
                spec, side=req.side, order_type=req.order_type,
                time_in_force=req.time_in_force if req.order_type is OrderType.LIMIT else TimeInForce.GTC,
                quantity=req.quantity, quote_order_qty=req.quote_order_qty, price=req.price,
                stp_mode=req.stp_mode, reference_price=lambda _side: last,
            )
        except ExchangeRejection as exc:
            raise errors.from_rejection(exc, "place") from None
        if not compute:
            return {}
        maker, taker = self.exchange.ledger.fee_rates(_account(call), spec)
        zero = views.fmt(money.ZERO, 8)
        return {
            "standardCommissionForOrder": {"maker": views.fmt(maker, 8), "taker": views.fmt(taker, 8)},
            "specialCommissionForOrder": {"maker": zero, "taker": zero},
            "taxCommissionForOrder": {"maker": zero, "taker": zero},
            "discount": {"enabledForAccount": False, "enabledForSymbol": False, "discountAsset": "BNB",
                         "discount": zero},
        }

    def _order_ref(self, p: Params) -> tuple[int | None, str | None]:
        order_id = p.long("orderId")
        client_id = p.get("origClientOrderId")
        if order_id is None and client_id is None:
            raise errors.one_of("orderId", "origClientOrderId")
        return order_id, client_id

    def cancel(self, call: Call) -> views.CancelResponse:
        p = call.params
        symbol = self._symbol(p)
        order_id, client_id = self._order_ref(p)
        cancel_id = p.client_id("newClientOrderId")
        restriction = p.get("cancelRestrictions")
        if restriction not in (None, "ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
            raise BinanceError(
                -1145, "cancelRestrictions has to be either ONLY_NEW or ONLY_PARTIALLY_FILLED."
            )
        p.ensure_all_read()
        account = _account(call)
        try:
            if restriction is not None:
                current = self.exchange.get_order(
                    account, symbol, order_id=order_id, client_order_id=client_id
                )
                wanted = OrderStatus.NEW if restriction == "ONLY_NEW" else OrderStatus.PARTIALLY_FILLED
                if current.status.is_open and current.status is not wanted:
                    raise BinanceError(-2011, "Order was not canceled due to cancel restrictions.")
            result = self.exchange.cancel_order(
                account, symbol, order_id=order_id, client_order_id=client_id,
                cancel_client_order_id=cancel_id, now_ms=call.now,
            )
        except ExchangeRejection as exc:
            raise errors.from_rejection(exc, "cancel") from None
        return views.cancel_response(result, self._formats[symbol])

    def status(self, call: Call) -> views.OrderQuery:
        p = call.params
        symbol = self._symbol(p)
        order_id, client_id = self._order_ref(p)
        p.ensure_all_read()
        try:
            view = self.exchange.get_order(
                _account(call), symbol, order_id=order_id, client_order_id=client_id
            )
        except ExchangeRejection as exc:
            raise errors.from_rejection(exc, "query") from None
        return views.order_query(view, self._formats[symbol])

    def open_orders(self, call: Call) -> list[views.OrderQuery]:
        p = call.params
        symbol = self._symbol(p) if "symbol" in p else None
        p.ensure_all_read()
        views_ = self.exchange.open_orders(_account(call), symbol)
        return [views.order_query(v, self._formats[v.symbol]) for v in views_]

    def cancel_all(self, call: Call) -> list[views.CancelResponse]:
        p = call.params
        symbol = self._symbol(p)
        p.ensure_all_read()
        account = _account(call)
        if not self.exchange.open_orders(account, symbol):
            raise BinanceError(-2011, "Unknown order sent.")
        results = self.exchange.cancel_all(account, symbol, now_ms=call.now)
        f = self._formats[symbol]
        return [views.cancel_response(r, f) for r in results]

    def all_orders(self, call: Call) -> list[views.OrderQuery]:
        p = call.params
        symbol = self._symbol(p)
        from_id = p.long("orderId")
        start, end = p.long("startTime"), p.long("endTime")
        limit = p.limit("limit", default=500, maximum=1000)
        p.ensure_all_read()
        orders = self.exchange.all_orders(_account(call), symbol, from_order_id=from_id, limit=10**9)
        orders = [o for o in orders if (start is None or o.time >= start) and (end is None or o.time <= end)]
        orders = orders[:limit] if from_id is not None or start is not None else orders[-limit:]
        f = self._formats[symbol]
        return [views.order_query(v, f) for v in orders]

    def _my_trades_weight(self, p: Params) -> int:
        return 5 if "orderId" in p else 20

    def my_trades(self, call: Call) -> list[views.MyTrade]:
        """BSD rest-api.md "Account trade list": ``fromId`` returns trades with id >= it, oldest
        first; without it, the most recent ``limit`` (default 500, max 1000). Of the documented
        combinations, neither ``orderId`` nor ``fromId`` goes with ``startTime``/``endTime``."""
        p = call.params
        symbol = self._symbol(p)
        order_id = p.long("orderId")
        from_id = p.long("fromId")
        start, end = p.long("startTime"), p.long("endTime")
        limit = p.limit("limit", default=500, maximum=1000)
        p.ensure_all_read()
        if (order_id is not None or from_id is not None) and (start is not None or end is not None):
            raise errors.bad_combination()
        trades = self.exchange.my_trades(
            _account(call), symbol, from_id=from_id, order_id=order_id, start_time=start, end_time=end,
            limit=limit,
        )
        f = self._formats[symbol]
        return [views.my_trade(t, f) for t in trades]

    # -- legacy listen keys -----------------------------------------------------------------------

    def listen_key_start(self, call: Call) -> dict[str, str]:
        call.params.ensure_all_read()
        assert call.account is not None and call.api_key is not None
        return {"listenKey": self.user_streams.listen_keys.create(call.account, call.api_key, call.now)}

    def listen_key_ping(self, call: Call) -> dict[str, Any]:
        key = call.params.require("listenKey")
        call.params.ensure_all_read()
        assert call.account is not None
        self.user_streams.listen_keys.keepalive(key, call.account, call.now)
        return {}

    def listen_key_stop(self, call: Call) -> dict[str, Any]:
        key = call.params.require("listenKey")
        call.params.ensure_all_read()
        assert call.account is not None
        self.user_streams.close_listen_key(key, call.account)
        return {}


def _account(call: Call) -> str:
    if call.account is None:  # pragma: no cover - the security layer guarantees an account
        raise errors.rejected_key()
    return call.account


def _depth_limit(p: Params) -> int:
    return p.limit("limit", default=100, maximum=5000)
