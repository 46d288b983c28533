"""Placing and cancelling orders, and applying what the venue says about them.

``place`` is synchronous and answers with a client order id at once; the order is tracked before
anything is sent, so every later word about it (an ack, a fill on the private stream racing the
REST answer, a failure) finds it. What decides an outcome, and why:

* A local refusal (a trading rule broken after quantization, a budget shortfall, a venue that
  does not take the order type, an IP ban in force) never reaches the venue: the order is tracked
  and fails at once, its ``OrderFailed`` naming the rule or the token short.
* A placement that times out or breaks in transport may have been executed: the order becomes
  UNKNOWN and the reconciler settles it by a query by client order id. A placement is never sent
  twice, whatever happened to the first one.
* A rejection the venue states (rule, funds, rate limit, clock skew, ban) is FAILED with the
  venue's reason: it was not executed. A clock-skew rejection is not retried either (the HTTP
  client resyncs the clock; only idempotent requests are sent again).

Only orders this instance issued are ever cancelled: ``cancel`` refuses any other id with
``ForeignOrder``, and ``cancel_all`` filters by the id factory, so a bot sharing an account never
touches another bot's orders.

Events from the tracker are published here, in order, and each one moves the local balances
before strategies see it, so a callback reacting to a fill reads a balance that includes it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from marketlink.core.budget import BudgetChecker, OrderCandidate
from marketlink.core.client_ids import ClientOrderIdFactory
from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.errors import MarketlinkError, UnknownSymbol
from marketlink.core.events import (
    WITHDRAWN_PREFIX,
    OrderCreated,
    OrderEvent,
    OrderFailed,
    TerminalOrderEvent,
)
from marketlink.core.fees import TradeFee
from marketlink.core.market import BalanceUpdate, VenueOrder
from marketlink.core.orders import (
    TERMINAL_STATES,
    InFlightOrder,
    InvalidOrderData,
    OrderState,
    OrderUpdate,
    TradeUpdate,
)
from marketlink.core.pairs import TradingPair
from marketlink.core.rules import TradingRule
from marketlink.core.tracker import RefusalKind
from marketlink.engine.context import ConnectorContext
from marketlink.net.clock import Clock
from marketlink.net.errors import (
    ClockSkew,
    DuplicateOrder,
    IpBanned,
    MalformedMessage,
    OrderNotFound,
    OrderRateLimited,
    Transient,
    VenueError,
)

__all__ = [
    "TRADING_PART",
    "CancelOutcome",
    "CancelResult",
    "ConnectorStopped",
    "ForeignOrder",
    "OrderCounters",
    "OrderManager",
]

log = logging.getLogger(__name__)

_ZERO = Decimal(0)
#: The status part that is not ready while an IP ban refuses new orders.
TRADING_PART = "trading"


class ForeignOrder(MarketlinkError, ValueError):
    """``cancel`` named a client order id this instance did not issue. Never cancelled: it may be
    another bot's order on the same account."""


class ConnectorStopped(MarketlinkError, RuntimeError):
    """An order or cancel asked of a connector that is stopping or stopped. Refused outright: its
    streams, reconciler and event bus are gone, so nothing would ever report on the order."""


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # the venue confirmed the cancel
    ALREADY_DONE = "already_done"  # it had ended before the cancel took (filled, expired, failed)
    FAILED = "failed"  # the cancel was refused or could not be sent; ``reason`` says why
    TIMED_OUT = "timed_out"  # no confirmation within the time given; the order may still end


@dataclass(frozen=True, slots=True)
class CancelResult:
    client_order_id: str
    trading_pair: str
    outcome: CancelOutcome
    reason: str | None = None
    state: OrderState | None = None  # the order's state when the result was taken

    @property
    def success(self) -> bool:
        """The order no longer works at the venue (cancelled, or ended before)."""
        return self.outcome in (CancelOutcome.CANCELLED, CancelOutcome.ALREADY_DONE)


@dataclass(slots=True)
class OrderCounters:
    placed: int = 0  # placements sent
    refused_locally: int = 0  # failed before sending (rule, budget, ban, unsupported)
    rejected: int = 0  # the venue refused the placement
    unknown: int = 0  # placement outcome unknown (timeout, transport error, unreadable answer)
    withdrawn: int = 0  # placements a cancel called back while they waited, before they were sent
    cancels_sent: int = 0
    cancel_failures: int = 0
    #: cancels the venue answered "not found" for an order we held open (then settled by a query)
    cancel_races: int = 0
    adopted: int = 0  # own orders found at the venue that we did not track
    bad_updates: int = 0  # items of unknown type handed to apply_updates
    refusals: dict[str, int] = field(default_factory=dict)  # tracker refusals seen, by kind


