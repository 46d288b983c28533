"""The interim main job: the Binance connector trading on the embedded sandbox.

Until the strategy framework lands (it brings pure market making as the real main job), this runs
everything that exists end to end, over real sockets on 127.0.0.1: the sandbox exchange with its
market flow speaking Binance's protocol, and marketlink's ``SpotConnector`` with the Binance
codec on the demo account. It keeps one small bid and one small ask at the top of the book,
re-quotes whichever fills, shows the live book, balances and orders, then cancels everything
and prints a summary. Exit status 1 if the connector's balances disagree with the exchange's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType, Side
from marketlink.core.events import Event, OrderCompleted, OrderCreated, OrderFailed, OrderFilled
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox
from marketlink.venues.binance import VENUE, local_endpoints

PAIR = "BTC-USDT"
AMOUNT = Decimal("0.01")


@dataclass
class Tally:
    created: int = 0
    fills: int = 0
    completed: int = 0
    failed: int = 0
    volume_base: Decimal = Decimal(0)
    volume_quote: Decimal = Decimal(0)
    fees: dict[str, Decimal] = field(default_factory=dict)

    def on_event(self, event: Event) -> None:
        if isinstance(event, OrderCreated):
            self.created += 1
        elif isinstance(event, OrderFilled):
            self.fills += 1
            self.volume_base += event.amount
            self.volume_quote += event.quote_amount
            for fee in event.fee_amounts:
                self.fees[fee.token] = self.fees.get(fee.token, Decimal(0)) + fee.amount
        elif isinstance(event, OrderCompleted):
            self.completed += 1
        elif isinstance(event, OrderFailed):
            self.failed += 1


def _quote(conn: SpotConnector) -> None:
    """Keep one bid at the best bid and one ask at the best ask."""
    sides = {o.side for o in conn.in_flight_orders().values()}
    bid, ask = conn.best_bid(PAIR), conn.best_ask(PAIR)
    if Side.BUY not in sides and bid is not None:
        conn.buy(PAIR, AMOUNT, OrderType.LIMIT_MAKER, bid)
    if Side.SELL not in sides and ask is not None:
        conn.sell(PAIR, AMOUNT, OrderType.LIMIT_MAKER, ask)


def _view(conn: SpotConnector, tally: Tally, elapsed: float) -> Group:
    book = Table(title=f"{PAIR} on the sandbox ({elapsed:.0f}s)")
    for col in ("bid size", "bid", "ask", "ask size"):
        book.add_column(col, justify="right")
    for (bp, bq), (ap, aq) in zip(conn.book_rows(PAIR, Side.BUY, 5), conn.book_rows(PAIR, Side.SELL, 5),
                                  strict=False):
        book.add_row(str(bq), f"[green]{bp}[/]", f"[red]{ap}[/]", str(aq))
    orders = Table(title="our orders")
    for col in ("id", "side", "price", "amount", "state"):
        orders.add_column(col)
    for o in conn.in_flight_orders().values():
        orders.add_row(o.client_order_id, o.side.value, str(o.price), str(o.amount), o.state.value)
    bal = conn.balances()
    summary = (
        f"BTC {bal['BTC'].total if 'BTC' in bal else 0} · USDT {bal['USDT'].total if 'USDT' in bal else 0} · "
        f"created {tally.created} · fills {tally.fills} · completed {tally.completed}"
    )
    return Group(book, orders, summary)


async def run_async(duration: float, seed: int, console: Console) -> int:
    async with Sandbox(SandboxConfig(seed=seed)) as sb:
        creds = Credentials(sb.demo_credentials.api_key, sb.demo_credentials.api_secret)
        conn = SpotConnector(VENUE, [PAIR], creds, endpoints=local_endpoints(sb.base_url),
                             config=ConnectorConfig(client_id_prefix="mlrun", seed=seed))
        tally = Tally()
        conn.bus.subscribe_callback(tally.on_event)
        await conn.start(timeout=30)
        start_balances = {a: b.total for a, b in conn.balances().items()}
        console.print(f"interim main job: Binance connector on the sandbox at {sb.base_url} (demo account)")
        live = Live(console=console, refresh_per_second=4) if console.is_terminal else None
        t0 = time.monotonic()
        last_line = 0.0
        try:
            if live is not None:
                live.start()
            while (elapsed := time.monotonic() - t0) < duration:
                if conn.ready:
                    _quote(conn)
                if live is not None:
                    live.update(_view(conn, tally, elapsed))
                elif elapsed - last_line >= 1.0:
                    last_line = elapsed
                    console.print(
                        f"t={elapsed:5.1f}s bid={conn.best_bid(PAIR)} ask={conn.best_ask(PAIR)} "
                        f"orders={len(conn.in_flight_orders())} fills={tally.fills}"
                    )
                await asyncio.sleep(0.25)
        finally:
            if live is not None:
                live.stop()
            results = await conn.stop(cancel_orders=True, timeout=10)
        truth = {b.asset: b.free + b.locked for b in sb.exchange.balances(sb.demo_credentials.account)}
        mine = {a: b.total for a, b in conn.balances().items()}
        agree = all(mine.get(a, Decimal(0)) == truth.get(a, Decimal(0)) for a in ("BTC", "USDT"))
        console.print(
            f"done: {tally.created} orders created, {tally.fills} fills, {tally.completed} completed, "
            f"{tally.failed} failed, {len(results)} cancelled at stop; volume {tally.volume_base} BTC / "
            f"{tally.volume_quote} USDT; fees {_fees(tally)}"
        )
        for asset in ("BTC", "USDT"):
            before, after = start_balances.get(asset), mine.get(asset)
            console.print(f"  {asset}: {before} -> {after} (exchange {truth.get(asset)})")
        console.print("balances agree with the exchange" if agree else "balances DISAGREE with the exchange")
        return 0 if agree else 1


def _fees(tally: Tally) -> str:
    return ", ".join(f"{v} {k}" for k, v in tally.fees.items()) or "none"


def run_demo(duration: float, seed: int, *, console: Console | None = None) -> int:
    try:
        return asyncio.run(run_async(duration, seed, console or Console()))
    except KeyboardInterrupt:
        return 130
