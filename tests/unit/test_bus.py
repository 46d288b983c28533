"""EventBus: ordering, isolation of failing callbacks, bounded queues with in-band drop markers."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from marketlink.core.errors import ConfigError
from marketlink.engine.bus import EventBus, EventsDropped, Subscription, _log_worthy


@dataclass(frozen=True, slots=True)
class Tick:
    n: int


@dataclass(frozen=True, slots=True)
class Fill:
    n: int


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def make_bus(maxsize: int = 100) -> EventBus[object]:
    return EventBus(maxsize=maxsize, now=FakeClock())


async def until(cond: Callable[[], bool], limit: int = 100) -> None:
    """Yield to the loop until ``cond`` holds; bounded, never a timed sleep."""
    for _ in range(limit):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def take(sub: Subscription[object], n: int) -> list[object]:
    return [await asyncio.wait_for(sub.__anext__(), 5) for _ in range(n)]


# -- callbacks -------------------------------------------------------------------------------------


def test_callbacks_run_synchronously_in_publish_order_with_type_filter() -> None:
    bus = make_bus()
    seen: list[object] = []
    fills: list[object] = []
    bus.subscribe_callback(seen.append)
    bus.subscribe_callback(fills.append, types=(Fill,))
    for i in range(5):
        bus.publish(Tick(i) if i % 2 else Fill(i))
        assert seen[-1] in (Tick(i), Fill(i))  # delivered before publish returned
    assert seen == [Fill(0), Tick(1), Fill(2), Tick(3), Fill(4)]
    assert fills == [Fill(0), Fill(2), Fill(4)]


def test_a_raising_callback_is_counted_and_logged_and_others_still_receive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = make_bus()
    after: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("boom")

    bad = bus.subscribe_callback(broken, name="broken")
    bus.subscribe_callback(after.append)
    sub = bus.subscribe()
    with caplog.at_level(logging.ERROR, logger="marketlink.engine.bus"):
        for i in range(12):
            bus.publish(Tick(i))  # must not raise
    assert after == [Tick(i) for i in range(12)]
    assert sub.qsize() == 12
    assert bad.errors == 12
    assert bus.stats.callback_errors_total == 12
    # logged on the 1st and 10th failure only, with the traceback
    logged = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(logged) == 2
    assert logged[0].exc_info is not None


def test_async_function_cannot_be_a_callback() -> None:
    bus = make_bus()

    async def handler(event: object) -> None:  # pragma: no cover - never called
        pass

    with pytest.raises(ConfigError):
        bus.subscribe_callback(handler)


def test_callback_returning_a_coroutine_is_an_error_and_the_coroutine_is_closed() -> None:
    bus = make_bus()
    ran: list[object] = []

    async def handler(event: object) -> None:  # pragma: no cover - must never run
        ran.append(event)

    sub = bus.subscribe_callback(lambda e: handler(e))  # hides the coroutine function
    bus.publish(Tick(1))  # an unclosed coroutine would raise RuntimeWarning (an error here)
    assert sub.errors == 1 and ran == []


def test_callback_may_unsubscribe_itself_and_others() -> None:
    bus = make_bus()
    a_seen: list[object] = []
    b_seen: list[object] = []

    def a_handler(event: object) -> None:
        a_seen.append(event)
        a.close()
        b.close()  # before b's turn for this very event

    a = bus.subscribe_callback(a_handler)
    b = bus.subscribe_callback(b_seen.append)
    bus.publish(Tick(1))
    bus.publish(Tick(2))
    assert a_seen == [Tick(1)]
    assert b_seen == []
    assert not a.active and not b.active and len(bus) == 0
    c = bus.subscribe_callback(b_seen.append)
    bus.unsubscribe(c)
    bus.publish(Tick(3))
    assert b_seen == []


def test_publishing_from_a_callback_keeps_one_global_order() -> None:
    bus = make_bus()
    first: list[object] = []
    second: list[object] = []

    def derive(event: object) -> None:
        first.append(event)
        if isinstance(event, Tick):
            bus.publish(Fill(event.n))  # nested: must reach everyone after Tick(n)

    bus.subscribe_callback(derive)
    bus.subscribe_callback(second.append)
    sub = bus.subscribe()
    bus.publish(Tick(1))
    bus.publish(Tick(2))
    expected = [Tick(1), Fill(1), Tick(2), Fill(2)]
    assert first == expected
    assert second == expected
    assert [e for _, _, e in sub._queue] == expected


def test_subscriber_added_during_dispatch_sees_only_later_events() -> None:
    bus = make_bus()
    late: list[object] = []

    def add_late(event: object) -> None:
        if event == Tick(1):
            bus.publish(Tick(2))  # published before the subscription below
            bus.subscribe_callback(late.append)

    bus.subscribe_callback(add_late)
    bus.publish(Tick(1))
    bus.publish(Tick(3))
    assert late == [Tick(3)]


# -- async subscriptions ---------------------------------------------------------------------------


async def test_async_subscription_receives_in_order_and_filters() -> None:
    bus = make_bus()
    async with bus.subscribe(types=(Fill,), name="fills") as sub:
        for i in range(6):
            bus.publish(Fill(i) if i % 2 == 0 else Tick(i))
        assert await take(sub, 3) == [Fill(0), Fill(2), Fill(4)]
        assert sub.qsize() == 0
    assert sub.closed and len(bus) == 0


async def test_a_waiting_consumer_is_woken_by_publish() -> None:
    bus = make_bus()
    sub = bus.subscribe()
    task = asyncio.create_task(sub.__anext__())
    await until(lambda: bool(sub._waiters))  # parked, waiting
    bus.publish(Tick(7))
    assert await asyncio.wait_for(task, 5) == Tick(7)


async def test_overflow_drops_oldest_and_marks_the_gap_in_band(caplog: pytest.LogCaptureFixture) -> None:
    bus = make_bus(maxsize=3)
    sub = bus.subscribe(name="slow")
    with caplog.at_level(logging.WARNING, logger="marketlink.engine.bus"):
        for i in range(1, 11):  # seq 1..10, clock 1001..1010
            bus.publish(Tick(i))
    marker, *rest = await take(sub, 4)
    assert marker == EventsDropped(
        subscription="slow", count=7, first_seq=1, last_seq=7, first_dropped_ts=1001.0,
        last_dropped_ts=1007.0, total_dropped=7,
    )
    assert rest == [Tick(8), Tick(9), Tick(10)]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "slow" in caplog.records[0].getMessage()

    # a second gap after some events were read appears exactly where it happened
    bus.publish(Tick(11))
    assert await take(sub, 1) == [Tick(11)]
    for i in range(12, 17):
        bus.publish(Tick(i))
    got = await take(sub, 4)
    assert isinstance(got[0], EventsDropped)
    assert (got[0].count, got[0].first_seq, got[0].last_seq, got[0].total_dropped) == (2, 12, 13, 9)
    assert got[1:] == [Tick(14), Tick(15), Tick(16)]

    stats = bus.stats
    assert stats.dropped_total == 9 and stats.published == 16
    assert stats.dropped_by_subscriber() == {"slow": 9}
    (s,) = stats.subscribers
    assert (s.kind, s.delivered, s.dropped, s.queued, s.high_water) == ("queue", 16, 9, 0, 3)


async def test_one_slow_subscriber_does_not_affect_a_fast_one() -> None:
    bus = make_bus(maxsize=2)
    slow = bus.subscribe(name="slow")
    fast = bus.subscribe(name="fast", maxsize=100)
    for i in range(5):
        bus.publish(Tick(i))
    assert await take(fast, 5) == [Tick(i) for i in range(5)]
    assert bus.stats.dropped_by_subscriber() == {"slow": 3, "fast": 0}
    assert isinstance((await take(slow, 1))[0], EventsDropped)


@pytest.mark.parametrize("seed", range(8))
async def test_random_interleaving_never_loses_an_event_silently(seed: int) -> None:
    """Every published event is either delivered once, in order, or counted by the marker
    that stands exactly where it is missing."""
    rng = random.Random(seed)
    bus = make_bus(maxsize=rng.randint(1, 6))
    sub = bus.subscribe(types=(Tick,))
    received: list[object] = []
    seq_of: dict[int, int] = {}
    n = 0
    for _ in range(400):
        if rng.random() < 0.6:
            n += 1
            bus.publish(Tick(n))
            seq_of[n] = bus.stats.published
            if rng.random() < 0.2:
                bus.publish(Fill(n))  # filtered out: neither delivered nor dropped
        elif sub.qsize() or sub._gap is not None:
            received.append(await sub.__anext__())
    bus.close()
    received.extend([e async for e in sub])

    expected_next = 1
    for item in received:
        if isinstance(item, EventsDropped):
            assert item.count >= 1
            # the marker names exactly the first and last Tick missing at this point
            assert item.first_seq == seq_of[expected_next]
            assert item.last_seq == seq_of[expected_next + item.count - 1]
            expected_next += item.count
        else:
            assert isinstance(item, Tick) and item.n == expected_next
            expected_next += 1
    assert expected_next == n + 1  # all n accounted for
    assert sub.dropped == sum(i.count for i in received if isinstance(i, EventsDropped))


async def test_bus_close_drains_queued_events_then_ends_iteration() -> None:
    bus = make_bus()
    sub = bus.subscribe()
    waiting = bus.subscribe()
    waiter = asyncio.create_task(waiting.__anext__())
    await until(lambda: bool(waiting._waiters))
    bus.publish(Tick(1))
    bus.publish(Tick(2))
    bus.close()
    bus.close()  # idempotent
    assert [e async for e in sub] == [Tick(1), Tick(2)]
    assert await asyncio.wait_for(waiter, 5) == Tick(1)
    bus.publish(Tick(3))  # ignored, counted, never raises
    assert bus.stats.ignored_after_close == 1
    late = bus.subscribe()
    assert late.closed and [e async for e in late] == []
    cb_seen: list[object] = []
    cb = bus.subscribe_callback(cb_seen.append)
    assert not cb.active and cb_seen == []


async def test_closing_the_bus_wakes_a_parked_consumer() -> None:
    bus = make_bus()
    sub = bus.subscribe()

    async def consume() -> list[object]:
        return [e async for e in sub]

    task = asyncio.create_task(consume())
    await until(lambda: bool(sub._waiters))
    bus.close()
    assert await asyncio.wait_for(task, 5) == []


async def test_subscription_close_ends_iteration_at_once_and_discards_the_queue() -> None:
    bus = make_bus()
    sub = bus.subscribe()
    other = bus.subscribe()
    task = asyncio.create_task(other.__anext__())
    await until(lambda: bool(other._waiters))
    other.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(task, 5)
    bus.publish(Tick(1))
    sub.close()
    assert [e async for e in sub] == []
    bus.publish(Tick(2))  # no subscribers left
    assert len(bus) == 0 and bus.stats.published == 2


async def test_close_called_from_a_callback_still_delivers_already_published_events() -> None:
    bus = make_bus()
    sub = bus.subscribe()
    seen: list[object] = []

    def on_event(event: object) -> None:
        seen.append(event)
        if event == Tick(1):
            bus.publish(Tick(2))  # accepted: publish returns normally
            bus.close()
            bus.publish(Tick(3))  # after close: ignored

    bus.subscribe_callback(on_event)
    bus.publish(Tick(1))
    assert seen == [Tick(1), Tick(2)]
    assert [e async for e in sub] == [Tick(1), Tick(2)]
    assert bus.closed and bus.stats.ignored_after_close == 1


async def test_cancelled_waiter_is_forgotten_and_the_subscription_still_works() -> None:
    bus = make_bus()
    sub = bus.subscribe()
    task = asyncio.create_task(sub.__anext__())
    await until(lambda: bool(sub._waiters))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sub._waiters == []
    bus.publish(Tick(1))
    assert await take(sub, 1) == [Tick(1)]


async def test_two_tasks_on_one_subscription_share_events_without_duplicates() -> None:
    bus = make_bus()
    sub = bus.subscribe()
    t1 = asyncio.create_task(sub.__anext__())
    t2 = asyncio.create_task(sub.__anext__())
    await until(lambda: len(sub._waiters) == 2)
    bus.publish(Tick(1))
    bus.publish(Tick(2))
    got = {await asyncio.wait_for(t1, 5), await asyncio.wait_for(t2, 5)}
    assert got == {Tick(1), Tick(2)}


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError):
        EventBus(maxsize=0)
    bus = make_bus()
    with pytest.raises(ConfigError):
        bus.subscribe(maxsize=0)
    with pytest.raises(ConfigError):
        bus.subscribe(maxsize=True)
    with pytest.raises(ConfigError):
        bus.subscribe(types=())
    with pytest.raises(ConfigError):
        bus.subscribe(types=(Tick(1),))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        bus.subscribe_callback(print, types=[Tick])  # type: ignore[arg-type]


def test_stats_snapshot_lists_every_subscriber() -> None:
    bus = make_bus()
    bus.subscribe(name="q")
    cb = bus.subscribe_callback(lambda e: None, name="cb")
    bus.subscribe()  # default names are unique
    bus.publish(Tick(1))
    stats = bus.stats
    assert [s.name for s in stats.subscribers] == ["q", "cb", "sub-1"]
    assert [(s.kind, s.delivered, s.queued) for s in stats.subscribers] == [
        ("queue", 1, 1), ("callback", 1, 0), ("queue", 1, 1),
    ]
    cb.close()
    assert len(bus) == 2


def test_default_callback_name_is_the_function_name() -> None:
    bus = make_bus()

    def on_fill(event: object) -> None:
        pass

    assert "on_fill" in bus.subscribe_callback(on_fill).name


def test_log_throttle_is_powers_of_ten() -> None:
    assert [n for n in range(1, 1200) if _log_worthy(n)] == [1, 10, 100, 1000]
