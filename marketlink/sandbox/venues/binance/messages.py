"""Messages the Binance front-end pushes: user data events and market stream payloads.

Like ``views``, each is a ``msgspec.Struct`` with Binance's single-letter fields in Binance's
order, built once per engine event and encoded once; ``wrap_combined`` and ``wrap_subscription``
then put the same bytes into each subscriber's envelope with two concatenations, never a re-encode.
Conditional fields (the self-trade-prevention ``v``/``A``/``B`` of an execution report) are
``UNSET`` and left out unless they apply.
"""

from __future__ import annotations

from decimal import Decimal

from msgspec import UNSET, Struct, UnsetType

from marketlink.sandbox.exchange import AccountEvent, BalanceDelta, BookTop, OrderEvent, TradeEvent
from marketlink.sandbox.venues.binance.views import Formats, fmt

# -- user data events ---------------------------------------------------------------------------------


class ExecutionReport(Struct):
    e: str
    E: int
    s: str
    c: str
    S: str
    o: str
    f: str
    q: str
    p: str
    P: str
    F: str
    g: int
    C: str
    x: str
    X: str
    r: str
    i: int
    l: str  # noqa: E741 - Binance's field name
    z: str
    L: str
    n: str
    N: str | None
    T: int
    t: int
    v: int | UnsetType
    I: int  # noqa: E741 - Binance's field name
    w: bool
    m: bool
    M: bool
    O: int  # noqa: E741 - Binance's field name
    Z: str
    Y: str
    Q: str
    W: int
    V: str
    A: str | UnsetType = UNSET
    B: str | UnsetType = UNSET


def execution_report(ev: OrderEvent, f: Formats) -> ExecutionReport:
    o = ev.order
    has_fill = ev.trade_id >= 0
    report = ExecutionReport(
        e="executionReport",
        E=ev.event_time,
        s=o.symbol,
        c=ev.client_order_id,
        S=o.side.value,
        o=o.order_type.value,
        f=o.time_in_force.value,
        q=f.amount(o.orig_qty),
        p=f.price(o.price),
        P=f.price(None),
        F=f.amount(Decimal(0)),
        g=-1,
        C=ev.orig_client_order_id,
        x=ev.execution_type.value,
        X=o.status.value,
        r=ev.reject_reason,
        i=o.order_id,
        l=f.amount(ev.last_qty),
        z=f.amount(o.executed_qty),
        L=f.price(ev.last_price),
        n=f.asset(ev.commission, ev.commission_asset) if has_fill and ev.commission_asset else "0",
        N=ev.commission_asset if has_fill else None,
        T=ev.transaction_time,
        t=ev.trade_id,
        v=ev.prevented_match_id if ev.prevented_match_id is not None else UNSET,
        I=ev.execution_id,
        w=o.is_working,
        m=ev.is_maker,
        M=False,
        O=o.time,
        Z=f.quote_amount(o.cum_quote_qty),
        Y=f.quote_amount(ev.last_quote_qty),
        Q=f.quote_amount(o.orig_quote_order_qty),
        W=o.working_time,
        V=o.stp_mode.value,
    )
    if ev.prevented_match_id is not None:
        report.A = f.amount(o.prevented_qty)
        report.B = f.amount(ev.last_prevented_qty)
    return report


class PositionBalance(Struct):
    a: str
    f: str
    l: str  # noqa: E741 - Binance's field name


class AccountPosition(Struct):
    e: str
    E: int
    u: int
    B: list[PositionBalance]


def account_position(ev: AccountEvent, places: int = 8) -> AccountPosition:
    return AccountPosition(
        "outboundAccountPosition", ev.event_time, ev.event_time,
        [PositionBalance(b.asset, fmt(b.free, places), fmt(b.locked, places)) for b in ev.balances],
    )


class BalanceUpdate(Struct):
    e: str
    E: int
    a: str
    d: str
    T: int


def balance_update(ev: BalanceDelta, places: int = 8) -> BalanceUpdate:
    return BalanceUpdate("balanceUpdate", ev.event_time, ev.asset, fmt(ev.delta, places), ev.event_time)


class ListenKeyExpired(Struct):
    e: str
    E: int
    listenKey: str


class StreamTerminated(Struct):
    e: str
    E: int


# -- market streams -----------------------------------------------------------------------------------


class DepthUpdate(Struct):
    e: str
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]


class TradeMsg(Struct):
    e: str
    E: int
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool
    M: bool


class AggTradeMsg(Struct):
    e: str
    E: int
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool
    M: bool


class BookTickerMsg(Struct):
    """Spot ``@bookTicker`` has no ``e``/``E`` (unlike futures)."""

    u: int
    s: str
    b: str
    B: str
    a: str
    A: str


def book_ticker_msg(top: BookTop, f: Formats) -> BookTickerMsg:
    return BookTickerMsg(top.update_id, top.symbol, f.price(top.bid_price), f.amount(top.bid_qty),
                         f.price(top.ask_price), f.amount(top.ask_qty))


def trade_msg(t: TradeEvent, f: Formats) -> TradeMsg:
    return TradeMsg("trade", t.time, t.symbol, t.trade_id, f.price(t.price), f.amount(t.qty), t.time,
                    t.buyer_is_maker, True)


def wrap_combined(stream: bytes, payload: bytes) -> bytes:
    """``{"stream":"<name>","data":<payload>}`` (``stream`` is the JSON-encoded name)."""
    return b'{"stream":' + stream + b',"data":' + payload + b"}"


def wrap_subscription(subscription_id: int, payload: bytes) -> bytes:
    """The WS-API user-data form: ``{"subscriptionId":0,"event":{...}}``."""
    return b'{"subscriptionId":' + str(subscription_id).encode() + b',"event":' + payload + b"}"
