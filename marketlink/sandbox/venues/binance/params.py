"""Request parameters as Binance reads them, and the typed refusals it answers with.

REST parameters arrive as text from the query string and a form body (the query wins when a
name is in both; a name twice in one of them is ``-1101``); WebSocket API parameters arrive as
JSON values and are turned into the same text first, so one set of checks serves both. Each
getter validates one parameter the way Binance does (``-1102`` missing, ``-1100`` illegal
characters with the legal pattern, ``-1111`` too many decimals) and marks it read; what was sent
but never read is ``-1104``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar
from urllib.parse import unquote_plus

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.net import jsoncodec
from marketlink.sandbox.exchange import MarketSpec, StpMode
from marketlink.sandbox.venues.binance import errors
from marketlink.sandbox.venues.binance.auth import wsapi_value
from marketlink.sandbox.venues.binance.errors import BinanceError

_DECIMAL = re.compile(errors.DECIMAL_RANGE)
_LONG = re.compile(errors.LONG_RANGE)
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")  # errors.CLIENT_ID_RANGE, read with fullmatch
_SYMBOL = re.compile(errors.SYMBOL_RANGE)
_E = TypeVar("_E", bound=StrEnum)

# Read by the authentication layer on every signed request, never "unread".
AUTH_PARAMS = frozenset({"signature", "timestamp", "recvWindow", "apiKey", "returnRateLimits"})


class RespType(StrEnum):
    ACK = "ACK"
    RESULT = "RESULT"
    FULL = "FULL"


class Params:
    """One request's parameters (name -> raw text) with Binance's validating getters."""

    __slots__ = ("_raw", "_read")

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = dict(raw)
        self._read: set[str] = set()

    @classmethod
    def from_rest(cls, query: str, body: str) -> Params:
        """Parse the undecoded query string and form body; the query wins on a shared name."""
        merged = _parse_form(body)
        merged.update(_parse_form(query))
        return cls(merged)

    @classmethod
    def from_json(cls, params: object) -> Params:
        """WS-API ``params``: an object whose values become their text form."""
        if params is None:
            return cls({})
        if not isinstance(params, Mapping):
            raise errors.invalid_json("'params' must be an object")
        return cls({str(k): _text(v) for k, v in params.items() if v is not None})

    def __contains__(self, name: str) -> bool:
        return name in self._raw

    def raw(self) -> dict[str, str]:
        return dict(self._raw)

    # -- getters -------------------------------------------------------------------------------

    def get(self, name: str) -> str | None:
        """The text of ``name``; an empty value counts as not sent."""
        self._read.add(name)
        value = self._raw.get(name)
        return value if value else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise errors.mandatory(name)
        return value

    def long(self, name: str, *, required: bool = False) -> int | None:
        value = self.require(name) if required else self.get(name)
        if value is None:
            return None
        if not _LONG.match(value):
            raise errors.illegal_chars(name, errors.LONG_RANGE)
        return int(value)

    def limit(self, name: str, *, default: int, maximum: int) -> int:
        """Binance's ``limit``: a positive int, capped at ``maximum`` (larger values truncate)."""
        value = self.long(name)
        if value is None:
            return default
        if value < 1:
            raise errors.illegal_chars(name, f"1 - {maximum}")
        return min(value, maximum)

    def decimal(self, name: str, *, places: int | None = None, required: bool = False) -> Decimal | None:
        value = self.require(name) if required else self.get(name)
        if value is None:
            return None
        if not _DECIMAL.match(value):
            raise errors.illegal_chars(name, errors.DECIMAL_RANGE)
        dot = value.find(".")
        if places is not None and dot >= 0 and len(value.rstrip("0")) - dot - 1 > places:
            raise errors.bad_precision(name)
        return Decimal(value)

    def boolean(self, name: str) -> bool | None:
        value = self.get(name)
        if value is None:
            return None
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise errors.illegal_chars(name, "true, false")
        return lowered == "true"

    def choice(self, name: str, enum: type[_E], *, required: bool = False) -> _E | None:
        value = self.require(name) if required else self.get(name)
        if value is None:
            return None
        try:
            return enum(value)
        except ValueError:
            raise errors.illegal_chars(name, ", ".join(e.value for e in enum)) from None

    def client_id(self, name: str) -> str | None:
        value = self.get(name)
        if value is not None and not _CLIENT_ID.fullmatch(value):
            raise errors.illegal_chars(name, errors.CLIENT_ID_RANGE)
        return value

    def symbol(self, known: Iterable[str] | None = None, *, name: str = "symbol") -> str:
        value = self.require(name)
        if not _SYMBOL.match(value):
            raise errors.illegal_chars(name, errors.SYMBOL_RANGE)
        if known is not None and value not in known:
            raise errors.bad_symbol()
        return value

    def symbol_list(self, name: str, known: Iterable[str]) -> list[str] | None:
        """``symbols=["BTCUSDT","BNBBTC"]`` (JSON text, maybe percent-decoded already)."""
        value = self.get(name)
        if value is None:
            return None
        try:
            parsed = jsoncodec.decode(value)
        except jsoncodec.JsonDecodeError:
            raise errors.BinanceError(-1100, f"Illegal characters found in parameter '{name}'.") from None
        if not isinstance(parsed, list) or not parsed or not all(isinstance(s, str) for s in parsed):
            raise errors.mandatory(name)
        if len(set(parsed)) != len(parsed):
            raise BinanceError(-1151, "Symbol is present multiple times in the list.")
        known_set = set(known)
        for s in parsed:
            if not _SYMBOL.match(s):
                raise errors.illegal_chars(name, errors.SYMBOL_RANGE)
            if s not in known_set:
                raise errors.bad_symbol()
        return list(parsed)

    def reject(self, name: str) -> None:
        """``name`` must not be sent with this request (``-1106``)."""
        self._read.add(name)
        if self._raw.get(name):
            raise errors.not_required(name)

    def ensure_all_read(self, also: Iterable[str] = ()) -> None:
        known = self._read | AUTH_PARAMS | set(also)
        sent = len(self._raw)
        unread = [k for k in self._raw if k not in known]
        if unread:
            raise errors.unread(sent - len(unread), sent)


