"""The one small protocol between the engine and a venue, and the shape of a venue's spec.

A venue is data plus pure functions (h11's spirit): the spec declares URLs per domain, rate
limits, id rules, fees and the book's sequence rule; the codec turns intents into
``RestRequest``/WebSocket frames and payloads into core values; the auth signs. The engine reads
the spec and calls the codec; it never learns a venue's field names, and a venue never awaits.

Every ``parse_*`` raises ``MalformedMessage`` (naming the field) on a payload that does not
match the venue's schema, so the engine can count and drop it without corrupting state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from marketlink.core.enums import OrderType, TimeInForce
from marketlink.core.fees import TradeFeeSchema
from marketlink.core.market import (
    BalanceUpdate,
    DepthSnapshot,
    MarketMessage,
    MarketsInfo,
    VenueOrder,
)
from marketlink.core.orders import InFlightOrder, OrderUpdate, TradeUpdate
from marketlink.net.errors import VenueError
from marketlink.net.http import Auth, RestRequest, VenueProtocol
from marketlink.net.throttler import RateLimit


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where one domain of a venue lives (``com``, ``testnet``, ``local`` sandbox...)."""

    rest: str  # https://api.binance.com
    ws_market: str  # wss://stream.binance.com:9443
    ws_user: str  # private stream / WebSocket API URL


@dataclass(frozen=True, slots=True)
class ClientIdRules:
    max_length: int
    alphabet: str  # characters the venue accepts in a client order id
    default_prefix: str = "ml"


@dataclass(frozen=True, slots=True)
class HeartbeatSpec:
    """``server``: the venue pings, we answer (and reconnect on silence after ``timeout``);
    ``client``: we send the venue's ping message every ``interval``."""

    kind: str  # "server" | "client"
    timeout: float
    interval: float = 0.0


