"""Quick start: marketlink's Binance connector trading on the embedded sandbox exchange.

Run it with no arguments (no keys, no internet; it finishes by itself in a few seconds):

    python examples/quickstart.py

The sandbox is a local exchange on 127.0.0.1 that speaks Binance's real protocol; its demo
account is funded, so the connector below places real orders over real sockets. Against Binance
itself only the ``connect`` call changes (docs/python-api.md). Exit status 0 means every step
behaved as documented, down to balances that agree with the exchange's to the last unit.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal

import marketlink
from marketlink import (
    CancelOutcome,
    Event,
    EventsDropped,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    OrderFailed,
    OrderFilled,
    OrderType,
    Side,
    SpotConnector,
    Subscription,
)

PAIR = "BTC-USDT"
AMOUNT = Decimal("0.001")  # 60 USDT: the sandbox's books are thin, like a quiet market's


async def events_until(
    events: Subscription[Event], kind: type[OrderEvent], *cids: str
) -> dict[str, list[OrderEvent]]:
    """Each order's events up to and including its first ``kind``, for every id in ``cids``
    (their events may interleave in any order), within ten seconds."""
    stories: dict[str, list[OrderEvent]] = {cid: [] for cid in cids}
    waiting = set(cids)
    async with asyncio.timeout(10):
        async for event in events:
            if isinstance(event, EventsDropped):
                raise RuntimeError(f"fell behind the event bus: {event.count} events dropped")
            if isinstance(event, OrderEvent) and event.client_order_id in waiting:
                stories[event.client_order_id].append(event)
                if isinstance(event, kind):
                    waiting.discard(event.client_order_id)
                    if not waiting:
                        return stories
    raise RuntimeError("the connector stopped")


def show_market(conn: SpotConnector) -> None:
    rule = conn.trading_rule(PAIR)
    print(f"{PAIR}: bid {conn.best_bid(PAIR)}  ask {conn.best_ask(PAIR)}  mid {conn.mid_price(PAIR)}")
    print(f"  tick {rule.tick_size}, step {rule.step_size}, min notional {rule.min_notional}")
    for price, size in conn.book_rows(PAIR, Side.SELL, 3)[::-1]:
        print(f"  ask {price:>10} x {size}")
    for price, size in conn.book_rows(PAIR, Side.BUY, 3):
        print(f"  bid {price:>10} x {size}")
    average, filled = conn.vwap_for_volume(PAIR, True, AMOUNT)
    shown = average.quantize(rule.tick_size) if average is not None else None
    print(f"  a market buy of {AMOUNT} BTC now: {filled} BTC at {shown} on average")


async def trade(conn: SpotConnector, events: Subscription[Event]) -> None:
    bid, ask = conn.best_bid(PAIR), conn.best_ask(PAIR)
    assert bid is not None and ask is not None

    # 1. A limit buy 5 % under the market rests on the book; then we cancel it.
    cid = conn.buy(PAIR, AMOUNT, OrderType.LIMIT, price=bid * Decimal("0.95"))
    created = (await events_until(events, OrderCreated, cid))[cid][-1]
    assert isinstance(created, OrderCreated)
    print(f"limit buy {cid} rests at {created.price} (the price, quantized down to the tick)")
    conn.cancel(PAIR, cid)
    await events_until(events, OrderCancelled, cid)
    print(f"cancelled {cid}")

    # 2. A market buy fills at once: created first, then its fills, then completed.
    cid = conn.buy(PAIR, AMOUNT, OrderType.MARKET)
    story = (await events_until(events, OrderCompleted, cid))[cid]
    assert isinstance(story[0], OrderCreated) and isinstance(story[-1], OrderCompleted)
    fills = [e for e in story if isinstance(e, OrderFilled)]
    done = story[-1]
    assert sum(f.amount for f in fills) == done.executed_base == AMOUNT
    fees = ", ".join(f"{f.amount} {f.token}" for f in done.fees) or "none"
    print(f"market buy {cid}: {len(fills)} fill(s), {done.executed_base} BTC at {done.average_price}, "
          f"fees {fees}")

    # 3. An order that breaks a trading rule never reaches the venue: it fails at once.
    cid = conn.sell(PAIR, Decimal("0.00000001"), OrderType.LIMIT, price=ask)
    failed = (await events_until(events, OrderFailed, cid))[cid][-1]
    assert isinstance(failed, OrderFailed)
    print(f"refused locally: {failed.reason}")

    # 4. Two resting orders, then cancel_all: one result per order.
    ids = {
        conn.buy(PAIR, AMOUNT, OrderType.LIMIT_MAKER, price=bid * Decimal("0.9")),
        conn.sell(PAIR, AMOUNT, OrderType.LIMIT_MAKER, price=ask * Decimal("1.1")),
    }
    await events_until(events, OrderCreated, *ids)
    results = await conn.cancel_all(timeout=10)
    assert {r.client_order_id for r in results} == ids
    assert all(r.outcome is CancelOutcome.CANCELLED for r in results), results
    print("cancel_all: " + ", ".join(f"{r.client_order_id} {r.outcome}" for r in results))


async def main() -> int:
    async with marketlink.Sandbox(marketlink.SandboxConfig(seed=7)) as sandbox:
        # No keys: with sandbox= the connector trades on the sandbox's funded demo account.
        async with marketlink.connect("binance", [PAIR, "ETH-USDT"], sandbox=sandbox) as conn:
            print(f"connected to {conn.name}, ready: {conn.ready}")
            show_market(conn)
            btc, usdt = conn.total_balance("BTC"), conn.available_balance("USDT")
            print(f"balances: {btc} BTC, {usdt} USDT available")
            async with conn.bus.subscribe() as events:  # every event from now on, in order
                await trade(conn, events)
            # Our local accounting against the exchange's own ledger, after a fresh snapshot.
            await conn.refresh_balances()
            truth = {b.asset: b.free + b.locked for b in sandbox.exchange.balances("demo")}
            mine = {asset: conn.total_balance(asset) for asset in ("BTC", "ETH", "USDT")}
            agree = all(mine[a] == truth.get(a, Decimal(0)) for a in mine)
            print(f"balances {', '.join(f'{v} {a}' for a, v in mine.items())}: "
                  f"{'agree' if agree else 'DISAGREE'} with the exchange")
        print("connector stopped")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
