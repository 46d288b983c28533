"""Binance Spot codec: intents -> request descriptions, payloads -> core values. Pure; no I/O.

Each parser checks the payload against its struct in ``schemas`` (a missing field or a wrong
type raises ``MalformedMessage`` naming the field), then builds core values. Money goes from
Binance's strings to ``Decimal`` directly; timestamps leave as float seconds.

Market data uses the combined endpoint ``/stream`` with live ``SUBSCRIBE``: every frame then
says which stream it belongs to (``{"stream": ..., "data": ...}``), which spot bookTicker (no event
type) would otherwise leave to guesswork. Raw frames from ``/ws`` are understood too. The user
stream is the WebSocket API's ``userDataStream.subscribe.signature``; its events come wrapped as
``{"subscriptionId": N, "event": {...}}`` (legacy listen-key frames, unwrapped, also parse).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Context, Decimal, DecimalException, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Any, Final, TypeVar

import msgspec

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import ConfigError, MarketlinkError
from marketlink.core.fees import FeeKind, TradeFee
from marketlink.core.market import (
    Balance,
    BalanceUpdate,
    BookTicker,
    DepthSnapshot,
    DepthUpdate,
    MarketMessage,
    MarketsInfo,
    PublicTrade,
    PublishedLimit,
    VenueOrder,
)
from marketlink.core.numbers import is_plain_decimal
from marketlink.core.orders import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from marketlink.core.pairs import TradingPair, split_pair
from marketlink.core.rules import TradingRule
from marketlink.net import jsoncodec
from marketlink.net.errors import (
    AuthError,
    ClockSkew,
    ConnectionFailed,
    DuplicateOrder,
    FilterRejected,
    InsufficientFunds,
    IpBanned,
    MalformedMessage,
    OrderNotFound,
    OrderRateLimited,
    RateLimited,
    Rejected,
    ServerError,
    VenueError,
)
from marketlink.net.http import ParamValue, RestRequest
from marketlink.net.throttler import Usage
from marketlink.venues.base import Endpoints, PlaceResult
from marketlink.venues.binance import schemas as s
from marketlink.venues.binance.spec import (
    CHANNELS,
    NAME,
    ORDERS,
    REQUEST_WEIGHT,
    REST,
    WINDOWS,
    costs,
    depth_weight,
)
from marketlink.venues.skeleton import DIGITS, SkeletonCheck, level_skeleton

_T = TypeVar("_T")
# free + locked: exact or refused. Inexact (more than 100 digits) and Overflow raise instead of
# rounding or answering Infinity; _total turns them into MalformedMessage.
_EXACT = Context(prec=100, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
#: The most trades one myTrades request returns (rest-api.md: "Default 500; max 1000"); the
#: weight is the same (5 with ``orderId``) whatever the limit, so we always ask for the most.
MAX_TRADES_PAGE: Final = 1_000

# -- enum tables (venue -> ours; reverses derived, first spelling wins) -------------------------
ORDER_STATUS: Final = {
    "NEW": OrderState.OPEN,
    "PENDING_NEW": OrderState.PENDING_CREATE,  # an order list's pending leg
    "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
    "FILLED": OrderState.FILLED,
    "PENDING_CANCEL": OrderState.PENDING_CANCEL,  # documented as unused
    "CANCELED": OrderState.CANCELED,
    "EXPIRED": OrderState.EXPIRED,
    "EXPIRED_IN_MATCH": OrderState.EXPIRED,  # self-trade prevention expired it
    "REJECTED": OrderState.FAILED,
}
STATUS_OF: Final = {state: status for status, state in reversed(ORDER_STATUS.items())}
ORDER_TYPES: Final = {
    "LIMIT": OrderType.LIMIT, "LIMIT_MAKER": OrderType.LIMIT_MAKER, "MARKET": OrderType.MARKET,
}
ORDER_TYPE_OF: Final = {ours: theirs for theirs, ours in ORDER_TYPES.items()}
SIDES: Final = {"BUY": Side.BUY, "SELL": Side.SELL}
SIDE_OF: Final = {ours: theirs for theirs, ours in SIDES.items()}
TIME_IN_FORCE: Final = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
TIF_OF: Final = {ours: theirs for theirs, ours in TIME_IN_FORCE.items()}

# -- errors: by HTTP status and code; see _error for -1013, -2010 and -2011 ---------------------
# ServerError means "the outcome is unknown": an order request that gets one is queried, never
# marked FAILED. Texts from binance-spot-api-docs errors.md (last updated 2025-01-09).
ERROR_CODES: Final[Mapping[int, type[VenueError]]] = {
    -1000: ServerError,  # UNKNOWN: "An unknown error occurred while processing the request."
    -1001: ServerError,  # DISCONNECTED: "Internal error; unable to process your request. Please try again."
    -1002: AuthError,  # UNAUTHORIZED
    -1003: RateLimited,  # TOO_MANY_REQUESTS
    -1006: ServerError,  # UNEXPECTED_RESP: "An unexpected response ... Execution status unknown."
    -1007: ServerError,  # TIMEOUT: "... Send status unknown; execution status unknown."
    -1008: ServerError,  # SERVER_BUSY: "Server is currently overloaded with other requests. ..."
    -1015: OrderRateLimited,  # TOO_MANY_ORDERS: the account's order count, not the IP's weight
    -1021: ClockSkew,  # INVALID_TIMESTAMP
    -1022: AuthError,  # INVALID_SIGNATURE
    # -2010 and -2011 are read by message in _error.
    -2013: OrderNotFound,  # NO_SUCH_ORDER
    -2014: AuthError,  # BAD_API_KEY_FMT
    -2015: AuthError,  # REJECTED_MBX_KEY
}
_FILTER = re.compile(r"Filter failure: ([A-Z_]+)")
_USAGE = re.compile(r"X-MBX-(USED-WEIGHT|ORDER-COUNT)-(\d+)([SMHD])", re.IGNORECASE)
_USAGE_POOL: Final = {"USED-WEIGHT": REQUEST_WEIGHT, "ORDER-COUNT": ORDERS}
_UNIT_SECONDS: Final = {"S": 1, "M": 60, "H": 3_600, "D": 86_400}
# -- market frames: depth diffs decoded straight into their struct (see decode_market) ---------
_DEPTH_FRAME: Final = msgspec.json.Decoder(s.DepthFrame)
_DEPTH_FRAME_TYPE: Final = s.DepthFrame
#: How a combined-stream depth frame ends (its ask list, ``data``, the frame); no other stream's
#: frame ends so, as their last fields are numbers, strings or booleans.
_DEPTH_END: Final = b"]}}"


def _depth_tail(frame: s.DepthFrame) -> bytes | None:
    """How a combined-stream depth frame's skeleton ends: its two level lists, then the close
    of ``data`` and of the frame (``skeleton.SkeletonCheck``)."""
    d = frame.data
    bids, asks = level_skeleton(d.b), level_skeleton(d.a)
    if bids is None or asks is None:
        return None
    return b'"b":' + bids + b',"a":' + asks + b"}}"


_DEPTH_CHECK: Final = SkeletonCheck(_depth_tail)
_DEPTH_GOOD: Final = _DEPTH_CHECK.good


#: exchangeInfo's ``interval`` names, in seconds.
_INTERVAL_SECONDS: Final = {"SECOND": 1, "MINUTE": 60, "HOUR": 3_600, "DAY": 86_400}
#: Bounds of a published window: a year of days, and a count a float holds exactly.
_MAX_INTERVALS: Final = 366
_MAX_COUNT: Final = 2**53


def _published_limit(entry: s.RateLimitEntry) -> PublishedLimit:
    """One ``rateLimits`` entry; its type names our pool (the spec uses Binance's names)."""
    unit = _INTERVAL_SECONDS.get(entry.interval)
    if unit is None:
        raise _malformed(f"interval: unknown {entry.interval!r}")
    if entry.intervalNum < 1 or entry.limit < 1:
        raise _malformed(f"intervalNum and limit must be >= 1, got {entry.intervalNum}, {entry.limit}")
    if entry.intervalNum > _MAX_INTERVALS or entry.limit > _MAX_COUNT:  # float() would overflow
        raise _malformed(f"intervalNum or limit out of range: {str(entry.intervalNum)[:40]}, "
                         f"{str(entry.limit)[:40]}")
    return PublishedLimit(entry.rateLimitType, float(unit * entry.intervalNum), entry.limit)


def _malformed(what: str) -> MalformedMessage:
    return MalformedMessage(what, venue=NAME)


def _convert(payload: Any, shape: type[_T]) -> _T:
    try:
        return msgspec.convert(payload, shape)
    except msgspec.ValidationError as exc:
        raise _malformed(f"{shape.__name__}: {exc}") from None


@contextmanager
def _core(what: str) -> Iterator[None]:
    """Core constructors refuse impossible values (a zero fill); that is a malformed payload."""
    try:
        yield
    except MalformedMessage:
        raise
    except MarketlinkError as exc:
        raise _malformed(f"{what}: {exc}") from None


def _dec(text: str, name: str, *, positive: bool = False) -> Decimal:
    """Every number Binance sends us, under ``is_plain_decimal`` (see ``marketlink.core.numbers``
    for why). ``positive`` refuses zero too (a limit price, a book ticker's price)."""
    if not is_plain_decimal(text):
        raise _malformed(f"{name}: not a plain decimal: {text!r:.40}")
    value = Decimal(text)
    if positive and not value:
        raise _malformed(f"{name}: must be positive, got {text!r}")
    return value


def _total(free: Decimal, locked: Decimal, name: str) -> Decimal:
    try:
        return _EXACT.add(free, locked)
    except DecimalException:
        raise _malformed(f"{name}: free + locked does not fit {_EXACT.prec} exact digits") from None


def _pair(symbols: Mapping[str, str], symbol: str) -> str:
    try:
        return symbols[symbol]
    except KeyError:
        raise _malformed(f"s/symbol: unknown symbol {symbol!r}") from None


def _lookup(table: Mapping[str, _T], value: str, name: str) -> _T:
    try:
        return table[value]
    except KeyError:
        raise _malformed(f"{name}: unknown value {value!r}") from None


def _seconds(ms: int) -> float:
    # Safe: every time field is a schemas.Millis, bounded to [0, 2**53] when it was validated.
    return ms / 1000


def _fee(asset: str | None, amount: Decimal, pair: str, side: Side) -> TradeFee:
    """Binance takes a fill's fee from what it delivers, unless paid in another asset (BNB)."""
    base, quote = split_pair(pair)
    received = base if side is Side.BUY else quote
    if not asset:  # no commission asset (null or ""): only a zero commission makes sense
        if amount != 0:
            raise _malformed("N: commission without a commission asset")
        return TradeFee(kind=FeeKind.ADDED_TO_COST)
    kind = FeeKind.DEDUCTED_FROM_RETURNS if asset == received else FeeKind.ADDED_TO_COST
    return TradeFee.reported(asset, amount, kind)


def _top(price: str, size: str, name: str) -> tuple[Decimal | None, Decimal | None]:
    """One side of a book ticker. A price must be positive; zero price and size together say
    the side is empty (nothing to quote), anything else with a zero price is malformed."""
    p, q = _dec(price, name), _dec(size, name.upper())
    if not p:
        if q:
            raise _malformed(f"{name}: must be positive, got {price!r}")
        return None, None
    return p, q


def _request(name: str, params: Mapping[str, ParamValue | None] | None = None, *, signed: bool = False,
             weight: int | None = None, order: bool = False) -> RestRequest:
    method, path, default_weight = REST[name]
    return RestRequest(
        method, path, params=params, signed=signed,
        costs=costs(default_weight if weight is None else weight, order=order),
        idempotent=False if order else None, is_order=order,
    )


def _rule(sym: s.Symbol, pair: str) -> TradingRule:
    """Trading rule from a symbol's filters (BSD filters.md); a zero bound means "no bound"."""
    f = {str(x.get("filterType")): x for x in sym.filters}

    def num(filter_type: str, key: str) -> Decimal | None:
        raw = f.get(filter_type, {}).get(key)
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise _malformed(f"{filter_type}.{key}: expected a string, got {raw!r}")
        value = _dec(raw, f"{filter_type}.{key}")
        return value if value > 0 else None

    tick, step = num("PRICE_FILTER", "tickSize"), num("LOT_SIZE", "stepSize")
    if tick is None or step is None:
        raise _malformed("PRICE_FILTER.tickSize and LOT_SIZE.stepSize are required")
    lot_min = num("LOT_SIZE", "minQty") or Decimal(0)
    lot_max = num("LOT_SIZE", "maxQty")
    # A MARKET order must pass LOT_SIZE and MARKET_LOT_SIZE both (filters.md): the larger minimum,
    # the smaller maximum, and a quantity on both steps, i.e. on their least common multiple.
    mkt_min, mkt_max = num("MARKET_LOT_SIZE", "minQty"), num("MARKET_LOT_SIZE", "maxQty")
    mkt_step = num("MARKET_LOT_SIZE", "stepSize")
    # NOTIONAL has applyMinToMarket and applyMaxToMarket; the older MIN_NOTIONAL has applyToMarket.
    notional = "NOTIONAL" if "NOTIONAL" in f else "MIN_NOTIONAL"
    nf = f.get(notional, {})
    apply_min = nf.get("applyMinToMarket", nf.get("applyToMarket"))
    return TradingRule(
        trading_pair=pair,
        tick_size=tick,
        step_size=step,
        min_order_size=lot_min,
        max_order_size=lot_max,
        min_notional=num(notional, "minNotional") or Decimal(0),
        max_notional=num(notional, "maxNotional"),
        market_step_size=None if mkt_step is None else _common_step(step, mkt_step),
        market_min_order_size=max(lot_min, mkt_min) if mkt_min is not None else None,
        market_max_order_size=mkt_max if lot_max is None or mkt_max is None else min(lot_max, mkt_max),
        supports_limit_orders="LIMIT" in sym.orderTypes,
        supports_market_orders="MARKET" in sym.orderTypes,
        supports_limit_maker_orders="LIMIT_MAKER" in sym.orderTypes,
        apply_min_notional_to_market=apply_min is not False,
        apply_max_notional_to_market=nf.get("applyMaxToMarket") is not False,
    )


def _common_step(a: Decimal, b: Decimal) -> Decimal:
    """The least common multiple of two positive steps, exactly: for reduced fractions it is
    lcm(numerators) / gcd(denominators), and that denominator divides a power of ten."""
    an, ad = a.as_integer_ratio()
    bn, bd = b.as_integer_ratio()
    num, den = math.lcm(an, bn), math.gcd(ad, bd)
    places = 0
    while 10**places % den:
        places += 1
    return Decimal(f"{num * (10**places // den)}E-{places}")


def _market(sym: s.Symbol) -> tuple[str, TradingRule]:
    with _core("baseAsset/quoteAsset"):
        pair = str(TradingPair.parse(f"{sym.baseAsset}-{sym.quoteAsset}"))
    with _core("filters"):
        return pair, _rule(sym, pair)


def _venue_order(o: s.Order, symbols: Mapping[str, str]) -> VenueOrder:
    order_type = _lookup(ORDER_TYPES, o.type, "type")
    when = o.updateTime if o.updateTime is not None else o.transactTime
    if when is None:
        raise _malformed("updateTime: missing (and no transactTime)")
    return VenueOrder(  # a plain value: nothing here can refuse what the parsers let through
        trading_pair=_pair(symbols, o.symbol),
        client_order_id=o.clientOrderId,
        exchange_order_id=str(o.orderId),
        side=_lookup(SIDES, o.side, "side"),
        order_type=order_type,
        amount=_dec(o.origQty, "origQty"),
        price=None if order_type is OrderType.MARKET else _dec(o.price, "price", positive=True),
        executed=_dec(o.executedQty, "executedQty"),
        state=_lookup(ORDER_STATUS, o.status, "status"),
        timestamp=_seconds(when),
        time_in_force=TIME_IN_FORCE.get(o.timeInForce),
        executed_quote=_dec(o.cummulativeQuoteQty, "cummulativeQuoteQty"),
        created_at=None if o.time is None else _seconds(o.time),
    )


class BinanceSpotCodec:
    """The ``SpotCodec`` of Binance Spot. Stateless: one instance serves every connector.

    ``trades_page_size`` is the ``limit`` of a myTrades page (1..1000; tests page with less).
    """

    trades_page_size: int = MAX_TRADES_PAGE

    def __init__(self, *, trades_page_size: int = MAX_TRADES_PAGE) -> None:
        if isinstance(trades_page_size, bool) or not isinstance(trades_page_size, int) or not (
            1 <= trades_page_size <= MAX_TRADES_PAGE
        ):
            raise ConfigError(
                f"{NAME}: trades_page_size must be 1..{MAX_TRADES_PAGE}, got {trades_page_size!r}"
            )
        self.trades_page_size = trades_page_size

    # -- time and markets -----------------------------------------------------------------------
    def ping_request(self) -> RestRequest:
        return _request("ping")

    def server_time_request(self) -> RestRequest:
        return _request("time")

    def parse_server_time(self, payload: Any) -> int:
        return _convert(payload, s.ServerTime).serverTime

    def markets_request(self) -> RestRequest:
        return _request("exchange_info")

    def parse_markets(self, payload: Any) -> MarketsInfo:
        """Trading symbols become rules; every other symbol is named in ``skipped`` with why."""
        raw = payload.get("symbols") if isinstance(payload, dict) else None
        if not isinstance(raw, list):
            raise _malformed("exchangeInfo: symbols: expected an array")
        info = MarketsInfo(rules={}, symbols={})
        for index, entry in enumerate(raw):
            name = entry.get("symbol") if isinstance(entry, dict) else None
            name = name if isinstance(name, str) else f"#{index}"
            try:
                sym = _convert(entry, s.Symbol)
                if sym.status != "TRADING" or not sym.isSpotTradingAllowed:
                    info.skipped[name] = f"not trading (status {sym.status})"
                    continue
                pair, rule = _market(sym)
            except MalformedMessage as exc:
                info.skipped[name] = f"malformed: {exc.message}"
                continue
            info.symbols[name] = pair
            info.rules[pair] = rule
        limits = payload.get("rateLimits", [])
        for index, entry in enumerate(limits if isinstance(limits, list) else [limits]):
            try:
                info.rate_limits.append(_published_limit(_convert(entry, s.RateLimitEntry)))
            except MalformedMessage as exc:
                info.skipped[f"rateLimits[{index}]"] = f"malformed: {exc.message}"
        return info

    def last_prices_request(self) -> RestRequest:
        return _request("last_prices")

    def parse_last_prices(self, payload: Any, symbols: Mapping[str, str]) -> dict[str, Any]:
        tickers = _convert(payload, list[s.TickerPrice])
        return {symbols[t.symbol]: _dec(t.price, "price") for t in tickers if t.symbol in symbols}

    # -- order books and public streams ---------------------------------------------------------
    def depth_snapshot_request(self, symbol: str, depth: int) -> RestRequest:
        return _request("depth", {"symbol": symbol, "limit": depth}, weight=depth_weight(depth))

    def parse_depth_snapshot(self, payload: Any, pair: str) -> DepthSnapshot:
        d = _convert(payload, s.Depth)
        return DepthSnapshot(pair, d.lastUpdateId, d.bids, d.asks)

    def market_stream_url(self, endpoints: Endpoints) -> str:
        return f"{endpoints.ws_market}/stream"

    def market_subscribe(self, symbols: Sequence[str], request_id: int) -> Any:
        return {"method": "SUBSCRIBE", "params": self.stream_names(symbols), "id": request_id}

    def parse_market_ack(self, message: Any, request_id: int) -> bool | VenueError | None:
        """The answer to our SUBSCRIBE ``request_id``: ``{"result": null, "id": N}`` accepts it;
        ``{"code": C, "msg": ..., "id": N}`` refuses it. Anything else, an answer to another id
        included, is not it (None). An error without an id cannot be matched here; the engine
        treats it as the answer to the one request it has in flight."""
        if not isinstance(message, dict) or message.get("id") != request_id or "stream" in message:
            return None
        code = message.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return Rejected(str(message.get("msg", "")), code=code, venue=NAME)
        if "result" in message and message["result"] is None:
            return True
        return _malformed(f"answer to subscription {request_id}: neither a result nor an error")

    def market_unsubscribe(self, symbols: Sequence[str], request_id: int) -> Any:
        return {"method": "UNSUBSCRIBE", "params": self.stream_names(symbols), "id": request_id}

    @staticmethod
    def stream_names(symbols: Sequence[str]) -> list[str]:
        return [f"{symbol.lower()}@{suffix}" for symbol in symbols for suffix in CHANNELS.values()]

    def decode_market(self, raw: bytes | str) -> Any:
        """Depth diffs, the bulk of the traffic, are decoded straight from the bytes into their
        struct (no dicts, no Decimal floats) and their level strings proved plain decimals over
        the raw frame (``skeleton.SkeletonCheck``), so neither we nor the book check them one
        by one; every other frame is plain JSON. A depth frame is spotted by how it ends
        (``_DEPTH_END``): only speed depends on that, since a frame that does not
        decode as a depth diff, or fails the proof, falls back to plain JSON, which
        ``parse_market_message`` checks field by field.

        aiohttp hands text frames over undecoded (``WsClient``), so ``raw`` is normally bytes;
        msgspec checks the UTF-8 as it decodes."""
        data: bytes = raw.encode() if isinstance(raw, str) else raw
        if data.endswith(_DEPTH_END):
            try:
                frame = _DEPTH_FRAME.decode(data)
            except msgspec.DecodeError:  # not one after all, or malformed: the checked path
                pass
            else:
                skeleton = data.translate(None, DIGITS)
                if skeleton in _DEPTH_GOOD or _DEPTH_CHECK.prove(skeleton, frame):
                    return frame
        return jsoncodec.decode(data)

    def parse_market_message(self, message: Any, symbols: Mapping[str, str]) -> MarketMessage | None:
        if message.__class__ is _DEPTH_FRAME_TYPE:  # the hot path: no helper calls, positional fields
            d = message.data
            pair = symbols.get(d.s)
            if pair is None:
                raise _malformed(f"s/symbol: unknown symbol {d.s!r}")
            return DepthUpdate(pair, d.U, d.u, d.b, d.a, None, False, d.E / 1000, True)
        data = message.get("data") if isinstance(message, dict) and "stream" in message else message
        if not isinstance(data, dict):
            raise _malformed("market message: expected an object")
        event = data.get("e")
        if event == "depthUpdate":
            diff = _convert(data, s.DepthUpdate)
            pair = _pair(symbols, diff.s)
            return DepthUpdate(pair, diff.U, diff.u, diff.b, diff.a, timestamp=_seconds(diff.E))
        if event == "trade":
            t = _convert(data, s.Trade)
            return PublicTrade(
                _pair(symbols, t.s), str(t.t), _dec(t.p, "p"), _dec(t.q, "q"),
                Side.SELL if t.m else Side.BUY, _seconds(t.T),
            )
        if event is None and "u" in data and "s" in data:
            b = _convert(data, s.BookTicker)
            bid, bid_size = _top(b.b, b.B, "b")
            ask, ask_size = _top(b.a, b.A, "a")
            return BookTicker(_pair(symbols, b.s), bid, bid_size, ask, ask_size, b.u)
        if event == "serverShutdown" or ("result" in data and "id" in data):
            return None  # the server closes the socket itself; a (un)subscribe acknowledgement
        if isinstance(data.get("code"), int):
            raise Rejected(str(data.get("msg", "")), code=data["code"], venue=NAME)
        raise _malformed(f"e: unexpected market message {event!r}")

    def market_message_key(self, message: Any) -> str | None:
        if message.__class__ is _DEPTH_FRAME_TYPE:
            return message.stream
        if not isinstance(message, dict):
            return None
        stream = message.get("stream")
        if isinstance(stream, str):
            return stream
        symbol, event = message.get("s"), message.get("e")
        if not isinstance(symbol, str):
            return None
        if event == "depthUpdate":
            return f"{symbol.lower()}@{CHANNELS['depth']}"
        if event == "trade":
            return f"{symbol.lower()}@{CHANNELS['trade']}"
        return f"{symbol.lower()}@{CHANNELS['ticker']}" if event is None and "u" in message else None

    # -- orders ---------------------------------------------------------------------------------
    def place_order_request(self, order: InFlightOrder, symbol: str) -> RestRequest:
        """LIMIT needs timeInForce, LIMIT_MAKER takes none, MARKET has a quantity and no price."""
        market = order.order_type is OrderType.MARKET
        params: dict[str, ParamValue | None] = {
            "symbol": symbol,
            "side": SIDE_OF[order.side],
            "type": ORDER_TYPE_OF[order.order_type],
            "timeInForce": TIF_OF[order.time_in_force] if order.order_type is OrderType.LIMIT else None,
            "quantity": format(order.amount, "f"),
            "price": None if market or order.price is None else format(order.price, "f"),
            "newClientOrderId": order.client_order_id,
            "newOrderRespType": "FULL",
        }
        return _request("place", {k: v for k, v in params.items() if v is not None}, signed=True, order=True)

    def parse_place_order(self, payload: Any, order: InFlightOrder) -> PlaceResult:
        o = _convert(payload, s.Order)
        when = _seconds(o.transactTime) if o.transactTime is not None else order.creation_timestamp
        with _core("order"):
            update = OrderUpdate(
                order.trading_pair, when, _lookup(ORDER_STATUS, o.status, "status"),
                o.clientOrderId, str(o.orderId), _dec(o.executedQty, "executedQty"),
                created_at=when,  # the placement's transaction is the order's creation
            )
            trades = tuple(TradeUpdate(
                trade_id=str(f.tradeId), client_order_id=o.clientOrderId, exchange_order_id=str(o.orderId),
                trading_pair=order.trading_pair, timestamp=when, price=_dec(f.price, "price"),
                amount=_dec(f.qty, "qty"), is_taker=True,  # fills in the answer matched on arrival
                fee=_fee(f.commissionAsset, _dec(f.commission, "commission"), order.trading_pair, order.side),
            ) for f in o.fills)
        return PlaceResult(update, trades)

    def cancel_order_request(self, symbol: str, client_order_id: str) -> RestRequest:
        return _request("cancel", {"symbol": symbol, "origClientOrderId": client_order_id}, signed=True)

    def parse_cancel_order(self, payload: Any, order: InFlightOrder) -> OrderUpdate:
        o = _convert(payload, s.Order)
        when = _seconds(o.transactTime) if o.transactTime is not None else order.last_update_timestamp
        with _core("cancel"):
            return OrderUpdate(
                order.trading_pair, when, _lookup(ORDER_STATUS, o.status, "status"),
                o.origClientOrderId or None,  # clientOrderId is the cancel request's own id
                str(o.orderId), _dec(o.executedQty, "executedQty"),
            )

    def order_status_request(self, symbol: str, client_order_id: str) -> RestRequest:
        return _request("query", {"symbol": symbol, "origClientOrderId": client_order_id}, signed=True)

    def parse_order_status(self, payload: Any, symbols: Mapping[str, str]) -> VenueOrder:
        return _venue_order(_convert(payload, s.Order), symbols)

    def open_orders_request(self, symbol: str | None) -> RestRequest:
        if symbol is None:
            return _request("open_orders_all", signed=True)
        return _request("open_orders", {"symbol": symbol}, signed=True)

    def parse_open_orders(self, payload: Any, symbols: Mapping[str, str]) -> list[VenueOrder]:
        """Orders of types we never place (stop orders) or on unmapped symbols are not ours: left out."""
        orders = _convert(payload, list[s.Order])
        return [_venue_order(o, symbols) for o in orders if o.type in ORDER_TYPES and o.symbol in symbols]

    def order_trades_request(
        self, symbol: str, exchange_order_id: str, from_trade_id: str | None = None
    ) -> RestRequest:
        """One page of an order's fills: ``trades_page_size`` of them, oldest first, from the
        trade id ``from_trade_id`` on (``None``: from the order's first fill).

        Binance's rules (binance-spot-api-docs rest-api.md, "Account trade list"): ``symbol +
        orderId + fromId`` is one of the supported parameter combinations (``startTime`` and
        ``endTime`` may not join ``orderId``); "If ``fromId`` is set, it will get trades >= that
        ``fromId``. Otherwise most recent trades are returned", in ascending order; ``limit`` is
        "Default 500; max 1000". So ``fromId`` is inclusive, and a request without it would hand a
        5000-fill order's *last* 1000 fills, after which no ``fromId`` finds the first 4000: we
        always send one, ``0`` for the first page. The next page starts at
        ``next_trades_from(page)``.
        """
        start = "0" if from_trade_id is None else from_trade_id
        if not (start.isascii() and start.isdigit()):
            raise ValueError(f"{NAME}: from_trade_id must be a trade id (digits), got {from_trade_id!r}")
        params: dict[str, ParamValue | None] = {
            "symbol": symbol, "orderId": exchange_order_id, "fromId": start, "limit": self.trades_page_size,
        }
        return _request("my_trades", params, signed=True)

    def next_trades_from(self, page: Sequence[TradeUpdate]) -> str | None:
        """The ``from_trade_id`` of the page after ``page`` (from ``parse_trades``), or ``None``
        when ``page`` was the last one: a page shorter than ``trades_page_size`` ends the list.
        Trade ids are integers, and ``fromId`` includes its own, so the next page starts one
        above the highest id seen."""
        if len(page) < self.trades_page_size:
            return None
        return str(max(int(t.trade_id) for t in page) + 1)

    def parse_trades(self, payload: Any, symbols: Mapping[str, str]) -> list[TradeUpdate]:
        out = []
        for t in _convert(payload, list[s.MyTrade]):
            pair = _pair(symbols, t.symbol)
            side = Side.BUY if t.isBuyer else Side.SELL
            fee = _fee(t.commissionAsset, _dec(t.commission, "commission"), pair, side)
            with _core("trade"):
                out.append(TradeUpdate(
                    trade_id=str(t.id), client_order_id=None, exchange_order_id=str(t.orderId),
                    trading_pair=pair, timestamp=_seconds(t.time), price=_dec(t.price, "price"),
                    amount=_dec(t.qty, "qty"), quote_amount=_dec(t.quoteQty, "quoteQty"),
                    is_taker=not t.isMaker, fee=fee,
                ))
        return out

    # -- account --------------------------------------------------------------------------------
    def balances_request(self) -> RestRequest:
        return _request("account", {"omitZeroBalances": "true"}, signed=True)

    def parse_balances(self, payload: Any) -> BalanceUpdate:
        """A complete snapshot: zero balances are omitted by request, so a missing asset is zero."""
        a = _convert(payload, s.Account)
        balances = []
        for b in a.balances:
            free = _dec(b.free, "free")
            balances.append(Balance(b.asset, _total(free, _dec(b.locked, "locked"), b.asset), free))
        return BalanceUpdate(tuple(balances), _seconds(a.updateTime), complete=True)

    # -- private stream -------------------------------------------------------------------------
    def user_stream_url(self, endpoints: Endpoints) -> str:
        return endpoints.ws_user

    def user_stream_subscribe(self, auth: Any, timestamp_ms: int, request_id: int) -> Any:
        params = auth.sign_ws_params({}, timestamp_ms)
        return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}

    def parse_user_stream_ack(self, message: Any, request_id: int) -> bool | VenueError | None:
        if not isinstance(message, dict) or message.get("id") != request_id:
            return None
        status = message.get("status")
        error = message.get("error")
        if error is not None or status != 200:
            code = status if isinstance(status, int) and status >= 400 else 400
            return _error(code, {}, error)
        result = message.get("result")
        if isinstance(result, dict) and isinstance(result.get("subscriptionId"), int):
            return True
        return _malformed("result.subscriptionId: missing from the subscription answer")

    def parse_user_message(
        self, message: Any, symbols: Mapping[str, str]
    ) -> list[OrderUpdate | TradeUpdate | BalanceUpdate]:
        """Order and balance events; others (balanceUpdate deltas, listStatus, answers to requests)
        carry nothing we track, since every balance change is also sent as outboundAccountPosition."""
        event = message.get("event", message) if isinstance(message, dict) else None
        if not isinstance(event, dict):
            raise _malformed("event: expected an object")
        kind = event.get("e")
        if kind in ("eventStreamTerminated", "listenKeyExpired", "serverShutdown"):
            raise ConnectionFailed(f"user data stream ended ({kind})", venue=NAME)
        if kind == "executionReport":
            return self._execution_report(_convert(event, s.ExecutionReport), symbols)
        if kind == "outboundAccountPosition":
            p = _convert(event, s.AccountPosition)
            balances = []
            for b in p.B:
                free = _dec(b.f, "f")
                balances.append(Balance(b.a, _total(free, _dec(b.locked, "l"), b.a), free))
            return [BalanceUpdate(tuple(balances), _seconds(p.u))]
        return []

    def _execution_report(
        self, r: s.ExecutionReport, symbols: Mapping[str, str]
    ) -> list[OrderUpdate | TradeUpdate | BalanceUpdate]:
        pair = symbols.get(r.s)
        if pair is None:
            return []  # a market we do not map holds none of our orders
        client = r.C if r.x == "CANCELED" and r.C else r.c
        side = _lookup(SIDES, r.S, "S")  # checked on every report: a garbled one is not trusted
        out: list[OrderUpdate | TradeUpdate | BalanceUpdate] = []
        created = None if r.O is None else _seconds(r.O)
        if r.x == "TRADE":
            with _core("executionReport"):
                out.append(TradeUpdate(
                    trade_id=str(r.t), client_order_id=client, exchange_order_id=str(r.i), trading_pair=pair,
                    timestamp=_seconds(r.T), price=_dec(r.L, "L"), amount=_dec(r.last_qty, "l"),
                    is_taker=not r.m, quote_amount=None if r.Y is None else _dec(r.Y, "Y"),
                    fee=_fee(r.N, _dec(r.n, "n"), pair, side), created_at=created,
                ))
        with _core("executionReport"):
            out.append(OrderUpdate(
                pair, _seconds(r.T), _lookup(ORDER_STATUS, r.X, "X"), client, str(r.i), _dec(r.z, "z"),
                reason=None if r.r == "NONE" else r.r, created_at=created,
            ))
        return out

    # -- answers --------------------------------------------------------------------------------
    def classify_error(self, status: int, headers: Mapping[str, str], payload: Any) -> VenueError | None:
        return None if status < 400 else _error(status, headers, payload)

    def usage_from_headers(self, headers: Mapping[str, str]) -> Sequence[Usage]:
        """``X-MBX-USED-WEIGHT-1M`` -> REQUEST_WEIGHT over 60 s, ``X-MBX-ORDER-COUNT-10S`` and
        ``-1D`` -> ORDERS over 10 s and a day. Counts for windows we do not model are left out
        (the throttler could not place them)."""
        out = []
        for name, value in headers.items():
            found = _USAGE.fullmatch(name)
            if found is None:
                continue
            pool = _USAGE_POOL[found.group(1).upper()]
            seconds = int(found.group(2)) * _UNIT_SECONDS[found.group(3).upper()]
            if seconds in WINDOWS[pool] and value.isascii() and value.strip().isdigit():
                out.append(Usage(pool, int(value), float(seconds)))
        return out


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, or ``None`` when absent or not a finite non-negative number ("inf" and
    "nan" parse as floats, and a throttler cannot wait for either)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def _error(status: int, headers: Mapping[str, str], payload: Any) -> VenueError:
    """By HTTP status and Binance's code, never by message text, with two exceptions: -2010
    (NEW_ORDER_REJECTED) and -2011 (CANCEL_REJECTED) carry the matching engine's messages
    (errors.md: insufficient balance, a duplicate client id, a LIMIT_MAKER that would take,
    "This account may not place or cancel orders.", "Unknown order sent." and more), and Binance
    gives nothing but its ``msg`` to tell them apart. -1013's ``msg`` names the filter that
    failed (``Filter failure: LOT_SIZE``), kept as ``rule``."""
    body = payload if isinstance(payload, dict) else {}
    code = body.get("code") if isinstance(body.get("code"), int) else None
    text = body.get("msg")
    msg = text if isinstance(text, str) else f"HTTP {status}"
    where: dict[str, Any] = {"code": code, "status": status, "venue": NAME}
    if status == 418:
        return IpBanned(msg, retry_after=_retry_after(headers), **where)
    if status == 429:  # the weight's, or by its code the account's order count (-1015)
        kind = ERROR_CODES.get(code, RateLimited) if code is not None else RateLimited
        limited = kind if issubclass(kind, RateLimited) else RateLimited
        return limited(msg, retry_after=_retry_after(headers), **where)
    if status >= 500:
        return ServerError(msg, **where)
    if code == -1013:
        found = _FILTER.search(msg)
        return FilterRejected(msg, rule=found.group(1) if found else None, **where)
    if code == -2010:
        lowered = msg.lower()
        if "insufficient balance" in lowered:
            return InsufficientFunds(msg, **where)
        if "duplicate order" in lowered:
            return DuplicateOrder(msg, **where)
        return Rejected(msg, **where)  # would take, market closed, ...
    if code == -2011:  # only "Unknown order sent." says the order is not there
        if "unknown order sent" in msg.lower():
            return OrderNotFound(msg, **where)
        return Rejected(msg, **where)  # "This account may not place or cancel orders.", ...
    kind = ERROR_CODES.get(code, Rejected) if code is not None else Rejected
    if issubclass(kind, RateLimited):
        return kind(msg, retry_after=_retry_after(headers), **where)
    return kind(msg, **where)
