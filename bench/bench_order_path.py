"""Order path latency: from ``connector.buy()`` to the signed request handed to the socket.

Run (not part of CI):  python bench/bench_order_path.py [--orders 5000] [--runs 5]

Everything real except the socket: the Binance Spot venue (codec, HMAC signing, its rate limits
in the throttler), the ``SpotConnector`` with its order manager, tracker, budget check and
balances, and the ``HttpClient``. The aiohttp session is replaced by one that records the moment
``session.request(...)`` is called with the final method, URL (query and signature included) and
headers, and answers at once with a Binance ``FULL`` acknowledgement, so each order is also
acknowledged and tracked as it would be live (the tracker and balances grow as they would).

Measured per order: ``buy()`` call -> ``session.request`` (the send), and ``buy()`` -> its
``OrderCreated`` event (the whole round trip minus the network). Orders go one at a time, so no
order waits behind another. The throttler runs on a clock sped up 10,000 times: Binance allows
50 orders per 10 s, and a faithful throttler would (rightly) hold the 51st order for seconds;
this measures the path, not the venue's limits. Reported: median and p99 over all orders of a
run, then the median of those over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType
from marketlink.core.events import Event, OrderCreated
from marketlink.core.market import Balance, BalanceUpdate
from marketlink.core.pairs import SymbolMap
from marketlink.core.rules import TradingRule
from marketlink.engine.connector import SpotConnector
from marketlink.engine.context import ConnectorConfig
from marketlink.net import jsoncodec
from marketlink.venues.binance import VENUE, local_endpoints

PAIR = "BTC-USDT"
SYMBOL = "BTCUSDT"
SPEEDUP = 10_000.0


class FastClock:
    """Monotonic time sped up, so rate-limit windows pass between orders."""

    def time(self) -> float:
        return time.monotonic() * SPEEDUP

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / SPEEDUP)


class _Response:
    status = 200

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.headers: Mapping[str, str] = {"Content-Type": "application/json"}

    @property
    def content_length(self) -> int:
        return len(self._body)

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class CapturingSession:
    """Stands in for ``aiohttp.ClientSession``: notes when each request is handed over."""

    def __init__(self) -> None:
        self.sent_at: dict[str, int] = {}
        self.order_id = 0
        self.last_url = ""

    def request(self, method: str, url: Any, *, data: Any = None, headers: Any = None,
                allow_redirects: bool = True) -> _Response:
        now = time.perf_counter_ns()
        text = str(url)
        self.last_url = text
        cid = text.split("newClientOrderId=", 1)[1].split("&", 1)[0]
        self.sent_at[cid] = now
        self.order_id += 1
        body = {
            "symbol": SYMBOL, "orderId": self.order_id, "orderListId": -1, "clientOrderId": cid,
            "transactTime": int(time.time() * 1000), "price": "50000.00", "origQty": "0.00100",
            "executedQty": "0.00000", "origQuoteOrderQty": "0.00000", "cummulativeQuoteQty": "0.00000",
            "status": "NEW", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY",
            "workingTime": int(time.time() * 1000), "selfTradePreventionMode": "EXPIRE_MAKER", "fills": [],
        }
        return _Response(jsoncodec.encode(body))

    async def close(self) -> None:
        return None


def build() -> tuple[SpotConnector, CapturingSession]:
    conn = SpotConnector(
        VENUE, [PAIR], Credentials("k" * 64, "s" * 64), endpoints=local_endpoints("http://127.0.0.1:9"),
        config=ConnectorConfig(seed=1), clock=FastClock(),  # type: ignore[arg-type]
    )
    session = CapturingSession()
    conn.ctx.http._session = session  # type: ignore[assignment]  # the one substitution
    ctx = conn.ctx
    ctx.markets.symbols = SymbolMap(VENUE.name, [(SYMBOL, PAIR)])
    ctx.markets.rules = {PAIR: TradingRule(
        PAIR, tick_size=Decimal("0.01"), step_size=Decimal("0.00001"), min_order_size=Decimal("0.00001"),
        min_notional=Decimal("5"),
    )}
    plenty = Decimal(10**12)
    ctx.balances.apply(BalanceUpdate(
        (Balance("BTC", Decimal(10), Decimal(10)), Balance("USDT", plenty, plenty)), 0.0, True,
    ))
    return conn, session


async def one_run(n: int) -> tuple[list[int], list[int]]:
    conn, session = build()
    created: dict[str, int] = {}
    done = asyncio.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, OrderCreated):
            created[event.client_order_id] = time.perf_counter_ns()
            done.set()

    conn.bus.subscribe_callback(on_event)
    to_send: list[int] = []
    to_created: list[int] = []
    for _ in range(200):  # warm-up: caches, first-call costs
        done.clear()
        conn.buy(PAIR, Decimal("0.001"), OrderType.LIMIT, Decimal("50000"))
        await done.wait()
    gc.collect()
    for _ in range(n):
        done.clear()
        start = time.perf_counter_ns()
        cid = conn.buy(PAIR, Decimal("0.001"), OrderType.LIMIT, Decimal("50000"))
        await done.wait()
        to_send.append(session.sent_at[cid] - start)
        to_created.append(created[cid] - start)
    assert "signature=" in session.last_url and len(conn.in_flight_orders()) == n + 200
    await conn.orders.stop()
    return to_send, to_created


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {"buy -> send": [], "buy -> OrderCreated": []}
    for _ in range(args.runs):
        send, created = await one_run(args.orders)
        rows["buy -> send"].append((pct(send, 0.5), pct(send, 0.99)))
        rows["buy -> OrderCreated"].append((pct(created, 0.5), pct(created, 0.99)))
    print(f"order path, {args.orders} orders x {args.runs} runs (µs; median of the runs' figures)")
    for name, figures in rows.items():
        med = statistics.median(f[0] for f in figures)
        p99 = statistics.median(f[1] for f in figures)
        print(f"  {name:22s} median {med:8.1f}   p99 {p99:8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