def _parse_form(raw: str) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` pairs; decoding only where a ``%`` or ``+`` asks for
    it (most requests have neither, and this runs on every request)."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="surrogateescape")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="surrogateescape")
        if name in out:
            raise errors.duplicate_param(name)
        out[name] = value
    return out


def _text(value: object) -> str:
    # As the signed string shows it (auth.wsapi_value), except that a JSON number parsed as a
    # Decimal is read in plain digits: the signature covers the text, the order the value.
    if isinstance(value, Decimal):
        return jsoncodec.plain_decimal(value)
    return wsapi_value(value)


# -- new orders --------------------------------------------------------------------------------------

_UNSUPPORTED_TYPES = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A ``POST /api/v3/order`` request that passed Binance's parameter checks."""

    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce | None
    quantity: Decimal | None
    quote_order_qty: Decimal | None
    price: Decimal | None
    client_order_id: str | None
    resp_type: RespType
    stp_mode: StpMode | None
    strategy_id: int | None
    strategy_type: int | None


def parse_new_order(p: Params, spec: MarketSpec) -> NewOrder:
    """Binance's mandatory-by-type rules (BSD ``rest-api.md`` "New order"), in its order."""
    side_raw = p.require("side")
    try:
        side = Side(side_raw)
    except ValueError:
        raise BinanceError(-1117, "Invalid side.") from None
    type_raw = p.require("type")
    if type_raw in _UNSUPPORTED_TYPES:
        raise BinanceError(-2010, _UNSUPPORTED_TYPES[type_raw])
    try:
        order_type = OrderType(type_raw)
    except ValueError:
        raise BinanceError(-1116, "Invalid orderType.") from None

    tif: TimeInForce | None = None
    tif_raw = p.get("timeInForce")
    if order_type is OrderType.LIMIT:
        if tif_raw is None:
            raise errors.mandatory("timeInForce")
        try:
            tif = TimeInForce(tif_raw)
        except ValueError:
            raise BinanceError(-1115, "Invalid timeInForce.") from None
    elif tif_raw is not None:
        raise errors.not_required("timeInForce")

    quantity = p.decimal("quantity", places=spec.base_precision)
    quote = p.decimal("quoteOrderQty", places=spec.quote_precision)
    price = p.decimal("price", places=spec.quote_precision)
    if order_type is OrderType.MARKET:
        if price is not None:
            raise errors.not_required("price")
        if quantity is None and quote is None:
            raise errors.one_of("quantity", "quoteOrderQty")
        if quantity is not None and quote is not None:
            raise errors.not_required("quoteOrderQty")
    else:
        if quantity is None:
            raise errors.mandatory("quantity")
        if price is None:
            raise errors.mandatory("price")
        if quote is not None:
            raise errors.not_required("quoteOrderQty")

    for name in ("stopPrice", "trailingDelta"):
        p.reject(name)
    if p.get("icebergQty") is not None:
        raise BinanceError(-2010, "Iceberg orders are not supported for this symbol.")
    client_id = p.client_id("newClientOrderId")
    resp = p.choice("newOrderRespType", RespType)
    if resp is None:
        resp = RespType.FULL if order_type in (OrderType.LIMIT, OrderType.MARKET) else RespType.ACK
    stp = p.choice("selfTradePreventionMode", StpMode)
    strategy_id = p.long("strategyId")
    strategy_type = p.long("strategyType")
    if strategy_type is not None and strategy_type < 1_000_000:
        raise BinanceError(-1134, "`strategyType` was less than 1000000.")
    return NewOrder(
        symbol=spec.symbol,
        side=side,
        order_type=order_type,
        time_in_force=tif,
        quantity=quantity,
        quote_order_qty=quote,
        price=price,
        client_order_id=client_id,
        resp_type=resp,
        stp_mode=stp,
        strategy_id=strategy_id,
        strategy_type=strategy_type,
    )
