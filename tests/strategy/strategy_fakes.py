"""An honest fake connector for strategy tests: it records every order and cancel, tracks orders
like the engine does (an ``InFlightOrder`` per id, gone once ended), moves balances on fills, and
publishes the engine's events on a real ``EventBus``, only when the test says so."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from decimal import Decimal

from marketlink.core.book import OrderBook
from marketlink.core.enums import OrderType, PositionAction, Side, TimeInForce
from marketlink.core.events import (
    Event,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderFailed,
    OrderFilled,
)
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.core.market import Balance
from marketlink.core.orders import InFlightOrder, OrderState
from marketlink.core.rules import TradingRule
from marketlink.engine.bus import EventBus

D = Decimal
PAIR = "BTC-USDT"
BID, ASK = D("100"), D("101")
RULE = TradingRule(PAIR, tick_size=D("0.01"), step_size=D("0.0001"), min_notional=D("5"))


@dataclass
class Placed:
    cid: str
    side: Side
    pair: str
    amount: Decimal
    order_type: OrderType
    price: Decimal | None


class FakeConnector:
    def __init__(
        self,
        name: str = "fake",
        pairs: tuple[str, ...] = (PAIR,),
        *,
        bid: Decimal | None = BID,
        ask: Decimal | None = ASK,
        balances: dict[str, Decimal] | None = None,
        rules: dict[str, TradingRule] | None = None,
        order_types: frozenset[OrderType] = frozenset(OrderType),
    ) -> None:
        self._name = name
        self._pairs = pairs
        self._bus: EventBus[Event] = EventBus(name=f"{name}-bus")
        self.bid, self.ask = bid, ask
        self.last: Decimal | None = None
        self.is_ready = True
        self.totals = dict(balances or {"BTC": D("10"), "USDT": D("10000")})
        self.rules = rules or {PAIR: RULE}
        self.order_types = order_types
        self.placed: list[Placed] = []
        self.cancels: list[str] = []
        self.cancel_seen = asyncio.Event()
        self.orders: dict[str, InFlightOrder] = {}
        self._ids = itertools.count(1)
        self._trades = itertools.count(1)
        self.now = 0.0

    # -- the MarketConnector protocol --------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def trading_pairs(self) -> tuple[str, ...]:
        return self._pairs

    @property
    def ready(self) -> bool:
        return self.is_ready

    @property
    def bus(self) -> EventBus[Event]:
        return self._bus

    def book(self, trading_pair: str) -> OrderBook:
        raise NotImplementedError

    def best_bid(self, trading_pair: str) -> Decimal | None:
        return self.bid

    def best_ask(self, trading_pair: str) -> Decimal | None:
        return self.ask

    def mid_price(self, trading_pair: str) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2

    def last_trade_price(self, trading_pair: str) -> Decimal | None:
        return self.last

    def price_for_volume(self, trading_pair: str, is_buy: bool, volume: Decimal) -> Decimal | None:
        return self.ask if is_buy else self.bid

    def _locked(self, asset: str) -> Decimal:
        total = D(0)
        for o in self.orders.values():
            base, _, quote = o.trading_pair.partition("-")
            if o.order_type is OrderType.MARKET or o.price is None:
                continue
            if o.side is Side.BUY and asset == quote:
                total += o.remaining * o.price
            elif o.side is Side.SELL and asset == base:
                total += o.remaining
        return total

    def balances(self) -> dict[str, Balance]:
        return {a: Balance(a, t, t - self._locked(a)) for a, t in self.totals.items()}

    def available_balance(self, asset: str) -> Decimal:
        return self.totals.get(asset, D(0)) - self._locked(asset)

    def spendable_balance(self, asset: str) -> Decimal:
        return self.available_balance(asset)  # its orders lock at once: nothing is ever in flight

    def total_balance(self, asset: str) -> Decimal:
        return self.totals.get(asset, D(0))

    def in_flight_orders(self) -> dict[str, InFlightOrder]:
        return dict(self.orders)

    def trading_rule(self, trading_pair: str) -> TradingRule:
        return self.rules[trading_pair]

    def supported_order_types(self) -> frozenset[OrderType]:
        return self.order_types

    def buy(
        self, trading_pair: str, amount: Decimal, order_type: OrderType = OrderType.LIMIT,
        price: Decimal | None = None, time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> str:
        return self._place(Side.BUY, trading_pair, amount, order_type, price)

    def sell(
        self, trading_pair: str, amount: Decimal, order_type: OrderType = OrderType.LIMIT,
        price: Decimal | None = None, time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> str:
        return self._place(Side.SELL, trading_pair, amount, order_type, price)

    def cancel(self, trading_pair: str, client_order_id: str) -> None:
        self.cancels.append(client_order_id)
        self.cancel_seen.set()

    # -- test controls -----------------------------------------------------------------------------

    def _place(
        self, side: Side, pair: str, amount: Decimal, order_type: OrderType, price: Decimal | None
    ) -> str:
        cid = f"{self._name}-{next(self._ids)}"
        self.placed.append(Placed(cid, side, pair, amount, order_type, price))
        self.orders[cid] = InFlightOrder(cid, pair, order_type, side, amount, price, self.now)
        return cid

    def open_ids(self, side: Side | None = None) -> list[str]:
        return [cid for cid, o in self.orders.items() if side is None or o.side is side]

    def ack(self, cid: str) -> None:
        o = self.orders[cid]
        o.state = OrderState.OPEN
        self._bus.publish(OrderCreated(
            self.now, cid, f"x{cid}", o.trading_pair, o.side, o.order_type, o.amount, o.price, self.now,
            TimeInForce.GTC, PositionAction.NIL, 1,
        ))

    def ack_all(self) -> None:
        for cid, o in list(self.orders.items()):
            if o.state is OrderState.PENDING_CREATE:
                self.ack(cid)

    def confirm_cancels(self) -> None:
        """The venue confirms every cancel asked for so far (of orders still open)."""
        for cid in self.cancels:
            o = self.orders.pop(cid, None)
            if o is not None:
                self._bus.publish(OrderCancelled(
                    self.now, cid, f"x{cid}", o.trading_pair, o.side, o.order_type, o.executed_base,
                    o.executed_quote, None, (), D(0), None,
                ))

    def fail(self, cid: str, reason: str = "refused") -> None:
        o = self.orders.pop(cid)
        self._bus.publish(OrderFailed(
            self.now, cid, None, o.trading_pair, o.side, o.order_type, D(0), D(0), None, (), D(0), reason,
        ))

    def fill(self, cid: str, amount: Decimal | None = None, price: Decimal | None = None,
             fee: TokenAmount | None = None) -> None:
        o = self.orders[cid]
        amount = o.remaining if amount is None else amount
        price = price if price is not None else (o.price if o.price is not None else self.ask or D(1))
        quote = amount * price
        base_asset, _, quote_asset = o.trading_pair.partition("-")
        sign = 1 if o.side is Side.BUY else -1
        self.totals[base_asset] = self.totals.get(base_asset, D(0)) + sign * amount
        self.totals[quote_asset] = self.totals.get(quote_asset, D(0)) - sign * quote
        o.executed_base += amount
        o.executed_quote += quote
        fees = (fee,) if fee is not None else ()
        for f in fees:
            self.totals[f.token] = self.totals.get(f.token, D(0)) - f.amount
        tf = TradeFee.reported(fee.token, fee.amount, FeeKind.DEDUCTED_FROM_RETURNS) if fee else TradeFee(
            FeeKind.DEDUCTED_FROM_RETURNS)
        self._bus.publish(OrderFilled(
            self.now, cid, f"x{cid}", o.trading_pair, o.side, o.order_type, f"t{next(self._trades)}", price,
            amount, quote, tf, fees, o.order_type is OrderType.MARKET, PositionAction.NIL, 1,
        ))
        if o.remaining == 0:
            del self.orders[cid]
            self._bus.publish(OrderCompleted(
                self.now, cid, f"x{cid}", o.trading_pair, o.side, o.order_type, o.executed_base,
                o.executed_quote, price, fees, D(0), None,
            ))
