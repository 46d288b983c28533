"""Carrying out what matching decided: trades, self-trade prevention, resting, ending, events.

Each trade moves money in one fixed order (both sides pay from what their orders locked, each
receives the other asset less commission, the commission goes to the fee pot) and updates both
orders before any event is queued, so every event shows a consistent state. Commission is taken
from the asset received, at the account's maker or taker rate, rounded half-up to the asset's
precision (Binance's rule without BNB discounts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from decimal import Decimal

from marketlink.core.enums import Side
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.accounts import Ledger
from marketlink.sandbox.exchange.dispatch import EventBus
from marketlink.sandbox.exchange.events import (
    AccountEvent,
    Fill,
    OrderEvent,
    OwnTrade,
    PreventedMatch,
    TradeEvent,
)
from marketlink.sandbox.exchange.market_state import MarketState
from marketlink.sandbox.exchange.markets import MarketSpec
from marketlink.sandbox.exchange.matching import FillStep, MatchPlan
from marketlink.sandbox.exchange.orders import ExecutionType, Order, OrderStatus


class Settlement:
    def __init__(self, ledger: Ledger, bus: EventBus) -> None:
        self._ledger = ledger
        self._bus = bus
        #: account -> when its balances last changed (ms): Binance's account ``updateTime``
        self.last_change: dict[str, int] = {}

    def execute(
        self, m: MarketState, taker: Order, plan: MatchPlan, now: int
    ) -> tuple[list[Fill], list[PreventedMatch]]:
        """Run ``plan`` for ``taker``; returns the taker's fills and the prevented matches."""
        fills: list[Fill] = []
        prevented: list[PreventedMatch] = []
        both_id: int | None = None
        both_maker_qty: Decimal | None = None
        for step in plan.steps:
            if isinstance(step, FillStep):
                fills.append(self.trade(m, taker, step, now))
                continue
            pm_id = m.next_prevented_match_id()
            maker_qty = step.maker.remaining
            self.prevent(m, step.maker, maker_qty, pm_id, now)
            if step.maker is plan.taker_prevented_maker:  # EXPIRE_BOTH: one match, two sides
                both_id, both_maker_qty = pm_id, maker_qty
            else:
                prevented.append(
                    PreventedMatch(pm_id, taker.order_id, step.maker.order_id, step.price, None, maker_qty)
                )
        if plan.taker_prevented_at is not None and plan.taker_prevented_maker is not None:
            pm_id = both_id if both_id is not None else m.next_prevented_match_id()
            taker_qty = taker.remaining
            prevented.append(
                PreventedMatch(
                    pm_id, taker.order_id, plan.taker_prevented_maker.order_id,
                    plan.taker_prevented_at, taker_qty, both_maker_qty,
                )
            )
            self.prevent(m, taker, taker_qty, pm_id, now)
        return fills, prevented

    def trade(self, m: MarketState, taker: Order, step: FillStep, now: int) -> Fill:
        spec, maker, price, qty = m.spec, step.maker, step.price, step.qty
        quote = money.mul(price, qty)
        trade_id = m.next_trade_id()
        buyer, seller = (taker, maker) if taker.side is Side.BUY else (maker, taker)
        # Each side pays from what its order locked and receives the other asset, less
        # commission at its own maker or taker rate, in the asset it receives.
        self._ledger.spend_locked(buyer.account, spec.quote, quote)
        buyer.locked = money.sub(buyer.locked, quote)
        self._ledger.spend_locked(seller.account, spec.base, qty)
        seller.locked = money.sub(seller.locked, qty)
        buyer_fee = self.commission(spec, buyer.account, buyer is maker, spec.base, qty)
        seller_fee = self.commission(spec, seller.account, seller is maker, spec.quote, quote)
        self._ledger.credit(buyer.account, spec.base, money.sub(qty, buyer_fee))
        self._ledger.credit(seller.account, spec.quote, money.sub(quote, seller_fee))
        self._ledger.collect_fee(spec.base, buyer_fee)
        self._ledger.collect_fee(spec.quote, seller_fee)

        for order in (maker, taker):
            order.executed_qty = money.add(order.executed_qty, qty)
            order.cum_quote_qty = money.add(order.cum_quote_qty, quote)
            order.update_time = now
            order.status = OrderStatus.FILLED if order.remaining == 0 else OrderStatus.PARTIALLY_FILLED
        m.book.reduce(maker, qty)

        trade = TradeEvent(
            spec.symbol, trade_id, price, qty, quote, buyer.order_id, seller.order_id, buyer is maker, now
        )
        m.record_trade(trade)
        self._bus.public(spec.symbol, trade)
        fills_by_order: dict[int, Fill] = {}
        for order in (maker, taker):
            fee, asset = (buyer_fee, spec.base) if order is buyer else (seller_fee, spec.quote)
            is_maker = order is maker
            fills_by_order[order.order_id] = Fill(trade_id, price, qty, quote, fee, asset, is_maker)
            m.record_own_trade(
                OwnTrade(
                    spec.symbol, trade_id, order.order_id, order.account, price, qty, quote,
                    fee, asset, now, order is buyer, is_maker,
                )
            )
            self.order_event(m, order, ExecutionType.TRADE, now, fill=fills_by_order[order.order_id])
            if order.status is OrderStatus.FILLED:
                self.release(m, order)
        return fills_by_order[taker.order_id]

    def commission(
        self, spec: MarketSpec, account: str, is_maker: bool, asset: str, received: Decimal
    ) -> Decimal:
        """``received`` times the account's rate, rounded half-up to the asset's precision."""
        maker_rate, taker_rate = self._ledger.fee_rates(account, spec)
        rate = maker_rate if is_maker else taker_rate
        fee = money.round_places(money.mul(received, rate), spec.commission_places(asset))
        return min(fee, received)

    def prevent(self, m: MarketState, order: Order, qty: Decimal, pm_id: int, now: int) -> None:
        """Self-trade prevention expires ``order``'s remaining ``qty``."""
        if order.on_book:
            m.book.remove(order)
        order.prevented_qty = money.add(order.prevented_qty, qty)
        order.prevented_match_id = pm_id
        order.status = OrderStatus.EXPIRED_IN_MATCH
        order.update_time = now
        self.order_event(m, order, ExecutionType.TRADE_PREVENTION, now, prevented=(qty, pm_id))
        self.release(m, order)

    def rest(self, m: MarketState, order: Order) -> None:
        """Put a GTC remainder on the book; a buy that took at better prices gives back the excess."""
        assert order.price is not None
        m.book.add(order)
        if order.side is Side.BUY:
            excess = money.sub(order.locked, money.mul(order.price, order.remaining))
            self._ledger.unlock(order.account, order.lock_asset, excess)
            order.locked = money.sub(order.locked, excess)

    def end(
        self, m: MarketState, order: Order, status: OrderStatus, kind: ExecutionType, now: int,
        cancel_id: str = "",
    ) -> None:
        """Finish an open order (cancel or expiry), off the book, with one report."""
        if order.on_book:
            m.book.remove(order)
        order.status = status
        order.update_time = now
        self.order_event(m, order, kind, now, cancel_id=cancel_id)
        self.release(m, order)

    def release(self, m: MarketState, order: Order) -> None:
        """A final order gives back whatever it still locks and leaves the open set."""
        self._ledger.unlock(order.account, order.lock_asset, order.locked)
        order.locked = money.ZERO
        m.close(order)

    def order_event(
        self,
        m: MarketState,
        order: Order,
        kind: ExecutionType,
        now: int,
        *,
        is_working: bool | None = None,
        cancel_id: str = "",
        fill: Fill | None = None,
        prevented: tuple[Decimal, int] | None = None,
    ) -> None:
        view = order.view()
        if is_working is not None:  # Binance reports a new order as working, even a MARKET one
            view = dataclasses.replace(view, is_working=is_working)
        event = OrderEvent(
            order=view,
            execution_type=kind,
            event_time=now,
            transaction_time=now,
            execution_id=m.next_execution_id(),
            client_order_id=cancel_id or order.client_order_id,
            orig_client_order_id=order.client_order_id if cancel_id else "",
        )
        if fill is not None:
            event = dataclasses.replace(
                event,
                last_qty=fill.qty,
                last_price=fill.price,
                last_quote_qty=fill.quote_qty,
                commission=fill.commission,
                commission_asset=fill.commission_asset,
                trade_id=fill.trade_id,
                is_maker=fill.is_maker,
            )
        if prevented is not None:
            qty, pm_id = prevented
            event = dataclasses.replace(event, last_prevented_qty=qty, prevented_match_id=pm_id)
        self._bus.private(event)

    def finish(self, now: int, markets: Iterable[MarketState]) -> None:
        """Close an operation: one balance event per changed account, top-of-book changes, then
        deliver everything queued."""
        for account, balances in self._ledger.take_changes():
            self.last_change[account] = now
            self._bus.private(AccountEvent(account, now, balances))
        for m in markets:
            top = m.top()
            last = m.last_top
            if last is None or (top.bid_price, top.bid_qty, top.ask_price, top.ask_qty) != (
                last.bid_price, last.bid_qty, last.ask_price, last.ask_qty
            ):
                m.last_top = top
                self._bus.public(m.spec.symbol, top)
        self._bus.deliver()
