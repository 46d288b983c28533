"""Sandbox throughput: REST requests served (order place + cancel) and depth messages streamed.

Run (not part of CI):  python bench/bench_sandbox.py [--runs 5] [--requests 6000] [--connections 32]
                       [--symbols 200] [--rounds 100]

The sandbox runs in its own process (one core), the load generator in this one (the other
core), so the client's work is not billed to the server. Both sides talk over 127.0.0.1.

REST. The Binance front-end of a real ``Sandbox`` (flow off, rate limits raised so nothing is
refused) serves ``--connections`` keep-alive connections, each sending one request at a time:
``POST /api/v3/order`` (a LIMIT buy far below the market, so it rests; FULL response) then
``DELETE /api/v3/order`` by its ``origClientOrderId``, alternating. Every request is signed with
HMAC-SHA256 as Binance requires, and the sandbox verifies it. The client is a minimal HTTP/1.1
writer/reader on asyncio streams with the requests built and signed before the clock starts,
so the client is cheap and the server is the bottleneck. Each answer must be 200 with the
expected order status, and no order may be left open after a run. The baseline: a bare aiohttp
handler returning ``{}`` installed in the same application on the same server, driven by the
same client with the same concurrency (the cost of aiohttp's HTTP stack alone).

Streaming. One client subscribes ``<symbol>@depth@100ms`` for ``--symbols`` markets on one
combined connection (``/stream?streams=...``). Each round, the server changes every book once
directly on the exchange engine (a resting order added or removed), then runs one sandbox tick:
the front-end drains the diffs, encodes one ``depthUpdate`` per symbol, wraps it for the
combined stream and queues it on the socket, whose writer sends it. The client checks every
message's ``U == previous u + 1`` per symbol and stops the clock at the last one. A second
figure from the same runs takes the server's time in the engine's order operations out (timed
around them on the server), leaving the front-end's streaming path alone. The baseline:
the very frames the client received, sent again from a bare aiohttp WebSocket handler on the
same server with the same ``send_frame`` call the sandbox's writer uses (the cost of aiohttp's
WebSocket sending alone).

Reported: the median over ``--runs`` runs (sandbox and baseline runs alternate, so both see the
same machine load) of requests per second and messages per second, and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import WSMsgType, web

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.context import SandboxContext
from marketlink.sandbox.server import Sandbox
from marketlink.sandbox.venues.binance import BinanceSpotFrontend

API_KEY = "benchKey0001"
API_SECRET = "benchSecret0001"
REST_SYMBOL = "BTCUSDT"
HUGE = 10**12
UNLIMITED = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": HUGE},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": HUGE},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": HUGE},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": HUGE},
]
OPEN_PER_BOOK = 6  # resting bench orders per streamed book; rounds alternate add and remove around it


# -- server process ------------------------------------------------------------------------------------


class BenchFrontend:
    """The baselines, served by the sandbox's own aiohttp application."""

    name = "bench"

    def __init__(self, ctx: SandboxContext) -> None:
        self.frames: list[bytes] = []
        self.raw: web.WebSocketResponse | None = None
        self.raw_connected = asyncio.Event()

    def install(self, app: web.Application) -> None:
        app.router.add_get("/bench/empty", self._empty)
        app.router.add_get("/bench/raw", self._raw_socket)

    async def _empty(self, request: web.Request) -> web.Response:
        return web.Response(body=b"{}", content_type="application/json")

    async def _raw_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, compress=False)
        await ws.prepare(request)
        self.raw = ws
        self.raw_connected.set()
        async for _ in ws:
            pass
        return ws

    async def send_frames(self) -> None:
        assert self.raw is not None
        send = self.raw.send_frame
        for frame in self.frames:
            await send(frame, WSMsgType.TEXT)

    async def on_tick(self, now_ms: int) -> None:
        return None

    async def close(self) -> None:
        if self.raw is not None:
            await self.raw.close()


def stream_markets(n: int) -> tuple[str, ...]:
    return tuple(f"S{i:03d}-USDT" for i in range(n))


