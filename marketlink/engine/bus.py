"""The event bus between the engine and its consumers (strategies, the journal, the CLI).

Two kinds of subscriber, for two kinds of consumer:

* **Callbacks** run synchronously inside ``publish``, in publish order. They are for cheap,
  in-process bookkeeping that must never lag (the journal's write queue, counters). A callback
  that raises is logged and counted; the publisher and the other subscribers carry on.
* **Async subscriptions** (``async for event in bus.subscribe()``) each own a bounded queue, so
  a slow consumer can never make the engine wait or grow memory without bound.

Overflow policy for a full queue: **drop the oldest** queued event, never block and never lose
silently. Dropping from the head keeps the gap contiguous and in front of everything still
queued, so the consumer receives one ``EventsDropped`` marker exactly where the gap is: every
event before it was delivered, every event after it is newer than everything dropped. The
newest events are the ones kept because a lagging consumer must resynchronise from current
state anyway (balances, open orders), and stale events are the least useful to it. Drops are
also counted per subscriber in ``EventBus.stats`` and logged as a warning.

Publishing from inside a callback is allowed: the nested event is queued and dispatched after
the current one has reached every subscriber, so all subscribers see one global order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from marketlink.core.errors import ConfigError

__all__ = [
    "BusStats",
    "CallbackSubscription",
    "EventBus",
    "EventsDropped",
    "SubscriberStats",
    "Subscription",
]

log = logging.getLogger(__name__)

E = TypeVar("E")

#: (sequence number, publish time, event): built once per publish, shared by all subscribers.
_Envelope = tuple[int, float, E]
TypeFilter = tuple[type[Any], ...]


@dataclass(frozen=True, slots=True)
class EventsDropped:
    """In-band marker: ``count`` events were dropped here because the consumer fell behind.

    ``first_seq``/``last_seq`` are the bus sequence numbers of the first and last dropped event
    and ``*_ts`` their publish times, so a consumer can tell how much it missed and when.
    ``total_dropped`` counts every drop of this subscription so far.
    """

    subscription: str
    count: int
    first_seq: int
    last_seq: int
    first_dropped_ts: float
    last_dropped_ts: float
    total_dropped: int


@dataclass(frozen=True, slots=True)
class SubscriberStats:
    name: str
    kind: str  # "queue" or "callback"
    delivered: int  # handed to the callback, or put in the queue
    dropped: int  # queue overflows (always 0 for callbacks)
    errors: int  # callback exceptions (always 0 for queues)
    queued: int
    high_water: int  # the largest queue length seen


@dataclass(frozen=True, slots=True)
class BusStats:
    """A snapshot; the ``*_total`` counters include subscribers that have since left."""

    published: int
    ignored_after_close: int
    dropped_total: int
    callback_errors_total: int
    subscribers: tuple[SubscriberStats, ...]

    def dropped_by_subscriber(self) -> dict[str, int]:
        return {s.name: s.dropped for s in self.subscribers}


def _log_worthy(n: int) -> bool:
    """1, 10, 100, ...: a repeating fault is logged a few times, never once per event."""
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


class _Subscriber(Generic[E]):
    __slots__ = ("_active", "_bus", "_from_seq", "_types", "delivered", "name")

    def __init__(self, bus: EventBus[E], name: str, types: TypeFilter | None, from_seq: int) -> None:
        self._bus = bus
        self._types = types
        self._from_seq = from_seq  # only events published after subscribing are delivered
        self._active = True
        self.name = name
        self.delivered = 0

    def _offer(self, env: _Envelope[E]) -> None:
        raise NotImplementedError

    def _bus_closed(self) -> None:
        self._active = False

    def _stats(self) -> SubscriberStats:
        raise NotImplementedError


class CallbackSubscription(_Subscriber[E]):
    """A synchronous callback; ``close()`` unsubscribes it (safe from inside the callback)."""

    __slots__ = ("_fn", "errors")

    def __init__(
        self, bus: EventBus[E], fn: Callable[[E], object], name: str, types: TypeFilter | None,
        from_seq: int,
    ) -> None:
        super().__init__(bus, name, types, from_seq)
        self._fn = fn
        self.errors = 0

    @property
    def active(self) -> bool:
        return self._active

    def close(self) -> None:
        self._bus._remove(self)

    def _offer(self, env: _Envelope[E]) -> None:
        event = env[2]
        if self._types is not None and not isinstance(event, self._types):
            return
        self.delivered += 1
        try:
            result = self._fn(event)
        except Exception:
            self._failed("raised", exc_info=True)
            return
        if result is not None and inspect.isawaitable(result):
            # An async function registered as a callback: its coroutine would never run.
            close = getattr(result, "close", None)
            if close is not None:
                close()
            self._failed("returned an awaitable (callbacks must be synchronous; use subscribe())")

    def _failed(self, what: str, exc_info: bool = False) -> None:
        self.errors += 1
        self._bus._callback_errors += 1
        if _log_worthy(self.errors):
            log.error(
                "%s: callback %s %s (%d errors so far)", self._bus.name, self.name, what, self.errors,
                exc_info=exc_info,
            )

    def _stats(self) -> SubscriberStats:
        return SubscriberStats(self.name, "callback", self.delivered, 0, self.errors, 0, 0)


class _Gap:
    __slots__ = ("count", "first_seq", "first_ts", "last_seq", "last_ts")

    def __init__(self, seq: int, ts: float) -> None:
        self.count = 0
        self.first_seq = seq
        self.first_ts = ts
        self.last_seq = seq
        self.last_ts = ts


class Subscription(_Subscriber[E]):
    """An async iterator over the bus's events, with a bounded queue (see the module docstring).

    Yields events and, after an overflow, ``EventsDropped`` markers (never filtered out).
    Iteration ends when the bus closes, after the events already queued are delivered; closing
    the subscription itself (``close()`` or leaving ``async with``) ends it at once and
    discards what is queued.
    """

    __slots__ = ("_ended", "_gap", "_gaps", "_queue", "_waiters", "dropped", "high_water", "maxsize")

    def __init__(
        self, bus: EventBus[E], name: str, types: TypeFilter | None, maxsize: int, from_seq: int
    ) -> None:
        super().__init__(bus, name, types, from_seq)
        self.maxsize = maxsize
        self.dropped = 0
        self.high_water = 0
        self._queue: deque[_Envelope[E]] = deque()
        self._gap: _Gap | None = None
        self._gaps = 0
        self._ended = False
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def closed(self) -> bool:
        """True once no further event can arrive (queued ones may still be read)."""
        return self._ended

    def qsize(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._bus._remove(self)
        self._queue.clear()
        self._gap = None
        self._end()

    async def __aenter__(self) -> Subscription[E]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> Subscription[E]:
        return self

    async def __anext__(self) -> E | EventsDropped:
        while True:
            gap = self._gap
            if gap is not None:
                self._gap = None
                return EventsDropped(
                    self.name, gap.count, gap.first_seq, gap.last_seq, gap.first_ts, gap.last_ts,
                    self.dropped,
                )
            if self._queue:
                return self._queue.popleft()[2]
            if self._ended:
                raise StopAsyncIteration
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled while waiting
                    self._waiters.remove(waiter)

    # -- called by the bus --------------------------------------------------------------------

    def _offer(self, env: _Envelope[E]) -> None:
        if self._types is not None and not isinstance(env[2], self._types):
            return
        queue = self._queue
        if len(queue) >= self.maxsize:
            self._drop(queue.popleft())
        queue.append(env)
        self.delivered += 1
        if len(queue) > self.high_water:
            self.high_water = len(queue)
        if self._waiters:
            self._wake()

    def _drop(self, env: _Envelope[E]) -> None:
        seq, ts, _ = env
        gap = self._gap
        if gap is None:
            gap = self._gap = _Gap(seq, ts)
            self._gaps += 1
            if _log_worthy(self._gaps):
                log.warning(
                    "%s: subscriber %s is too slow; dropping its oldest events (queue of %d, %d dropped "
                    "so far, %d gaps)", self._bus.name, self.name, self.maxsize, self.dropped + 1, self._gaps,
                )
        gap.count += 1
        gap.last_seq, gap.last_ts = seq, ts
        self.dropped += 1
        self._bus._dropped += 1

    def _bus_closed(self) -> None:
        super()._bus_closed()
        self._end()  # what is queued stays readable

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _stats(self) -> SubscriberStats:
        return SubscriberStats(
            self.name, "queue", self.delivered, self.dropped, 0, len(self._queue), self.high_water
        )


class EventBus(Generic[E]):
    """Fan-out of events to callbacks and bounded async subscriptions; ``publish`` never blocks.

    Not thread-safe: publish and consume on the event loop's thread. ``now`` stamps each event
    at publish time (only used in ``EventsDropped``); inject it for deterministic tests.
    """

    def __init__(
        self, *, maxsize: int = 10_000, now: Callable[[], float] = time.time, name: str = "bus"
    ) -> None:
        _check_maxsize(maxsize)
        self.name = name
        self.maxsize = maxsize
        self._now = now
        self._subs: tuple[_Subscriber[E], ...] = ()  # replaced, never mutated: safe to iterate
        self._seq = 0
        self._closed = False
        self._dispatching = False
        self._pending: deque[_Envelope[E]] = deque()
        self._ignored_after_close = 0
        self._dropped = 0
        self._callback_errors = 0
        self._names = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """The number of current subscribers."""
        return len(self._subs)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, event: E) -> None:
        if self._closed:
            self._ignored_after_close += 1
            if _log_worthy(self._ignored_after_close):
                log.debug("%s: closed, ignoring %s", self.name, type(event).__name__)
            return
        self._seq += 1
        env: _Envelope[E] = (self._seq, self._now(), event)
        if self._dispatching:  # published from a callback: after the current event, in order
            self._pending.append(env)
            return
        self._dispatching = True
        try:
            self._dispatch(env)
            while self._pending:
                self._dispatch(self._pending.popleft())
        finally:
            self._dispatching = False
            if self.closed:  # close() was called by a callback: finish it now
                self._detach_all()

    def _dispatch(self, env: _Envelope[E]) -> None:
        seq = env[0]
        for sub in self._subs:
            if sub._active and seq > sub._from_seq:
                sub._offer(env)

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(
        self, types: TypeFilter | None = None, *, maxsize: int | None = None, name: str | None = None
    ) -> Subscription[E]:
        """An async subscription to events published from now on (only ``types``, if given).

        On a closed bus the subscription is already closed: iterating it ends at once.
        """
        size = self.maxsize if maxsize is None else maxsize
        _check_maxsize(size)
        sub = Subscription(self, name or self._next_name("sub"), _check_types(types), size, self._seq)
        self._add(sub)
        return sub

    def subscribe_callback(
        self, fn: Callable[[E], object], types: TypeFilter | None = None, *, name: str | None = None
    ) -> CallbackSubscription[E]:
        """Call ``fn(event)`` synchronously for each event published from now on."""
        if inspect.iscoroutinefunction(fn):
            raise ConfigError("callbacks run synchronously inside publish(); use subscribe() for async code")
        label = name or getattr(fn, "__qualname__", None) or self._next_name("callback")
        sub = CallbackSubscription(self, fn, label, _check_types(types), self._seq)
        self._add(sub)
        return sub

    def unsubscribe(self, sub: Subscription[E] | CallbackSubscription[E]) -> None:
        sub.close()

    def close(self) -> None:
        """Stop accepting events; async subscribers drain what is queued, then stop.

        Called from a callback, it takes effect once the events already published (including
        nested ones not yet dispatched) have reached every subscriber: publish() returned for
        them, so they are not lost.
        """
        if self._closed:
            return
        self._closed = True
        if not self._dispatching:
            self._detach_all()

    def _detach_all(self) -> None:
        subs, self._subs = self._subs, ()
        for sub in subs:
            sub._bus_closed()

    @property
    def stats(self) -> BusStats:
        return BusStats(
            published=self._seq,
            ignored_after_close=self._ignored_after_close,
            dropped_total=self._dropped,
            callback_errors_total=self._callback_errors,
            subscribers=tuple(s._stats() for s in self._subs),
        )

    def _add(self, sub: _Subscriber[E]) -> None:
        if self._closed:
            sub._bus_closed()
            return
        self._subs = (*self._subs, sub)

    def _remove(self, sub: _Subscriber[E]) -> None:
        sub._active = False
        if sub in self._subs:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def _next_name(self, kind: str) -> str:
        self._names += 1
        return f"{kind}-{self._names}"


def _check_maxsize(maxsize: int) -> None:
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        raise ConfigError(f"queue maxsize must be an int >= 1, got {maxsize!r}")


def _check_types(types: TypeFilter | None) -> TypeFilter | None:
    if types is None:
        return None
    if not isinstance(types, tuple) or not types or not all(isinstance(t, type) for t in types):
        raise ConfigError(f"types must be a non-empty tuple of classes, got {types!r}")
    return types
