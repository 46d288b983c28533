"""Binance parsers: the docs' payload samples in, exact core values out.

One table of (fixture, parser, expected value); then the cases a table row cannot show (markets
skipped and why, executionReport lifecycles, stream terminations) and the malformed variants:
every missing field, wrong type or bare number in place of a string raises ``MalformedMessage``
naming the field, never a crash and never a half-parsed value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from binance_fixtures import load_fixture

from marketlink.core.enums import OrderType, Side, TimeInForce
from marketlink.core.fees import FeeKind, TokenAmount, TradeFee
from marketlink.core.market import (
    Balance,
    BalanceUpdate,
    BookTicker,
    DepthSnapshot,
    DepthUpdate,
    PublicTrade,
    PublishedLimit,
    VenueOrder,
)
from marketlink.core.orders import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from marketlink.core.pairs import SymbolMap
from marketlink.core.rules import TradingRule
from marketlink.net.errors import ConnectionFailed, InsufficientFunds, MalformedMessage, Rejected, ServerError
from marketlink.venues.base import PlaceResult
from marketlink.venues.binance.codec import ORDER_STATUS, STATUS_OF, BinanceSpotCodec

codec = BinanceSpotCodec()
D = Decimal
SYMBOLS = SymbolMap(
    "binance",
    [
        ("BTCUSDT", "BTC-USDT"),
        ("ETHBTC", "ETH-BTC"),
        ("LTCBTC", "LTC-BTC"),
        ("BNBBTC", "BNB-BTC"),
        ("BNBUSDT", "BNB-USDT"),
    ],
)


def inflight(
    pair: str,
    side: Side,
    order_type: OrderType = OrderType.MARKET,
    cid: str = "6gCrw2kRUAF9CvJDGP16IP",
) -> InFlightOrder:
    return InFlightOrder(
        cid,
        pair,
        order_type,
        side,
        D("10"),
        None if order_type is OrderType.MARKET else D("2"),
        1_500_000_000.0,
    )


def usdt_fill(trade_id: int, price: str, qty: str, commission: str) -> TradeUpdate:
    return TradeUpdate(
        str(trade_id),
        "6gCrw2kRUAF9CvJDGP16IP",
        "28",
        "BTC-USDT",
        1507725176.595,
        D(price),
        D(qty),
        TradeFee(FeeKind.DEDUCTED_FROM_RETURNS, flat_fees=(TokenAmount("USDT", D(commission)),)),
        True,
    )


LTC_ORDER = VenueOrder(
    "LTC-BTC",
    "myOrder1",
    "1",
    Side.BUY,
    OrderType.LIMIT,
    D("1.0"),
    D("0.1"),
    D("0.0"),
    OrderState.OPEN,
    1499827319.559,
    TimeInForce.GTC,
    D("0.0"),
    created_at=1499827319.559,  # "time"; the docs' sample never changed, so updateTime is the same
)

PARSERS: list[tuple[str, Callable[[Any], Any], Any]] = [
    ("rest_get_api_v3_time.json", codec.parse_server_time, 1499827319559),
    (
        "rest_get_api_v3_depth.json",
        lambda p: codec.parse_depth_snapshot(p, "BNB-BTC"),
        DepthSnapshot("BNB-BTC", 1027024, [("4.00000000", "431.00000000")], [("4.00000200", "12.00000000")]),
    ),
    (
        "rest_get_api_v3_ticker_price.json",
        lambda p: codec.parse_last_prices(p, {"ETHBTC": "ETH-BTC"}),
        {"ETH-BTC": D("0.07946600")},  # LTCBTC is not in the map: left out
    ),
    (
        "rest_post_api_v3_order_full.json",
        lambda p: codec.parse_place_order(p, inflight("BTC-USDT", Side.SELL)),
        PlaceResult(
            OrderUpdate(  # the placement's transaction time is the order's creation
                "BTC-USDT", 1507725176.595, OrderState.FILLED, "6gCrw2kRUAF9CvJDGP16IP", "28", D("10"),
                created_at=1507725176.595,
            ),
            (
                usdt_fill(56, "4000.00000000", "1.00000000", "4.00000000"),
                usdt_fill(57, "3999.00000000", "5.00000000", "19.99500000"),
                usdt_fill(58, "3998.00000000", "2.00000000", "7.99600000"),
                usdt_fill(59, "3997.00000000", "1.00000000", "3.99700000"),
                usdt_fill(60, "3995.00000000", "1.00000000", "3.99500000"),
            ),
        ),
    ),
    (
        "rest_post_api_v3_order_result.json",
        lambda p: codec.parse_place_order(p, inflight("BTC-USDT", Side.SELL)),
        PlaceResult(
            OrderUpdate(  # the placement's transaction time is the order's creation
                "BTC-USDT", 1507725176.595, OrderState.FILLED, "6gCrw2kRUAF9CvJDGP16IP", "28", D("10"),
                created_at=1507725176.595,
            ),
        ),
    ),
    (
        "rest_delete_api_v3_order.json",
        lambda p: codec.parse_cancel_order(p, inflight("LTC-BTC", Side.BUY, OrderType.LIMIT, "myOrder1")),
        # the order's id is origClientOrderId; clientOrderId names the cancel request
        OrderUpdate("LTC-BTC", 1684804350.068, OrderState.CANCELED, "myOrder1", "4", D("0")),
    ),
    ("rest_get_api_v3_order.json", lambda p: codec.parse_order_status(p, SYMBOLS), LTC_ORDER),
    ("rest_get_api_v3_openOrders.json", lambda p: codec.parse_open_orders(p, SYMBOLS), [LTC_ORDER]),
    (
        "rest_get_api_v3_myTrades.json",
        lambda p: codec.parse_trades(p, SYMBOLS),
        [
            TradeUpdate(  # a buy that paid in BNB, the asset it received: deducted from returns
                "28457",
                None,
                "100234",
                "BNB-BTC",
                1499865549.59,
                D("4.00000100"),
                D("12.00000000"),
                TradeFee(FeeKind.DEDUCTED_FROM_RETURNS, flat_fees=(TokenAmount("BNB", D("10.10000000")),)),
                True,
                D("48.000012"),
            )
        ],
    ),
    (
        "rest_get_api_v3_account.json",
        codec.parse_balances,
        BalanceUpdate(
            (
                Balance("BTC", D("4723846.89208129"), D("4723846.89208129")),
                Balance("LTC", D("4763368.68006011"), D("4763368.68006011")),
            ),
            123456.789,
            complete=True,
        ),
    ),
    (
        "ws_depthUpdate.json",
        lambda p: codec.parse_market_message({"stream": "bnbbtc@depth@100ms", "data": p}, SYMBOLS),
        DepthUpdate("BNB-BTC", 157, 160, [("0.0024", "10")], [("0.0026", "100")], timestamp=1672515782.136),
    ),
    (
        "ws_trade.json",  # m=true: the buyer made the market, the taker sold
        lambda p: codec.parse_market_message({"stream": "bnbbtc@trade", "data": p}, SYMBOLS),
        PublicTrade("BNB-BTC", "12345", D("0.001"), D("100"), Side.SELL, 1672515782.136),
    ),
    (
        "ws_bookTicker.json",
        lambda p: codec.parse_market_message({"stream": "bnbusdt@bookTicker", "data": p}, SYMBOLS),
        BookTicker(
            "BNB-USDT", D("25.35190000"), D("31.21000000"), D("25.36520000"), D("40.66000000"), 400900217
        ),
    ),
    ("ws_subscribe_response.json", lambda p: codec.parse_market_message(p, SYMBOLS), None),
    (
        "ws_executionReport_new.json",
        lambda p: codec.parse_user_message(p, SYMBOLS),
        [
            OrderUpdate(
                "ETH-BTC", 1499405658.657, OrderState.OPEN, "mUvoqJxFIILMdfAW5iGSOW", "4293153", D("0"),
                created_at=1499405658.657,
            )
        ],
    ),
    (
        "ws_executionReport_trade.json",
        lambda p: codec.parse_user_message(p, SYMBOLS),
        [
            TradeUpdate(  # a maker buy charged in ETH, the asset it receives
                "12345",
                "mUvoqJxFIILMdfAW5iGSOW",
                "4293153",
                "ETH-BTC",
                1499405658.699,
                D("0.10264410"),
                D("0.40000000"),
                TradeFee(FeeKind.DEDUCTED_FROM_RETURNS, flat_fees=(TokenAmount("ETH", D("0.0004")),)),
                False,
                D("0.04105764"),
                created_at=1499405658.657,  # "O": the fill carries its order's creation time
            ),
            OrderUpdate(
                "ETH-BTC",
                1499405658.699,
                OrderState.PARTIALLY_FILLED,
                "mUvoqJxFIILMdfAW5iGSOW",
                "4293153",
                D("0.4"),
                created_at=1499405658.657,
            ),
        ],
    ),
    (
        "ws_executionReport_canceled.json",  # C, not c, names the canceled order
        lambda p: codec.parse_user_message(p, SYMBOLS),
        [
            OrderUpdate(
                "ETH-BTC", 1499405658.799, OrderState.CANCELED, "mUvoqJxFIILMdfAW5iGSOW", "4293153", D("0.4"),
                created_at=1499405658.657,
            )
        ],
    ),
    (
        "ws_outboundAccountPosition.json",
        lambda p: codec.parse_user_message(p, SYMBOLS),
        [BalanceUpdate((Balance("ETH", D("10000"), D("10000")),), 1564034571.073)],
    ),
    ("ws_balanceUpdate.json", lambda p: codec.parse_user_message(p, SYMBOLS), []),
    (
        "wsapi_userDataStream_subscribe_signature.json",
        lambda p: codec.parse_user_stream_ack(p, "d3df8a22-98ea-4fe0-9f4e-0fcea5d418b7"),  # type: ignore[arg-type]
        True,
    ),
]


@pytest.mark.parametrize(("fixture", "parse", "expected"), PARSERS, ids=[row[0] for row in PARSERS])
def test_fixture_parses_to_exact_core_values(
    fixture: str, parse: Callable[[Any], Any], expected: Any
) -> None:
    assert parse(load_fixture(fixture)) == expected


def test_parsed_money_is_exact_decimal_from_the_string() -> None:
    result = codec.parse_place_order(
        load_fixture("rest_post_api_v3_order_full.json"), inflight("BTC-USDT", Side.SELL)
    )
    fees = [t.fee.flat_fees[0].amount for t in result.trades]
    assert fees == [D("4.00000000"), D("19.99500000"), D("7.99600000"), D("3.99700000"), D("3.99500000")]
    assert [str(f) for f in fees][1] == "19.99500000"  # the venue's digits, trailing zeros kept


# -- markets ---------------------------------------------------------------------------------------


def test_exchange_info_rules_symbols_and_skips() -> None:
    info = codec.parse_markets(load_fixture("rest_get_api_v3_exchangeInfo.json"))
    assert info.symbols == {"ETHBTC": "ETH-BTC", "BTCUSDT": "BTC-USDT"}
    assert info.rules["ETH-BTC"] == TradingRule(
        "ETH-BTC",
        tick_size=D("0.00000100"),
        step_size=D("0.00100000"),
        min_order_size=D("0.00100000"),
        max_order_size=D("100000.00000000"),
        min_notional=D("10.00000000"),
        max_notional=D("10000.00000000"),
        market_step_size=D("0.00100000"),
        market_min_order_size=D("0.00100000"),
        market_max_order_size=D("100000.00000000"),
        apply_min_notional_to_market=False,
        apply_max_notional_to_market=False,
    )
    # legacy MIN_NOTIONAL; MARKET_LOT_SIZE zeros mean "no bound", LOT_SIZE still binds market orders
    assert info.rules["BTC-USDT"] == TradingRule(
        "BTC-USDT",
        tick_size=D("0.01"),
        step_size=D("0.00001"),
        min_order_size=D("0.00001"),
        max_order_size=D("9000"),
        min_notional=D("5"),
        market_min_order_size=None,
        market_max_order_size=D("120"),
        apply_min_notional_to_market=True,
        apply_max_notional_to_market=True,  # MIN_NOTIONAL has no maximum: the flag is moot
    )
    assert info.skipped == {
        "BNBBTC": "not trading (status BREAK)",
        "LTCBTC": "malformed: PRICE_FILTER.tickSize and LOT_SIZE.stepSize are required",
    }


def symbol_entry(**changes: Any) -> dict[str, Any]:
    entry = copy.deepcopy(load_fixture("rest_get_api_v3_exchangeInfo.json")["symbols"][0])
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (symbol_entry(isSpotTradingAllowed=False), "not trading (status TRADING)"),
        (symbol_entry(baseAsset="币安"), "malformed: baseAsset/quoteAsset: not a BASE-QUOTE trading pair"),
        (symbol_entry(status=None), "malformed: Symbol: Expected `str`, got `null` - at `$.status`"),
        (
            symbol_entry(
                filters=[
                    {"filterType": "PRICE_FILTER", "tickSize": Decimal("0.01")},
                    {"filterType": "LOT_SIZE", "stepSize": "1"},
                ]
            ),
            "malformed: PRICE_FILTER.tickSize: expected a string",
        ),
        (
            symbol_entry(filters=[{"filterType": "PRICE_FILTER", "tickSize": "abc"}]),
            "malformed: PRICE_FILTER.tickSize: not a plain decimal",
        ),
        (
            symbol_entry(filters=[{"filterType": "PRICE_FILTER", "tickSize": "Infinity"}]),
            "malformed: PRICE_FILTER.tickSize: not a plain decimal",
        ),
    ],
)
def test_exchange_info_reports_each_bad_symbol_and_keeps_the_rest(entry: dict[str, Any], reason: str) -> None:
    good = symbol_entry(symbol="BTCUSDT", baseAsset="BTC", quoteAsset="USDT")
    info = codec.parse_markets({"symbols": [entry, good]})
    assert info.symbols == {"BTCUSDT": "BTC-USDT"} and list(info.rules) == ["BTC-USDT"]
    assert info.skipped["ETHBTC"].startswith(reason)


def test_exchange_info_names_entries_without_a_symbol_by_position() -> None:
    info = codec.parse_markets({"symbols": ["junk", {"status": "TRADING"}]})
    assert set(info.skipped) == {"#0", "#1"} and not info.rules


@pytest.mark.parametrize("payload", [None, [], {"symbols": None}, {"symbols": {}}])
def test_exchange_info_without_a_symbol_list_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedMessage, match="symbols"):
        codec.parse_markets(payload)


# -- order lifecycle via executionReport -----------------------------------------------------------


def report(x: str, status: str, **changes: Any) -> dict[str, Any]:
    message = load_fixture("ws_executionReport_new.json")
    message["event"].update(x=x, X=status, **changes)
    return message


@pytest.mark.parametrize(
    ("x", "status", "state"),
    [
        ("NEW", "NEW", OrderState.OPEN),
        ("CANCELED", "CANCELED", OrderState.CANCELED),
        ("EXPIRED", "EXPIRED", OrderState.EXPIRED),  # IOC/FOK leftovers, exchange cancels
        ("TRADE_PREVENTION", "EXPIRED_IN_MATCH", OrderState.EXPIRED),  # self-trade prevention
        ("REJECTED", "REJECTED", OrderState.FAILED),
        ("NEW", "PENDING_NEW", OrderState.PENDING_CREATE),
    ],
)
def test_execution_report_states(x: str, status: str, state: OrderState) -> None:
    (update,) = codec.parse_user_message(report(x, status), SYMBOLS)
    assert isinstance(update, OrderUpdate) and update.new_state is state
    assert update.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"  # C is "" here: c names the order


def test_execution_report_reason_and_fee_in_a_third_asset() -> None:
    (update,) = codec.parse_user_message(report("REJECTED", "REJECTED", r="INSUFFICIENT_BALANCES"), SYMBOLS)
    assert isinstance(update, OrderUpdate) and update.reason == "INSUFFICIENT_BALANCES"
    trade, _ = codec.parse_user_message(
        report("TRADE", "FILLED", l="1", z="1", L="0.1", n="0.0001", N="BNB", t=9, S="SELL", Y=None), SYMBOLS
    )
    assert isinstance(trade, TradeUpdate)
    assert trade.fee == TradeFee(FeeKind.ADDED_TO_COST, flat_fees=(TokenAmount("BNB", D("0.0001")),))
    assert trade.quote_amount is None and trade.quote == D("0.1") and trade.is_taker


def test_trade_fee_in_the_quote_asset_of_a_buy_is_added_to_cost() -> None:
    trade, _ = codec.parse_user_message(
        report("TRADE", "FILLED", l="1", z="1", L="0.1", n="0.0001", N="BTC", t=9), SYMBOLS
    )
    assert isinstance(trade, TradeUpdate) and trade.fee.kind is FeeKind.ADDED_TO_COST


def test_fill_with_a_zero_fee_and_no_asset_has_no_fee() -> None:
    trade, _ = codec.parse_user_message(
        report("TRADE", "FILLED", l="1", z="1", L="0.1", n="0", N=None, t=9), SYMBOLS
    )
    assert isinstance(trade, TradeUpdate) and trade.fee.flat_fees == ()


def test_events_of_unmapped_symbols_and_unknown_kinds_carry_nothing() -> None:
    assert codec.parse_user_message(report("NEW", "NEW", s="XYZBTC"), SYMBOLS) == []
    assert codec.parse_user_message({"subscriptionId": 0, "event": {"e": "listStatus"}}, SYMBOLS) == []
    assert (
        codec.parse_user_message({"id": 5, "status": 200, "result": {}}, SYMBOLS) == []
    )  # a request's answer


def test_legacy_unwrapped_events_parse_too() -> None:
    event = load_fixture("ws_executionReport_new.json")["event"]
    assert codec.parse_user_message(event, SYMBOLS) == codec.parse_user_message(
        load_fixture("ws_executionReport_new.json"), SYMBOLS
    )


@pytest.mark.parametrize(
    "message",
    [
        load_fixture("ws_eventStreamTerminated.json"),
        {"e": "listenKeyExpired", "E": 1, "listenKey": "k"},
        {"subscriptionId": 0, "event": {"e": "serverShutdown", "E": 1}},
    ],
)
def test_end_of_the_private_stream_asks_for_a_reconnect(message: Any) -> None:
    with pytest.raises(ConnectionFailed, match="user data stream ended"):
        codec.parse_user_message(message, SYMBOLS)


def test_status_table_reverse_is_derived_and_total_over_what_binance_reports() -> None:
    assert {STATUS_OF[state] for state in set(ORDER_STATUS.values())} <= set(ORDER_STATUS)
    assert STATUS_OF[OrderState.EXPIRED] == "EXPIRED" and STATUS_OF[OrderState.FAILED] == "REJECTED"
    assert all(ORDER_STATUS[STATUS_OF[state]] is state for state in STATUS_OF)


# -- acknowledgements and other control frames -----------------------------------------------------


def test_user_stream_ack_for_another_request_is_not_ours() -> None:
    ack = load_fixture("wsapi_userDataStream_subscribe_signature.json")
    assert codec.parse_user_stream_ack(ack, 99) is None
    assert codec.parse_user_stream_ack("text", 1) is None


def test_user_stream_refusal_is_a_typed_error() -> None:
    error = load_fixture("wsapi_error.json")
    refused = codec.parse_user_stream_ack(error, error["id"])
    assert isinstance(refused, InsufficientFunds) and refused.code == -2010 and refused.status == 400
    assert isinstance(codec.parse_user_stream_ack({"id": 1, "status": 503}, 1), ServerError)
    odd = codec.parse_user_stream_ack({"id": 1, "status": 200, "error": "?"}, 1)  # no usable error object
    assert isinstance(odd, Rejected) and odd.status == 400


def test_user_stream_ack_without_subscription_id_is_malformed() -> None:
    result = codec.parse_user_stream_ack({"id": 1, "status": 200, "result": {}}, 1)
    assert isinstance(result, MalformedMessage) and "subscriptionId" in result.message


def test_market_frames_raw_and_combined_parse_alike() -> None:
    raw = load_fixture("ws_trade.json")
    assert codec.parse_market_message(raw, SYMBOLS) == codec.parse_market_message(
        {"stream": "bnbbtc@trade", "data": raw}, SYMBOLS
    )


@pytest.mark.parametrize(
    ("message", "key"),
    [
        ({"stream": "bnbbtc@depth@100ms", "data": {}}, "bnbbtc@depth@100ms"),
        (load_fixture("ws_depthUpdate.json"), "bnbbtc@depth@100ms"),
        (load_fixture("ws_trade.json"), "bnbbtc@trade"),
        (load_fixture("ws_bookTicker.json"), "bnbusdt@bookTicker"),
        (load_fixture("ws_subscribe_response.json"), None),
        ({"e": "aggTrade", "s": "BNBBTC"}, None),
        ({"s": "BNBBTC"}, None),
        ({"e": ["unhashable"], "s": "BNBBTC"}, None),
        ("text", None),
    ],
)
def test_market_message_key(message: Any, key: str | None) -> None:
    assert codec.market_message_key(message) == key


def test_market_control_frames() -> None:
    assert (
        codec.parse_market_message({"stream": "!serverShutdown", "data": {"e": "serverShutdown"}}, SYMBOLS)
        is None
    )
    with pytest.raises(Rejected, match="Invalid request") as caught:
        codec.parse_market_message({"code": 2, "msg": "Invalid request: unknown property", "id": 1}, SYMBOLS)
    assert caught.value.code == 2


# -- malformed variants ----------------------------------------------------------------------------


def without(fixture: str, field: str, path: tuple[str | int, ...] = ()) -> Any:
    payload = load_fixture(fixture)
    node = payload
    for step in path:
        node = node[step]
    del node[field]
    return payload


def replaced(fixture: str, field: str, value: Any, path: tuple[str | int, ...] = ()) -> Any:
    payload = load_fixture(fixture)
    node = payload
    for step in path:
        node = node[step]
    node[field] = value
    return payload


def place(p: Any) -> Any:
    return codec.parse_place_order(p, inflight("BTC-USDT", Side.SELL))


def user(p: Any) -> Any:
    return codec.parse_user_message(p, SYMBOLS)


def market(p: Any) -> Any:
    return codec.parse_market_message(p, SYMBOLS)


EVENT = ("event",)
MALFORMED: list[tuple[str, Callable[[Any], Any], Any, str]] = [
    # missing fields
    ("time: serverTime missing", codec.parse_server_time, {}, "serverTime"),
    (
        "depth: lastUpdateId missing",
        lambda p: codec.parse_depth_snapshot(p, "X-Y"),
        without("rest_get_api_v3_depth.json", "lastUpdateId"),
        "lastUpdateId",
    ),
    ("order: status missing", place, without("rest_post_api_v3_order_full.json", "status"), "status"),
    (
        "fill: commissionAsset missing",
        place,
        without("rest_post_api_v3_order_full.json", "commissionAsset", ("fills", 2)),
        "`commissionAsset` - at `$.fills[2]`",
    ),
    (
        "query: updateTime missing",
        lambda p: codec.parse_order_status(p, SYMBOLS),
        without("rest_get_api_v3_order.json", "updateTime"),
        "updateTime",
    ),
    (
        "account: balances missing",
        codec.parse_balances,
        without("rest_get_api_v3_account.json", "balances"),
        "balances",
    ),
    ("report: z missing", user, without("ws_executionReport_trade.json", "z", EVENT), "field `z`"),
    ("depthUpdate: U missing", market, without("ws_depthUpdate.json", "U"), "field `U`"),
    ("bookTicker: a missing", market, without("ws_bookTicker.json", "a"), "field `a`"),
    # wrong types
    (
        "depth: level not a pair",
        lambda p: codec.parse_depth_snapshot(p, "X-Y"),
        replaced("rest_get_api_v3_depth.json", "bids", [["4.0"]]),
        "bids[0]",
    ),
    ("trade: t as text", market, replaced("ws_trade.json", "t", "12345"), "`$.t`"),
    ("trade: m as text", market, replaced("ws_trade.json", "m", "true"), "`$.m`"),
    ("report: i as text", user, replaced("ws_executionReport_new.json", "i", "4293153", EVENT), "`$.i`"),
    ("user: event not an object", user, {"subscriptionId": 0, "event": [1]}, "event"),
    ("user: not an object", user, "text", "event"),
    ("market: not an object", market, {"stream": "x", "data": None}, "market message"),
    (
        "markets: prices not a list",
        lambda p: codec.parse_last_prices(p, SYMBOLS),
        {"symbol": "X"},
        "Expected `array`",
    ),
    # a bare JSON number where Binance sends a string (decoded as Decimal, or a float)
    (
        "depth: number price",
        lambda p: codec.parse_depth_snapshot(p, "X-Y"),
        replaced("rest_get_api_v3_depth.json", "asks", [[D("4.000002"), "12"]]),
        "asks[0][0]",
    ),
    ("trade: number price", market, replaced("ws_trade.json", "p", D("0.001")), "`$.p`"),
    ("trade: float quantity", market, replaced("ws_trade.json", "q", 100.0), "`$.q`"),
    (
        "fill: number qty",
        place,
        replaced("rest_post_api_v3_order_full.json", "qty", D("1.0"), ("fills", 0)),
        "fills[0].qty",
    ),
    (
        "report: number last price",
        user,
        replaced("ws_executionReport_trade.json", "L", D("0.1"), EVENT),
        "`$.L`",
    ),
    (
        "position: number free",
        user,
        replaced("ws_outboundAccountPosition.json", "f", 1.5, ("event", "B", 0)),
        "`$.B[0].f`",
    ),
    (
        "myTrades: number commission",
        lambda p: codec.parse_trades(p, SYMBOLS),
        replaced("rest_get_api_v3_myTrades.json", "commission", D("10.1"), (0,)),
        "[0].commission",
    ),
    # strings that are not numbers, values Binance does not send
    ("trade: price not a number", market, replaced("ws_trade.json", "p", "0.0O1"), "p: not a plain decimal"),
    ("trade: price NaN", market, replaced("ws_trade.json", "p", "NaN"), "p: not a plain decimal"),
    ("trade: unknown symbol", market, replaced("ws_trade.json", "s", "XYZBTC"), "unknown symbol"),
    ("depthUpdate: unknown symbol", market, replaced("ws_depthUpdate.json", "s", "XYZBTC"), "unknown symbol"),
    ("market: unknown event", market, {"e": "aggTrade", "s": "BNBBTC"}, "e: unexpected market message"),
    (
        "order: unknown status",
        place,
        replaced("rest_post_api_v3_order_full.json", "status", "ON_FIRE"),
        "status",
    ),
    (
        "query: unknown type",
        lambda p: codec.parse_order_status(p, SYMBOLS),
        replaced("rest_get_api_v3_order.json", "type", "STOP_LOSS"),
        "type",
    ),
    (
        "query: unknown side",
        lambda p: codec.parse_order_status(p, SYMBOLS),
        replaced("rest_get_api_v3_order.json", "side", "SHORT"),
        "side",
    ),
    (
        "query: unknown symbol",
        lambda p: codec.parse_order_status(p, SYMBOLS),
        replaced("rest_get_api_v3_order.json", "symbol", "XYZBTC"),
        "unknown symbol",
    ),
    (
        "myTrades: unknown symbol",
        lambda p: codec.parse_trades(p, SYMBOLS),
        replaced("rest_get_api_v3_myTrades.json", "symbol", "XYZBTC", (0,)),
        "unknown symbol",
    ),
    ("report: unknown status", user, replaced("ws_executionReport_new.json", "X", "ON_FIRE", EVENT), "X"),
    (
        "report: unknown side on a fill",
        user,
        replaced("ws_executionReport_trade.json", "S", "SHORT", EVENT),
        "S",
    ),
    ("report: zero fill", user, replaced("ws_executionReport_trade.json", "l", "0", EVENT), "fill amount"),
    ("report: fee without asset", user, replaced("ws_executionReport_trade.json", "N", None, EVENT), "N:"),
    (
        "cancel: negative executed",
        lambda p: codec.parse_cancel_order(p, inflight("LTC-BTC", Side.BUY)),
        replaced("rest_delete_api_v3_order.json", "executedQty", "-1"),
        "executedQty: not a plain decimal",  # refused by the number format before the core type
    ),
    (
        "order: zero fill price",
        place,
        replaced("rest_post_api_v3_order_full.json", "price", "0", ("fills", 1)),
        "fill price",
    ),
    (
        "account: free not a number",
        codec.parse_balances,
        replaced("rest_get_api_v3_account.json", "free", "", ("balances", 0)),
        "free",
    ),
]


@pytest.mark.parametrize(("case", "parse", "payload", "names"), MALFORMED, ids=[row[0] for row in MALFORMED])
def test_malformed_payload_raises_naming_the_field(
    case: str, parse: Callable[[Any], Any], payload: Any, names: str
) -> None:
    with pytest.raises(MalformedMessage) as caught:
        parse(payload)
    assert names in caught.value.message
    assert caught.value.venue == "binance"


def test_open_orders_leave_out_what_is_not_ours() -> None:
    listing = load_fixture("rest_get_api_v3_openOrders.json")
    stop = dict(listing[0], type="STOP_LOSS_LIMIT", clientOrderId="manual")
    elsewhere = dict(listing[0], symbol="XYZBTC")
    market_order = dict(listing[0], type="MARKET", price="0.00000000", timeInForce="GTC")
    parsed = codec.parse_open_orders([*listing, stop, elsewhere, market_order], SYMBOLS)
    assert parsed[:1] == [LTC_ORDER] and len(parsed) == 2
    assert parsed[1].order_type is OrderType.MARKET and parsed[1].price is None


def test_cancel_and_order_answers_without_times_fall_back() -> None:
    order = inflight("LTC-BTC", Side.BUY, OrderType.LIMIT, "myOrder1")
    update = codec.parse_cancel_order(without("rest_delete_api_v3_order.json", "transactTime"), order)
    assert update.timestamp == order.last_update_timestamp
    placed = place(without("rest_post_api_v3_order_result.json", "transactTime"))
    assert placed.update.timestamp == 1_500_000_000.0
    query = without("rest_get_api_v3_order.json", "updateTime")
    assert codec.parse_order_status(dict(query, transactTime=1000), SYMBOLS).timestamp == 1.0


def test_exchange_info_publishes_the_rate_limits_in_seconds() -> None:
    info = codec.parse_markets(load_fixture("rest_get_api_v3_exchangeInfo.json"))
    assert info.rate_limits == [
        PublishedLimit("REQUEST_WEIGHT", 60.0, 6_000),
        PublishedLimit("ORDERS", 10.0, 50),
        PublishedLimit("ORDERS", 86_400.0, 160_000),
        PublishedLimit("RAW_REQUESTS", 300.0, 61_000),
    ]


def test_exchange_info_names_each_unreadable_rate_limit_and_keeps_the_rest() -> None:
    good = {"rateLimitType": "ORDERS", "interval": "HOUR", "intervalNum": 2, "limit": 7}
    info = codec.parse_markets({"symbols": [], "rateLimits": [
        {"rateLimitType": "ORDERS", "interval": "WEEK", "intervalNum": 1, "limit": 5},
        good,
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 0, "limit": 5},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 1, "limit": "5"},
        "nonsense",
    ]})
    assert info.rate_limits == [PublishedLimit("ORDERS", 7_200.0, 7)]
    assert set(info.skipped) == {"rateLimits[0]", "rateLimits[2]", "rateLimits[3]", "rateLimits[4]"}
    assert "WEEK" in info.skipped["rateLimits[0]"]
    assert codec.parse_markets({"symbols": []}).rate_limits == []  # none published: the spec's stand
