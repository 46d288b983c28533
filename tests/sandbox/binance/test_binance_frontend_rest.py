"""REST ``/api/v3`` end to end: every endpoint's exact payload shape, and every error code the
issue names, over loopback HTTP against the real engine."""

from __future__ import annotations

from typing import Any

import pytest
from binance_frontend_support import API_KEY, MAKER_KEY, MAKER_SECRET, T0, Harness

BTC = "BTCUSDT"


async def rest_ask(h: Harness, price: str = "30000", qty: str = "0.5", **extra: str) -> dict[str, Any]:
    params = {
        "symbol": BTC,
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": qty,
        "price": price,
        **extra,
    }
    r = await h.order(params, key=MAKER_KEY, secret=MAKER_SECRET)
    assert r.status == 200, r.body
    body: dict[str, Any] = r.body
    return body


async def test_ping_time(h: Harness) -> None:
    r = await h.public("/api/v3/ping")
    assert (r.status, r.body, r.headers["Content-Type"]) == (200, {}, "application/json")
    r = await h.public("/api/v3/time")
    assert r.body == {"serverTime": T0}


async def test_exchange_info_shape_and_symbol_params(h: Harness) -> None:
    r = await h.public("/api/v3/exchangeInfo")
    info = r.body
    assert list(info) == ["timezone", "serverTime", "rateLimits", "exchangeFilters", "symbols"]
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    btc = info["symbols"][0]
    assert list(btc)[:9] == [
        "symbol",
        "status",
        "baseAsset",
        "baseAssetPrecision",
        "quoteAsset",
        "quotePrecision",
        "quoteAssetPrecision",
        "baseCommissionPrecision",
        "quoteCommissionPrecision",
    ]
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"] == {
        "filterType": "PRICE_FILTER",
        "minPrice": "0.01000000",
        "maxPrice": "1000000.00000000",
        "tickSize": "0.01000000",
    }
    assert filters["LOT_SIZE"] == {
        "filterType": "LOT_SIZE",
        "minQty": "0.00001000",
        "maxQty": "9000.00000000",
        "stepSize": "0.00001000",
    }
    assert list(filters["NOTIONAL"]) == [
        "filterType",
        "minNotional",
        "applyMinToMarket",
        "maxNotional",
        "applyMaxToMarket",
        "avgPriceMins",
    ]
    assert filters["MARKET_LOT_SIZE"]["maxQty"] == "9000.00000000"
    assert filters["MAX_NUM_ORDERS"] == {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200}
    eth = {f["filterType"]: f for f in info["symbols"][1]["filters"]}
    assert eth["MIN_NOTIONAL"] == {
        "filterType": "MIN_NOTIONAL",
        "minNotional": "5.00000000",
        "applyToMarket": True,
        "avgPriceMins": 5,
    }
    one = await h.public("/api/v3/exchangeInfo", {"symbol": "ETHUSDT"})
    assert [s["symbol"] for s in one.body["symbols"]] == ["ETHUSDT"]
    many = await h.public("/api/v3/exchangeInfo", {"symbols": '["ETHUSDT","BTCUSDT"]'})
    assert [s["symbol"] for s in many.body["symbols"]] == ["ETHUSDT", "BTCUSDT"]
    halted = await h.public("/api/v3/exchangeInfo", {"symbolStatus": "HALT"})
    assert halted.body["symbols"] == []
    bad = await h.public("/api/v3/exchangeInfo", {"symbol": "DOGEUSDT"})
    assert (bad.status, bad.body) == (400, {"code": -1121, "msg": "Invalid symbol."})
    both = await h.public("/api/v3/exchangeInfo", {"symbol": BTC, "symbols": '["BTCUSDT"]'})
    assert both.body["code"] == -1128
    dup = await h.public("/api/v3/exchangeInfo", {"symbols": '["BTCUSDT","BTCUSDT"]'})
    assert dup.body["code"] == -1151
    for junk, code in (("BTCUSDT", -1100), ("[]", -1102), ('["btc usdt"]', -1100), ('["XXX"]', -1121)):
        r = await h.public("/api/v3/exchangeInfo", {"symbols": junk})
        assert r.body["code"] == code, junk


