"""The sandbox exchange engine: markets, accounts, matching, and the events a front-end renders.

Pure and deterministic: no asyncio, no sockets, no clock reads. Every mutating call takes
``now_ms`` from the caller, and the engine's clock never runs backwards (a smaller time is
treated as the last one seen), so trades and statistics stay in order whatever a caller does.

Every request either is refused with ``ExchangeRejection`` before any state changes, or runs to
completion; events are delivered synchronously, in order, after the state is complete (see
``dispatch``). Money is exact Decimal throughout (see ``money``).

Binance behaviours reproduced here, with the FAQ or reference that states them: a MARKET order
the account cannot pay for in full is rejected; one that runs out of liquidity expires
(``EXPIRED``); an order expired by self-trade prevention ends ``EXPIRED_IN_MATCH`` with an
execution type ``TRADE_PREVENTION``; commission is taken from the asset received, at the maker
or taker rate; a new order's client id must be unique among that account's open orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import ConfigError
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.accounts import FeeOverride, Ledger
from marketlink.sandbox.exchange.dispatch import AccountListener, EventBus, SymbolListener
from marketlink.sandbox.exchange.errors import (
    ExchangeRejection,
    FilterType,
    Reason,
    filter_failure,
    invalid,
)
from marketlink.sandbox.exchange.events import (
    AssetBalance,
    BalanceDelta,
    BookTop,
    CancelResult,
    DepthDiff,
    DepthSnapshot,
    Fill,
    OrderResult,
    OwnTrade,
    PreventedMatch,
    TradeEvent,
)
from marketlink.sandbox.exchange.intake import Amount, NewOrder, check_client_id, normalize, parse_amount
from marketlink.sandbox.exchange.market_state import MarketState
from marketlink.sandbox.exchange.markets import MarketSpec, StpMode
from marketlink.sandbox.exchange.matching import MatchPlan, plan_match
from marketlink.sandbox.exchange.orders import ExecutionType, Order, OrderStatus, OrderView
from marketlink.sandbox.exchange.settlement import Settlement
from marketlink.sandbox.exchange.stats import Ticker24h


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The whole observable state at one moment, for tests to compare a client against."""

    balances: dict[str, dict[str, AssetBalance]]
    open_orders: dict[str, tuple[OrderView, ...]]
    books: dict[str, DepthSnapshot]
    recent_trades: dict[str, tuple[TradeEvent, ...]]
    fees_collected: dict[str, Decimal]
    deposited: dict[str, Decimal]