@dataclass(frozen=True, slots=True)
class VenueSpec:
    name: str
    domains: Mapping[str, Endpoints]
    rate_limits: tuple[RateLimit, ...]
    client_ids: ClientIdRules
    fees: TradeFeeSchema
    sequence_rule: str  # a key of core.sequence.SEQUENCE_RULES
    snapshot_depth: int  # levels fetched for a book snapshot
    market_heartbeat: HeartbeatSpec
    user_heartbeat: HeartbeatSpec
    order_types: frozenset[OrderType] = frozenset(OrderType)
    time_in_force: frozenset[TimeInForce] = frozenset(TimeInForce)
    max_streams_per_connection: int = 200
    #: Levels of the snapshot that only checks a quiet book's update id: the venue's smallest
    #: accepted limit in its cheapest weight tier.
    probe_depth: int = 5
    recv_window_ms: int = 5000
    extra: Mapping[str, Any] = field(default_factory=dict)

    def endpoints(self, domain: str) -> Endpoints:
        try:
            return self.domains[domain]
        except KeyError:
            from marketlink.core.errors import ConfigError

            known = ", ".join(sorted(self.domains))
            raise ConfigError(f"{self.name}: unknown domain {domain!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class PlaceResult:
    """What an order placement's answer says: the order's status, and any fills it reports."""

    update: OrderUpdate
    trades: tuple[TradeUpdate, ...] = ()


class SpotCodec(VenueProtocol, Protocol):
    """Pure request builders and parsers of a spot venue.

    Symbols are the venue's (``BTCUSDT``); parsers take a ``symbols`` map venue symbol -> pair
    so they can hand out ``BASE-QUOTE`` pairs. ``classify_error`` and ``usage_from_headers`` come
    from ``VenueProtocol`` (the HTTP client calls them on every answer).
    """

    # -- time and markets -------------------------------------------------------------------
    def ping_request(self) -> RestRequest: ...
    def server_time_request(self) -> RestRequest: ...
    def parse_server_time(self, payload: Any) -> int: ...
    def markets_request(self) -> RestRequest: ...
    def parse_markets(self, payload: Any) -> MarketsInfo: ...
    def last_prices_request(self) -> RestRequest: ...
    def parse_last_prices(self, payload: Any, symbols: Mapping[str, str]) -> dict[str, Any]: ...

    # -- order books and public streams -----------------------------------------------------
    def depth_snapshot_request(self, symbol: str, depth: int) -> RestRequest: ...
    def parse_depth_snapshot(self, payload: Any, pair: str) -> DepthSnapshot: ...
    def market_stream_url(self, endpoints: Endpoints) -> str: ...
    def market_subscribe(self, symbols: Sequence[str], request_id: int) -> Any: ...
    def decode_market(self, raw: bytes | str) -> Any:
        """One market-stream frame, decoded for ``parse_market_message`` and ``market_message_key``.

        The hot path of market data: a codec may decode its bulk messages (depth diffs) straight
        into typed structs here. ``jsoncodec.decode(raw)`` is always a correct implementation;
        raise on bytes that are not JSON (the WebSocket client counts and drops them).
        """
        ...

    def market_unsubscribe(self, symbols: Sequence[str], request_id: int) -> Any: ...
    def parse_market_message(self, message: Any, symbols: Mapping[str, str]) -> MarketMessage | None:
        """``None`` for control frames (subscription acks); raises ``MalformedMessage``."""
        ...

    def market_message_key(self, message: Any) -> str | None:
        """Which subscription a raw message belongs to (for per-stream staleness)."""
        ...

    # -- orders -----------------------------------------------------------------------------
    def place_order_request(self, order: InFlightOrder, symbol: str) -> RestRequest: ...
    def parse_place_order(self, payload: Any, order: InFlightOrder) -> PlaceResult: ...
    def cancel_order_request(self, symbol: str, client_order_id: str) -> RestRequest: ...
    def parse_cancel_order(self, payload: Any, order: InFlightOrder) -> OrderUpdate: ...
    def order_status_request(self, symbol: str, client_order_id: str) -> RestRequest: ...
    def parse_order_status(self, payload: Any, symbols: Mapping[str, str]) -> VenueOrder: ...
    def open_orders_request(self, symbol: str | None) -> RestRequest: ...
    def parse_open_orders(self, payload: Any, symbols: Mapping[str, str]) -> list[VenueOrder]: ...
    #: The most fills one ``order_trades_request`` page holds; a full page may have a successor.
    trades_page_size: int

    def order_trades_request(
        self, symbol: str, exchange_order_id: str, from_trade_id: str | None = None
    ) -> RestRequest:
        """One page of an order's fills, oldest first, from ``from_trade_id`` (``None``: the first)."""
        ...

    def parse_trades(self, payload: Any, symbols: Mapping[str, str]) -> list[TradeUpdate]: ...
    def next_trades_from(self, page: Sequence[TradeUpdate]) -> str | None:
        """The ``from_trade_id`` of the page after ``page`` (parsed), ``None`` after the last page."""
        ...


    # -- account ----------------------------------------------------------------------------
    def balances_request(self) -> RestRequest: ...
    def parse_balances(self, payload: Any) -> BalanceUpdate: ...

    # -- private stream ---------------------------------------------------------------------
    def user_stream_url(self, endpoints: Endpoints) -> str: ...
    def user_stream_subscribe(self, auth: Any, timestamp_ms: int, request_id: int) -> Any:
        """The frame that starts private delivery on a fresh connection (signed by ``auth``)."""
        ...

    def parse_user_stream_ack(self, message: Any, request_id: int) -> bool | VenueError | None:
        """True: subscribed; a VenueError: refused; None: not the answer to ``request_id``."""
        ...

    def parse_user_message(
        self, message: Any, symbols: Mapping[str, str]
    ) -> list[OrderUpdate | TradeUpdate | BalanceUpdate]:
        """Private events; an event that ends a subscription raises ``ConnectionFailed``."""
        ...


@dataclass(frozen=True, slots=True)
class Venue:
    """A venue as the engine receives it: its spec, codec and how to build its auth."""

    spec: VenueSpec
    codec: SpotCodec
    make_auth: Any  # Callable[[Credentials], Auth-like object with REST and WS signing]

    @property
    def name(self) -> str:
        return self.spec.name


__all__ = [
    "Auth",
    "ClientIdRules",
    "Endpoints",
    "HeartbeatSpec",
    "PlaceResult",
    "SpotCodec",
    "Venue",
    "VenueSpec",
]