class BookChanger:
    """Changes every streamed book once per round on the engine itself (seeded, exact)."""

    def __init__(self, sb: Sandbox, seed: int) -> None:
        self.sb = sb
        self.rng = random.Random(seed)
        self.account = sb.demo_credentials.account
        self.books: list[tuple[str, list[Decimal], Decimal]] = []
        for setup in sb.markets:
            if setup.symbol == REST_SYMBOL:
                continue
            spec = setup.spec
            prices = [
                (setup.initial_price * (1 - Decimal(k) / 200)).quantize(spec.tick_size) for k in range(1, 21)
            ]
            qty = (spec.min_notional * 3 / prices[-1] // spec.step_size + 1) * spec.step_size
            self.books.append((spec.symbol, prices, qty))
        self.resting: dict[str, list[int]] = {symbol: [] for symbol, _, _ in self.books}

    def change_all(self, now_ms: int) -> None:
        ex = self.sb.exchange
        for symbol, prices, qty in self.books:
            orders = self.resting[symbol]
            if len(orders) >= OPEN_PER_BOOK and (len(orders) > 2 * OPEN_PER_BOOK or self.rng.random() < 0.5):
                ex.cancel_order(self.account, symbol, order_id=orders.pop(0), now_ms=now_ms)
            else:
                result = ex.place_order(
                    self.account, symbol, Side.BUY, OrderType.LIMIT, quantity=qty,
                    price=self.rng.choice(prices), time_in_force=TimeInForce.GTC, now_ms=now_ms,
                )
                orders.append(result.order.order_id)


async def serve(conn: Connection, n_symbols: int, seed: int) -> None:
    bench: list[BenchFrontend] = []

    def make_bench(ctx: SandboxContext) -> BenchFrontend:
        bench.append(BenchFrontend(ctx))
        return bench[0]

    config = SandboxConfig(
        markets=("BTC-USDT", *stream_markets(n_symbols)),
        flow=False,
        api_key=API_KEY,
        api_secret=API_SECRET,
        demo_balances={"USDT": "1000000000000"},
        venue_options={"binance": {"rate_limits": UNLIMITED}},
    )
    loop = asyncio.get_running_loop()
    async with Sandbox(config, frontends=[BinanceSpotFrontend, make_bench], autotick=False) as sb:
        changer = BookChanger(sb, seed)
        conn.send(("ready", sb.base_url, sb.ws_url))
        while True:
            command, arg = await loop.run_in_executor(None, conn.recv)
            if command == "stream":
                engine_s = 0.0
                for _ in range(arg):
                    now = sb.context.clock.now_ms()
                    t0 = time.perf_counter()
                    changer.change_all(now)
                    engine_s += time.perf_counter() - t0
                    await sb.tick(now)
                    await asyncio.sleep(0)  # let the socket's writer send this round
                conn.send(("done", engine_s))
            elif command == "frames":
                bench[0].frames = arg
                conn.send(("done", None))
            elif command == "raw":
                await bench[0].raw_connected.wait()
                await bench[0].send_frames()
                conn.send(("done", None))
            elif command == "health":
                conn.send(("done", sb.health()))
            else:
                conn.send(("done", None))
                return


def server_main(conn: Connection, n_symbols: int, seed: int) -> None:
    asyncio.run(serve(conn, n_symbols, seed))


class ServerProcess:
    def __init__(self, n_symbols: int, seed: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=server_main, args=(child, n_symbols, seed), daemon=True)
        self.process.start()
        reply, self.base_url, self.ws_url = self.conn.recv()
        assert reply == "ready"
        host_port = self.base_url.removeprefix("http://")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)

    async def command(self, name: str, arg: object = None) -> Any:
        self.conn.send((name, arg))
        reply, value = await asyncio.get_running_loop().run_in_executor(None, self.conn.recv)
        assert reply == "done"
        return value

    def stop(self) -> None:
        self.conn.send(("stop", None))
        self.conn.recv()
        self.process.join(timeout=10)


# -- REST load ------------------------------------------------------------------------------------------