async def test_depth_shape_limits_and_weight_tiers(h: Harness) -> None:
    await rest_ask(h, "30000", "0.5")
    await rest_ask(h, "30001", "0.25")
    r = await h.public("/api/v3/depth", {"symbol": BTC, "limit": "1"})
    assert r.body == {"lastUpdateId": 2, "bids": [], "asks": [["30000.00000000", "0.50000000"]]}
    used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
    for limit, weight in (("100", 5), ("500", 25), ("1000", 50), ("5000", 250), ("9999", 250)):
        r = await h.public("/api/v3/depth", {"symbol": BTC, "limit": limit})
        assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) - used == weight
        used = int(r.headers["X-MBX-USED-WEIGHT-1M"])
    assert len(r.body["asks"]) == 2
    r = await h.public("/api/v3/depth", {"symbol": BTC, "limit": "abc"})
    assert r.body == {
        "code": -1100,
        "msg": "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.",
    }
    r = await h.public("/api/v3/depth", {"symbol": BTC, "limit": "0"})
    assert r.body["code"] == -1100
    r = await h.public("/api/v3/depth", {})
    assert r.body == {
        "code": -1102,
        "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
    }
    r = await h.public("/api/v3/depth", {"symbol": "btcusdt"})
    assert r.body["code"] == -1100


async def test_trades_tickers_and_avg_price(h: Harness) -> None:
    await rest_ask(h, "30000", "0.5")
    await h.order({"symbol": BTC, "side": "BUY", "type": "MARKET", "quantity": "0.1"})
    await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "29000",
        }
    )
    r = await h.public("/api/v3/trades", {"symbol": BTC})
    assert r.body == [
        {
            "id": 1,
            "price": "30000.00000000",
            "qty": "0.10000000",
            "quoteQty": "3000.00000000",
            "time": T0,
            "isBuyerMaker": False,
            "isBestMatch": True,
        }
    ]
    r = await h.public("/api/v3/ticker/price", {"symbol": BTC})
    assert r.body == {"symbol": BTC, "price": "30000.00000000"}
    r = await h.public("/api/v3/ticker/price")
    assert r.body == [
        {"symbol": BTC, "price": "30000.00000000"},
        {"symbol": "ETHUSDT", "price": "0.00000000"},
    ]
    r = await h.public("/api/v3/ticker/bookTicker", {"symbol": BTC})
    assert r.body == {
        "symbol": BTC,
        "bidPrice": "29000.00000000",
        "bidQty": "0.10000000",
        "askPrice": "30000.00000000",
        "askQty": "0.40000000",
    }
    r = await h.public("/api/v3/ticker/bookTicker", {"symbols": '["BTCUSDT"]'})
    assert isinstance(r.body, list) and r.body[0]["symbol"] == BTC
    r = await h.public("/api/v3/ticker/24hr", {"symbol": BTC})
    assert list(r.body) == [
        "symbol",
        "priceChange",
        "priceChangePercent",
        "weightedAvgPrice",
        "prevClosePrice",
        "lastPrice",
        "lastQty",
        "bidPrice",
        "bidQty",
        "askPrice",
        "askQty",
        "openPrice",
        "highPrice",
        "lowPrice",
        "volume",
        "quoteVolume",
        "openTime",
        "closeTime",
        "firstId",
        "lastId",
        "count",
    ]
    assert (r.body["priceChangePercent"], r.body["volume"], r.body["count"]) == ("0.000", "0.10000000", 1)
    before = int(r.headers["X-MBX-USED-WEIGHT-1M"])
    r = await h.public("/api/v3/ticker/24hr", {"type": "MINI"})
    assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) - before == 80
    assert list(r.body[0]) == [
        "symbol",
        "openPrice",
        "highPrice",
        "lowPrice",
        "lastPrice",
        "volume",
        "quoteVolume",
        "openTime",
        "closeTime",
        "firstId",
        "lastId",
        "count",
    ]
    r = await h.public("/api/v3/ticker/24hr", {"symbol": BTC, "type": "HUGE"})
    assert r.body["code"] == -1139
    r = await h.public("/api/v3/avgPrice", {"symbol": BTC})
    assert r.body == {"mins": 5, "price": "30000.00000000", "closeTime": T0}
    h.wall.now += 600_000
    r = await h.public("/api/v3/avgPrice", {"symbol": BTC})
    assert r.body == {"mins": 5, "price": "30000.00000000", "closeTime": T0 + 600_000}


