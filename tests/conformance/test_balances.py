"""Balances follow the venue: by the private stream as they change, by snapshot when it is silent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from harness import PAIR, D, Lab, World

from marketlink.core.enums import OrderType
from marketlink.core.events import (
    BalanceUpdated,
    OrderCompleted,
    OrderCreated,
    OrderFailed,
    OrderFilled,
    OrderUnknown,
)
from marketlink.sandbox.faults import StreamKind

#: The connector does nothing on its own in these scenarios: each step is the test's, in order.
IDLE = {"reconcile_fast": 3600.0, "reconcile_slow": 3600.0, "settle_unknown_after": 3600.0,
        "balance_snapshot_every": 3600.0}


def _updated(world: World, asset: str, total: Decimal) -> bool:
    """Whether the connector has announced ``asset`` at ``total``."""
    return any(
        isinstance(e, BalanceUpdated) and e.asset == asset and e.total == total for e in world.rec.events
    )


async def test_balances_follow_the_stream(world: World) -> None:
    await world.rec.until(world.balances_match)
    btc = world.conn.total_balance("BTC")
    world.deposit("BTC", "1.5")
    await world.rec.until(lambda: _updated(world, "BTC", btc + D("1.5")))
    assert world.conn.total_balance("BTC") == world.conn.available_balance("BTC") == btc + D("1.5")
    # An order locks funds and a fill moves them; the stream carries both.
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("50000"))
    await world.created(cid)
    await world.rec.until(world.balances_match)
    assert world.conn.available_balance("USDT") == world.conn.total_balance("USDT") - D("500")
    world.taker("SELL", "0.01", "50000")
    await world.ended(cid)
    await world.rec.until(world.balances_match)
    assert world.conn.available_balance("USDT") == world.conn.total_balance("USDT")


async def test_balances_are_corrected_by_snapshot_when_the_stream_does_not_tell(lab: Lab) -> None:
    world = await lab.world(balance_snapshot_every=0.2)
    usdt = world.conn.total_balance("USDT")
    stalled_until = world.now_ms() + 8_000
    world.sb.faults.stall_streams(stalled_until, StreamKind.USER)
    world.deposit("USDT", "1234.56")
    await world.rec.until(lambda: _updated(world, "USDT", usdt + D("1234.56")))
    assert world.now_ms() < stalled_until  # the stream never told
    assert world.conn.available_balance("USDT") == usdt + D("1234.56")
    assert world.balances_match()


async def test_an_order_first_seen_by_query_locks_its_funds_once(lab: Lab) -> None:
    """The placement's answer is lost and the stream is stalled. A snapshot taken after the venue
    locked the order's funds already holds the lock; the query that settles the order comes after
    a fill and carries the fill's time, yet the lock is the order's creation, not the fill's."""
    world = await lab.world(request_timeout=0.5, **IDLE)
    conn, rec = world.conn, world.rec
    world.sb.faults.stall_streams(world.now_ms() + 60_000, StreamKind.USER)
    world.sb.faults.lose_order_responses(1)
    cid = conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    await rec.until(lambda: bool(rec.of(OrderUnknown, cid)))
    await conn.refresh_balances()  # the venue's word: 1000 USDT locked
    assert world.balances_match()
    await world.venue_clock_past(world.now_ms())
    world.taker("SELL", "0.005", "50000")
    assert await conn.reconciler.run_once()  # the query settles it: OPEN, part filled
    assert rec.kinds(cid) == ["OrderUnknown", "OrderCreated", "OrderFilled"]
    assert world.balances_match()
    usdt = conn.balances()["USDT"]
    assert usdt.total - usdt.available == D("750")  # what is still locked: 0.015 at 50000
    [created], [filled] = rec.of(OrderCreated, cid), rec.of(OrderFilled, cid)
    assert created.timestamp < filled.timestamp  # stamped when the venue made it


