"""Engine values rendered as Binance Spot's REST / WebSocket API results, field for field and in
Binance's order (pushed messages are in ``messages``).

Each payload is a ``msgspec.Struct`` whose fields are declared in the order Binance prints them,
so the encoder writes them in that order with no per-message dict building; fields Binance shows
only under a condition are ``UNSET`` otherwise and left out. Money is a string with at least the
asset's decimals (``"0.10000000"``), never fewer digits than the exact value has: padding only,
no rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

from marketlink.sandbox.exchange import (
    AssetBalance,
    BookTop,
    CancelResult,
    DepthSnapshot,
    Fill,
    MarketSpec,
    OrderView,
    OwnTrade,
    Ticker24h,
    TradeEvent,
)
from marketlink.sandbox.exchange.errors import FilterType
from marketlink.sandbox.venues.binance.limits import RateLimit

ENCODER = msgspec.json.Encoder()
encode = ENCODER.encode


def fmt(value: Decimal, places: int) -> str:
    """``value`` in plain digits with at least ``places`` decimals (zero-padded, never rounded)."""
    text = format(value, "f")
    dot = text.find(".")
    if dot < 0:
        return f"{text}.{'0' * places}" if places else text
    missing = places - (len(text) - dot - 1)
    return text + "0" * missing if missing > 0 else text


class Formats:
    """Decimal places of one market: prices and quote amounts, quantities and base amounts."""

    __slots__ = ("base", "qty", "quote")

    def __init__(self, spec: MarketSpec) -> None:
        self.qty = spec.base_precision
        self.quote = spec.quote_precision
        self.base = spec.base

    def price(self, v: Decimal | None) -> str:
        return fmt(v, self.quote) if v is not None else fmt(Decimal(0), self.quote)

    def amount(self, v: Decimal) -> str:
        return fmt(v, self.qty)

    def quote_amount(self, v: Decimal) -> str:
        return fmt(v, self.quote)

    def asset(self, v: Decimal, asset: str) -> str:
        return fmt(v, self.qty if asset == self.base else self.quote)

    def levels(self, rows: Iterable[tuple[Decimal, Decimal]]) -> list[tuple[str, str]]:
        q, b = self.quote, self.qty
        return [(fmt(p, q), fmt(s, b)) for p, s in rows]


# -- REST and WS-API result payloads ------------------------------------------------------------------


class FillView(Struct):
    price: str
    qty: str
    commission: str
    commissionAsset: str
    tradeId: int


class OrderResponse(Struct):
    """``newOrderRespType`` ACK (first five fields), RESULT (no ``fills``) or FULL."""

    symbol: str
    orderId: int
    orderListId: int
    clientOrderId: str
    transactTime: int
    price: str | UnsetType = UNSET
    origQty: str | UnsetType = UNSET
    executedQty: str | UnsetType = UNSET
    origQuoteOrderQty: str | UnsetType = UNSET
    cummulativeQuoteQty: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    timeInForce: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    side: str | UnsetType = UNSET
    workingTime: int | UnsetType = UNSET
    selfTradePreventionMode: str | UnsetType = UNSET
    preventedMatchId: int | UnsetType = UNSET
    preventedQuantity: str | UnsetType = UNSET
    fills: list[FillView] | UnsetType = UNSET


def order_ack(view: OrderView, transact_time: int) -> OrderResponse:
    return OrderResponse(view.symbol, view.order_id, -1, view.client_order_id, transact_time)


def _show_prevented(out: OrderResponse | CancelResponse | OrderQuery, v: OrderView, f: Formats) -> None:
    """Binance prints the prevented match only on orders self-trade prevention actually touched."""
    if v.prevented_match_id is not None:
        out.preventedMatchId = v.prevented_match_id
        out.preventedQuantity = f.amount(v.prevented_qty)


def order_result(
    view: OrderView, transact_time: int, f: Formats, fills: Sequence[Fill] | None = None
) -> OrderResponse:
    out = OrderResponse(
        symbol=view.symbol,
        orderId=view.order_id,
        orderListId=-1,
        clientOrderId=view.client_order_id,
        transactTime=transact_time,
        price=f.price(view.price),
        origQty=f.amount(view.orig_qty),
        executedQty=f.amount(view.executed_qty),
        origQuoteOrderQty=f.quote_amount(view.orig_quote_order_qty),
        cummulativeQuoteQty=f.quote_amount(view.cum_quote_qty),
        status=view.status.value,
        timeInForce=view.time_in_force.value,
        type=view.order_type.value,
        side=view.side.value,
        workingTime=view.working_time,
        selfTradePreventionMode=view.stp_mode.value,
    )
    _show_prevented(out, view, f)
    if fills is not None:
        out.fills = [
            FillView(f.price(x.price), f.amount(x.qty), f.asset(x.commission, x.commission_asset),
                     x.commission_asset, x.trade_id)
            for x in fills
        ]
    return out


class CancelResponse(Struct):
    symbol: str
    origClientOrderId: str
    orderId: int
    orderListId: int
    clientOrderId: str
    transactTime: int
    price: str
    origQty: str
    executedQty: str
    origQuoteOrderQty: str
    cummulativeQuoteQty: str
    status: str
    timeInForce: str
    type: str
    side: str
    selfTradePreventionMode: str
    preventedMatchId: int | UnsetType = UNSET
    preventedQuantity: str | UnsetType = UNSET


def cancel_response(result: CancelResult, f: Formats) -> CancelResponse:
    v = result.order
    out = CancelResponse(
        v.symbol, v.client_order_id, v.order_id, -1, result.cancel_client_order_id, result.transact_time,
        f.price(v.price), f.amount(v.orig_qty), f.amount(v.executed_qty),
        f.quote_amount(v.orig_quote_order_qty), f.quote_amount(v.cum_quote_qty), v.status.value,
        v.time_in_force.value, v.order_type.value, v.side.value, v.stp_mode.value,
    )
    _show_prevented(out, v, f)
    return out


class OrderQuery(Struct):
    symbol: str
    orderId: int
    orderListId: int
    clientOrderId: str
    price: str
    origQty: str
    executedQty: str
    cummulativeQuoteQty: str
    status: str
    timeInForce: str
    type: str
    side: str
    stopPrice: str
    icebergQty: str
    time: int
    updateTime: int
    isWorking: bool
    workingTime: int
    origQuoteOrderQty: str
    selfTradePreventionMode: str
    preventedMatchId: int | UnsetType = UNSET
    preventedQuantity: str | UnsetType = UNSET


def order_query(v: OrderView, f: Formats) -> OrderQuery:
    zero = f.price(None)
    out = OrderQuery(
        v.symbol, v.order_id, -1, v.client_order_id, f.price(v.price), f.amount(v.orig_qty),
        f.amount(v.executed_qty), f.quote_amount(v.cum_quote_qty), v.status.value, v.time_in_force.value,
        v.order_type.value, v.side.value, zero, f.amount(Decimal(0)), v.time, v.update_time,
        v.is_working, v.working_time, f.quote_amount(v.orig_quote_order_qty), v.stp_mode.value,
    )
    _show_prevented(out, v, f)
    return out


class MyTrade(Struct):
    symbol: str
    id: int
    orderId: int
    orderListId: int
    price: str
    qty: str
    quoteQty: str
    commission: str
    commissionAsset: str
    time: int
    isBuyer: bool
    isMaker: bool
    isBestMatch: bool


def my_trade(t: OwnTrade, f: Formats) -> MyTrade:
    return MyTrade(
        t.symbol, t.trade_id, t.order_id, -1, f.price(t.price), f.amount(t.qty), f.quote_amount(t.quote_qty),
        f.asset(t.commission, t.commission_asset), t.commission_asset, t.time, t.is_buyer, t.is_maker, True,
    )


class PublicTrade(Struct):
    id: int
    price: str
    qty: str
    quoteQty: str
    time: int
    isBuyerMaker: bool
    isBestMatch: bool


def public_trade(t: TradeEvent, f: Formats) -> PublicTrade:
    return PublicTrade(
        t.trade_id, f.price(t.price), f.amount(t.qty), f.quote_amount(t.quote_qty), t.time, t.buyer_is_maker,
        True,
    )


class Depth(Struct):
    lastUpdateId: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


def depth(snap: DepthSnapshot, f: Formats) -> Depth:
    return Depth(snap.last_update_id, f.levels(snap.bids), f.levels(snap.asks))


class PriceTicker(Struct):
    symbol: str
    price: str


class BookTickerView(Struct):
    symbol: str
    bidPrice: str
    bidQty: str
    askPrice: str
    askQty: str


def book_ticker(top: BookTop, f: Formats) -> BookTickerView:
    return BookTickerView(top.symbol, f.price(top.bid_price), f.amount(top.bid_qty), f.price(top.ask_price),
                          f.amount(top.ask_qty))


class Ticker24hView(Struct):
    symbol: str
    priceChange: str
    priceChangePercent: str
    weightedAvgPrice: str
    prevClosePrice: str
    lastPrice: str
    lastQty: str
    bidPrice: str
    bidQty: str
    askPrice: str
    askQty: str
    openPrice: str
    highPrice: str
    lowPrice: str
    volume: str
    quoteVolume: str
    openTime: int
    closeTime: int
    firstId: int
    lastId: int
    count: int


class Ticker24hMini(Struct):
    symbol: str
    openPrice: str
    highPrice: str
    lowPrice: str
    lastPrice: str
    volume: str
    quoteVolume: str
    openTime: int
    closeTime: int
    firstId: int
    lastId: int
    count: int


def ticker_24h(t: Ticker24h, f: Formats, *, mini: bool = False) -> Ticker24hView | Ticker24hMini:
    if mini:
        return Ticker24hMini(
            t.symbol, f.price(t.open_price), f.price(t.high_price), f.price(t.low_price),
            f.price(t.last_price), f.amount(t.volume), f.quote_amount(t.quote_volume), t.open_time,
            t.close_time, t.first_id, t.last_id, t.count,
        )
    return Ticker24hView(
        t.symbol, fmt(t.price_change, f.quote), fmt(t.price_change_percent, 3),
        f.price(t.weighted_avg_price), f.price(t.prev_close_price), f.price(t.last_price),
        f.amount(t.last_qty), f.price(t.bid_price), f.amount(t.bid_qty), f.price(t.ask_price),
        f.amount(t.ask_qty), f.price(t.open_price), f.price(t.high_price), f.price(t.low_price),
        f.amount(t.volume), f.quote_amount(t.quote_volume), t.open_time, t.close_time, t.first_id,
        t.last_id, t.count,
    )


class AvgPrice(Struct):
    mins: int
    price: str
    closeTime: int


class CommissionRates(Struct):
    maker: str
    taker: str
    buyer: str
    seller: str


class BalanceView(Struct):
    asset: str
    free: str
    locked: str


class Account(Struct):
    makerCommission: int
    takerCommission: int
    buyerCommission: int
    sellerCommission: int
    commissionRates: CommissionRates
    canTrade: bool
    canWithdraw: bool
    canDeposit: bool
    brokered: bool
    requireSelfTradePrevention: bool
    preventSor: bool
    updateTime: int
    accountType: str
    balances: list[BalanceView]
    permissions: list[str]
    uid: int


def _bps(rate: Decimal) -> int:
    """Binance's integer commission fields are the rate in basis points (0.0015 -> 15)."""
    return int((rate * 10_000).to_integral_value())


