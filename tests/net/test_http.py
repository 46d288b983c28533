"""HttpClient against a real aiohttp server on 127.0.0.1: encoding, signing, errors, retries."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from marketlink.core.errors import ConfigError
from marketlink.net import jsoncodec
from marketlink.net.clock import VirtualClock
from marketlink.net.errors import (
    ClockSkew,
    ConnectionFailed,
    IpBanned,
    MalformedMessage,
    OrderRateLimited,
    RateLimited,
    Rejected,
    RequestTimeout,
    ServerError,
    Transient,
    VenueError,
)
from marketlink.net.http import (
    MAX_BODY,
    HttpClient,
    PreparedRequest,
    RestRequest,
    TimedAnswer,
    encode_query,
    prepare_unsigned,
    retry_after_seconds,
)
from marketlink.net.throttler import Cost, RateLimit, Usage, Window
from marketlink.net.timesync import monotonic_ms

SECRET_KEY = "k3y-DO-NOT-LOG"
WEIGHT = (Cost("weight", 1),)


# -- the venue side: a tiny codec, an auth, and a server -------------------------------------


class FakeVenue:
    """Classifies like a Binance/Bybit mix: status codes, ``code`` bodies, and ``retCode`` in 200s."""

    def __init__(self) -> None:
        self.broken = False
        self.usage_id = "weight"

    def classify_error(self, status: int, headers: Mapping[str, str], payload: Any) -> VenueError | None:
        if self.broken:
            raise KeyError("codec bug")
        if status == 429 and isinstance(payload, dict) and payload.get("code") == -1015:
            return OrderRateLimited("too many orders", code=-1015)
        if status == 429:
            return RateLimited("too much weight", code=-1003)
        if status == 418:
            return IpBanned("banned", code=-1003)
        if isinstance(payload, dict):
            if payload.get("retCode", 0) != 0:
                return Rejected(str(payload.get("retMsg")), code=payload["retCode"])
            if payload.get("code") == -1021:
                return ClockSkew("outside recvWindow", code=-1021)
            if status == 400 and "code" in payload:
                return Rejected(str(payload.get("msg")), code=payload["code"])
        return None

    def usage_from_headers(self, headers: Mapping[str, str]) -> Sequence[Usage]:
        usages = []
        for header, limit_id, window in (
            ("X-Used-Weight", self.usage_id, None),
            ("X-Order-Count-10S", "orders", 10.0),
            ("X-Order-Count-1D", "orders", 86400.0),
        ):
            used = headers.get(header)
            if used is not None:
                usages.append(Usage(limit_id, int(used), window))
        return usages


class FakeAuth:
    """Appends timestamp and a fake signature to the query, as Binance does, and a key header."""

    def __init__(self) -> None:
        self.timestamps: list[int] = []

    def sign(self, request: RestRequest, timestamp_ms: int) -> PreparedRequest:
        self.timestamps.append(timestamp_ms)
        query = encode_query({**(request.params or {}), "timestamp": timestamp_ms})
        query += f"&signature=sig{timestamp_ms}"
        return PreparedRequest(request.method, f"{request.path}?{query}", None, {"X-KEY": SECRET_KEY})


class Venue:
    """The server: every route counts its hits; behaviour is chosen by path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.release = asyncio.Event()  # /slow answers only once the test is over
        self.ban_gate = asyncio.Event()  # /slowban answers 418 once the test opens this
        self.fail_first = 0
        app = web.Application()
        app.router.add_route("*", "/{name}", self.handle)
        self.app = app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        if name == "echo":
            body = await request.text()
            return web.json_response({
                "method": request.method, "query": request.raw_path.partition("?")[2], "body": body,
                "type": request.headers.get("Content-Type"), "key": request.headers.get("X-KEY"),
            })
        if name == "flaky":
            if self.hits[name] <= self.fail_first:
                return web.Response(status=503, text="busy")
            return web.json_response({"ok": True})
        if name == "slow":
            await self.release.wait()
            return web.json_response({})
        if name == "drop":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0)
            return web.Response()
        if name == "html502":
            return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")
        if name == "garbage":
            return web.Response(status=200, text="not json at all")
        if name == "empty":
            return web.json_response({})
        if name == "numbers":
            return web.Response(status=200, text='{"price":0.1,"qty":"2.50","n":3}')
        if name == "ordercount":
            return web.json_response({"code": -1015}, status=429, headers={"Retry-After": "9"})
        if name == "ratelimit":
            return web.json_response({"code": -1003}, status=429, headers={"Retry-After": "7"})
        if name == "ban":
            return web.json_response({"code": -1003}, status=418, headers={"Retry-After": "120"})
        if name == "slowban":
            await self.ban_gate.wait()
            return web.json_response({"code": -1003}, status=418, headers={"Retry-After": "120"})
        if name == "orders":
            return web.json_response(
                {"ok": 1}, headers={"X-Order-Count-10S": "48", "X-Order-Count-1D": "1000"},
            )
        if name == "retcode":
            return web.json_response({"retCode": 10001, "retMsg": "params error", "result": {}})
        if name == "skew":
            return web.json_response({"code": -1021, "msg": "Timestamp outside"}, status=400)
        if name == "reject":
            return web.json_response({"code": -2010, "msg": "insufficient balance"}, status=400)
        if name == "notfound":
            return web.json_response({"detail": "nope"}, status=404)
        if name == "usage":
            return web.json_response({"ok": 1}, headers={"X-Used-Weight": "1200"})
        if name == "moved":  # the Location carries our signed query back: it must not be shown
            return web.Response(status=302, headers={"Location": f"https://elsewhere.example{request.path_qs}"})
        if name == "moved-json":
            return web.json_response({"orderId": 1}, status=307, headers={"Location": "/elsewhere"})
        if name == "nocontent":
            return web.Response(status=204)
        if name == "nobody":
            return web.Response(status=200)
        if name == "echo-error":  # a gateway that echoes the request in its error text
            key, sign = request.headers.get("X-KEY"), request.headers.get("X-SIGN")
            sig = request.query.get("signature")
            text = f"bad request {request.raw_path} sig={sig} key={key} sign={sign}"
            return web.json_response({"code": -1, "msg": text}, status=400)
        return web.Response(status=500)