async def test_a_snapshot_older_than_a_fill_does_not_undo_it(lab: Lab) -> None:
    """A snapshot taken at the venue before a fill, whose answer lands after the fill was
    recovered by REST: the fill stays counted (balances are rebased, not rolled back)."""
    world = await lab.world(**IDLE)
    conn, rec = world.conn, world.rec
    ctx = conn.ctx
    cid = conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    await world.created(cid)
    await rec.until(world.balances_match)
    world.sb.faults.stall_streams(world.now_ms() + 60_000, StreamKind.USER)
    slow_answer = await ctx.http.request(ctx.codec.balances_request())  # taken now, read later
    await world.venue_clock_past(world.now_ms())
    world.taker("SELL", "0.02", "50000")
    assert await conn.reconciler.run_once()  # status and fills by REST
    await world.ended(cid)
    assert world.balances_match()
    ctx.balances.apply(ctx.codec.parse_balances(slow_answer))  # ... and now its answer lands
    assert world.balances_match()
    assert conn.total_balance("BTC") == world.sb.ground_truth().balances["demo"]["BTC"].total


async def test_fills_given_up_on_do_not_unlock_funds_the_venue_spent(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order the venue reports FILLED whose fills never come (the trade history lags): its
    end unlocks nothing, since the venue traded all of it, and a snapshot is taken at once to
    bring in what the missing fills moved."""
    world = await lab.world(**IDLE)
    conn, rec = world.conn, world.rec
    cid = conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    await world.created(cid)
    await rec.until(world.balances_match)
    monkeypatch.setattr(conn.ctx.codec, "parse_trades", lambda payload, symbols: [])
    world.sb.faults.stall_streams(world.now_ms() + 60_000, StreamKind.USER)
    world.taker("SELL", "0.02", "50000")
    snapshots = conn.ctx.balances.snapshots
    for _ in range(10):  # each pass fetches the history once more; bounded
        assert await conn.reconciler.run_once()
        if rec.of(OrderCompleted, cid):
            break
    done = await world.ended(cid)
    assert isinstance(done, OrderCompleted) and done.missing_base == D("0.02")
    usdt = conn.balances()["USDT"]
    assert usdt.available <= usdt.total
    assert world.balances_match()
    assert conn.ctx.balances.snapshots == snapshots + 1  # taken on release


async def test_a_market_order_settled_by_query_keeps_its_funds_until_its_fills_come(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A market buy whose answer is lost, settled by the status query while its trades are not
    yet in the history: it never rests, so nothing holds its funds at the venue; the connector
    keeps them reserved until its fills land, and a buy the venue could not fund is not sent."""
    world = await lab.world(request_timeout=0.5, **IDLE)
    conn, rec = world.conn, world.rec
    held = world.sb.ground_truth().balances["demo"]["USDT"].free
    world.deposit("USDT", str(D("1000") - held))
    await rec.until(world.balances_match)
    world.maker("SELL", "0.02", "50000")
    await world.book_caught_up()
    world.sb.faults.stall_streams(world.now_ms() + 60_000, StreamKind.USER)
    world.sb.faults.lose_order_responses(1)
    cid = conn.buy(PAIR, D("0.019"), OrderType.MARKET)  # 950 USDT at the venue
    await rec.until(lambda: bool(rec.of(OrderUnknown, cid)))
    parse_trades = conn.ctx.codec.parse_trades
    monkeypatch.setattr(conn.ctx.codec, "parse_trades", lambda payload, symbols: [])
    assert await conn.reconciler.run_once()  # the query: FILLED; the history: nothing yet
    assert rec.kinds(cid) == ["OrderUnknown", "OrderCreated"]
    assert conn.spendable_balance("USDT") == D("50")  # the venue's free USDT
    other = conn.buy(PAIR, D("0.002"), OrderType.LIMIT, D("50000"))  # 100 USDT
    failed = await world.ended(other)
    assert isinstance(failed, OrderFailed) and (failed.reason or "").startswith("budget:")
    assert world.placements_received(other) == 0
    monkeypatch.setattr(conn.ctx.codec, "parse_trades", parse_trades)
    assert await conn.reconciler.run_once()
    assert isinstance(await world.ended(cid), OrderCompleted)
    assert world.balances_match()
    assert conn.spendable_balance("USDT") == conn.available_balance("USDT") == D("50")