def account(
    balances: Iterable[AssetBalance],
    maker: Decimal,
    taker: Decimal,
    *,
    can_trade: bool,
    update_time: int,
    uid: int,
    places: int = 8,
) -> Account:
    zero = fmt(Decimal(0), 8)
    return Account(
        _bps(maker), _bps(taker), 0, 0,
        CommissionRates(fmt(maker, 8), fmt(taker, 8), zero, zero),
        can_trade, True, True, False, False, False, update_time, "SPOT",
        [BalanceView(b.asset, fmt(b.free, places), fmt(b.locked, places)) for b in balances],
        ["SPOT"], uid,
    )


# -- exchangeInfo -------------------------------------------------------------------------------------


def _bounded(value: Decimal, unbounded: Decimal) -> Decimal:
    return value if value > 0 else unbounded


def symbol_info(spec: MarketSpec, unbounded: Decimal) -> dict[str, Any]:
    """One ``symbols`` element; only the order types and features the sandbox implements."""
    q, b = spec.quote_precision, spec.base_precision
    filters: list[dict[str, Any]] = [
        {"filterType": "PRICE_FILTER", "minPrice": fmt(spec.min_price, q), "maxPrice": fmt(spec.max_price, q),
         "tickSize": fmt(spec.tick_size, q)},
        {"filterType": "LOT_SIZE", "minQty": fmt(spec.min_qty, b),
         "maxQty": fmt(_bounded(spec.max_qty, unbounded), b), "stepSize": fmt(spec.step_size, b)},
        {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(spec.market_min_qty, b),
         "maxQty": fmt(_bounded(spec.market_max_qty or spec.max_qty, unbounded), b),
         "stepSize": fmt(spec.market_step_size, b)},
    ]
    if spec.notional_filter is FilterType.MIN_NOTIONAL:
        filters.append({"filterType": "MIN_NOTIONAL", "minNotional": fmt(spec.min_notional, q),
                        "applyToMarket": spec.apply_min_to_market, "avgPriceMins": 5})
    else:
        filters.append({"filterType": "NOTIONAL", "minNotional": fmt(spec.min_notional, q),
                        "applyMinToMarket": spec.apply_min_to_market,
                        "maxNotional": fmt(_bounded(spec.max_notional, unbounded), q),
                        "applyMaxToMarket": spec.apply_max_to_market, "avgPriceMins": 5})
    if spec.max_num_orders:
        filters.append({"filterType": "MAX_NUM_ORDERS", "maxNumOrders": spec.max_num_orders})
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": b,
        "quoteAsset": spec.quote,
        "quotePrecision": q,
        "quoteAssetPrecision": q,
        "baseCommissionPrecision": b,
        "quoteCommissionPrecision": q,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": filters,
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": spec.default_stp.value,
        "allowedSelfTradePreventionModes": sorted(m.value for m in spec.allowed_stp),
    }


def exchange_info(
    server_ms: int, limits: Iterable[RateLimit], symbols: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": server_ms,
        "rateLimits": [lim.as_json() for lim in limits],
        "exchangeFilters": [],
        "symbols": list(symbols),
    }
