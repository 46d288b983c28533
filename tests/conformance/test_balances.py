"""Balances follow the venue: by the private stream as they change, by snapshot when it is silent."""

from __future__ import annotations

from decimal import Decimal

from harness import PAIR, D, Lab, World

from marketlink.core.enums import OrderType
from marketlink.core.events import BalanceUpdated
from marketlink.sandbox.faults import StreamKind


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