async def test_account_shape(h: Harness) -> None:
    r = await h.signed("GET", "/api/v3/account", {"omitZeroBalances": "true"})
    assert list(r.body) == [
        "makerCommission",
        "takerCommission",
        "buyerCommission",
        "sellerCommission",
        "commissionRates",
        "canTrade",
        "canWithdraw",
        "canDeposit",
        "brokered",
        "requireSelfTradePrevention",
        "preventSor",
        "updateTime",
        "accountType",
        "balances",
        "permissions",
        "uid",
    ]
    assert r.body["makerCommission"] == 10
    assert r.body["commissionRates"] == {
        "maker": "0.00100000",
        "taker": "0.00100000",
        "buyer": "0.00000000",
        "seller": "0.00000000",
    }
    assert r.body["balances"][0] == {"asset": "BTC", "free": "10.00000000", "locked": "0.00000000"}
    r = await h.signed("GET", "/api/v3/account", {"omitZeroBalances": "maybe"})
    assert r.body["code"] == -1100


async def test_account_update_time_is_when_its_balances_last_changed(h: Harness) -> None:
    """Not the time of the request: a client compares it with its pushes' times to tell whether
    the snapshot already holds a change it was told of."""
    before = (await h.signed("GET", "/api/v3/account", {})).body["updateTime"]
    h.wall.now += 1_000
    placed_at = h.now
    placed = await h.order({"symbol": BTC, "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                            "quantity": "0.1", "price": "31000"})  # locks BTC: a change
    assert placed.body["status"] == "NEW", placed.body
    h.wall.now += 5_000
    r = await h.signed("GET", "/api/v3/account", {})
    assert r.body["updateTime"] == placed_at > before
    h.wall.now += 5_000
    assert (await h.signed("GET", "/api/v3/account", {})).body["updateTime"] == placed_at


async def test_new_order_full_result_ack(h: Harness) -> None:
    await rest_ask(h, "30000", "0.5")
    r = await h.order(
        {"symbol": BTC, "side": "BUY", "type": "MARKET", "quantity": "0.2", "newClientOrderId": "my-order_1"}
    )
    assert r.status == 200
    assert r.body == {
        "symbol": BTC,
        "orderId": 2,
        "orderListId": -1,
        "clientOrderId": "my-order_1",
        "transactTime": T0,
        "price": "0.00000000",
        "origQty": "0.20000000",
        "executedQty": "0.20000000",
        "origQuoteOrderQty": "0.00000000",
        "cummulativeQuoteQty": "6000.00000000",
        "status": "FILLED",
        "timeInForce": "GTC",
        "type": "MARKET",
        "side": "BUY",
        "workingTime": T0,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "fills": [
            {
                "price": "30000.00000000",
                "qty": "0.20000000",
                "commission": "0.00020000",
                "commissionAsset": "BTC",
                "tradeId": 1,
            }
        ],
    }
    assert (r.headers["X-MBX-ORDER-COUNT-10S"], r.headers["X-MBX-ORDER-COUNT-1D"]) == ("1", "1")
    r = await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "29000",
            "newOrderRespType": "RESULT",
        }
    )
    assert "fills" not in r.body and r.body["status"] == "NEW" and r.body["price"] == "29000.00000000"
    r = await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "29000",
            "newOrderRespType": "ACK",
        }
    )
    assert r.body == {
        "symbol": BTC,
        "orderId": 4,
        "orderListId": -1,
        "clientOrderId": r.body["clientOrderId"],
        "transactTime": T0,
    }
    maker = await h.order(
        {"symbol": BTC, "side": "SELL", "type": "LIMIT_MAKER", "quantity": "0.1", "price": "31000"},
        key=MAKER_KEY,
        secret=MAKER_SECRET,
    )
    assert list(maker.body) == ["symbol", "orderId", "orderListId", "clientOrderId", "transactTime"]
    quote = await h.order({"symbol": BTC, "side": "BUY", "type": "MARKET", "quoteOrderQty": "300"})
    assert (quote.body["executedQty"], quote.body["origQuoteOrderQty"]) == ("0.01000000", "300.00000000")