class Exchange:
    def __init__(
        self,
        markets: Iterable[MarketSpec],
        *,
        closed_retention: int = 10_000,
        recent_trades: int = 1_000,
        own_trade_retention: int = 10_000,
    ) -> None:
        self._markets: dict[str, MarketState] = {}
        for spec in markets:
            if spec.symbol in self._markets:
                raise ConfigError(f"market {spec.symbol} defined twice")
            self._markets[spec.symbol] = MarketState(
                spec,
                closed_retention=closed_retention,
                recent_trades=recent_trades,
                own_trade_retention=own_trade_retention,
            )
        self.ledger = Ledger()
        self._bus = EventBus()
        self._settle = Settlement(self.ledger, self._bus)
        self._clock = 0
        self._cancel_seq = 0

    # -- configuration and time -----------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        return list(self._markets)

    def market(self, symbol: str) -> MarketSpec:
        return self._state(symbol).spec

    @property
    def listener_errors(self) -> int:
        return self._bus.listener_errors

    def _state(self, symbol: str) -> MarketState:
        m = self._markets.get(symbol)
        if m is None:
            raise ExchangeRejection(Reason.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        return m

    def _time(self, now_ms: int) -> int:
        """The operation's time: ``now_ms``, or the last time seen if that is later. Only a
        completed operation advances the clock (``self._clock = now``), so a refusal leaves it."""
        if isinstance(now_ms, bool) or not isinstance(now_ms, int) or now_ms < 0:
            raise invalid(f"now_ms must be a non-negative int, got {now_ms!r}")
        return max(self._clock, now_ms)

    # -- listeners ------------------------------------------------------------------------------

    def subscribe_account(self, account: str, listener: AccountListener) -> Callable[[], None]:
        """Private events (orders, balances) of ``account``; returns an unsubscribe callable."""
        return self._bus.subscribe_account(account, listener)

    def subscribe_symbol(self, symbol: str, listener: SymbolListener) -> Callable[[], None]:
        """Public events (trades, best bid/ask changes) of ``symbol``; returns an unsubscribe."""
        self._state(symbol)
        return self._bus.subscribe_symbol(symbol, listener)

    # -- accounts -------------------------------------------------------------------------------

    def open_account(
        self,
        account: str,
        *,
        maker_fee: Amount | None = None,
        taker_fee: Amount | None = None,
        balances: Mapping[str, Amount] | None = None,
        now_ms: int = 0,
    ) -> None:
        """Create ``account`` (fee rates override the markets' when given) and fund it."""
        fees = None
        if maker_fee is not None or taker_fee is not None:
            fees = FeeOverride(parse_amount(maker_fee, "maker_fee"), parse_amount(taker_fee, "taker_fee"))
        self.ledger.open(account, fees)
        for asset, amount in (balances or {}).items():
            self.deposit(account, asset, amount, now_ms=now_ms)

    def deposit(self, account: str, asset: str, amount: Amount, *, now_ms: int) -> AssetBalance:
        """Move ``amount`` in from outside (negative: withdraw). Emits a balance delta."""
        now = self._time(now_ms)
        value = _signed_amount(amount)
        if not asset:
            raise invalid("asset must not be empty")
        self.ledger.deposit(account, asset, value)
        self._clock = now
        self._bus.private(BalanceDelta(account, asset, value, now))
        self._settle.finish(now, ())
        return self.ledger.balance(account, asset)

    def balances(self, account: str) -> tuple[AssetBalance, ...]:
        self.ledger.require(account)
        return self.ledger.balances(account)

    def balances_changed_at(self, account: str) -> int:
        """When ``account``'s balances last changed (ms; 0 if never): what Binance's account
        endpoint reports as ``updateTime``, the instant its balances are true as of."""
        self.ledger.require(account)
        return self._settle.last_change.get(account, 0)

    def balance(self, account: str, asset: str) -> AssetBalance:
        self.ledger.require(account)
        return self.ledger.balance(account, asset)

    # -- placing --------------------------------------------------------------------------------

    def place_order(
        self,
        account: str,
        symbol: str,
        side: Side | str,
        order_type: OrderType | str,
        *,
        quantity: Amount | None = None,
        quote_order_qty: Amount | None = None,
        price: Amount | None = None,
        time_in_force: TimeInForce | str | None = None,
        client_order_id: str | None = None,
        stp_mode: StpMode | str | None = None,
        now_ms: int,
    ) -> OrderResult:
        m = self._state(symbol)
        self.ledger.require(account)
        now = self._time(now_ms)
        req = normalize(
            m.spec,
            side=side,
            order_type=order_type,
            time_in_force=time_in_force,
            quantity=quantity,
            quote_order_qty=quote_order_qty,
            price=price,
            stp_mode=stp_mode,
            reference_price=lambda s: self._reference_price(m, s),
        )
        if client_order_id is not None:
            check_client_id(client_order_id, "newClientOrderId")
            if m.open_with_client_id(account, client_order_id) is not None:
                raise ExchangeRejection(
                    Reason.DUPLICATE_ORDER, f"{account}: client order id {client_order_id!r} is open"
                )
        limit = m.spec.max_num_orders
        if limit and len(m.open_by_account.get(account, ())) >= limit:
            raise filter_failure(FilterType.MAX_NUM_ORDERS, f"{account}: {limit} orders open on {symbol}")
        if req.order_type is OrderType.LIMIT_MAKER and req.price and m.book.crosses(req.side, req.price):
            raise ExchangeRejection(Reason.WOULD_TAKE, "Order would immediately match and take.")
        plan = self._plan(m, account, req)
        fok_fails = req.time_in_force is TimeInForce.FOK and plan.filled_qty != req.qty
        lock_asset, lock_amount = _lock_need(m.spec, req, plan)
        self.ledger.lock(account, lock_asset, lock_amount)  # the last refusal: insufficient balance

        self._clock = now
        order_id = m.next_order_id()
        order = Order(
            symbol=symbol,
            order_id=order_id,
            account=account,
            client_order_id=client_order_id or self._generated_client_id(m, account, order_id),
            side=req.side,
            order_type=req.order_type,
            time_in_force=req.time_in_force,
            price=req.price,
            orig_qty=req.qty if req.qty is not None else plan.filled_qty,
            orig_quote_order_qty=req.quote_qty or money.ZERO,
            stp_mode=req.stp,
            time=now,
            lock_asset=lock_asset,
            update_time=now,
            working_time=now,
            locked=lock_amount,
        )
        m.register(order)
        self._settle.order_event(m, order, ExecutionType.NEW, now, is_working=True)

        fills: list[Fill] = []
        prevented: list[PreventedMatch] = []
        if not fok_fails:
            fills, prevented = self._settle.execute(m, order, plan, now)
        if order.status.is_open:
            if fok_fails or req.order_type is OrderType.MARKET or req.time_in_force is not TimeInForce.GTC:
                self._settle.end(m, order, OrderStatus.EXPIRED, ExecutionType.EXPIRED, now)
            else:
                self._settle.rest(m, order)
        self._settle.finish(now, (m,))
        return OrderResult(order.view(), tuple(fills), tuple(prevented), now)

    def _plan(self, m: MarketState, account: str, req: NewOrder) -> MatchPlan:
        spec = m.spec
        is_market = req.order_type is OrderType.MARKET
        plan = plan_match(
            m.book,
            account=account,
            side=req.side,
            stp=req.stp,
            limit_price=req.price,
            qty=req.qty,
            quote_qty=req.quote_qty,
            step_size=spec.market_step if is_market else spec.step_size,
            max_qty=spec.max_market_qty(),
        )
        if req.quote_qty is not None and plan.budget_exhausted:
            # "will not break LOT_SIZE": a budget too small for the minimum lot is refused.
            least = max(spec.min_qty, spec.market_min_qty, spec.market_step)
            if plan.filled_qty < least:
                raise filter_failure(
                    FilterType.LOT_SIZE,
                    f"{spec.symbol}: quoteOrderQty {req.quote_qty} buys less than {least}",
                )
        return plan

    @staticmethod
    def _reference_price(m: MarketState, side: Side) -> Decimal | None:
        """Stands in for a MARKET order's price in the notional check: the last trade, else the
        best opposite quote (Binance uses a recent average price)."""
        if m.stats.last is not None:
            return m.stats.last.price
        best = m.book.best(side.opposite)
        return best[0] if best else None

    def _generated_client_id(self, m: MarketState, account: str, order_id: int) -> str:
        base = f"sandbox-{m.spec.symbol}-{order_id}"[:36]
        candidate, n = base, 0
        while m.open_with_client_id(account, candidate) is not None:
            n += 1
            candidate = f"{base[:30]}-{n}"
        return candidate

    # -- cancelling -----------------------------------------------------------------------------

    def cancel_order(
        self,
        account: str,
        symbol: str,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
        cancel_client_order_id: str | None = None,
        now_ms: int,
    ) -> CancelResult:
        m = self._state(symbol)
        self.ledger.require(account)
        now = self._time(now_ms)
        if order_id is None and client_order_id is None:
            raise invalid("cancel needs orderId or origClientOrderId")
        if cancel_client_order_id is not None:
            check_client_id(cancel_client_order_id, "newClientOrderId")
        order = m.find(account, order_id, client_order_id)
        if order is None or not order.status.is_open:
            raise ExchangeRejection(Reason.ORDER_NOT_FOUND, "Unknown order sent.")
        self._clock = now
        result = self._cancel(m, order, cancel_client_order_id, now)
        self._settle.finish(now, (m,))
        return result

    def cancel_all(self, account: str, symbol: str, *, now_ms: int) -> list[CancelResult]:
        """Cancel every open order of ``account`` on ``symbol``, oldest first."""
        m = self._state(symbol)
        self.ledger.require(account)
        now = self._clock = self._time(now_ms)
        results = [self._cancel(m, order, None, now) for order in m.open_orders(account)]
        self._settle.finish(now, (m,))
        return results

    def _cancel(self, m: MarketState, order: Order, cancel_id: str | None, now: int) -> CancelResult:
        if cancel_id is None:
            self._cancel_seq += 1
            cancel_id = f"sandbox-cancel-{self._cancel_seq}"
        self._settle.end(m, order, OrderStatus.CANCELED, ExecutionType.CANCELED, now, cancel_id)
        return CancelResult(order.view(), cancel_id, now)

    # -- order queries --------------------------------------------------------------------------

    def get_order(
        self, account: str, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> OrderView:
        """An open or recently closed order, by id or client id."""
        m = self._state(symbol)
        self.ledger.require(account)
        if order_id is None and client_order_id is None:
            raise invalid("query needs orderId or origClientOrderId")
        order = m.find(account, order_id, client_order_id)
        if order is None:
            raise ExchangeRejection(Reason.ORDER_NOT_FOUND, "Order does not exist.")
        return order.view()

    def open_orders(self, account: str, symbol: str | None = None) -> list[OrderView]:
        self.ledger.require(account)
        states = [self._state(symbol)] if symbol is not None else list(self._markets.values())
        return [o.view() for m in states for o in m.open_orders(account)]

    def all_orders(
        self, account: str, symbol: str, *, from_order_id: int | None = None, limit: int = 500
    ) -> list[OrderView]:
        """Retained orders, oldest first: from ``from_order_id`` on, else the latest ``limit``."""
        m = self._state(symbol)
        self.ledger.require(account)
        _check_limit(limit)
        orders = m.account_orders(account)
        if from_order_id is not None:
            return [o.view() for o in orders if o.order_id >= from_order_id][:limit]
        return [o.view() for o in orders[-limit:]]

    def my_trades(
        self,
        account: str,
        symbol: str,
        *,
        from_id: int | None = None,
        order_id: int | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = 500,
    ) -> list[OwnTrade]:
        """The account's trades, oldest first: from ``from_id`` on, else the latest ``limit``."""
        m = self._state(symbol)
        self.ledger.require(account)
        _check_limit(limit)
        trades = m.own_trades_from(account, from_id if from_id is not None else 0)
        trades = [
            t for t in trades
            if (order_id is None or t.order_id == order_id)
            and (start_time is None or t.time >= start_time)
            and (end_time is None or t.time <= end_time)
        ]
        return trades[:limit] if from_id is not None else trades[-limit:]

    # -- market data ----------------------------------------------------------------------------

    def depth(self, symbol: str, limit: int | None = 100) -> DepthSnapshot:
        m = self._state(symbol)
        if limit is not None:
            _check_limit(limit)
        return DepthSnapshot(
            symbol, m.book.update_id, m.book.depth(Side.BUY, limit), m.book.depth(Side.SELL, limit)
        )

    def drain_depth_changes(self, symbol: str) -> DepthDiff | None:
        """Levels changed since the last drain, with the first and last update ids they cover."""
        return self._state(symbol).book.drain()

    def recent_trades(self, symbol: str, limit: int = 500) -> list[TradeEvent]:
        m = self._state(symbol)
        _check_limit(limit)
        trades = list(m.recent)
        return trades[-limit:]

    def book_ticker(self, symbol: str) -> BookTop:
        return self._state(symbol).top()

    def last_price(self, symbol: str) -> Decimal | None:
        last = self._state(symbol).stats.last
        return last.price if last else None

    def ticker_24h(self, symbol: str, now_ms: int) -> Ticker24h:
        m = self._state(symbol)
        return m.stats.ticker(symbol, self._time(now_ms), m.top())

    # -- ground truth ---------------------------------------------------------------------------

    def ground_truth(self) -> GroundTruth:
        accounts = self.ledger.accounts()
        return GroundTruth(
            balances={a: {b.asset: b for b in self.ledger.balances(a)} for a in accounts},
            open_orders={a: tuple(self.open_orders(a)) for a in accounts},
            books={s: self.depth(s, None) for s in self._markets},
            recent_trades={s: tuple(m.recent) for s, m in self._markets.items()},
            fees_collected=dict(self.ledger.fees_collected),
            deposited=dict(self.ledger.deposited),
        )

    def audit(self) -> list[str]:
        """Broken invariants (empty when all hold): conservation of every asset, each account's
        locked balance equal to what its open orders lock, and book levels equal to their orders."""
        problems: list[str] = []
        for asset in self.ledger.assets():
            total, deposited = self.ledger.total(asset), self.ledger.deposited.get(asset, money.ZERO)
            if total != deposited:
                problems.append(f"{asset}: held {total} != deposited {deposited}")
        locks: dict[tuple[str, str], Decimal] = {}
        for m in self._markets.values():
            for orders in m.open_by_account.values():
                for o in orders.values():
                    key = (o.account, o.lock_asset)
                    locks[key] = money.add(locks.get(key, money.ZERO), o.locked)
            for side in (Side.BUY, Side.SELL):
                summed: dict[Decimal, Decimal] = {}
                for price, o in m.book.orders_from_best(side):
                    summed[price] = money.add(summed.get(price, money.ZERO), o.remaining)
                    if not o.status.is_open or o.price != price or o.side is not side:
                        problems.append(f"{m.spec.symbol}: order {o.order_id} misplaced on the book")
                if dict(m.book.depth(side)) != summed:
                    problems.append(f"{m.spec.symbol} {side}: level totals differ from resting orders")
        for account in self.ledger.accounts():
            for b in self.ledger.balances(account):
                held = locks.get((account, b.asset), money.ZERO)
                if b.locked != held or b.free < 0:
                    problems.append(f"{account} {b.asset}: locked {b.locked}, orders lock {held}")
        return problems


def _lock_need(spec: MarketSpec, req: NewOrder, plan: MatchPlan) -> tuple[str, Decimal]:
    """What a new order must lock: a resting-capable order its whole size at its price, a MARKET
    order exactly what its plan consumes (Binance rejects a MARKET order it could not pay in full)."""
    if req.order_type is OrderType.MARKET:
        if req.side is Side.BUY:
            return spec.quote, plan.filled_quote
        return spec.base, plan.filled_qty
    assert req.price is not None and req.qty is not None
    if req.side is Side.BUY:
        return spec.quote, money.mul(req.price, req.qty)
    return spec.base, req.qty


def _signed_amount(amount: Amount) -> Decimal:
    """A deposit (positive) or withdrawal (negative) amount; the magnitude parses like any other."""
    negative = False
    if isinstance(amount, str):
        text = amount.strip()
        negative, amount = text.startswith("-"), text.removeprefix("-")
    elif isinstance(amount, Decimal | int) and not isinstance(amount, bool) and amount < 0:
        negative, amount = True, -amount
    value = parse_amount(amount, "amount")
    assert value is not None
    return -value if negative else value


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise invalid(f"limit must be a positive int, got {limit!r}")