@pytest.fixture
async def venue(serve: Any) -> AsyncIterator[tuple[Venue, str]]:
    v = Venue()
    server = await serve(v.app)
    yield v, server.http_url
    v.release.set()
    v.ban_gate.set()


class MakeClient:
    """``make(url, **kw)`` builds a client on the test's virtual clock and a spying throttler."""

    def __init__(self, clock: VirtualClock, spy_throttler: Any) -> None:
        self.clock = clock
        self.spy_throttler = spy_throttler

    def __call__(
        self, base_url: str, *, limits: list[RateLimit] | None = None, **kw: Any
    ) -> tuple[HttpClient, Any]:
        spy = self.spy_throttler(limits or [RateLimit.simple("weight", 6000, 60.0)])
        kw.setdefault("venue", FakeVenue())
        return HttpClient(base_url, throttler=spy, clock=self.clock, **kw), spy


@pytest.fixture
def make(clock: VirtualClock, spy_throttler: Any) -> MakeClient:
    return MakeClient(clock, spy_throttler)


def get(path: str, **kw: Any) -> RestRequest:
    return RestRequest("GET", path, costs=WEIGHT, **kw)


def post(path: str, **kw: Any) -> RestRequest:
    return RestRequest("POST", path, costs=WEIGHT, is_order=True, **kw)


# -- pure pieces ------------------------------------------------------------------------------


def test_query_encoding_is_exact_and_ordered() -> None:
    query = encode_query({
        "symbol": "BTCUSDT", "price": Decimal("0.00000001"), "qty": Decimal("1E+1"), "post": True,
        "reduce": False, "limit": 5, "skip": None, "note": "a b/c&d",
    })
    assert query == "symbol=BTCUSDT&price=0.00000001&qty=10&post=true&reduce=false&limit=5&note=a%20b%2Fc%26d"


@pytest.mark.parametrize("bad", [0.1, Decimal("NaN"), Decimal("Infinity"), ["x"]])
def test_query_refuses_floats_and_non_finite(bad: Any) -> None:
    with pytest.raises(ConfigError, match="price"):
        encode_query({"price": bad})


def test_prepare_unsigned_puts_params_in_query_and_body_as_json() -> None:
    body = {"qty": Decimal("1E-8"), "x": [Decimal("2")]}
    req = RestRequest("POST", "/v5/order/create", params={"a": 1}, body=body)
    prepared = prepare_unsigned(req)
    assert prepared.url_path_with_query == "/v5/order/create?a=1"
    assert prepared.body == b'{"qty":"0.00000001","x":["2"]}'
    assert prepared.headers == {"Content-Type": "application/json"}
    assert prepare_unsigned(RestRequest("GET", "/x")) == PreparedRequest("GET", "/x")


def test_json_reals_decode_to_decimal_never_float() -> None:
    assert jsoncodec.decode(b'{"p":0.1,"q":1e-8,"n":7,"s":"0.3"}') == {
        "p": Decimal("0.1"), "q": Decimal("1E-8"), "n": 7, "s": "0.3",
    }
    with pytest.raises(jsoncodec.JsonDecodeError):
        jsoncodec.decode(b"<html>")
    with pytest.raises(ValueError):
        jsoncodec.encode({"p": Decimal("NaN")})


