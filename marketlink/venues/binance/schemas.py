"""Binance Spot payloads as frozen msgspec structs, in Binance's own field spelling.

They are the first of two pure decoding steps (NautilusTrader's way): a decoded JSON object is
checked against one of these, so a missing field or a wrong type fails here with the field's
path. Money fields are ``str`` on purpose: Binance sends strings, and a number in their place
(which would have to pass through a float somewhere upstream) is refused rather than trusted.
The codec then turns each struct into core values. Unknown fields are ignored (Binance adds them).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

Level = tuple[str, str]  # [price, quantity]

#: Largest millisecond time we accept: 2**53, beyond any real date and still exact as a float.
MAX_MS: Final = 2**53
#: A time in milliseconds. Bounded here, at decode time and at no cost to the hot path, so that
#: ``ms / 1000`` can never overflow (a 400-digit integer is valid JSON) nor produce a date
#: from before 1970; a value outside fails validation like any wrong type.
Millis = Annotated[int, msgspec.Meta(ge=0, le=MAX_MS)]


class ServerTime(msgspec.Struct, frozen=True):
    serverTime: Millis


class RateLimitEntry(msgspec.Struct, frozen=True):  # one entry of exchangeInfo.rateLimits
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class Symbol(msgspec.Struct, frozen=True):  # one entry of exchangeInfo.symbols
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    orderTypes: list[str]
    filters: list[dict[str, Any]]
    isSpotTradingAllowed: bool = True


class TickerPrice(msgspec.Struct, frozen=True):
    symbol: str
    price: str


class Depth(msgspec.Struct, frozen=True):  # GET /api/v3/depth
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]


# gc=False on the depth structs: one of each per depth message, holding only ints, strings and
# level lists that never point back, so the collector need not track them (3 % of a decode).
class DepthUpdate(msgspec.Struct, frozen=True, gc=False):  # <symbol>@depth[@100ms]
    E: Millis  # event time
    s: str
    U: int  # first update id in the event
    u: int  # final update id in the event
    b: list[Level]
    a: list[Level]


#: A level string on the depth fast path: 2 to 30 characters, checked by msgspec in C while it
#: decodes. With the codec's check of the frame's skeleton (only digits and one "." in each),
#: that makes each a plain decimal below 1e30 with at least one digit.
CheckedNumber = Annotated[str, msgspec.Meta(min_length=2, max_length=30)]
CheckedLevel = tuple[CheckedNumber, CheckedNumber]


# Both structs of the vouched path forbid unknown fields: the skeleton proof holds for frames of
# one shape only, and a key name with digits in it ("b1") would keep the skeleton and move which
# list is ``b``. A field Binance adds some day sends its frames down the checked path (correct,
# slower: ``MarketDataStats.unchecked_diffs`` counts them) until the struct learns it.
class CheckedDepthUpdate(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    e: Literal["depthUpdate"]
    E: Millis
    s: str
    U: int
    u: int
    b: list[CheckedLevel]
    a: list[CheckedLevel]


class DepthFrame(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):  # /stream
    """A combined-stream depth diff whose level strings are vouched for.

    Made only by ``BinanceSpotCodec.decode_market``, which decodes it straight from the bytes
    and checks the frame's skeleton before handing it out; so the diff it becomes is marked
    ``checked`` and the book stores its levels without looking at them one by one."""

    stream: str
    data: CheckedDepthUpdate


class Trade(msgspec.Struct, frozen=True):  # <symbol>@trade
    s: str
    t: int  # trade id
    p: str
    q: str
    T: Millis  # trade time
    m: bool  # the buyer is the maker: the taker sold


class BookTicker(msgspec.Struct, frozen=True):  # <symbol>@bookTicker (spot: no e/E)
    u: int
    s: str
    b: str
    B: str
    a: str
    A: str


class Fill(msgspec.Struct, frozen=True):  # one entry of a FULL order response's fills
    price: str
    qty: str
    commission: str
    commissionAsset: str
    tradeId: int


class Order(msgspec.Struct, frozen=True):  # order placement (RESULT/FULL), cancel, query, open orders
    symbol: str
    orderId: int
    clientOrderId: str
    price: str
    origQty: str
    executedQty: str
    cummulativeQuoteQty: str
    status: str
    type: str
    side: str
    timeInForce: str = "GTC"
    origClientOrderId: str | None = None  # cancel only: the canceled order's id
    transactTime: Millis | None = None  # placement, cancel
    updateTime: Millis | None = None  # query, open orders
    time: Millis | None = None  # query, open orders: when the order was created
    fills: list[Fill] = []


class MyTrade(msgspec.Struct, frozen=True):  # GET /api/v3/myTrades
    symbol: str
    id: int
    orderId: int
    price: str
    qty: str
    quoteQty: str
    commission: str
    commissionAsset: str
    time: Millis
    isBuyer: bool
    isMaker: bool


class AssetBalance(msgspec.Struct, frozen=True):
    asset: str
    free: str
    locked: str


class Account(msgspec.Struct, frozen=True):  # GET /api/v3/account
    updateTime: Millis
    balances: list[AssetBalance]


class ExecutionReport(msgspec.Struct, frozen=True):  # user stream
    s: str
    c: str  # client order id (for a cancel: the cancel request's own id)
    S: str  # side
    x: str  # execution type: what just happened
    X: str  # order status after it
    r: str  # reject reason
    i: int  # order id
    last_qty: str = msgspec.field(name="l")
    z: str  # cumulative filled quantity
    L: str  # last executed price
    n: str  # commission of this fill
    T: Millis  # transaction time
    t: int  # trade id (-1 when not a trade)
    m: bool  # this fill was the maker side
    O: Millis | None = None  # noqa: E741 - Binance's name: when the order was created
    C: str | None = None  # original client order id: the order a cancel canceled ("" otherwise)
    N: str | None = None  # commission asset (null without a fill)
    Y: str | None = None  # last quote quantity


class PositionBalance(msgspec.Struct, frozen=True):
    a: str
    f: str  # free
    locked: str = msgspec.field(name="l")


class AccountPosition(msgspec.Struct, frozen=True):  # outboundAccountPosition
    u: Millis  # time of the last account update
    B: list[PositionBalance]