async def test_order_engine_rejections(h: Harness) -> None:
    await rest_ask(h, "30000", "0.5", newClientOrderId="dup")
    dup = await rest_ask_raw(h, newClientOrderId="dup")
    assert (dup.status, dup.body) == (400, {"code": -2010, "msg": "Duplicate order sent."})
    poor = await h.order(
        {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "100",
            "price": "29000",
        }
    )
    assert poor.body == {"code": -2010, "msg": "Account has insufficient balance for requested action."}
    take = await h.order(
        {"symbol": BTC, "side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.1", "price": "30000"}
    )
    assert take.body == {"code": -2010, "msg": "Order would immediately match and take."}
    for params, name in (
        ({"price": "29000.001"}, None),
        ({"price": "29000.005"}, "PRICE_FILTER"),
        ({"quantity": "0.000015"}, "LOT_SIZE"),
        ({"quantity": "0.0001"}, "NOTIONAL"),
    ):
        order = {
            "symbol": BTC,
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": "29000",
            **params,
        }
        r = await h.order(order)
        if name is None:
            assert r.body["code"] == -1013
        else:
            assert r.body == {"code": -1013, "msg": f"Filter failure: {name}"}
    eth = await h.order(
        {
            "symbol": "ETHUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "100",
        }
    )
    assert eth.body == {"code": -1013, "msg": "Filter failure: MIN_NOTIONAL"}
    bad = await h.order({"symbol": "NOPE", "side": "BUY", "type": "MARKET", "quantity": "1"})
    assert bad.body == {"code": -1121, "msg": "Invalid symbol."}


async def rest_ask_raw(h: Harness, **extra: str) -> Any:
    params = {
        "symbol": BTC,
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.1",
        "price": "30500",
        **extra,
    }
    return await h.order(params, key=MAKER_KEY, secret=MAKER_SECRET)


LIMIT = {
    "symbol": BTC,
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.1",
    "price": "29000",
}