def test_request_description_is_validated() -> None:
    with pytest.raises(ConfigError):
        RestRequest("PATCH", "/x")
    with pytest.raises(ConfigError):
        RestRequest("GET", "x")
    with pytest.raises(ConfigError):
        RestRequest("GET", "/x", timeout=0)
    assert RestRequest("GET", "/x").is_idempotent
    assert not RestRequest("DELETE", "/x").is_idempotent
    assert not RestRequest("POST", "/x").is_idempotent
    assert RestRequest("DELETE", "/x", idempotent=True).is_idempotent
    assert not RestRequest("GET", "/x", idempotent=False).is_idempotent


def test_client_configuration_is_validated(make: MakeClient) -> None:
    for url in ("ftp://x", "/relative", "http://"):
        with pytest.raises(ConfigError):
            make(url)
    with pytest.raises(ConfigError):
        make("http://127.0.0.1:1", timeout=0)
    with pytest.raises(ConfigError):
        make("http://127.0.0.1:1", retries=-1)


# -- success paths ----------------------------------------------------------------------------


async def test_get_sends_exact_query_and_decodes_json(venue: tuple[Venue, str], make: MakeClient) -> None:
    _, url = venue
    async with make(url)[0] as client:
        answer = await client.request(get("/echo", params={"symbol": "BTC-USDT", "px": Decimal("1.50")}))
        assert answer["method"] == "GET"
        assert answer["query"] == "symbol=BTC-USDT&px=1.50"
        assert await client.request(get("/numbers")) == {"price": Decimal("0.1"), "qty": "2.50", "n": 3}
        assert await client.request(get("/empty")) == {}
        assert client.stats.requests == 3
        assert client.stats.errors == Counter()


async def test_json_body_is_sent_with_plain_decimals(venue: tuple[Venue, str], make: MakeClient) -> None:
    _, url = venue
    async with make(url)[0] as client:
        answer = await client.request(post("/echo", body={"qty": Decimal("1E-8"), "side": "Buy"}))
    assert answer["body"] == '{"qty":"0.00000001","side":"Buy"}'
    assert answer["type"] == "application/json"