def signed_request(method: str, path: str, params: list[tuple[str, str]], host: str) -> bytes:
    query = urlencode(params)
    signature = hmac.new(API_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    return (
        f"{method} {path}?{query}&signature={signature} HTTP/1.1\r\nHost: {host}\r\n"
        f"X-MBX-APIKEY: {API_KEY}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def order_requests(conn_id: int, pairs: int, host: str, run: int) -> list[tuple[bytes, bytes]]:
    """(request, what the answer must contain) for ``pairs`` place+cancel pairs of one connection."""
    ts = str(time.time_ns() // 1_000_000)
    out: list[tuple[bytes, bytes]] = []
    for i in range(pairs):
        cid = f"r{run}c{conn_id}n{i}"
        place = [
            ("symbol", REST_SYMBOL), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
            ("quantity", "0.00100"), ("price", "30000.00"), ("newClientOrderId", cid),
            ("recvWindow", "60000"), ("timestamp", ts),
        ]
        cancel = [
            ("symbol", REST_SYMBOL), ("origClientOrderId", cid), ("recvWindow", "60000"), ("timestamp", ts),
        ]
        out.append((signed_request("POST", "/api/v3/order", place, host), b'"status":"NEW"'))
        out.append((signed_request("DELETE", "/api/v3/order", cancel, host), b'"status":"CANCELED"'))
    return out


async def drive(host: str, port: int, scripts: list[list[tuple[bytes, bytes]]]) -> float:
    """Play each script on its own keep-alive connection; return the wall time of the whole."""
    streams = [await asyncio.open_connection(host, port) for _ in scripts]

    async def play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: list[Any]) -> None:
        for request, expect in script:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            start = head.find(b"Content-Length: ") + 16
            body = await reader.readexactly(int(head[start:head.find(b"\r\n", start)]))
            if head[9:12] != b"200" or expect not in body:
                raise AssertionError(f"unexpected answer: {head[:12]!r} {body[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(play(r, w, s) for (r, w), s in zip(streams, scripts, strict=True)))
    elapsed = time.perf_counter() - t0
    for _, writer in streams:
        writer.close()
    return elapsed


async def rest_run(server: ServerProcess, requests: int, connections: int, run: int) -> tuple[float, float]:
    host = f"{server.host}:{server.port}"
    pairs = max(1, requests // connections // 2)
    scripts = [order_requests(c, pairs, host, run) for c in range(connections)]
    sandbox_rate = pairs * 2 * connections / await drive(server.host, server.port, scripts)
    empty = f"GET /bench/empty HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    baseline = [[(empty, b"{}")] * (pairs * 2) for _ in range(connections)]
    baseline_rate = pairs * 2 * connections / await drive(server.host, server.port, baseline)
    return sandbox_rate, baseline_rate


async def assert_no_open_orders(server: ServerProcess) -> None:
    host = f"{server.host}:{server.port}"
    ts = str(time.time_ns() // 1_000_000)
    request = signed_request("GET", "/api/v3/openOrders", [("symbol", REST_SYMBOL), ("timestamp", ts)], host)
    await drive(server.host, server.port, [[(request, b"[]")]])


# -- streaming load --------------------------------------------------------------------------------------


class DepthClient:
    """One combined-stream connection; counts frames and checks each symbol's id sequence."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.last_u: dict[str, int] = {}
        self.frames: list[bytes] = []

    async def receive(self, count: int, *, check: bool, keep: bool) -> None:
        parse = orjson.loads
        last_u = self.last_u
        for _ in range(count):
            msg = await self.ws.receive()
            if msg.type is not WSMsgType.TEXT:
                raise AssertionError(f"stream ended: {msg.type} {msg.data!r}")
            if keep:
                self.frames.append(msg.data.encode())
            if check:
                data = parse(msg.data)["data"]
                symbol = data["s"]
                previous = last_u.get(symbol)
                if previous is not None and data["U"] != previous + 1:
                    raise AssertionError(f"{symbol}: U={data['U']} after u={previous}")
                last_u[symbol] = data["u"]


async def stream_runs(
    server: ServerProcess, args: argparse.Namespace
) -> tuple[list[float], list[float], list[float]]:
    symbols = [m.replace("-", "").lower() for m in stream_markets(args.symbols)]
    names = "/".join(f"{s}@depth@100ms" for s in symbols)
    expected = args.rounds * args.symbols
    sandbox_rates: list[float] = []
    path_rates: list[float] = []  # the same runs, the engine's book changes taken out
    baseline_rates: list[float] = []
    async with aiohttp.ClientSession() as http:
        depth = DepthClient(await http.ws_connect(f"{server.ws_url}/stream?streams={names}", max_msg_size=0))
        raw = DepthClient(await http.ws_connect(f"{server.ws_url}/bench/raw", max_msg_size=0))
        await depth_warmup(server, depth, args)
        for run in range(args.runs):
            t0 = time.perf_counter()
            done = asyncio.ensure_future(server.command("stream", args.rounds))
            await depth.receive(expected, check=True, keep=run == 0)
            elapsed = time.perf_counter() - t0
            engine_s = await done
            sandbox_rates.append(expected / elapsed)
            path_rates.append(expected / (elapsed - engine_s))
            if run == 0:
                await server.command("frames", depth.frames)
            t0 = time.perf_counter()
            done = asyncio.ensure_future(server.command("raw"))
            await raw.receive(expected, check=False, keep=False)
            baseline_rates.append(expected / (time.perf_counter() - t0))
            await done
        await depth.ws.close()
        await raw.ws.close()
    return sandbox_rates, path_rates, baseline_rates


async def depth_warmup(server: ServerProcess, depth: DepthClient, args: argparse.Namespace) -> None:
    """Fill every book to its working depth first, so timed rounds add and remove alike."""
    rounds = OPEN_PER_BOOK
    await asyncio.gather(
        server.command("stream", rounds), depth.receive(rounds * args.symbols, check=True, keep=False)
    )


# -- main -----------------------------------------------------------------------------------------------


def fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}/s"


def report(title: str, rows: list[tuple[str, list[float]]], target: float) -> None:
    """``rows``: (contender, per-run rates); the last one is the baseline."""
    base = statistics.median(rows[-1][1])
    print(f"\n{title} (target >= {target:,.0f}/s)")
    print(f"  {'contender':<50}{'median':>12}{'runs (min .. max)':>26}{'vs baseline':>13}{'target':>8}")
    for i, (name, rates) in enumerate(rows):
        median = statistics.median(rates)
        spread = f"{fmt_rate(min(rates))} .. {fmt_rate(max(rates))}"
        met = "" if i == len(rows) - 1 else ("met" if median >= target else "missed")
        print(f"  {name:<50}{fmt_rate(median):>12}{spread:>26}{median / base:>12.2f}x{met:>8}")


async def bench(args: argparse.Namespace) -> None:
    server = ServerProcess(args.symbols, args.seed)
    try:
        rest_sandbox: list[float] = []
        rest_baseline: list[float] = []
        await rest_run(server, min(args.requests, 2_000), args.connections, -1)  # warm-up
        for run in range(args.runs):
            s, b = await rest_run(server, args.requests, args.connections, run)
            rest_sandbox.append(s)
            rest_baseline.append(b)
        await assert_no_open_orders(server)
        stream_sandbox, stream_path, stream_baseline = await stream_runs(server, args)
        health = await server.command("health")
        errors = health["errors"]
        assert errors == {"flow": 0, "frontend": 0, "listener": 0}, errors
    finally:
        server.stop()
    report(
        f"REST: requests/s served, {args.connections} connections, {args.requests} per run",
        [
            ("sandbox: signed POST + DELETE /api/v3/order", rest_sandbox),
            ("baseline: bare aiohttp handler returning {}", rest_baseline),
        ],
        2_000,
    )
    report(
        f"Streaming: depthUpdate messages/s to one client, {args.symbols} symbols x {args.rounds} rounds",
        [
            ("sandbox: engine book change + tick + stream", stream_sandbox),
            ("sandbox: the same runs, engine time taken out", stream_path),
            ("baseline: raw send_frame of the same frames", stream_baseline),
        ],
        20_000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=6_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.runs < 1 or args.connections < 1 or args.symbols < 1 or args.rounds < 1:
        parser.error("--runs, --connections, --symbols and --rounds must be positive")
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"median of {args.runs} runs")
    asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
