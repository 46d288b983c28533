"""The strategy API: what a strategy implements (``Strategy``) and what it is given
(``StrategyContext``).

A strategy never sees a venue, only connectors by the names its configuration gave them, so the
same strategy runs on any connector. The context is the one place that knows which orders are
this strategy's: a connector may be shared with other code, and a strategy must only ever count,
report or cancel its own orders (QA Q6, Q11).

The context keeps its books with a synchronous bus callback, not the strategy's event queue: the
runner calls the strategy with the queue's events one at a time, so a strategy waiting (in
``cancel_all``) for terminal events must not depend on the very queue it is blocking.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable

from marketlink.core.book import OrderBook
from marketlink.core.budget import BudgetAccepted, BudgetChecker, OrderCandidate
from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import ConfigError, UnknownSymbol
from marketlink.core.events import Event, OrderFailed, OrderFilled, TerminalOrderEvent
from marketlink.core.fees import TokenAmount, TradeFeeSchema
from marketlink.core.market import Balance
from marketlink.core.orders import InFlightOrder
from marketlink.core.rules import TradingRule
from marketlink.engine.bus import CallbackSubscription, EventBus, EventsDropped
from marketlink.net.clock import Clock

__all__ = [
    "MarketConnector",
    "PairPnL",
    "Strategy",
    "StrategyContext",
    "StrategyEvent",
]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)
#: How many ended orders of a strategy are remembered so a fill arriving after the order's
#: terminal event (``OrderFilled.late``: money moved all the same) is still booked as its own.
ENDED_REMEMBERED = 10_000

#: What ``on_event`` receives: an engine event, or the bus's marker that events were dropped
#: (the strategy then re-reads state rather than trusting what it inferred from events).
StrategyEvent = Event | EventsDropped


@runtime_checkable
class MarketConnector(Protocol):
    """The part of a connector a strategy may use. ``SpotConnector`` has all of it; a test fake
    needs nothing more."""

    @property
    def name(self) -> str: ...

    @property
    def trading_pairs(self) -> tuple[str, ...]: ...

    @property
    def ready(self) -> bool: ...

    @property
    def bus(self) -> EventBus[Event]: ...

    def book(self, trading_pair: str) -> OrderBook: ...

    def best_bid(self, trading_pair: str) -> Decimal | None: ...

    def best_ask(self, trading_pair: str) -> Decimal | None: ...

    def mid_price(self, trading_pair: str) -> Decimal | None: ...

    def last_trade_price(self, trading_pair: str) -> Decimal | None: ...

    def price_for_volume(self, trading_pair: str, is_buy: bool, volume: Decimal) -> Decimal | None: ...

    def balances(self) -> dict[str, Balance]: ...

    def available_balance(self, asset: str) -> Decimal: ...

    def spendable_balance(self, asset: str) -> Decimal: ...

    def total_balance(self, asset: str) -> Decimal: ...

    def in_flight_orders(self) -> dict[str, InFlightOrder]: ...

    def trading_rule(self, trading_pair: str) -> TradingRule: ...

    def supported_order_types(self) -> frozenset[OrderType]: ...

    def buy(
        self, trading_pair: str, amount: Decimal, order_type: OrderType = ..., price: Decimal | None = ...,
        time_in_force: TimeInForce = ...,
    ) -> str: ...

    def sell(
        self, trading_pair: str, amount: Decimal, order_type: OrderType = ..., price: Decimal | None = ...,
        time_in_force: TimeInForce = ...,
    ) -> str: ...

    def cancel(self, trading_pair: str, client_order_id: str) -> None: ...


def fee_schema_of(connector: object) -> TradeFeeSchema:
    """The venue's fee terms, for sizing orders against balances; zero fees when the connector
    does not say (a fake): the connector's own budget check still refuses what does not fit."""
    venue = getattr(connector, "venue", None)
    spec = getattr(venue, "spec", None)
    fees = getattr(spec, "fees", None)
    return fees if isinstance(fees, TradeFeeSchema) else TradeFeeSchema()