async def test_signed_query_reaches_the_server_byte_for_byte(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    _, url = venue
    auth = FakeAuth()
    async with make(url, auth=auth, time_ms=lambda: 1499827319559)[0] as client:
        answer = await client.request(get("/echo", params={"symbol": "１２３"}, signed=True))
    # Percent-encoded before signing; a client that re-encoded it would break the signature.
    assert answer["query"] == (
        "symbol=%EF%BC%91%EF%BC%92%EF%BC%93&timestamp=1499827319559&signature=sig1499827319559"
    )
    assert answer["key"] == SECRET_KEY
    assert auth.timestamps == [1499827319559]


async def test_signing_happens_after_the_throttler_wait(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    _, url = venue
    auth = FakeAuth()
    client, spy = make(
        url, auth=auth, time_ms=lambda: int(clock.time() * 1000),
        limits=[RateLimit.simple("weight", 1, 10.0)],
    )
    async with client:
        await client.request(get("/echo", signed=True))
        second = asyncio.create_task(client.request(get("/echo", signed=True)))
        await clock.wait_for_sleepers(1)  # queued in the throttler: the pool is full for 10 s
        assert auth.timestamps == [0]
        clock.advance(10.0)
        answer = await second
    # A timestamp taken before the wait would be 10 s stale, outside Binance's 5 s recvWindow.
    assert auth.timestamps == [0, 10000]
    assert "timestamp=10000&" in answer["query"]
    assert [c[0] for c in spy.calls] == ["acquire", "acquire"]


async def test_usage_headers_calibrate_the_throttler(venue: tuple[Venue, str], make: MakeClient) -> None:
    _, url = venue
    client, spy = make(url)
    async with client:
        assert await client.request(get("/usage")) == {"ok": 1}
    assert spy.feedback() == [("calibrate", "weight", 1200)]
    assert spy.real.usage()["weight"] == pytest.approx(0.2)


async def test_a_two_window_pool_is_calibrated_per_window_from_two_headers(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    _, url = venue
    orders = RateLimit("orders", (Window(50, 10.0), Window(160_000, 86400.0)))
    client, spy = make(url, limits=[RateLimit.simple("weight", 6000, 60.0), orders])
    async with client:
        assert await client.request(get("/orders")) == {"ok": 1}
        assert client.stats.errors["calibration"] == 0  # a count without its window is refused
    assert spy.feedback() == [("calibrate", "orders", 48), ("calibrate", "orders", 1000)]
    assert spy.real.usage()["orders"] == pytest.approx(48 / 50)  # the 10 s count, in the 10 s window
    clock.advance(10.0)
    assert spy.real.usage()["orders"] == pytest.approx(1000 / 160_000)  # the day count stays a day


async def test_a_calibration_bug_never_hides_the_answer(venue: tuple[Venue, str], make: MakeClient) -> None:
    _, url = venue
    codec = FakeVenue()
    codec.usage_id = "no-such-limit"  # the throttler refuses unknown ids with ConfigError
    async with make(url, venue=codec)[0] as client:
        assert await client.request(get("/usage")) == {"ok": 1}
        assert client.stats.errors["calibration"] == 1


async def test_one_bad_usage_count_does_not_keep_the_others_out(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    _, url = venue

    class Codec(FakeVenue):
        def usage_from_headers(self, headers: Mapping[str, str]) -> Sequence[Usage]:
            return [Usage("no-such-limit", 5), *super().usage_from_headers(headers)]

    client, spy = make(url, venue=Codec())
    async with client:
        assert await client.request(get("/usage")) == {"ok": 1}
        assert client.stats.errors["calibration"] == 1
    assert spy.real.usage()["weight"] == pytest.approx(0.2)


async def test_a_codec_failing_to_read_usage_never_hides_the_answer(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    _, url = venue

    class Codec(FakeVenue):
        def usage_from_headers(self, headers: Mapping[str, str]) -> Sequence[Usage]:
            raise ValueError("bad header")

    async with make(url, venue=Codec())[0] as client:
        assert await client.request(get("/usage")) == {"ok": 1}
        assert client.stats.errors["calibration"] == 1


# -- configuration errors are raised before anything is sent ---------------------------------


async def test_unknown_limit_id_and_missing_auth_fail_before_sending(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    server, url = venue
    async with make(url)[0] as client:
        with pytest.raises(ConfigError):
            await client.request(RestRequest("GET", "/echo", costs=(Cost("nope"),)))
        with pytest.raises(ConfigError, match="no auth"):
            await client.request(get("/echo", signed=True))
        with pytest.raises(ConfigError):
            await client.request(get("/echo", params={"price": 0.1}))  # type: ignore[dict-item]
    assert server.hits["echo"] == 0


# -- error classification ---------------------------------------------------------------------


async def test_venue_errors_inside_http_200_are_raised(venue: tuple[Venue, str], make: MakeClient) -> None:
    _, url = venue
    async with make(url)[0] as client:
        with pytest.raises(Rejected) as info:
            await client.request(get("/retcode"))
        assert info.value.code == 10001 and info.value.status == 200
        with pytest.raises(Rejected) as info:
            await client.request(post("/reject"))
        assert info.value.code == -2010 and info.value.status == 400
        assert client.stats.errors == Counter({"Rejected": 2})


async def test_429_backs_off_the_throttler_by_retry_after(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    server, url = venue
    client, spy = make(url)
    async with client:
        with pytest.raises(RateLimited) as info:
            await client.request(get("/ratelimit"))
        assert info.value.retry_after == 7.0
        assert spy.feedback() == [("back_off", 7.0)]
        assert server.hits["ratelimit"] == 1  # a rate limit is not retried by this layer
        # The back-off is real: the next request waits on the clock until it ends.
        nxt = asyncio.create_task(client.request(get("/empty")))
        await clock.wait_for_sleepers(1)
        assert clock.next_deadline == 7.0 and server.hits["empty"] == 0
        clock.advance(7.0)
        assert await nxt == {}


async def test_418_refuses_orders_at_once_and_holds_reads_until_the_ban_ends(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    server, url = venue
    client, spy = make(url)
    async with client:
        with pytest.raises(IpBanned) as info:
            await client.request(get("/ban"))
        assert info.value.retry_after == 120.0 and not info.value.local
        assert spy.feedback() == [("back_off", 120.0), ("ban", 120.0)]
        with pytest.raises(IpBanned) as info:
            await client.request(post("/echo"))
        assert info.value.local and info.value.until == 120.0  # on the throttler's clock
        read = asyncio.create_task(client.request(get("/empty")))
        await clock.wait_for_sleepers(1)
        assert clock.next_deadline == 120.0  # a read now would extend the ban: it waits it out
        clock.advance(120.0)
        assert await read == {}
    assert server.hits["echo"] == 0 and server.hits["empty"] == 1


async def test_a_418_never_releases_reads_queued_behind_the_orders_it_refuses(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    server, url = venue
    client, spy = make(url, limits=[RateLimit.simple("weight", 10, 60.0)])
    async with client:
        in_flight = RestRequest("GET", "/slowban", costs=(Cost("weight", 6),))  # answers 418 later
        banning = asyncio.create_task(client.request(in_flight))
        heavy_order = RestRequest("POST", "/echo", costs=(Cost("weight", 5),), is_order=True)
        order = asyncio.create_task(client.request(heavy_order))  # blocked on weight (6 + 5 > 10)
        read = asyncio.create_task(client.request(get("/empty")))  # fits, but weight is the order's
        await clock.wait_for_sleepers(1)
        assert spy.real.waiting == 2
        server.ban_gate.set()
        with pytest.raises(IpBanned):
            await banning
        with pytest.raises(IpBanned) as info:
            await order
        assert info.value.local
        assert clock.next_deadline == 120.0 and not read.done()
        clock.advance(120.0)
        assert await read == {}
    assert server.hits["echo"] == 0 and server.hits["empty"] == 1


@pytest.mark.parametrize(
    ("venue_says", "header", "expected"),
    [
        (None, None, 3.0), (None, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0), (None, "-5", 3.0),
        (None, "soon", 3.0), (None, "nan", 3.0), (12.0, "7", 12.0), (-1.0, "7", 7.0),
    ],
)
async def test_rate_limit_duration_falls_back_in_order(
    serve: Any, make: MakeClient, venue_says: float | None, header: str | None, expected: float
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=429, text="slow down", headers={"Retry-After": header} if header else {})

    class Codec(FakeVenue):
        def classify_error(self, status: int, headers: Mapping[str, str], payload: Any) -> VenueError | None:
            return RateLimited("slow down", retry_after=venue_says)

    app = web.Application()
    app.router.add_get("/x", handler)
    server = await serve(app)
    client, spy = make(server.http_url, rate_limit_backoff=3.0, venue=Codec())
    async with client:
        with pytest.raises(RateLimited) as info:
            await client.request(get("/x"))
    assert info.value.retry_after == expected and spy.feedback() == [("back_off", expected)]


async def test_a_non_http_answer_is_connection_failed_without_leaking_the_query(make: MakeClient) -> None:
    async def speak_nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"HELLO WORLD\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(speak_nonsense, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make(f"http://127.0.0.1:{port}", auth=FakeAuth(), time_ms=lambda: 42)[0] as client:
            with pytest.raises(ConnectionFailed) as err:
                await client.request(post("/api/v3/order", params={"symbol": "BTCUSDT"}, signed=True))
    finally:
        server.close()
        await server.wait_closed()
    assert "/api/v3/order" in str(err.value)
    assert "sig42" not in str(err.value) and err.value.__cause__ is None


async def test_non_json_bodies_become_typed_errors(venue: tuple[Venue, str], make: MakeClient) -> None:
    _, url = venue
    async with make(url, retries=0)[0] as client:
        with pytest.raises(ServerError) as err:
            await client.request(get("/html502"))
        assert err.value.status == 502
        with pytest.raises(MalformedMessage) as bad:
            await client.request(get("/garbage"))
        assert bad.value.status == 200 and "non-JSON" in str(bad.value)
        with pytest.raises(Rejected):
            await client.request(get("/notfound"))  # a 4xx the codec did not classify
        assert client.stats.errors == Counter({"ServerError": 1, "MalformedMessage": 1, "Rejected": 1})


async def test_a_codec_that_crashes_gives_malformed_message(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    _, url = venue
    codec = FakeVenue()
    codec.broken = True
    async with make(url, venue=codec)[0] as client:
        with pytest.raises(MalformedMessage):
            await client.request(get("/empty"))


# -- transport failures and retries -----------------------------------------------------------


async def test_idempotent_get_is_retried_with_backoff_on_the_clock(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    server, url = venue
    server.fail_first = 2
    async with make(url, retries=2, retry_backoff=0.2)[0] as client:
        task = asyncio.create_task(client.request(get("/flaky")))
        await clock.wait_for_sleepers(1)
        first = clock.next_deadline
        assert first == pytest.approx(0.2)
        clock.advance_to(first)
        await clock.wait_for_sleepers(1)
        second = clock.next_deadline
        assert second is not None and second - first == pytest.approx(0.4)  # doubled
        clock.advance_to(second)
        assert await task == {"ok": True}
        assert server.hits["flaky"] == 3
        assert client.stats.retries == 2 and client.stats.errors == Counter({"ServerError": 2})


async def test_retries_are_bounded(venue: tuple[Venue, str], make: MakeClient) -> None:
    server, url = venue
    server.fail_first = 10
    async with make(url, retries=1, retry_backoff=0.0)[0] as client:
        with pytest.raises(ServerError):
            await client.request(get("/flaky"))
    assert server.hits["flaky"] == 2


async def test_order_placement_is_never_retried(venue: tuple[Venue, str], make: MakeClient) -> None:
    server, url = venue
    server.fail_first = 10
    async with make(url, retries=5, retry_backoff=0.0)[0] as client:
        with pytest.raises(ServerError):
            await client.request(post("/flaky"))
        with pytest.raises(RequestTimeout):
            await client.request(post("/slow", timeout=0.2))
        with pytest.raises(ConnectionFailed):
            await client.request(post("/drop"))
        assert client.stats.retries == 0
    assert (server.hits["flaky"], server.hits["slow"], server.hits["drop"]) == (1, 1, 1)


async def test_timeout_of_an_idempotent_request_is_retried(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    server, url = venue
    async with make(url, retries=1, retry_backoff=0.0)[0] as client:
        with pytest.raises(RequestTimeout):
            await client.request(get("/slow", timeout=0.1))
    assert server.hits["slow"] == 2


async def test_refused_connection_is_connection_failed(closed_port: int, make: MakeClient) -> None:
    async with make(f"http://127.0.0.1:{closed_port}", retries=0)[0] as client:
        with pytest.raises(ConnectionFailed):
            await client.request(get("/x"))
        assert client.stats.errors == Counter({"ConnectionFailed": 1})


async def test_clock_skew_resyncs_once_and_sends_everything_but_an_order_again(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    server, url = venue
    resyncs: list[int] = []

    async def resync() -> None:
        resyncs.append(1)
        if len(resyncs) == 2:
            raise ConnectionFailed("time endpoint down")  # a failed resync must not mask the skew

    async with make(url, resync_time=resync)[0] as client:
        with pytest.raises(ClockSkew):
            await client.request(get("/skew"))
        assert (len(resyncs), server.hits["skew"]) == (1, 2)
        with pytest.raises(ClockSkew):
            await client.request(post("/skew"))
        assert (len(resyncs), server.hits["skew"]) == (2, 3)  # a placement: never twice
        # A cancel (not a read, not an order): the venue refused it before acting, so it goes again.
        with pytest.raises(ClockSkew):
            await client.request(RestRequest("DELETE", "/skew", costs=WEIGHT))
        assert (len(resyncs), server.hits["skew"]) == (3, 5)


async def test_the_order_count_429_holds_orders_only(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    server, url = venue
    client, spy = make(url)
    async with client:
        with pytest.raises(OrderRateLimited) as info:
            await client.request(post("/ordercount"))
        assert info.value.retry_after == 9.0 and not info.value.local
        assert spy.feedback() == [("hold_orders", 9.0)]
        assert await client.request(get("/empty")) == {}  # no wait: reads go on
        with pytest.raises(OrderRateLimited) as info:
            await client.request(post("/echo"))
        assert info.value.local and server.hits["echo"] == 0
        clock.advance(9.0)
        assert (await client.request(post("/echo")))["method"] == "POST"


async def test_a_request_waiting_for_the_throttler_is_withdrawn_unsent(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    """``on_send`` says when an attempt leaves: cancelled before it, the venue never sees it."""
    server, url = venue
    client, _ = make(url)
    async with client:
        with pytest.raises(RateLimited):
            await client.request(get("/ratelimit"))  # back-off: 7 s
        sent: list[str] = []
        withdrawn = asyncio.create_task(client.request(post("/echo"), on_send=lambda: sent.append("w")))
        kept = asyncio.create_task(client.request(post("/echo"), on_send=lambda: sent.append("k")))
        await clock.wait_for_sleepers(1)
        withdrawn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await withdrawn
        clock.advance(7.0)
        assert (await kept)["method"] == "POST"
        assert sent == ["k"] and server.hits["echo"] == 1


# -- sessions and secrets ---------------------------------------------------------------------


async def test_a_callers_session_is_not_closed(venue: tuple[Venue, str], make: MakeClient) -> None:
    _, url = venue
    async with aiohttp.ClientSession() as session:
        client, _ = make(url, session=session)
        assert await client.request(get("/empty")) == {}
        await client.close()
        assert not session.closed


async def test_secrets_never_reach_logs_or_error_texts(
    venue: tuple[Venue, str], make: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = venue
    caplog.set_level(logging.DEBUG, logger="marketlink")
    async with make(url, auth=FakeAuth(), time_ms=lambda: 42, retries=0)[0] as client:
        await client.request(get("/echo", signed=True))
        with pytest.raises(ServerError) as err:
            await client.request(get("/html502", signed=True))
    assert "/html502" in str(err.value)
    for text in (caplog.text, str(err.value)):
        assert SECRET_KEY not in text and "sig42" not in text and "timestamp" not in text


# -- what is an answer: 1xx/3xx and empty successes are not ----------------------------------


@pytest.mark.parametrize("path", ["/moved", "/moved-json", "/nocontent", "/nobody"])
async def test_redirects_and_empty_successes_are_unknown_outcomes_naming_the_path_only(
    venue: tuple[Venue, str], make: MakeClient, path: str
) -> None:
    server, url = venue
    async with make(url, auth=FakeAuth(), time_ms=lambda: 42, retries=3, retry_backoff=0.0)[0] as client:
        with pytest.raises(ServerError) as err:  # a Transient: an order behind it stays UNKNOWN
            await client.request(post(path, params={"symbol": "BTCUSDT"}, signed=True))
    assert isinstance(err.value, Transient) and err.value.status in (200, 204, 302, 307)
    assert str(err.value).startswith(f"ServerError (HTTP {err.value.status}): POST {path}: HTTP ")
    assert "sig42" not in str(err.value) and "elsewhere" not in str(err.value)
    assert server.hits[path[1:]] == 1  # never followed, never sent again


async def test_a_redirected_read_is_retried_like_any_transient_answer(
    venue: tuple[Venue, str], make: MakeClient
) -> None:
    server, url = venue
    async with make(url, retries=1, retry_backoff=0.0)[0] as client:
        with pytest.raises(ServerError, match="HTTP 307 is not an API answer"):
            await client.request(get("/moved-json"))
    assert server.hits["moved-json"] == 2


# -- aiohttp never sends a request twice behind our back --------------------------------------


class DroppingVenue:
    """A raw HTTP server that reads each request, counts it, and drops the connection without
    an answer: the venue may have executed it (the audit's h1 case, a cancel)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.seen.append(head.split(b" ", 1)[0].decode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("own_session", [True, False])
@pytest.mark.parametrize(("method", "retries", "sent"), [("DELETE", 3, 1), ("PUT", 3, 1), ("GET", 1, 2)])
async def test_a_dropped_connection_is_never_resent_by_aiohttp(
    make: MakeClient, method: str, retries: int, sent: int, own_session: bool
) -> None:
    # aiohttp re-sends GET, PUT and DELETE once after ServerDisconnectedError unless the session's
    # _retry_connection is off. If a future aiohttp ignores that attribute, a DELETE is seen twice.
    venue = DroppingVenue()
    async with venue as url, aiohttp.ClientSession() as caller_session:
        session = None if own_session else caller_session
        client, _ = make(url, retries=retries, retry_backoff=0.0, session=session)
        async with client:
            with pytest.raises(ConnectionFailed, match="ServerDisconnectedError"):
                await client.request(RestRequest(method, "/api/v3/order", costs=WEIGHT))
    assert venue.seen == [method] * sent  # a cancel is sent once; a read only as often as we retry
    assert client.stats.requests == sent and client.stats.retries == sent - 1


# -- the size of an answer is bounded ----------------------------------------------------------


CAP = 1000


class BigVenue:
    """JSON bodies of an exact size, with or without a Content-Length; and endless ones."""

    def __init__(self) -> None:
        self.endless = asyncio.Event()  # set at teardown: an endless body then ends
        app = web.Application()
        app.router.add_get("/sized/{n}", self.sized)
        app.router.add_get("/chunked/{n}", self.chunked)
        app.router.add_get("/announced", self.announced)
        app.router.add_get("/endless", self.endless_body)
        self.app = app

    @staticmethod
    def body(n: int) -> bytes:
        return b"[" + b" " * (n - 2) + b"]"

    async def sized(self, request: web.Request) -> web.Response:
        return web.Response(body=self.body(int(request.match_info["n"])), content_type="application/json")

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        body = self.body(int(request.match_info["n"]))
        for start in range(0, len(body), 300):
            await resp.write(body[start:start + 300])
        await resp.write_eof()
        return resp

    async def announced(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 300 * 2**20  # announced, never sent
        await resp.prepare(request)
        await self.endless.wait()
        return resp

    async def endless_body(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"[" + b" " * 700)
        await resp.write(b" " * 700)  # past the cap, and then the body never ends
        await self.endless.wait()
        return resp


@pytest.fixture
async def big(serve: Any) -> AsyncIterator[str]:
    venue = BigVenue()
    server = await serve(venue.app)
    yield server.http_url
    venue.endless.set()


@pytest.mark.parametrize("kind", ["sized", "chunked"])
async def test_an_answer_up_to_the_cap_is_read_and_one_byte_more_is_refused(
    big: str, make: MakeClient, kind: str
) -> None:
    async with make(big, max_body=CAP, retries=0)[0] as client:
        assert await client.request(get(f"/{kind}/{CAP}")) == []
        with pytest.raises(MalformedMessage, match=f"above the {CAP}-byte cap") as err:
            await client.request(get(f"/{kind}/{CAP + 1}"))
        assert err.value.status == 200 and client.stats.errors == Counter({"MalformedMessage": 1})


@pytest.mark.parametrize("path", ["/announced", "/endless"])
async def test_an_oversized_answer_is_refused_without_reading_it_to_the_end(
    big: str, make: MakeClient, path: str
) -> None:
    # Both bodies never end: a client that read them whole would wait until its timeout.
    async with make(big, max_body=CAP, retries=0, timeout=30.0)[0] as client:
        with pytest.raises(MalformedMessage, match="cap"):
            await asyncio.wait_for(client.request(get(path)), 5.0)


def test_the_default_cap_is_64_mib_and_a_cap_must_be_positive(make: MakeClient) -> None:
    assert MAX_BODY == 64 * 2**20
    with pytest.raises(ConfigError):
        make("http://127.0.0.1:1", max_body=0)


# -- Retry-After as an HTTP-date --------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    at = 4_096_250_880.0  # Wed, 21 Oct 2099 07:28:00 GMT
    assert retry_after_seconds("Wed, 21 Oct 2099 07:28:00 GMT", at - 120) == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2099 07:28:00 -0000", at - 120) == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2099 07:28:00 GMT", at + 5) == 0.0  # past: now
    assert retry_after_seconds("7", at) == 7.0
    for bad in ("soon", "-5", "inf", "nan", "", "Wed, 99 Foo 2099"):
        assert retry_after_seconds(bad, at) is None


async def test_a_429_with_an_http_date_backs_off_until_that_date(serve: Any, make: MakeClient) -> None:
    async def handler(request: web.Request) -> web.Response:
        later = email.utils.formatdate(time.time() + 3600, usegmt=True)
        return web.json_response({"code": -1003}, status=429, headers={"Retry-After": later})

    app = web.Application()
    app.router.add_get("/x", handler)
    server = await serve(app)
    client, spy = make(server.http_url, rate_limit_backoff=1.0)
    async with client:
        with pytest.raises(RateLimited) as info:
            await client.request(get("/x"))
    wait = info.value.retry_after
    assert wait is not None and 3500 < wait <= 3600  # an hour, not the 1 s fallback
    assert spy.feedback() == [("back_off", wait)]


# -- venue texts are redacted of the request's secrets ----------------------------------------


class HeaderAuth:
    """Signs in headers, as Bybit does, with a signature holding characters that get quoted."""

    def sign(self, request: RestRequest, timestamp_ms: int) -> PreparedRequest:
        query = encode_query({**(request.params or {}), "signature": "c2lnbmF0dXJl+/x="})
        return PreparedRequest(request.method, f"{request.path}?{query}", None,
                               {"X-KEY": SECRET_KEY, "X-SIGN": "HDRSIGNATURE0123456789"})


@pytest.mark.parametrize("auth", [FakeAuth(), HeaderAuth()], ids=["query-signed", "header-signed"])
async def test_a_venue_echoing_the_request_never_puts_its_secrets_in_errors_or_logs(
    venue: tuple[Venue, str], make: MakeClient, caplog: pytest.LogCaptureFixture, auth: Any
) -> None:
    _, url = venue
    caplog.set_level(logging.DEBUG)
    async with make(url, auth=auth, time_ms=lambda: 42, retries=0)[0] as client:
        with pytest.raises(Rejected) as err:
            await client.request(get("/echo-error", params={"symbol": "BTCUSDT"}, signed=True))
    logging.getLogger("engine").exception("request failed: %s", err.value, exc_info=err.value)
    ours = "\n".join(caplog.handler.format(r) for r in caplog.records if r.name != "aiohttp.access")
    texts = [str(err.value), repr(err.value), err.value.reason, ours,
             "".join(traceback.format_exception(err.value))]
    secrets = (SECRET_KEY, "sig42", "c2lnbmF0dXJl", "HDRSIGNATURE0123456789")
    for text in texts:
        assert not [s for s in secrets if s in text], text
    assert err.value.code == -1 and "bad request /echo-error?symbol=BTCUSDT" in err.value.reason
    assert "<redacted>" in err.value.reason


async def test_timed_request_brackets_the_send_and_excludes_the_throttler_wait(
    venue: tuple[Venue, str], make: MakeClient, clock: VirtualClock
) -> None:
    server, url = venue
    server.fail_first = 1
    client, _ = make(url, stamp_ms=lambda: clock.time() * 1000, limits=[RateLimit.simple("weight", 1, 10.0)],
                     retries=1, retry_backoff=0.5)
    async with client:
        first = await client.timed_request(get("/empty"))
        assert first == TimedAnswer({}, 0.0, 0.0)
        # Queued 10 s behind the full pool, then a 503 and a 0.5 s back-off before the retry:
        # the answer is timed from the attempt that was answered, after all of that.
        task = asyncio.create_task(client.timed_request(get("/flaky")))
        await clock.wait_for_sleepers(1)
        clock.advance(10.0)
        await clock.wait_for_sleepers(1)
        clock.advance_to(10.5)
        await clock.wait_for_sleepers(1)
        clock.advance_to(20.0)  # the retry waits for the pool again
        answer = await task
    assert answer == TimedAnswer({"ok": True}, 20_000.0, 20_000.0)


async def test_timed_request_instants_surround_the_venue_reading_its_clock(
    serve: Any, make: MakeClient
) -> None:
    handled: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        handled.append(monotonic_ms())
        return web.json_response({"serverTime": 1})

    app = web.Application()
    app.router.add_get("/time", handler)
    server = await serve(app)
    async with make(server.http_url)[0] as client:
        answer = await client.timed_request(get("/time"))
    assert answer.payload == {"serverTime": 1}
    assert answer.sent_ms <= handled[0] <= answer.received_ms