_WITHDRAWN: Final = f"{WITHDRAWN_PREFIX} cancelled while it waited behind the rate limits, never sent"
_STOPPED_UNSENT: Final = "not sent: the connector stopped while it waited behind the rate limits"


def _check_input(side: object, amount: object, price: object, order_type: object, tif: object) -> None:
    """Garbage in (a float, NaN, a negative amount, a limit order without a price) is a
    programming error of the caller, refused at once: it is not an order that could be tracked."""
    for name, value, kind in (
        ("side", side, Side), ("order_type", order_type, OrderType), ("time_in_force", tif, TimeInForce)
    ):
        if not isinstance(value, kind):
            raise InvalidOrderData(f"{name} must be a {kind.__name__}, got {value!r}")
    assert isinstance(order_type, OrderType)
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise InvalidOrderData(f"amount must be a finite Decimal > 0 (never a float), got {amount!r}")
    if price is None:
        if order_type.is_limit:
            raise InvalidOrderData(f"a {order_type} order needs a price")
        return
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        raise InvalidOrderData(f"price must be a finite Decimal > 0 (never a float), got {price!r}")


class OrderManager:
    """Places, cancels and tracks the orders of one connector; see the module docstring.

    ``on_attention`` (set by the reconciler) is called when an order needs a query soon: a
    placement became UNKNOWN, a cancel could not tell what happened, orders were restored.
    """

    def __init__(self, ctx: ConnectorContext, client_ids: ClientOrderIdFactory) -> None:
        self.ctx = ctx
        self.client_ids = client_ids
        self.counters = OrderCounters()
        self.on_attention: Callable[[], None] | None = None
        self.needs_query: set[str] = set()  # client ids the reconciler should query soon
        self._checker = BudgetChecker(ctx.spec.fees)
        self._fee_estimates: dict[tuple[Side, bool], TradeFee] = {}
        self._pairs = frozenset(ctx.trading_pairs)
        self._reserved: dict[str, dict[str, Decimal]] = {}  # sent, not yet acked: what each consumes
        self._locked: dict[str, Decimal] = {}  # their sum per token
        self._placing: dict[str, asyncio.Task[None]] = {}
        self._unsent: set[str] = set()  # placing, and not yet handed to the socket
        self._cancelling: dict[str, asyncio.Task[CancelResult | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._terminal: dict[str, list[asyncio.Future[None]]] = {}
        self._ban_watch = False
        self._accepting = True  # new orders; cleared for good when the connector begins to stop
        self._restored: set[str] = set()  # journal orders handed to us, whatever their id's prefix
        self._stopped = False  # cancels too, once stop() has run

    # -- placing --------------------------------------------------------------------------------

    def place(
        self,
        side: Side,
        trading_pair: str,
        amount: Decimal,
        order_type: OrderType = OrderType.LIMIT,
        price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> str:
        """Track and send one order; returns its client order id before anything is sent.

        Raises ``UnknownSymbol`` for a pair this connector does not trade, ``InvalidTradingPair``
        and ``InvalidOrderData`` for malformed input; every other refusal is an ``OrderFailed``
        event for the returned id.
        """
        if not self._accepting:
            raise ConnectorStopped(f"{self.ctx.venue.name}: stopping or stopped; no new orders")
        ctx = self.ctx
        pair = self._own_pair(trading_pair)
        _check_input(side, amount, price, order_type, time_in_force)
        rule = ctx.markets.rule(pair)
        cid = self.client_ids.new(side, pair)
        q_amount = rule.quantize_amount(amount, order_type)
        q_price = rule.quantize_price(price, side) if order_type.is_limit and price is not None else None
        order = InFlightOrder(
            client_order_id=cid,
            trading_pair=pair,
            order_type=order_type,
            side=side,
            # An order that fails locally still needs valid values to be tracked: keep what was
            # asked when quantization leaves nothing (the failure names the rule it broke).
            amount=q_amount if q_amount > 0 else amount,
            price=(q_price if q_price and q_price > 0 else price) if order_type.is_limit else None,
            creation_timestamp=ctx.now(),
            time_in_force=time_in_force,
        )
        ctx.tracker.start_tracking(order)
        reference = q_price if order_type.is_limit else self._reference_price(pair, side, q_amount, price)
        verdict = self._pre_trade(order, rule, q_amount, reference)
        if isinstance(verdict, str):
            self.counters.refused_locally += 1
            log.info("%s: order %s refused locally: %s", ctx.venue.name, cid, verdict)
            self._fail_later(order, verdict)
            return cid
        self._reserve(cid, verdict)
        self._spawn_placement(order)
        return cid

    def _own_pair(self, trading_pair: str) -> str:
        if trading_pair in self._pairs:
            return trading_pair
        canonical = str(TradingPair.parse(trading_pair))  # InvalidTradingPair for garbage
        if canonical not in self._pairs:
            raise UnknownSymbol(self.ctx.venue.name, trading_pair)
        return canonical

    def _reference_price(
        self, pair: str, side: Side, amount: Decimal, given: Decimal | None
    ) -> Decimal | None:
        """What a market order is judged at: the worst price its volume reaches in the book (a
        mid would let a buy overspend), else the price the caller gave as a reference.

        A book thinner than the order is swept whole (the venue fills what is there and expires
        the rest), so the deepest level is reached: a buy is judged at the dearer of it and the
        caller's price, a sell at the cheaper (judging at the caller's price alone let a buy
        through that the venue refused for funds)."""
        book = self.ctx.books.get(pair)
        if book is not None and book.in_sync and amount > 0:
            is_buy = side is Side.BUY
            worst = book.price_for_volume(is_buy, amount)
            if worst is not None:
                return worst
            deepest = book.deepest_price(is_buy)
            if deepest is not None:
                if given is None:
                    return deepest
                return max(deepest, given) if is_buy else min(deepest, given)
        return given

    def spendable(self, asset: str) -> Decimal:
        """The available balance less what our orders in flight will consume: what a new order
        may use (the budget check's own figure)."""
        return self.ctx.balances.available(asset) - self._locked.get(asset, _ZERO)

    def _pre_trade(
        self, order: InFlightOrder, rule: TradingRule, amount: Decimal, reference: Decimal | None
    ) -> str | dict[str, Decimal]:
        """Every reason to refuse ``order`` before sending it, or what it will consume."""
        spec = self.ctx.spec
        if order.order_type not in spec.order_types:
            return f"rule order_type: {spec.name} does not take {order.order_type} orders"
        if order.order_type is OrderType.LIMIT and order.time_in_force not in spec.time_in_force:
            return f"rule time_in_force: {spec.name} does not take {order.time_in_force}"
        violation = rule.check(order.order_type, order.side, amount, reference)
        if violation is not None:
            return f"rule {violation.rule}: {violation}"
        banned = self._ban_reason()
        if banned is not None:
            return banned
        return self._budget(order, amount, reference)

    def _budget(
        self, order: InFlightOrder, amount: Decimal, reference: Decimal | None
    ) -> str | dict[str, Decimal]:
        """What the order consumes per token (fees added to cost included), if the budget holds
        it: the venue's available balance less what our orders in flight will consume (the venue
        locks their funds only once it has them). All or nothing: an order is never shrunk."""
        if reference is None:
            return "budget: no reference price for a market order (no book in sync, no price given)"
        candidate = OrderCandidate(
            order.trading_pair, order.side, order.order_type, amount, reference,
            is_maker=order.order_type is OrderType.LIMIT_MAKER,
        )
        key = (candidate.side, candidate.pays_maker_fee)
        fee = self._fee_estimates.get(key)
        if fee is None:  # the schema never changes: one estimate per side and role
            fee = self._fee_estimates[key] = self._checker.estimate_fee(candidate)
        need = self._checker.collateral(candidate, fee)
        balances = self.ctx.balances
        for token, value in need.items():
            free = balances.available(token)
            reserved = self._locked.get(token, _ZERO)
            if value > free - reserved:
                return (
                    f"budget: insufficient {token}: needs {value}, available {free}, "
                    f"reserved by orders in flight {reserved}"
                )
        return need

    def _reserve(self, cid: str, need: dict[str, Decimal]) -> None:
        self._reserved[cid] = need
        for token, value in need.items():
            self._locked[token] = self._locked.get(token, _ZERO) + value

    def _release(self, cid: str) -> None:
        for token, value in self._reserved.pop(cid, {}).items():
            left = self._locked[token] - value
            if left:
                self._locked[token] = left
            else:
                del self._locked[token]

    def _spawn_placement(self, order: InFlightOrder) -> None:
        cid = order.client_order_id
        self._unsent.add(cid)
        task = self._spawn(self._send(order), f"place-{cid}")
        self._placing[cid] = task
        task.add_done_callback(lambda t: self._placement_done(order, t))

    def _placement_done(self, order: InFlightOrder, task: asyncio.Task[None]) -> None:
        """The one place a placement cancelled before it left is settled (withdrawn by a
        cancel, or the connector stopping): whether the task had begun or not, nothing was
        sent, so the order is known not to exist at the venue. Runs before anyone awaiting the
        task resumes (its first done callback)."""
        cid = order.client_order_id
        unsent = cid in self._unsent
        self._unsent.discard(cid)
        self._placing.pop(cid, None)
        if unsent and task.cancelled() and order.state is OrderState.PENDING_CREATE:
            # Only a cancel or the stop cancels a placement; cancels are refused once stopping.
            if self._stopped:
                self._fail(order, _STOPPED_UNSENT)
            else:
                self.counters.withdrawn += 1
                self._fail(order, _WITHDRAWN)

    async def _send(self, order: InFlightOrder) -> None:
        ctx = self.ctx
        cid = order.client_order_id
        try:
            request = ctx.codec.place_order_request(order, ctx.symbol(order.trading_pair))
        except Exception as exc:  # a codec or symbol bug: nothing was sent
            log.exception("%s: could not build the placement of %s", ctx.venue.name, cid)
            self._fail(order, f"request not built: {type(exc).__name__}: {exc}")
            return
        self.counters.placed += 1
        try:
            payload = await ctx.http.request(request, on_send=lambda: self._unsent.discard(cid))
        except asyncio.CancelledError:
            if cid not in self._unsent:  # on its way or sent: only a query can tell
                self._unknown(order, "placement interrupted (connector stopping)")
            raise  # not sent: _placement_done settles it
        except (Transient, DuplicateOrder, MalformedMessage) as exc:
            # Maybe executed: a timeout, a dropped connection, a 5xx, an unreadable answer,
            # or an id the venue already holds (our own first attempt, if anything).
            self._unknown(order, f"{type(exc).__name__}: {exc}")
            return
        except (IpBanned, OrderRateLimited) as exc:  # the venue's, or the breaker's (local)
            label = "IP banned" if isinstance(exc, IpBanned) else "order-count limit"
            if exc.local:
                self.counters.refused_locally += 1
                self._fail(order, f"{label}, not sent: {type(exc).__name__}: {exc}")
            else:
                self._rejected(order, f"{label}, refused by the venue: {type(exc).__name__}: {exc}")
            self._ban_reason()  # the status part says so until it ends
            return
        except ClockSkew as exc:
            self._rejected(order, f"timestamp outside the venue's window, not executed: {exc}")
            return
        except VenueError as exc:  # the venue said no: rules, funds, rate limit, auth
            self._rejected(order, f"{type(exc).__name__}: {exc}")
            return
        except MarketlinkError as exc:  # raised before sending (configuration)
            self._fail(order, f"not sent: {type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # unexpected: we cannot tell whether it went out
            log.exception("%s: placement of %s failed unexpectedly", ctx.venue.name, cid)
            self._unknown(order, f"{type(exc).__name__}: {exc}")
            return
        try:
            result = ctx.codec.parse_place_order(payload, order)
        except Exception as exc:  # accepted (2xx) but unreadable: a query settles it
            log.warning("%s: unreadable placement answer for %s: %s", ctx.venue.name, cid, exc)
            self._unknown(order, f"answer unreadable: {type(exc).__name__}: {exc}")
            return
        self.apply_updates([result.update, *result.trades])

    def _fail(self, order: InFlightOrder, reason: str) -> None:
        self._publish(self.ctx.tracker.process_order_update(self._failed_update(order, reason)))

    def _rejected(self, order: InFlightOrder, reason: str) -> None:
        self.counters.rejected += 1
        log.info("%s: order %s rejected: %s", self.ctx.venue.name, order.client_order_id, reason)
        self._fail(order, reason)

    def _fail_later(self, order: InFlightOrder, reason: str) -> None:
        """Fail a locally refused order now, but publish after ``place`` has returned its id, so
        no callback ever hears of an order id its strategy has not been given yet."""
        events = self.ctx.tracker.process_order_update(self._failed_update(order, reason))
        try:
            asyncio.get_running_loop().call_soon(self._publish, events)
        except RuntimeError:  # no loop (a synchronous caller): nobody can be racing us
            self._publish(events)

    def _failed_update(self, order: InFlightOrder, reason: str) -> OrderUpdate:
        return OrderUpdate(
            trading_pair=order.trading_pair,
            timestamp=self.ctx.now(),
            new_state=OrderState.FAILED,
            client_order_id=order.client_order_id,
            reason=reason,
        )

    def _unknown(self, order: InFlightOrder, reason: str) -> None:
        self.counters.unknown += 1
        log.warning("%s: order %s outcome unknown (%s): querying", self.ctx.venue.name,
                    order.client_order_id, reason)
        self._publish(self.ctx.tracker.mark_unknown(order.client_order_id, self.ctx.now(), reason))
        self._attention()

    # -- the circuit breaker: an IP ban, or the account's order-count limit -------------------

    def _blocked_until(self) -> tuple[float, str] | None:
        """The later end of what refuses new orders now (a ban, an order-count hold), and which."""
        throttler = self.ctx.throttler
        ends = [
            (until, what)
            for until, what in ((throttler.banned_until, "IP banned"),
                                (throttler.orders_held_until, "order-count limit"))
            if until is not None
        ]
        return max(ends) if ends else None

    def _ban_reason(self) -> str | None:
        """While an IP ban or the venue's order-count limit holds, new orders fail at once
        (market data, reads and cancels go on); the status part ``trading`` says so until it
        ends, then reports trading resumed."""
        blocked = self._blocked_until()
        if blocked is None:
            return None
        ctx = self.ctx
        until, what = blocked
        left = until - ctx.clock.time()
        if not self._ban_watch:
            self._ban_watch = True
            ctx.status.fail(TRADING_PART, f"{what}: new orders refused for {left:.0f}s")
            log.warning("%s: %s for %.0fs: new orders are refused", ctx.venue.name, what, left)
            ctx.supervisor.spawn("ban_watch", self._watch_ban, restart=False)
        return f"{what} for {left:.1f}s more: new orders refused"

    def note_ban(self) -> None:
        """The throttler opened its circuit breaker: set the status part and watch for the end,
        whether or not an order is being placed."""
        self._ban_reason()

    async def _watch_ban(self) -> None:
        ctx = self.ctx
        try:
            while (blocked := self._blocked_until()) is not None:
                await ctx.clock.sleep(max(0.0, blocked[0] - ctx.clock.time()))
        finally:
            self._ban_watch = False
        ctx.status.ok(TRADING_PART, "trading resumed")
        log.warning("%s: new orders accepted again: trading resumed", ctx.venue.name)

    # -- cancelling -----------------------------------------------------------------------------

    def cancel(self, trading_pair: str, client_order_id: str) -> None:
        """Schedule a cancel. An id of another instance raises ``ForeignOrder``; an own id that is
        not tracked (long finished) or already ended is a no-op."""
        if self._stopped:
            raise ConnectorStopped(f"{self.ctx.venue.name}: stopped; cancel {client_order_id} at the venue")
        if not self.owns(client_order_id):
            raise ForeignOrder(f"{client_order_id!r} was not issued by this instance: never cancelled")
        order = self.ctx.tracker.get(client_order_id)
        if order is None:
            log.info("%s: cancel of %s: not tracked (long finished?)", self.ctx.venue.name, client_order_id)
            return
        if self._own_pair(trading_pair) != order.trading_pair:
            raise InvalidOrderData(f"{client_order_id} trades {order.trading_pair}, not {trading_pair}")
        if not order.is_terminal:
            self._start_cancel(order)

    def _start_cancel(self, order: InFlightOrder) -> asyncio.Task[CancelResult | None]:
        cid = order.client_order_id
        task = self._cancelling.get(cid)
        if task is None:
            task = self._spawn(self._cancel(order), f"cancel-{cid}")
            self._cancelling[cid] = task
            task.add_done_callback(lambda _t: self._cancelling.pop(cid, None))
        return task

    async def _cancel(self, order: InFlightOrder) -> CancelResult | None:
        """One cancel request; the result, or ``None`` while the venue has not confirmed yet."""
        ctx = self.ctx
        cid = order.client_order_id
        placing = self._placing.get(cid)
        if placing is not None:  # a cancel must not overtake its placement at the venue
            if cid in self._unsent:
                # Still waiting behind the rate limits (a back-off can last a minute): called
                # back, it never goes out; sent later it could fill at a price long stale.
                placing.cancel()
            await asyncio.wait([placing])  # however it ends
        if order.is_terminal:
            return self._result(order)
        self._publish(ctx.tracker.process_order_update(OrderUpdate(
            order.trading_pair, ctx.now(), OrderState.PENDING_CANCEL, cid,
        )))
        self.counters.cancels_sent += 1
        try:
            request = ctx.codec.cancel_order_request(ctx.symbol(order.trading_pair), cid)
            payload = await ctx.http.request(request)
            update = ctx.codec.parse_cancel_order(payload, order)
        except OrderNotFound:
            # The venue does not know it as open: most often a fill raced the cancel and its
            # report is still on the way, or the order never landed. One status query tells
            # these apart now, so a market maker's everyday race ends ALREADY_DONE rather than
            # as a failed cancel. An UNKNOWN placement is counted only by the reconciler's
            # settling queries, which wait out the venue's receive window first.
            if order.state is OrderState.UNKNOWN:
                self._query_soon(cid)
            elif not order.is_terminal:
                self.counters.cancel_races += 1
                self.record_not_found(cid)
                try:
                    if not await self.query_status(order):
                        self.record_not_found(cid)  # the venue's second word on it
                        self._query_soon(cid)  # and on towards LOST, as any order not found
                    elif cid in ctx.tracker.held:
                        self._query_soon(cid)  # ended with fills we lack: the reconciler fetches them
                except Exception as exc:  # says nothing about the order: the reconciler asks again
                    log.info("%s: status query of %s after its cancel failed: %s", ctx.venue.name, cid, exc)
                    self._query_soon(cid)
            if order.state in TERMINAL_STATES:  # a fill racing the cancel ended it
                return self._result(order)
            self.counters.cancel_failures += 1
            return CancelResult(cid, order.trading_pair, CancelOutcome.FAILED, "venue: order not found",
                                order.state)
        except Exception as exc:  # refused, or the outcome is unknown: a query tells
            log.warning("%s: cancel of %s failed: %s", ctx.venue.name, cid, exc)
            self._query_soon(cid)
            if order.state in TERMINAL_STATES:  # a venue report ended it while we waited
                return self._result(order)
            self.counters.cancel_failures += 1
            return CancelResult(cid, order.trading_pair, CancelOutcome.FAILED,
                                f"{type(exc).__name__}: {exc}", order.state)
        self.apply_updates([update])
        if order.state in TERMINAL_STATES:  # the answer, or a stream event meanwhile, ended it
            return self._result(order)
        return None

    def cancel_resurfaced(self, order: InFlightOrder) -> None:
        """Cancel at the venue an order that ended FAILED here but the venue lists open. Its state
        stays FAILED (its one terminal event went out); the cancel's answer is not applied, and
        its fills come in as late fills. A failure is retried by the next open-orders pass."""
        cid = order.client_order_id
        if self._stopped or cid in self._cancelling:
            return
        task = self._spawn(self._cancel_resurfaced(order), f"cancel-resurfaced-{cid}")
        self._cancelling[cid] = task
        task.add_done_callback(lambda _t: self._cancelling.pop(cid, None))

    async def _cancel_resurfaced(self, order: InFlightOrder) -> CancelResult | None:
        ctx = self.ctx
        cid = order.client_order_id
        self.counters.cancels_sent += 1
        try:
            await ctx.http.request(ctx.codec.cancel_order_request(ctx.symbol(order.trading_pair), cid))
        except Exception as exc:
            self.counters.cancel_failures += 1
            log.warning("%s: cancel of resurfaced order %s failed: %s", ctx.venue.name, cid, exc)
            return None
        log.warning("%s: resurfaced order %s cancelled at the venue", ctx.venue.name, cid)
        return None

    @staticmethod
    def _result(order: InFlightOrder) -> CancelResult:
        """The result for an order that has ended, cancelled by us or otherwise."""
        cancelled = order.state is OrderState.CANCELED
        outcome = CancelOutcome.CANCELLED if cancelled else CancelOutcome.ALREADY_DONE
        return CancelResult(order.client_order_id, order.trading_pair, outcome, order.reason, order.state)

    async def cancel_all(self, timeout: float) -> list[CancelResult]:
        """Cancel every live order of this instance (lost and unknown ones too); one result each,
        within ``timeout`` seconds of the connector's clock. Cancels still pending at the deadline
        are reported TIMED_OUT and keep running: their answer is still applied when it comes."""
        if not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"timeout must be finite and >= 0, got {timeout!r}")
        if self._stopped:
            raise ConnectorStopped(f"{self.ctx.venue.name}: stopped; cancel at the venue")
        tracker = self.ctx.tracker
        orders = [
            o for o in (*tracker.active.values(), *tracker.lost.values())
            if self.owns(o.client_order_id)
        ]
        if not orders:
            return []
        waits = {o.client_order_id: self._spawn(self._cancel_and_confirm(o), "cancel-all") for o in orders}
        await _wait_within(self.ctx.clock, waits.values(), timeout)
        results: list[CancelResult] = []
        for order in orders:
            task = waits[order.client_order_id]
            if not task.done():
                task.cancel()  # the wrapper only: the cancel request itself goes on
                results.append(CancelResult(
                    order.client_order_id, order.trading_pair, CancelOutcome.TIMED_OUT,
                    f"not confirmed within {timeout}s", order.state,
                ))
            elif task.cancelled() or task.exception() is not None:
                why = "cancelled" if task.cancelled() else repr(task.exception())
                results.append(CancelResult(
                    order.client_order_id, order.trading_pair, CancelOutcome.FAILED, why, order.state,
                ))
            else:
                results.append(task.result())
        return results

    async def _cancel_and_confirm(self, order: InFlightOrder) -> CancelResult:
        result = await asyncio.shield(self._start_cancel(order))
        if result is not None:
            return result
        await self._wait_terminal(order)
        return self._result(order)

    async def _wait_terminal(self, order: InFlightOrder) -> None:
        if order.is_terminal and order.client_order_id not in self.ctx.tracker.held:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._terminal.setdefault(order.client_order_id, []).append(fut)
        await fut

    # -- applying what the venue says -----------------------------------------------------------

    def apply_updates(self, items: Iterable[OrderUpdate | TradeUpdate | BalanceUpdate]) -> None:
        """Route venue reports through the tracker in arrival order, publish the events, and move
        balances. Bad or foreign items are counted and logged, never raised."""
        tracker = self.ctx.tracker
        for entry in items:
            item: object = entry  # a codec may hand us anything: check, do not trust the type
            if isinstance(item, TradeUpdate):
                self._publish(tracker.process_trade_update(item))
            elif isinstance(item, OrderUpdate):
                self._publish(tracker.process_order_update(item))
            elif isinstance(item, BalanceUpdate):
                self.ctx.balances.apply(item)
            else:
                self.counters.bad_updates += 1
                log.warning("%s: dropped an update of type %s", self.ctx.venue.name, type(item).__name__)
        self._log_refusals()

    async def query_status(self, order: InFlightOrder) -> bool:
        """Ask the venue for one order's state by client id and apply the answer; ``False`` when
        the venue does not know the order (not yet counted: "not found" means different things
        for a placement still within its receive window). Other errors propagate."""
        ctx = self.ctx
        try:
            request = ctx.codec.order_status_request(ctx.symbol(order.trading_pair), order.client_order_id)
            found = ctx.codec.parse_order_status(await ctx.http.request(request), ctx.markets.symbols)
        except OrderNotFound:
            return False
        self.apply_updates([found.as_update()])
        return True

    def record_not_found(self, client_order_id: str, *, placement: bool = False) -> None:
        """A real "order not found" answer for a tracked order. ``placement`` marks a query that
        settles an UNKNOWN placement (after its receive window): such an order that the venue
        never acknowledged fails after ``lost_after`` answers instead of becoming LOST."""
        tracker = self.ctx.tracker
        now = self.ctx.now()
        if placement:
            events = tracker.process_placement_not_found(client_order_id, now)
        else:
            events = tracker.process_order_not_found(client_order_id, now)
        self._publish(events)
        self._log_refusals()

    def release_held(self, client_order_id: str) -> None:
        """Give up waiting for fills a terminal report promised: its terminal event goes out
        with ``missing_base`` set, stamped when the venue ended the order (what it unlocks was
        unlocked then, so a snapshot taken since already holds it)."""
        order = self.ctx.tracker.get(client_order_id)
        ended = order.last_update_timestamp if order is not None else self.ctx.now()
        self._publish(self.ctx.tracker.release(client_order_id, ended))

    def adopt(self, venue_order: VenueOrder) -> bool:
        """Track an own order found at the venue that we did not know (a lost journal, a crash
        between send and journal write). It is ours, so it must be visible and cancellable.
        False when it cannot be tracked (malformed, or its id is taken)."""
        vo = venue_order
        try:
            order = InFlightOrder(
                client_order_id=vo.client_order_id,
                trading_pair=vo.trading_pair,
                order_type=vo.order_type,
                side=vo.side,
                amount=vo.amount,
                price=vo.price,
                creation_timestamp=vo.timestamp,
                time_in_force=vo.time_in_force or TimeInForce.GTC,
            )
            self.ctx.tracker.start_tracking(order)
        except MarketlinkError as exc:
            log.warning("%s: cannot adopt own order %s: %s", self.ctx.venue.name, vo.client_order_id, exc)
            return False
        self.counters.adopted += 1
        log.warning("%s: adopted own order %s found at the venue", self.ctx.venue.name, vo.client_order_id)
        self.apply_updates([vo.as_update()])
        return True

    def _publish(self, events: Sequence[OrderEvent]) -> None:
        ctx = self.ctx
        for event in events:
            cid = event.client_order_id
            order = ctx.tracker.get(cid)
            if order is not None:
                # A failed order was never acknowledged, so nothing of it was ever locked: there is
                # nothing to unlock (Balances would otherwise release its whole amount).
                remaining = _ZERO if isinstance(event, OrderFailed) else order.open_at_venue
                ctx.balances.on_order_event(event, order.price, remaining)
            ctx.bus.publish(event)
            if isinstance(event, TerminalOrderEvent) or (
                isinstance(event, OrderCreated) and event.order_type is not OrderType.MARKET
                and event.price is not None
            ):
                # Now in the venue's locked balance, or gone. An order that never rests (market)
                # locks nothing at the venue: it holds its reservation until it ends, or between
                # its Created and its fills (a query may report it before the trade history
                # does) it would count nowhere.
                self._release(cid)
            if isinstance(event, TerminalOrderEvent):
                for fut in self._terminal.pop(cid, ()):
                    if not fut.done():
                        fut.set_result(None)

    def _log_refusals(self) -> None:
        refusals = self.ctx.tracker.drain_refusals()
        for r in refusals:
            counts = self.counters.refusals
            counts[r.kind.value] = counts.get(r.kind.value, 0) + 1
            # Routine, so DEBUG: another bot's orders on the same account, and a stale status
            # arriving after the order ended (the stream repeating what a REST answer settled).
            order = self.ctx.tracker.get(r.client_order_id) if r.client_order_id else None
            stale = r.kind is RefusalKind.ILLEGAL_TRANSITION and order is not None and order.is_terminal
            level = logging.DEBUG if r.kind is RefusalKind.UNKNOWN_ORDER or stale else logging.WARNING
            log.log(level, "%s: tracker refused an update (%s): %s", self.ctx.venue.name, r.kind, r.detail)

    # -- reconciler hooks -----------------------------------------------------------------------

    def placing(self, client_order_id: str) -> bool:
        """Whether the placement request of this order is still in flight."""
        return client_order_id in self._placing

    def _query_soon(self, client_order_id: str) -> None:
        self.needs_query.add(client_order_id)
        self._attention()

    def _attention(self) -> None:
        if self.on_attention is not None:
            self.on_attention()

    # -- lifecycle ------------------------------------------------------------------------------

    def owns(self, client_order_id: str) -> bool:
        """Ours to cancel: issued by this instance's id factory, or restored from its journal
        (which may predate a change of ``client_id_instance``)."""
        return self.client_ids.owns(client_order_id) or client_order_id in self._restored

    def restore(self, orders: Sequence[InFlightOrder]) -> None:
        """Track journal orders. One restored mid-placement (PENDING_CREATE) has an unknown
        outcome: it becomes UNKNOWN and is settled by a query, never placed again. Restored
        orders count as this instance's own, so ``cancel_all`` reaches them even when their ids
        carry another instance's prefix (said once in the log)."""
        tracker = self.ctx.tracker
        tracker.restore(orders)
        foreign = [o.client_order_id for o in orders if not self.client_ids.owns(o.client_order_id)]
        if foreign:
            log.warning("%s: %d restored orders carry another instance's id (%s...): managed as ours",
                        self.ctx.venue.name, len(foreign), foreign[0])
        self._restored.update(o.client_order_id for o in orders)
        for order in orders:
            if order.state is OrderState.PENDING_CREATE:
                self._unknown(order, "restored while its placement was in flight")
            elif order.acknowledged and not order.is_terminal:
                self.ctx.balances.mark_resting(order.client_order_id)
        if any(o.state not in TERMINAL_STATES for o in orders):
            self._attention()

    def refuse_new_orders(self) -> None:
        """From now on ``place`` raises ``ConnectorStopped``; cancels still go out (a stopping
        connector may be cancelling everything)."""
        self._accepting = False

    async def stop(self, timeout: float | None = None) -> None:
        """Withdraw placements not yet sent, let in-flight requests finish (their answers are
        applied), then cancel what is left after ``timeout`` seconds (default: the request
        timeout). New orders and cancels are refused from the start."""
        self._accepting = False
        self._stopped = True
        # A placement still waiting behind the rate limits has not left: it must not go out now,
        # at a price chosen before the stop, with nobody left to follow it (it ends FAILED, not
        # sent). Only what is on the wire is waited for.
        for cid in list(self._unsent):
            placing = self._placing.get(cid)
            if placing is not None:
                placing.cancel()
        bound = self.ctx.config.request_timeout if timeout is None else timeout
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, bound))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for futures in self._terminal.values():
            for fut in futures:
                fut.cancel()
        self._terminal.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: order task %s crashed", self.ctx.venue.name, task.get_name(),
                      exc_info=task.exception())


async def _wait_within(clock: Clock, tasks: Iterable[asyncio.Task[Any]], timeout: float) -> None:
    """Wait for every task, or until ``timeout`` seconds pass on ``clock`` (a virtual clock in
    tests), whichever comes first. The tasks are left as they are."""
    waiting: set[asyncio.Future[Any]] = {t for t in tasks if not t.done()}
    if not waiting:
        return
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        while waiting and not timer.done():
            done, _ = await asyncio.wait(waiting | {timer}, return_when=asyncio.FIRST_COMPLETED)
            waiting -= done
    finally:
        timer.cancel()
        await asyncio.gather(timer, return_exceptions=True)