@dataclass(frozen=True, slots=True)
class PairPnL:
    """What this strategy's fills did to one market: base and quote moved (fees deducted from
    returns included), fees paid in other tokens, and the result valued at ``price`` (the mid
    now). ``value`` is ``None`` without a price or when a fee token cannot be valued."""

    connector: str
    trading_pair: str
    fills: int
    base_delta: Decimal
    quote_delta: Decimal
    other_fees: tuple[TokenAmount, ...]
    price: Decimal | None
    value: Decimal | None


@dataclass(slots=True)
class _PnLRow:
    fills: int = 0
    base_delta: Decimal = _ZERO
    quote_delta: Decimal = _ZERO
    others: dict[str, Decimal] = field(default_factory=dict)


class _PnLBook:
    """Running totals of this strategy's fills, per (connector, pair)."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], _PnLRow] = {}

    def add(self, connector: str, fill: OrderFilled) -> None:
        row = self._rows.setdefault((connector, fill.trading_pair), _PnLRow())
        base, _, quote = fill.trading_pair.partition("-")
        sign = Decimal(1) if fill.side is Side.BUY else Decimal(-1)
        base_delta = sign * fill.amount
        quote_delta = -sign * fill.quote_amount
        for fee in fill.fee_amounts:
            if fee.token == base:
                base_delta -= fee.amount
            elif fee.token == quote:
                quote_delta -= fee.amount
            else:
                row.others[fee.token] = row.others.get(fee.token, _ZERO) + fee.amount
        row.fills += 1
        row.base_delta += base_delta
        row.quote_delta += quote_delta

    def report(self, price_of: Mapping[tuple[str, str], Decimal | None]) -> tuple[PairPnL, ...]:
        out: list[PairPnL] = []
        for (connector, pair), row in self._rows.items():
            price = price_of.get((connector, pair))
            value = None if price is None or row.others else row.quote_delta + row.base_delta * price
            other_fees = tuple(TokenAmount(t, a) for t, a in sorted(row.others.items()))
            out.append(PairPnL(
                connector, pair, row.fills, row.base_delta, row.quote_delta, other_fees, price, value,
            ))
        return tuple(out)


class StrategyContext:
    """A strategy's window on its connectors: market data, balances, its own orders, and
    ``buy``/``sell``/``cancel``. Connectors are addressed by the names the configuration gave
    them (``"maker"``, ``"binance"``), never by venue."""

    def __init__(self, connectors: Mapping[str, MarketConnector], clock: Clock) -> None:
        if not connectors:
            raise ConfigError("a strategy needs at least one connector")
        self._connectors = dict(connectors)
        self.clock = clock
        self._own: dict[str, tuple[str, str]] = {}  # client id -> (connector, pair), until it ends
        # Ended own ids (oldest first, bounded): their late fills still count in the PnL.
        self._ended: OrderedDict[str, str] = OrderedDict()  # client id -> connector
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._subs: list[CallbackSubscription[Event]] = []
        self._checkers = {name: BudgetChecker(fee_schema_of(c)) for name, c in self._connectors.items()}
        self._pnl = _PnLBook()
        self.orders_placed = 0
        self.orders_failed = 0
        self.budget_drops = 0

    # -- wiring (called by the runner) ------------------------------------------------------------

    def attach(self) -> None:
        """Start following this strategy's orders on every connector's bus."""
        for name, conn in self._connectors.items():
            self._subs.append(conn.bus.subscribe_callback(
                functools.partial(self._observe, name), name=f"strategy-context-{name}",
            ))

    def detach(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs.clear()

    def _observe(self, connector: str, event: Event) -> None:
        cid = getattr(event, "client_order_id", None)
        if cid is None:
            return
        if cid not in self._own:
            # A late fill (after the terminal event) of an order this strategy placed: the
            # venue traded it, so the PnL must count it. Only on the connector it was placed on.
            if isinstance(event, OrderFilled) and self._ended.get(cid) == connector:
                self._pnl.add(connector, event)
            return
        if isinstance(event, OrderFilled):
            self._pnl.add(connector, event)
        elif isinstance(event, TerminalOrderEvent):
            if isinstance(event, OrderFailed) and not event.withdrawn:  # a withdrawal is what we asked
                self.orders_failed += 1
            del self._own[cid]
            self._ended[cid] = connector
            while len(self._ended) > ENDED_REMEMBERED:
                self._ended.popitem(last=False)
            for fut in self._waiters.pop(cid, ()):
                if not fut.done():
                    fut.set_result(None)

    # -- connectors and market data --------------------------------------------------------------

    @property
    def connector_names(self) -> tuple[str, ...]:
        return tuple(self._connectors)

    def connector(self, name: str) -> MarketConnector:
        try:
            return self._connectors[name]
        except KeyError:
            known = ", ".join(self._connectors)
            raise ConfigError(f"no connector named {name!r} (this strategy has: {known})") from None

    def now(self) -> float:
        """The runner's clock (monotonic seconds): what refresh times are measured in."""
        return self.clock.time()

    def ready(self, name: str | None = None) -> bool:
        names = self._connectors if name is None else (name,)
        return all(self.connector(n).ready for n in names)

    def book(self, name: str, trading_pair: str) -> OrderBook:
        return self.connector(name).book(trading_pair)

    def best_bid(self, name: str, trading_pair: str) -> Decimal | None:
        return self.connector(name).best_bid(trading_pair)

    def best_ask(self, name: str, trading_pair: str) -> Decimal | None:
        return self.connector(name).best_ask(trading_pair)

    def mid_price(self, name: str, trading_pair: str) -> Decimal | None:
        return self.connector(name).mid_price(trading_pair)

    def last_trade_price(self, name: str, trading_pair: str) -> Decimal | None:
        return self.connector(name).last_trade_price(trading_pair)

    def trading_rule(self, name: str, trading_pair: str) -> TradingRule:
        return self.connector(name).trading_rule(trading_pair)

    def supports(self, name: str, order_type: OrderType) -> bool:
        return order_type in self.connector(name).supported_order_types()

    # -- balances --------------------------------------------------------------------------------

    def available_balance(self, name: str, asset: str) -> Decimal:
        return self.connector(name).available_balance(asset)

    def total_balance(self, name: str, asset: str) -> Decimal:
        return self.connector(name).total_balance(asset)

    def balances(self, name: str) -> dict[str, Balance]:
        return self.connector(name).balances()

    def shrink_to_budget(self, name: str, candidates: Sequence[OrderCandidate]) -> list[OrderCandidate]:
        """The candidates that fit the available balances, in order, each shrunk (and quantized
        by the pair's rule) as needed; each accepted one consumes budget for the next. Those that
        cannot fit at all, or break a rule, are dropped, logged and counted (``budget_drops``)."""
        conn = self.connector(name)
        tokens = {t for c in candidates for t in c.trading_pair.split("-")}
        # Spendable, not available: orders of ours still in flight will take their share.
        available = {t: conn.spendable_balance(t) for t in tokens}
        rules = {c.trading_pair: conn.trading_rule(c.trading_pair) for c in candidates}
        kept: list[OrderCandidate] = []
        results = self._checkers[name].adjust_many(candidates, available, rules=rules)
        for result in results:
            if isinstance(result, BudgetAccepted):
                kept.append(result.candidate)
            else:
                self.budget_drops += 1
                why = result.violation or result.token or result.reason
                log.info("%s: %s %s %s dropped: %s (%s)", name, result.candidate.side,
                         result.candidate.amount, result.candidate.trading_pair, result.reason, why)
        return kept

    # -- orders ----------------------------------------------------------------------------------

    def buy(
        self, name: str, trading_pair: str, amount: Decimal, order_type: OrderType = OrderType.LIMIT,
        price: Decimal | None = None, time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> str:
        return self._place(Side.BUY, name, trading_pair, amount, order_type, price, time_in_force)

    def sell(
        self, name: str, trading_pair: str, amount: Decimal, order_type: OrderType = OrderType.LIMIT,
        price: Decimal | None = None, time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> str:
        return self._place(Side.SELL, name, trading_pair, amount, order_type, price, time_in_force)

    def _place(
        self, side: Side, name: str, pair: str, amount: Decimal, order_type: OrderType,
        price: Decimal | None, tif: TimeInForce,
    ) -> str:
        conn = self.connector(name)
        place = conn.buy if side is Side.BUY else conn.sell
        cid = place(pair, amount, order_type, price, tif)
        # Recorded before any event of it can be dispatched: a local refusal is published only
        # after place() returned (engine guarantee), and venue answers come later still.
        self._own[cid] = (name, pair)
        self.orders_placed += 1
        return cid

    def cancel(self, client_order_id: str) -> bool:
        """Ask to cancel one of this strategy's orders; ``False`` if it is not one (any more)."""
        where = self._own.get(client_order_id)
        if where is None:
            return False
        name, pair = where
        self.connector(name).cancel(pair, client_order_id)
        return True

    def is_own(self, client_order_id: str) -> bool:
        """Whether the id is a live order of this strategy (placed here, not ended yet)."""
        return client_order_id in self._own

    def open_orders(self, name: str | None = None) -> list[InFlightOrder]:
        """This strategy's orders that have not ended, as the connector tracks them."""
        out: list[InFlightOrder] = []
        names = self._connectors if name is None else (name,)
        for n in names:
            mine = [o for cid, o in self.connector(n).in_flight_orders().items()
                    if cid in self._own and not o.is_terminal]
            out.extend(mine)
        return out

    async def cancel_all(self, timeout: float = 10.0) -> list[str]:
        """Cancel every order of this strategy and wait (up to ``timeout`` seconds of the clock)
        until each has ended; returns the ids still not ended. Other orders on the same
        connectors are never touched."""
        pending = list(self._own)
        futures: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for cid in pending:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(cid, []).append(fut)
            futures.append(fut)
            try:
                self.cancel(cid)
            except Exception:  # one refused cancel must not keep the others from being sent
                log.exception("cancel of %s failed", cid)
        if futures:
            await _wait_within(self.clock, futures, timeout)
        return [cid for cid in pending if cid in self._own]

    # -- reporting -------------------------------------------------------------------------------

    def pnl(self) -> tuple[PairPnL, ...]:
        prices: dict[tuple[str, str], Decimal | None] = {}
        for name, conn in self._connectors.items():
            for pair in conn.trading_pairs:
                try:
                    prices[(name, pair)] = conn.mid_price(pair)
                except UnknownSymbol:  # pragma: no cover - a pair the connector lists is known
                    prices[(name, pair)] = None
        return self._pnl.report(prices)


async def _wait_within(clock: Clock, futures: Iterable[asyncio.Future[None]], timeout: float) -> None:
    """Wait for all ``futures`` or until ``timeout`` seconds of ``clock`` pass, whichever first;
    the ones still pending are cancelled (they are the caller's own, so nobody else waits on them)."""
    pending: set[asyncio.Future[None]] = set(futures)
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        while pending and not timer.done():
            done, _ = await asyncio.wait({*pending, timer}, return_when=asyncio.FIRST_COMPLETED)
            pending -= done
    finally:
        timer.cancel()
        for fut in pending:
            fut.cancel()


class Strategy:
    """Base class of every strategy. Override what you need; each callback may be a plain
    method or ``async def``. The runner never calls two callbacks at once, so a strategy needs
    no locks of its own.

    * ``on_start(ctx)``: once, before the first tick.
    * ``on_tick(ctx)``: every tick interval of the runner.
    * ``on_event(ctx, connector, event)``: every event of every connector, in the order each
      connector published them (``connector`` is the name the event came from).
    * ``on_stop(ctx)``: once; afterwards the runner cancels whatever orders of this strategy are
      still open, so ``on_stop`` need not.
    * ``status(ctx)``: lines for a live view (the CLI's status panel).
    """

    #: The name strategies are registered and configured under.
    name: str = "strategy"

    def on_start(self, ctx: StrategyContext) -> Awaitable[None] | None:
        return None

    def on_tick(self, ctx: StrategyContext) -> Awaitable[None] | None:
        return None

    def on_event(self, ctx: StrategyContext, connector: str, event: StrategyEvent) -> Awaitable[None] | None:
        return None

    def on_stop(self, ctx: StrategyContext) -> Awaitable[None] | None:
        return None

    def status(self, ctx: StrategyContext) -> dict[str, str]:
        return {}
