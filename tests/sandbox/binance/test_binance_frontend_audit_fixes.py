"""The sandbox's Binance front-end on audit A's findings: spot's client-id rule, and myTrades
paging (``limit``, inclusive ``fromId``, the documented parameter combinations), checked over
loopback by hand and then by the codec paging through an order's fills with the real HTTP client.
"""

from __future__ import annotations

from typing import Any

import pytest
from binance_frontend_support import API_KEY, MAKER_KEY, MAKER_SECRET, SECRET, Harness

from marketlink.core.credentials import Credentials
from marketlink.core.orders import TradeUpdate
from marketlink.net.http import HttpClient
from marketlink.net.throttler import Throttler
from marketlink.venues.binance import SPEC, make_auth
from marketlink.venues.binance.codec import BinanceSpotCodec

BTC = "BTCUSDT"
SPOT_RULE = (
    "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-zA-Z0-9-_]{1,36}$'."
)


async def ask(h: Harness, price: str, qty: str = "0.01") -> None:
    params = {
        "symbol": BTC, "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": qty, "price": price,
    }
    r = await h.order(params, key=MAKER_KEY, secret=MAKER_SECRET)
    assert r.status == 200, r.body


async def sweep(h: Harness, levels: int) -> int:
    """``levels`` maker asks of 0.01, then one market buy taking them all: one order, ``levels`` fills."""
    for i in range(levels):
        await ask(h, f"{30000 + i}.00")
    r = await h.order({"symbol": BTC, "side": "BUY", "type": "MARKET", "quantity": f"{levels / 100:.2f}"})
    assert r.status == 200 and r.body["status"] == "FILLED" and len(r.body["fills"]) == levels, r.body
    order_id: int = r.body["orderId"]
    return order_id


async def my_trades(h: Harness, **params: str) -> Any:
    r = await h.signed("GET", "/api/v3/myTrades", {"symbol": BTC, **params})
    return r


# -- client order ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cid", ["bot.1", "x:desk", "a/b", "ml 1", "ml1\n", "a" * 37, "ml+1"])
async def test_client_ids_outside_spots_rule_are_refused(h: Harness, cid: str) -> None:
    r = await h.order({"symbol": BTC, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                       "quantity": "0.01", "price": "20000", "newClientOrderId": cid})
    assert (r.status, r.body) == (400, {"code": -1100, "msg": SPOT_RULE})


async def test_client_ids_inside_spots_rule_are_accepted(h: Harness) -> None:
    for cid in ("ml-1_A", "a" * 36, "-", "_"):
        r = await h.order({"symbol": BTC, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                           "quantity": "0.01", "price": "20000", "newClientOrderId": cid})
        assert r.status == 200 and r.body["clientOrderId"] == cid, r.body
    cancel = await h.signed("DELETE", "/api/v3/order", {"symbol": BTC, "origClientOrderId": "-",
                                                          "newClientOrderId": "bad.cancel"})
    assert cancel.body == {"code": -1100, "msg": SPOT_RULE}  # a cancel's own id follows the same rule


# -- myTrades paging ----------------------------------------------------------------------------------


async def test_my_trades_pages_from_an_inclusive_from_id_with_a_limit(h: Harness) -> None:
    other = await sweep(h, 2)  # trades 1, 2 belong to another order
    order_id = await sweep(h, 7)  # trades 3..9
    oid = str(order_id)

    everything = await my_trades(h, orderId=oid)
    assert [t["id"] for t in everything.body] == [3, 4, 5, 6, 7, 8, 9]
    assert {t["orderId"] for t in everything.body} == {order_id} != {other}

    latest = await my_trades(h, orderId=oid, limit="3")  # no fromId: the most recent, oldest first
    assert [t["id"] for t in latest.body] == [7, 8, 9]

    pages, start = [], "0"
    for _ in range(10):  # bounded: 7 trades in pages of 3 take three requests
        page = (await my_trades(h, orderId=oid, fromId=start, limit="3")).body
        pages.append([t["id"] for t in page])
        if len(page) < 3:
            break
        start = str(page[-1]["id"] + 1)
    assert pages == [[3, 4, 5], [6, 7, 8], [9]]

    inclusive = await my_trades(h, orderId=oid, fromId="5", limit="2")
    assert [t["id"] for t in inclusive.body] == [5, 6]
    beyond = await my_trades(h, orderId=oid, fromId="10")
    assert beyond.status == 200 and beyond.body == []
    capped = await my_trades(h, fromId="0", limit="5000")  # larger limits are cut to 1000
    assert [t["id"] for t in capped.body] == list(range(1, 10))


@pytest.mark.parametrize(
    "params",
    [
        {"orderId": "1", "startTime": "1"},
        {"orderId": "1", "endTime": "1"},
        {"fromId": "1", "startTime": "1"},
        {"fromId": "1", "startTime": "1", "endTime": "2"},
        {"orderId": "1", "fromId": "1", "endTime": "2"},
    ],
)
async def test_my_trades_refuses_undocumented_combinations(h: Harness, params: dict[str, str]) -> None:
    r = await my_trades(h, **params)
    assert (r.status, r.body) == (400, {"code": -1128, "msg": "Combination of optional parameters invalid."})


@pytest.mark.parametrize(
    "params", [{}, {"orderId": "1"}, {"fromId": "1"}, {"startTime": "1"}, {"endTime": "1"},
               {"startTime": "1", "endTime": "2"}, {"orderId": "1", "fromId": "1"}],
)
async def test_my_trades_accepts_the_documented_combinations(h: Harness, params: dict[str, str]) -> None:
    r = await my_trades(h, **params)
    assert (r.status, r.body) == (200, [])


async def test_the_codec_pages_through_every_fill_of_an_order(h: Harness) -> None:
    order_id = await sweep(h, 7)
    codec = BinanceSpotCodec(trades_page_size=3)
    symbols = {BTC: "BTC-USDT"}
    async with HttpClient(
        h.url("").rstrip("/"), throttler=Throttler(SPEC.rate_limits), venue=codec,
        auth=make_auth(Credentials(API_KEY, SECRET)), time_ms=lambda: h.now,
    ) as http:
        fills: list[TradeUpdate] = []
        start: str | None = None
        requests = 0
        while requests < 10:  # bounded; three pages expected
            requests += 1
            request = codec.order_trades_request(BTC, str(order_id), from_trade_id=start)
            page = codec.parse_trades(await http.request(request), symbols)
            fills.extend(page)
            start = codec.next_trades_from(page)
            if start is None:
                break
    assert requests == 3
    assert [t.trade_id for t in fills] == [str(i) for i in range(1, 8)]  # all, once, oldest first
    assert {t.exchange_order_id for t in fills} == {str(order_id)}
    assert sum(t.amount for t in fills) == 7 * fills[0].amount