@pytest.mark.parametrize(
    ("change", "drop", "code", "msg"),
    [
        ({}, "side", -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."),
        ({"side": "HOLD"}, None, -1117, "Invalid side."),
        ({"type": "ICEBERG"}, None, -1116, "Invalid orderType."),
        ({"type": "STOP_LOSS"}, None, -2010, "Stop loss orders are not supported for this symbol."),
        ({"timeInForce": "GTD"}, None, -1115, "Invalid timeInForce."),
        (
            {},
            "timeInForce",
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        ),
        ({}, "price", -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed."),
        ({}, "quantity", -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
        (
            {"quantity": "1e-3"},
            None,
            -1100,
            "Illegal characters found in parameter 'quantity'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        ),
        ({"quantity": "0.123456789"}, None, -1111, "Parameter 'quantity' has too much precision."),
        ({"price": "1.000000001"}, None, -1111, "Parameter 'price' has too much precision."),
        ({"quoteOrderQty": "10"}, None, -1106, "Parameter 'quoteOrderQty' sent when not required."),
        ({"type": "MARKET"}, None, -1106, "Parameter 'timeInForce' sent when not required."),
        ({"stopPrice": "1"}, None, -1106, "Parameter 'stopPrice' sent when not required."),
        ({"icebergQty": "0.01"}, None, -2010, "Iceberg orders are not supported for this symbol."),
        (
            {"newClientOrderId": "bad id!"},
            None,
            -1100,
            "Illegal characters found in parameter 'newClientOrderId'; legal range is "
            "'^[a-zA-Z0-9-_]{1,36}$'.",  # spot's rule (BSD PR #34): no ".", ":" or "/"
        ),
        (
            {"newOrderRespType": "ALL"},
            None,
            -1100,
            "Illegal characters found in parameter 'newOrderRespType'; legal range is 'ACK, RESULT, FULL'.",
        ),
        ({"selfTradePreventionMode": "MAYBE"}, None, -1100, None),
        ({"strategyType": "5"}, None, -1134, "`strategyType` was less than 1000000."),
        (
            {"foo": "bar"},
            None,
            -1104,
            "Not all sent parameters were read; read '8' parameter(s) but was sent '9'.",
        ),
        ({"symbol": "BTC USDT"}, None, -1100, None),
    ],
)
async def test_order_parameter_errors(
    h: Harness, change: dict[str, str], drop: str | None, code: int, msg: str | None
) -> None:
    params = {**LIMIT, **change}
    if drop is not None:
        params.pop(drop)
    r = await h.order(params)
    assert (r.status, r.body["code"]) == (400, code), r.body
    if msg is not None:
        assert r.body["msg"] == msg


async def test_market_order_parameter_rules(h: Harness) -> None:
    base = {"symbol": BTC, "side": "BUY", "type": "MARKET"}
    r = await h.order(base)
    assert r.body == {
        "code": -1102,
        "msg": "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
    }
    r = await h.order({**base, "quantity": "1", "quoteOrderQty": "1"})
    assert r.body["code"] == -1106
    r = await h.order({**base, "quantity": "1", "price": "1"})
    assert r.body == {"code": -1106, "msg": "Parameter 'price' sent when not required."}


async def test_duplicate_parameter_is_refused(h: Harness) -> None:
    r = await h.signed("POST", "/api/v3/order", [("symbol", BTC), ("symbol", BTC)])
    assert r.body["code"] == -1101


async def test_query_cancel_open_all_orders_and_my_trades(h: Harness) -> None:
    ask = await rest_ask(h, "30000", "0.5", newClientOrderId="ask-1")
    fill = await h.order({"symbol": BTC, "side": "BUY", "type": "MARKET", "quantity": "0.2"})
    bid = await h.order({**LIMIT, "newClientOrderId": "bid-1"})
    q = await h.signed("GET", "/api/v3/order", {"symbol": BTC, "orderId": str(bid.body["orderId"])})
    assert q.body == {
        "symbol": BTC,
        "orderId": 3,
        "orderListId": -1,
        "clientOrderId": "bid-1",
        "price": "29000.00000000",
        "origQty": "0.10000000",
        "executedQty": "0.00000000",
        "cummulativeQuoteQty": "0.00000000",
        "status": "NEW",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
        "stopPrice": "0.00000000",
        "icebergQty": "0.00000000",
        "time": T0,
        "updateTime": T0,
        "isWorking": True,
        "workingTime": T0,
        "origQuoteOrderQty": "0.00000000",
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }
    by_client = await h.signed("GET", "/api/v3/order", {"symbol": BTC, "origClientOrderId": "bid-1"})
    assert by_client.body == q.body
    mismatch = await h.signed(
        "GET", "/api/v3/order", {"symbol": BTC, "orderId": "3", "origClientOrderId": "x"}
    )
    assert mismatch.body == {"code": -2013, "msg": "Order does not exist."}
    weight = int(mismatch.headers["X-MBX-USED-WEIGHT-1M"])
    missing = await h.signed("GET", "/api/v3/order", {"symbol": BTC, "orderId": "999"})
    assert (missing.status, missing.body) == (400, {"code": -2013, "msg": "Order does not exist."})
    assert int(missing.headers["X-MBX-USED-WEIGHT-1M"]) - weight == 4
    none = await h.signed("GET", "/api/v3/order", {"symbol": BTC})
    assert none.body == {
        "code": -1102,
        "msg": "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!",
    }

    opened = await h.signed("GET", "/api/v3/openOrders", {"symbol": BTC})
    assert [o["orderId"] for o in opened.body] == [3]
    everything = await h.signed("GET", "/api/v3/openOrders")
    assert int(everything.headers["X-MBX-USED-WEIGHT-1M"]) - int(opened.headers["X-MBX-USED-WEIGHT-1M"]) == 80

    cancel = await h.signed(
        "DELETE", "/api/v3/order", {"symbol": BTC, "origClientOrderId": "bid-1", "newClientOrderId": "cxl-1"}
    )
    assert cancel.body == {
        "symbol": BTC,
        "origClientOrderId": "bid-1",
        "orderId": 3,
        "orderListId": -1,
        "clientOrderId": "cxl-1",
        "transactTime": T0,
        "price": "29000.00000000",
        "origQty": "0.10000000",
        "executedQty": "0.00000000",
        "origQuoteOrderQty": "0.00000000",
        "cummulativeQuoteQty": "0.00000000",
        "status": "CANCELED",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "BUY",
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }
    again = await h.signed("DELETE", "/api/v3/order", {"symbol": BTC, "orderId": "3"})
    assert again.body == {"code": -2011, "msg": "Unknown order sent."}

    restricted = await h.signed(
        "DELETE",
        "/api/v3/order",
        {"symbol": BTC, "orderId": str(ask["orderId"]), "cancelRestrictions": "ONLY_NEW"},
        key=MAKER_KEY,
        secret=MAKER_SECRET,
    )
    assert restricted.body == {"code": -2011, "msg": "Order was not canceled due to cancel restrictions."}
    bad_restriction = await h.signed(
        "DELETE", "/api/v3/order", {"symbol": BTC, "orderId": "1", "cancelRestrictions": "SOME"}
    )
    assert bad_restriction.body["code"] == -1145

    all_orders = await h.signed("GET", "/api/v3/allOrders", {"symbol": BTC})
    assert [(o["orderId"], o["status"]) for o in all_orders.body] == [(2, "FILLED"), (3, "CANCELED")]
    from_id = await h.signed("GET", "/api/v3/allOrders", {"symbol": BTC, "orderId": "3", "limit": "1"})
    assert [o["orderId"] for o in from_id.body] == [3]
    windowed = await h.signed("GET", "/api/v3/allOrders", {"symbol": BTC, "startTime": str(T0 + 1)})
    assert windowed.body == []

    trades = await h.signed("GET", "/api/v3/myTrades", {"symbol": BTC})
    assert trades.body == [
        {
            "symbol": BTC,
            "id": 1,
            "orderId": fill.body["orderId"],
            "orderListId": -1,
            "price": "30000.00000000",
            "qty": "0.20000000",
            "quoteQty": "6000.00000000",
            "commission": "0.00020000",
            "commissionAsset": "BTC",
            "time": T0,
            "isBuyer": True,
            "isMaker": False,
            "isBestMatch": True,
        }
    ]
    maker_trades = await h.signed(
        "GET", "/api/v3/myTrades", {"symbol": BTC, "orderId": "1"}, key=MAKER_KEY, secret=MAKER_SECRET
    )
    assert maker_trades.body[0]["isMaker"] is True and maker_trades.body[0]["commissionAsset"] == "USDT"
    assert maker_trades.body[0]["commission"] == "6.00000000"

    none_open = await h.signed("DELETE", "/api/v3/openOrders", {"symbol": BTC})
    assert none_open.body == {"code": -2011, "msg": "Unknown order sent."}
    cancelled = await h.signed(
        "DELETE", "/api/v3/openOrders", {"symbol": BTC}, key=MAKER_KEY, secret=MAKER_SECRET
    )
    assert [(c["orderId"], c["status"], c["origClientOrderId"]) for c in cancelled.body] == [
        (1, "CANCELED", "ask-1")
    ]


async def test_order_test_endpoint(h: Harness) -> None:
    r = await h.signed("POST", "/api/v3/order/test", LIMIT)
    assert (r.status, r.body) == (200, {})
    assert h.exchange.open_orders("alice") == []
    r = await h.signed("POST", "/api/v3/order/test", {**LIMIT, "computeCommissionRates": "true"})
    assert r.body["standardCommissionForOrder"] == {"maker": "0.00100000", "taker": "0.00100000"}
    r = await h.signed("POST", "/api/v3/order/test", {**LIMIT, "quantity": "0.00001"})
    assert r.body == {"code": -1013, "msg": "Filter failure: NOTIONAL"}


async def test_rate_limit_order_endpoint(h: Harness) -> None:
    await h.order(LIMIT)
    r = await h.signed("GET", "/api/v3/rateLimit/order")
    assert r.body == [
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50, "count": 1},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000, "count": 1},
    ]


async def test_listen_key_endpoints(h: Harness) -> None:
    headers = {"X-MBX-APIKEY": API_KEY}
    created = await h.call("POST", "/api/v3/userDataStream", headers=headers)
    key = created.body["listenKey"]
    assert created.status == 200 and len(key) == 60 and key.isalnum()
    again = await h.call("POST", "/api/v3/userDataStream", headers=headers)
    assert again.body == {"listenKey": key}  # the account's active key comes back
    ping = await h.call("PUT", "/api/v3/userDataStream", query=f"listenKey={key}", headers=headers)
    assert (ping.status, ping.body) == (200, {})
    other = await h.call(
        "PUT", "/api/v3/userDataStream", query=f"listenKey={key}", headers={"X-MBX-APIKEY": MAKER_KEY}
    )
    assert other.body == {"code": -1125, "msg": "This listenKey does not exist."}
    missing = await h.call("PUT", "/api/v3/userDataStream", headers=headers)
    assert missing.body["code"] == -1102
    closed = await h.call("DELETE", "/api/v3/userDataStream", body=f"listenKey={key}", headers=headers)
    assert closed.body == {}
    gone = await h.call("PUT", "/api/v3/userDataStream", query=f"listenKey={key}", headers=headers)
    assert gone.body["code"] == -1125
    nokey = await h.call("POST", "/api/v3/userDataStream")
    assert (nokey.status, nokey.body["code"]) == (401, -2014)
    h.wall.now += 3_600_000
    fresh = await h.call("POST", "/api/v3/userDataStream", headers=headers)
    assert fresh.body["listenKey"] != key
    h.wall.now += 3_600_000
    lapsed = await h.call(
        "PUT", "/api/v3/userDataStream", query=f"listenKey={fresh.body['listenKey']}", headers=headers
    )
    assert lapsed.body["code"] == -1125
    replaced = await h.call("POST", "/api/v3/userDataStream", headers=headers)
    assert replaced.body["listenKey"] != fresh.body["listenKey"]


async def test_unknown_path_and_method(h: Harness) -> None:
    assert (await h.public("/api/v3/klines")).status == 404
    assert (await h.call("PUT", "/api/v3/order")).status == 405
