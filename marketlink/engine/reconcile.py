"""The reconciler: what the venue says by REST, set against what we believe.

The private stream is fast but can miss things (a reconnect, a dropped frame, a silent socket);
REST is slow but answers for itself. So, per pass:

* **Settle UNKNOWN placements** by a query by client order id, first ``settle_unknown_after``
  seconds after the placement broke, then as often again. Found: its state (and fills). Not
  found: counted only once the venue's receive window has passed since signing (before that the
  request could still land); after ``lost_after`` such answers it never reached the venue.
* **Poll live orders** (lost ones too: they are still fillable) by client order id, every
  ``reconcile_fast`` seconds while the stream is down or silent, every ``reconcile_slow`` while it
  is live. Only real "not found" answers count toward LOST; a timeout says nothing.
* **Recover fills** from the order's trade history when the venue reports more traded than the
  fills we hold (the tracker holds the terminal event until they come; after a few fruitless
  fetches it goes out with the gap stated).
* **Two-way diff** with the venue's open orders every ``open_orders_diff_every`` seconds (and on
  every full pass): an order we think works that the venue no longer lists is queried at once; an
  open order we do not track is adopted if this instance issued it, and otherwise left alone,
  never cancelled (another bot's).

After a reconnect (``trigger``) a full pass, balances included, runs before the connector reports
ready again: the status part ``reconcile`` is not ready until it has completed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from marketlink.core.market import VenueOrder
from marketlink.core.orders import InFlightOrder, OrderState
from marketlink.engine.context import ConnectorContext
from marketlink.engine.orders import OrderManager
from marketlink.engine.user_stream import UserStream
from marketlink.net.http import RestRequest

__all__ = ["FILL_FETCH_TRIES", "STATUS_PART", "ReconcileCounters", "Reconciler"]

log = logging.getLogger(__name__)

STATUS_PART = "reconcile"
#: Trade-history fetches for fills a terminal report promised, before giving up on them.
FILL_FETCH_TRIES = 3
#: Pages of one order's trade history fetched in one go (100,000 fills on Binance): a bound, so a
#: venue that always answers a full page cannot keep one pass going forever.
MAX_TRADE_PAGES = 100
#: Requests of one pass in flight at once (the throttler still spaces them by weight).
CONCURRENCY = 8

_T = TypeVar("_T")


@dataclass(slots=True)
class ReconcileCounters:
    passes: int = 0
    queries: int = 0
    not_found: int = 0
    not_found_too_early: int = 0  # UNKNOWN placement still inside the receive window: not counted
    errors: int = 0  # requests that failed (transport, rate limit, unreadable): retried next pass
    fill_fetches: int = 0
    released: int = 0  # terminal events sent without the fills the venue promised
    vanished: int = 0  # tracked as working, not among the venue's open orders
    adopted: int = 0  # own orders the venue lists that we did not track
    foreign: int = 0  # other instances' orders the venue lists: ignored
    contradictions: int = 0  # the venue lists as open an order that ended here
    resurfaced: int = 0  # ... one we had declared FAILED: cancelled at the venue


class Reconciler:
    def __init__(self, ctx: ConnectorContext, orders: OrderManager, user_stream: UserStream) -> None:
        self._ctx = ctx
        self._orders = orders
        self._stream = user_stream
        orders.on_attention = self.wake
        user_stream.on_health_change = self.wake
        self.counters = ReconcileCounters()
        self._wake = asyncio.Event()
        self._pending = True  # a full pass is owed (the first one, or after a reconnect)
        self._balances_owed = False  # after a reconnect: pushes may have been missed
        self._generation = 0  # bumped by trigger(), so a pass never clears a newer request
        self._last_poll = -math.inf  # clock time of the last pass that polled every order
        self._retry_fast = False  # an owed pass failed: try again at the fast pace
        self._next_diff = -math.inf
        self._due: dict[str, float] = {}  # UNKNOWN order -> clock time of its next settling query
        self._fill_tries: dict[str, int] = {}

    # -- control --------------------------------------------------------------------------------

    def trigger(self) -> None:
        """Reconcile now (after a reconnect): readiness waits until the pass has completed."""
        self._pending = True
        self._balances_owed = True
        self._generation += 1
        self._last_poll = -math.inf
        self._ctx.status.fail(STATUS_PART, "pending after a reconnect")
        self.wake()

    def wake(self) -> None:
        """Re-plan now: the stream's health changed or an order needs a query."""
        self._wake.set()

    @property
    def pending(self) -> bool:
        return self._pending

    async def run_once(self, full: bool = True) -> bool:
        """One pass over every live order (and, if ``full``, the open-orders diff); True when
        every request of it succeeded."""
        return await self._pass(full=full, poll_all=True)

    async def run(self) -> None:
        """The loop, spawned under the supervisor; sleeps until something is due."""
        clock = self._ctx.clock
        while True:
            self._wake.clear()
            await self._sleep_until(self._next_wake())
            now = clock.time()
            poll_all = self._pending or now >= self._next_poll()
            full = self._pending or now >= self._next_diff
            await self._pass(full=full, poll_all=poll_all)

    # -- planning -------------------------------------------------------------------------------

    def _next_poll(self) -> float:
        """The pace is read when planning, not fixed at the last pass: a stream that goes down
        brings the next poll forward at once."""
        cfg = self._ctx.config
        slow = self._stream.healthy and not self._retry_fast
        return self._last_poll + (cfg.reconcile_slow if slow else cfg.reconcile_fast)

    def _next_wake(self) -> float:
        now = self._ctx.clock.time()
        if self._orders.needs_query:
            return now
        times = [self._next_poll(), self._next_diff, *self._schedule_unknown(now)]
        silent_at = self._stream.silent_at
        if silent_at is not None and self._stream.healthy:
            times.append(silent_at)  # re-plan when the stream turns silent: the pace changes
        return min(times)

    def _schedule_unknown(self, now: float) -> Iterable[float]:
        """When each UNKNOWN order is next queried: ``settle_unknown_after`` after we first see it
        unknown, then as often again (``_poll`` moves the time on as it queries)."""
        tracker = self._ctx.tracker
        settled = [c for c in self._due if (o := tracker.get(c)) is None or o.state is not OrderState.UNKNOWN]
        for cid in settled:
            del self._due[cid]
        for order in tracker.active.values():
            cid = order.client_order_id
            if order.state is OrderState.UNKNOWN and cid not in self._due and not self._orders.placing(cid):
                self._due[cid] = now + self._ctx.config.settle_unknown_after
        return self._due.values()

    async def _sleep_until(self, when: float) -> None:
        clock = self._ctx.clock
        delay = when - clock.time()
        if delay <= 0:
            await asyncio.sleep(0)
            return
        waker = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(clock.sleep(delay))
        try:
            await asyncio.wait({waker, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            sleeper.cancel()
            await asyncio.gather(waker, sleeper, return_exceptions=True)

    # -- one pass -------------------------------------------------------------------------------

    async def _pass(self, *, full: bool, poll_all: bool) -> bool:
        ctx = self._ctx
        now = ctx.clock.time()
        generation = self._generation
        owed = self._pending
        self.counters.passes += 1
        ctx.tracker.evict_finished(ctx.now())
        ok = True
        if self._balances_owed:  # (the connector takes the first snapshot itself at start)
            self._balances_owed = not await self._refresh_balances()
            ok = not self._balances_owed and ok
        queried: set[str] = set()
        if full:
            diff_ok = await self._diff_open_orders(queried)
            cfg = ctx.config
            self._next_diff = now + (cfg.open_orders_diff_every if diff_ok else cfg.reconcile_fast)
            ok = diff_ok and ok
        ok = await self._poll(now, poll_all, queried) and ok
        ok = await self._recover_fills(poll_all, queried) and ok
        if poll_all:
            self._last_poll = now
            self._retry_fast = owed and not ok
        if owed:
            if ok and generation == self._generation:
                self._pending = False
                ctx.status.ok(STATUS_PART, "orders reconciled with the venue")
            elif not ok:
                ctx.status.fail(STATUS_PART, "incomplete: some requests failed, retrying")
        return ok

    async def _poll(self, now: float, poll_all: bool, queried: set[str]) -> bool:
        """Query live orders by client id: all of them, or only those due (UNKNOWN ones whose
        time has come, and any the order manager asked about)."""
        tracker = self._ctx.tracker
        asked = set(self._orders.needs_query)
        self._orders.needs_query.clear()
        settle = self._ctx.config.settle_unknown_after
        jobs: list[Callable[[], Awaitable[bool]]] = []
        for order in [*tracker.active.values(), *tracker.lost.values()]:
            cid = order.client_order_id
            if cid in queried or self._orders.placing(cid):
                continue
            if order.state is OrderState.UNKNOWN:
                if not poll_all and cid not in asked and self._due.get(cid, math.inf) > now:
                    continue
                self._due[cid] = now + settle
            elif not poll_all and cid not in asked:
                continue
            queried.add(cid)
            jobs.append(partial(self._query, order))
        # An order asked about that has already ended, short of fills: no status to query, but
        # its trade history is fetched on this pass (``_recover_fills`` takes what was queried).
        queried.update(cid for cid in asked if cid in tracker.held)
        return all(await _bounded(jobs))

    async def _query(self, order: InFlightOrder) -> bool:
        ctx = self._ctx
        cid = order.client_order_id
        self.counters.queries += 1
        try:
            found = await self._orders.query_status(order)
        except Exception as exc:  # transport, rate limit, unreadable: says nothing about the order
            self.counters.errors += 1
            log.info("%s: status query of %s failed: %s", ctx.venue.name, cid, exc)
            return False
        if not found:
            self.counters.not_found += 1
            self._not_found(order)
        return True

    def _not_found(self, order: InFlightOrder) -> None:
        ctx = self._ctx
        cid = order.client_order_id
        if order.state is OrderState.UNKNOWN and not order.acknowledged:
            # The venue refuses a request older than its receive window, so once that long has
            # passed since the placement broke (after it was signed) it can no longer land.
            window = ctx.spec.recv_window_ms / 1000.0
            if ctx.now() - order.last_update_timestamp < window:
                self.counters.not_found_too_early += 1  # the request may still land
                return
            self._orders.record_not_found(cid, placement=True)
        else:
            self._orders.record_not_found(cid)

    async def _recover_fills(self, poll_all: bool, queried: set[str]) -> bool:
        """Fetch the trade history of orders whose fills fall short of what the venue reported
        (on a targeted pass, only of the orders it queried), and on full polls of lost orders,
        which are still fillable."""
        tracker = self._ctx.tracker
        wanted = {o.client_order_id: o for o in tracker.awaiting_fills()}
        if not poll_all:
            wanted = {cid: o for cid, o in wanted.items() if cid in queried}
        else:
            wanted.update(tracker.lost)
        jobs = [partial(self._fetch_fills, o) for o in wanted.values() if o.exchange_order_id is not None]
        return all(await _bounded(jobs))

    async def _fetch_fills(self, order: InFlightOrder) -> bool:
        ctx = self._ctx
        cid = order.client_order_id
        assert order.exchange_order_id is not None
        self.counters.fill_fetches += 1
        codec = ctx.codec
        symbol = ctx.symbol(order.trading_pair)
        after: str | None = None
        # Page by page, each applied as it comes (a later failure keeps what was fetched): an
        # order can have more fills than one page holds (Binance: 1000), and stopping at the
        # first page would leave the rest missing for good.
        for _ in range(MAX_TRADE_PAGES):
            try:
                request = codec.order_trades_request(symbol, order.exchange_order_id, after)
                page = codec.parse_trades(await ctx.http.request(request), ctx.markets.symbols)
            except Exception as exc:
                self.counters.errors += 1
                log.info("%s: trade history of %s failed: %s", ctx.venue.name, cid, exc)
                return False
            self._orders.apply_updates(page)
            after = codec.next_trades_from(page)
            if after is None:
                break
        else:
            log.warning("%s: %s has more than %d pages of fills: the rest waits for the next pass",
                        ctx.venue.name, cid, MAX_TRADE_PAGES)
        if cid in ctx.tracker.held and order.missing_fill:
            tries = self._fill_tries[cid] = self._fill_tries.get(cid, 0) + 1
            if tries >= FILL_FETCH_TRIES:
                self.counters.released += 1
                log.warning("%s: %s ended but %s of its fills never came: reporting it without them",
                            ctx.venue.name, cid, order.fill_gap)
                self._fill_tries.pop(cid, None)
                self._orders.release_held(cid)
                # The fills we never got moved the order's assets at the venue, and no event of
                # ours will: only a snapshot brings the balances back to the truth.
                if not await self._refresh_balances():
                    self._balances_owed = True
        else:
            self._fill_tries.pop(cid, None)
        return True

    async def _open_order_listings(self) -> dict[str, list[VenueOrder]]:
        """The venue's open orders per traded pair (pairs whose listing failed are left out).

        One request for every symbol when that costs less weight than one request per pair
        (Binance: 80 against 6 per pair, so from 14 pairs on), else per-pair requests in
        parallel: a 50-pair connector starts without 50 listings in a row."""
        ctx = self._ctx
        pairs = ctx.trading_pairs
        codec = ctx.codec

        async def fetch(symbol: str | None) -> list[VenueOrder]:
            payload = await ctx.http.request(codec.open_orders_request(symbol))
            return codec.parse_open_orders(payload, ctx.markets.symbols)

        every = codec.open_orders_request(None)
        one = codec.open_orders_request(ctx.symbol(pairs[0]))
        if len(pairs) > 1 and _weight(every) < len(pairs) * _weight(one):
            try:
                listing = await fetch(None)
            except Exception as exc:
                self.counters.errors += 1
                log.info("%s: open orders failed: %s", ctx.venue.name, exc)
                return {}
            out: dict[str, list[VenueOrder]] = {p: [] for p in pairs}
            for vo in listing:
                if vo.trading_pair in out:
                    out[vo.trading_pair].append(vo)
            return out

        async def per_pair(pair: str) -> tuple[str, list[VenueOrder] | None]:
            try:
                return pair, await fetch(ctx.symbol(pair))
            except Exception as exc:
                self.counters.errors += 1
                log.info("%s: open orders of %s failed: %s", ctx.venue.name, pair, exc)
                return pair, None

        results = await _bounded([partial(per_pair, p) for p in pairs])
        return {pair: listing for pair, listing in results if listing is not None}

    async def _diff_open_orders(self, queried: set[str]) -> bool:
        ctx = self._ctx
        tracker = ctx.tracker
        listings = await self._open_order_listings()
        ok = len(listings) == len(ctx.trading_pairs)
        for pair, listing in listings.items():
            listed: set[str] = set()
            for vo in listing:
                order = tracker.get(vo.client_order_id) or tracker.get_by_exchange_id(vo.exchange_order_id)
                if order is not None:
                    listed.add(order.client_order_id)
                    if order.state is OrderState.FAILED and self._orders.owns(order.client_order_id):
                        # We declared it failed (its placement never answered and the venue
                        # denied it), yet it works at the venue: take it off the book, and
                        # record whatever it traded. It stays FAILED here: one terminal event.
                        self.counters.resurfaced += 1
                        log.error("%s: %s was declared failed but the venue lists it open: cancelling it",
                                  ctx.venue.name, order.client_order_id)
                        if vo.exchange_order_id is not None:
                            tracker.note_exchange_id(order.client_order_id, vo.exchange_order_id)
                        self._orders.cancel_resurfaced(order)
                        if order.exchange_order_id is not None:
                            await self._fetch_fills(order)
                    elif order.is_terminal:
                        self.counters.contradictions += 1
                        log.warning("%s: the venue lists %s as open, but it ended as %s here",
                                    ctx.venue.name, order.client_order_id, order.state)
                    else:
                        self._orders.apply_updates([vo.as_update()])
                elif self._orders.owns(vo.client_order_id):
                    if self._orders.adopt(vo):
                        self.counters.adopted += 1
                        listed.add(vo.client_order_id)
                else:
                    self.counters.foreign += 1
                    log.debug("%s: open order %s is not ours: left alone", ctx.venue.name, vo.client_order_id)
            queried.update(listed)  # the listing is a fresh status: no query needed this pass
            missing = [
                o for o in (*tracker.active.values(), *tracker.lost.values())
                if o.trading_pair == pair and o.client_order_id not in listed and o.acknowledged
                and not self._orders.placing(o.client_order_id)
            ]
            for order in missing:
                self.counters.vanished += 1
                log.info("%s: %s (%s) is not among the venue's open orders: querying it",
                         ctx.venue.name, order.client_order_id, order.state)
                queried.add(order.client_order_id)
            ok = all(await _bounded([partial(self._query, o) for o in missing])) and ok
        return ok

    async def _refresh_balances(self) -> bool:
        ctx = self._ctx
        try:
            ctx.balances.apply(ctx.codec.parse_balances(await ctx.http.request(ctx.codec.balances_request())))
        except Exception as exc:
            self.counters.errors += 1
            log.info("%s: balance snapshot failed: %s", ctx.venue.name, exc)
            return False
        return True


def _weight(request: RestRequest) -> int:
    return sum(cost.weight for cost in request.costs)


async def _bounded(jobs: Sequence[Callable[[], Awaitable[_T]]], limit: int = CONCURRENCY) -> list[_T]:
    """Run ``jobs`` with at most ``limit`` in flight; results in order. Jobs are factories, so a
    pass cancelled midway leaves no coroutine created and never awaited."""
    if not jobs:
        return []
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[_T]]) -> _T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))
