"""The Binance Spot codec against the findings of audit A, one section per finding.

myTrades paging, the spot client-id alphabet, outcome-unknown and -2011 classification, extreme
numbers (every parser answers ``MalformedMessage``, never ``decimal.Overflow``/``OverflowError``
nor a rounded total), impossible values, and MARKET orders under LOT_SIZE, MARKET_LOT_SIZE and
NOTIONAL's two market switches. Payloads with huge integers go through ``jsoncodec.decode`` from
JSON text, as the network layer hands them over.
"""

from __future__ import annotations

import copy
import json
import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from binance_fixtures import load_fixture
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.client_ids import ClientOrderIdFactory
from marketlink.core.enums import OrderType, Side
from marketlink.core.errors import ConfigError
from marketlink.core.fees import FeeKind, TradeFee
from marketlink.core.market import BookTicker
from marketlink.core.orders import InFlightOrder, TradeUpdate
from marketlink.core.rules import TradingRule
from marketlink.net import jsoncodec
from marketlink.net.errors import MalformedMessage, OrderNotFound, RateLimited, Rejected, ServerError
from marketlink.venues.binance import SPEC
from marketlink.venues.binance.codec import MAX_TRADES_PAGE, BinanceSpotCodec, _common_step

codec = BinanceSpotCodec()
D = Decimal
SYMBOLS = {"BTCUSDT": "BTC-USDT", "ETHBTC": "ETH-BTC", "LTCBTC": "LTC-BTC", "BNBBTC": "BNB-BTC",
           "BNBUSDT": "BNB-USDT"}
#: Spot's rule in the server's own -1100 message (binance-spot-api-docs PR #34; fix-api.md).
SPOT_CLIENT_ID = re.compile(r"[a-zA-Z0-9_-]{1,36}")
BIG = "1" + "0" * 400  # a valid JSON integer no float holds


def order(
    pair: str = "BTC-USDT", side: Side = Side.SELL, order_type: OrderType = OrderType.MARKET
) -> InFlightOrder:
    price = None if order_type is OrderType.MARKET else D("2")
    return InFlightOrder("6gCrw2kRUAF9CvJDGP16IP", pair, order_type, side, D("10"), price, 1.0)


def wire(payload: Any, replace: tuple[str, str] | None = None) -> Any:
    """``payload`` as the network layer delivers it, after one textual replacement."""
    text = json.dumps(payload)
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    return jsoncodec.decode(text.encode())


def trade(trade_id: int) -> TradeUpdate:
    return TradeUpdate(
        str(trade_id), None, "28", "BTC-USDT", 1.0, D("1"), D("1"), TradeFee(FeeKind.ADDED_TO_COST), True
    )


# -- 1. myTrades paging -------------------------------------------------------------------------------


def test_trades_request_sends_the_largest_page_from_trade_zero_at_weight_5() -> None:
    first = codec.order_trades_request("BTCUSDT", "28")
    assert first.params == {"symbol": "BTCUSDT", "orderId": "28", "fromId": "0", "limit": MAX_TRADES_PAGE}
    assert dict((c.limit_id, c.weight) for c in first.costs)["REQUEST_WEIGHT"] == 5
    later = codec.order_trades_request("BTCUSDT", "28", from_trade_id="9001")
    assert later.params is not None and later.params["fromId"] == "9001"
    assert codec.trades_page_size == MAX_TRADES_PAGE == 1000


def test_trades_page_size_is_configurable_within_binance_bounds() -> None:
    small = BinanceSpotCodec(trades_page_size=2)
    req = small.order_trades_request("BTCUSDT", "28")
    assert req.params is not None and req.params["limit"] == 2
    for bad in (0, 1001, -1, True, 2.0):
        with pytest.raises(ConfigError, match="trades_page_size"):
            BinanceSpotCodec(trades_page_size=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "-1", "1.5", "abc", "١٢"])
def test_from_trade_id_must_be_a_trade_id(bad: str) -> None:
    with pytest.raises(ValueError, match="from_trade_id"):
        codec.order_trades_request("BTCUSDT", "28", from_trade_id=bad)


def test_next_page_starts_above_the_highest_id_of_a_full_page_and_a_short_page_ends() -> None:
    small = BinanceSpotCodec(trades_page_size=3)
    assert small.next_trades_from([trade(7), trade(5), trade(6)]) == "8"  # fromId is inclusive
    assert small.next_trades_from([trade(7), trade(8)]) is None
    assert small.next_trades_from([]) is None
    assert codec.next_trades_from([trade(i) for i in range(999)]) is None
    assert codec.next_trades_from([trade(i) for i in range(1000)]) == "1000"


# -- 2. client order ids ------------------------------------------------------------------------------


def test_spec_alphabet_is_exactly_spots() -> None:
    alphabet = set(SPEC.client_ids.alphabet)
    assert alphabet == set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert all(SPOT_CLIENT_ID.fullmatch(c) for c in alphabet)


@pytest.mark.parametrize("prefix", ["bot.1", "x:desk", "a/b"])
def test_a_prefix_spot_refuses_is_a_config_error(prefix: str) -> None:
    ids = SPEC.client_ids
    with pytest.raises(ConfigError, match="characters the venue refuses"):
        ClientOrderIdFactory(prefix, ids.max_length, ids.alphabet)


def test_generated_ids_pass_spots_rule() -> None:
    ids = SPEC.client_ids
    clock = iter(range(1_800_000_000, 1_800_000_400))
    factory = ClientOrderIdFactory(
        "x-desk_1", ids.max_length, ids.alphabet, clock=lambda: float(next(clock)), entropy=lambda n: bytes(n)
    )
    for side in (Side.BUY, Side.SELL):
        for pair in ("BTC-USDT", "1000SATS-FDUSD", "A-B"):
            cid = factory.new(side, pair)
            assert SPOT_CLIENT_ID.fullmatch(cid), cid


# -- 3. error classification --------------------------------------------------------------------------

UNKNOWN_OUTCOME = [
    (-1000, "An unknown error occurred while processing the request."),
    (-1001, "Internal error; unable to process your request. Please try again."),
    (-1006, "An unexpected response was received from the message bus. Execution status unknown."),
    (-1007, "Timeout waiting for response from backend server. Send status unknown; "
            "execution status unknown."),
    (-1008, "Server is currently overloaded with other requests. Please try again in a few minutes."),
]


@pytest.mark.parametrize("status", [400, 408, 503])
@pytest.mark.parametrize(("code", "msg"), UNKNOWN_OUTCOME, ids=[str(c) for c, _ in UNKNOWN_OUTCOME])
def test_outcome_unknown_codes_are_server_errors_whatever_the_status(
    status: int, code: int, msg: str
) -> None:
    err = codec.classify_error(status, {}, {"code": code, "msg": msg})
    assert type(err) is ServerError and err.code == code and err.status == status


CANCEL_REJECTED = [
    ("Unknown order sent.", OrderNotFound),
    ("This account may not place or cancel orders.", Rejected),
    ("Market is closed.", Rejected),
    ("Rest API trading is not enabled.", Rejected),
    ("Order was not canceled due to cancel restrictions.", Rejected),
    ("This action is disabled on this account.", Rejected),
]


@pytest.mark.parametrize(("msg", "kind"), CANCEL_REJECTED, ids=[m for m, _ in CANCEL_REJECTED])
def test_2011_is_not_found_only_for_an_unknown_order(msg: str, kind: type) -> None:
    err = codec.classify_error(400, {}, {"code": -2011, "msg": msg})
    assert type(err) is kind and err.code == -2011 and err.message == msg


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "1e999"])
def test_a_retry_after_no_throttler_can_wait_for_is_dropped(value: str) -> None:
    err = codec.classify_error(429, {"Retry-After": value}, None)
    assert isinstance(err, RateLimited) and err.retry_after is None


# -- 4. extreme numbers -------------------------------------------------------------------------------


def _account(free: str, locked: str = "0.00000000") -> Any:
    payload = load_fixture("rest_get_api_v3_account.json")
    payload["balances"][0].update(free=free, locked=locked)
    return payload


def test_balance_totals_are_exact_or_refused() -> None:
    free = "1" + "0" * 91 + ".50000001"  # 100 significant digits with the locked part: exact
    total = codec.parse_balances(_account(free, "0.00000001")).balances[0].total
    assert total == D("1" + "0" * 91 + ".50000002")
    with pytest.raises(MalformedMessage, match="free \\+ locked"):  # 101 digits: would round
        codec.parse_balances(_account("1" + "0" * 92 + ".50000001", "0.00000001"))
    with pytest.raises(MalformedMessage):  # overflows the context: never decimal.Overflow
        codec.parse_balances(_account("9" * 1_000_001, "9"))


def test_exponents_are_refused_before_any_arithmetic() -> None:
    for bad in ("1E+1000000", "1e999999", "1E-1000000"):
        with pytest.raises(MalformedMessage, match="free"):
            codec.parse_balances(wire(_account(bad)))
        position = load_fixture("ws_outboundAccountPosition.json")
        position["event"]["B"][0]["f"] = bad
        with pytest.raises(MalformedMessage, match="f:"):
            codec.parse_user_message(position, SYMBOLS)


TIMESTAMPS = [
    ("account updateTime", "rest_get_api_v3_account.json", '"updateTime": 123456789',
     lambda p: codec.parse_balances(p)),
    ("server time", "rest_get_api_v3_time.json", None, lambda p: codec.parse_server_time(p)),
    ("myTrades time", "rest_get_api_v3_myTrades.json", '"time": 1499865549590',
     lambda p: codec.parse_trades(p, SYMBOLS)),
    ("order updateTime", "rest_get_api_v3_order.json", None, lambda p: codec.parse_order_status(p, SYMBOLS)),
    ("placement transactTime", "rest_post_api_v3_order_full.json", None,
     lambda p: codec.parse_place_order(p, order())),
    ("executionReport T", "ws_executionReport_trade.json", None,
     lambda p: codec.parse_user_message(p, SYMBOLS)),
    ("account position u", "ws_outboundAccountPosition.json", '"u": 1564034571073',
     lambda p: codec.parse_user_message(p, SYMBOLS)),
    ("public trade T", "ws_trade.json", None, lambda p: codec.parse_market_message(p, SYMBOLS)),
    ("depth diff E (checked path)", "ws_depthUpdate.json", '"E": 1672515782136',
     lambda p: codec.parse_market_message(p, SYMBOLS)),
]


def _time_field(payload: Any) -> str:
    text = json.dumps(payload)
    for key in ("serverTime", "updateTime", "transactTime", "time", "T", "E"):
        found = re.search(rf'"{key}": (\d+)', text)
        if found:
            return found.group(0)
    raise AssertionError("no time field")


@pytest.mark.parametrize("value", [BIG, "-1", str(2**53 + 1)])
@pytest.mark.parametrize(("case", "fixture", "field", "parse"), TIMESTAMPS, ids=[t[0] for t in TIMESTAMPS])
def test_times_out_of_range_are_malformed(case: str, fixture: str, field: str | None, parse: Any,
                                          value: str) -> None:
    payload = load_fixture(fixture)
    field = field or _time_field(payload)
    parse(wire(payload))  # the sample itself parses
    with pytest.raises(MalformedMessage):
        parse(wire(payload, (field, field.split(": ")[0] + ": " + value)))


def _depth_frame(event_time: str) -> bytes:
    data = (
        f'{{"e":"depthUpdate","E":{event_time},"s":"BNBBTC","U":157,"u":160,'
        '"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
    )
    return f'{{"stream":"bnbbtc@depth@100ms","data":{data}}}'.encode()


def test_depth_fast_path_bounds_the_event_time() -> None:
    ok = codec.parse_market_message(codec.decode_market(_depth_frame("1672515782136")), SYMBOLS)
    assert ok is not None and ok.timestamp == 1672515782.136
    for value in (BIG, "-5", str(2**53 + 1)):
        message = codec.decode_market(_depth_frame(value))  # falls back to the checked path
        with pytest.raises(MalformedMessage, match="E"):
            codec.parse_market_message(message, SYMBOLS)


def test_absurd_rate_limit_windows_are_skipped_not_raised() -> None:
    info = load_fixture("rest_get_api_v3_exchangeInfo.json")
    info["rateLimits"] = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": int(BIG), "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": int(BIG)},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
    ]
    parsed = codec.parse_markets(info)
    assert [(r.limit_id, r.capacity) for r in parsed.rate_limits] == [("ORDERS", 160000)]
    assert set(parsed.skipped) >= {"rateLimits[0]", "rateLimits[1]"}


# -- 5. impossible values -----------------------------------------------------------------------------

NOT_PLAIN = ["-5", "-0", "+1", " 1 ", "1_000", "1e3", "NaN", "Infinity", "", ".", "1.2.3", "0x10", "١", "5\n"]


@pytest.mark.parametrize("text", NOT_PLAIN)
def test_only_plain_decimals_are_numbers(text: str) -> None:
    with pytest.raises(MalformedMessage, match="free: not a plain decimal"):
        codec.parse_balances(_account(text))
    with pytest.raises(MalformedMessage, match="price"):
        codec.parse_last_prices([{"symbol": "BTCUSDT", "price": text}], SYMBOLS)


def test_plain_decimals_still_parse_exactly() -> None:
    cases = [("0", D(0)), ("12", D(12)), ("0.00000001", D("1E-8")), ("1.", D(1)), (".5", D("0.5"))]
    for text, value in cases:
        assert codec.parse_balances(_account(text)).balances[0].available == value


@pytest.mark.parametrize("field", ["origQty", "price", "executedQty", "cummulativeQuoteQty"])
def test_negative_order_amounts_are_malformed(field: str) -> None:
    for fixture, parse in [
        ("rest_get_api_v3_order.json", lambda p: codec.parse_order_status(p, SYMBOLS)),
        ("rest_get_api_v3_openOrders.json", lambda p: codec.parse_open_orders(p, SYMBOLS)),
    ]:
        payload = load_fixture(fixture)
        entry = payload[0] if isinstance(payload, list) else payload
        entry[field] = "-" + entry[field]
        with pytest.raises(MalformedMessage, match=field):
            parse(payload)


def test_a_limit_order_at_price_zero_is_malformed() -> None:
    payload = load_fixture("rest_get_api_v3_order.json")
    payload["price"] = "0.00000000"
    with pytest.raises(MalformedMessage, match="price: must be positive"):
        codec.parse_order_status(payload, SYMBOLS)


def test_negative_balances_are_malformed() -> None:
    with pytest.raises(MalformedMessage, match="locked"):
        codec.parse_balances(_account("1", "-0.5"))
    position = load_fixture("ws_outboundAccountPosition.json")
    position["event"]["B"][0]["f"] = "-10000.000000"
    with pytest.raises(MalformedMessage, match="f:"):
        codec.parse_user_message(position, SYMBOLS)


def _ticker(**change: str) -> Any:
    return {"stream": "bnbusdt@bookTicker", "data": {**load_fixture("ws_bookTicker.json"), **change}}


@pytest.mark.parametrize(
    "change",
    [{"b": "-25.35190000"}, {"b": "0", "B": "1"}, {"a": "0.00000000", "A": "2"}, {"B": "-1"}, {"A": "1e2"}],
)
def test_impossible_book_tickers_are_malformed(change: dict[str, str]) -> None:
    with pytest.raises(MalformedMessage):
        codec.parse_market_message(_ticker(**change), SYMBOLS)


def test_an_empty_book_side_is_none_not_a_zero_price() -> None:
    ticker = codec.parse_market_message(_ticker(b="0.00000000", B="0.00000000"), SYMBOLS)
    assert ticker == BookTicker("BNB-USDT", None, None, D("25.36520000"), D("40.66000000"), 400900217)


def test_a_commission_needs_its_asset() -> None:
    trades = load_fixture("rest_get_api_v3_myTrades.json")
    trades[0]["commissionAsset"] = ""
    with pytest.raises(MalformedMessage, match="commission without a commission asset"):
        codec.parse_trades(trades, SYMBOLS)
    full = load_fixture("rest_post_api_v3_order_full.json")
    full["fills"][0]["commissionAsset"] = ""
    with pytest.raises(MalformedMessage, match="commission without a commission asset"):
        codec.parse_place_order(full, order())
    trades[0]["commission"] = "0.00000000"  # no fee, no asset: consistent
    assert codec.parse_trades(trades, SYMBOLS)[0].fee == TradeFee(kind=FeeKind.ADDED_TO_COST)


def test_a_report_with_an_unknown_side_is_malformed_even_without_a_fill() -> None:
    report = load_fixture("ws_executionReport_new.json")
    report["event"]["S"] = "HOLD"
    with pytest.raises(MalformedMessage, match="S:"):
        codec.parse_user_message(report, SYMBOLS)


# -- 6. MARKET orders under both lot filters and NOTIONAL ---------------------------------------------


def _btcusdt(
    lot_step: str, market_step: str, *, apply_min: bool = True, apply_max: bool = False
) -> TradingRule:
    symbol = {
        "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "isSpotTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "minQty": lot_step, "maxQty": "9000", "stepSize": lot_step},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0", "maxQty": "100", "stepSize": market_step},
            {"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": apply_min,
             "maxNotional": "9000000", "applyMaxToMarket": apply_max, "avgPriceMins": 5},
        ],
    }
    return codec.parse_markets({"symbols": [symbol]}).rules["BTC-USDT"]


def test_a_market_order_needs_both_steps() -> None:
    rule = _btcusdt("0.001", "0.00001")
    violation = rule.check(OrderType.MARKET, Side.BUY, D("0.01234"), D("60000"))
    assert violation is not None and violation.rule == "step_size"
    assert rule.quantize_amount(D("0.01234"), OrderType.MARKET) == D("0.012")
    assert rule.check(OrderType.MARKET, Side.BUY, D("0.012"), D("60000")) is None
    # steps that do not divide each other: the market step is their least common multiple
    odd = _btcusdt("0.01", "0.004")
    assert odd.market_step_size == D("0.02")
    assert odd.quantize_amount(D("0.05"), OrderType.MARKET) == D("0.04")
    assert odd.check(OrderType.MARKET, Side.SELL, D("0.04"), D("60000")) is None
    assert odd.check(OrderType.MARKET, Side.SELL, D("0.03"), D("60000")).rule == "step_size"  # type: ignore[union-attr]
    assert odd.check(OrderType.LIMIT, Side.SELL, D("0.03"), D("60000")) is None  # limits keep LOT_SIZE's


def test_market_lot_bounds_narrow_lot_size() -> None:
    rule = _btcusdt("0.001", "0.00001")
    assert rule.check(OrderType.MARKET, Side.BUY, D("101"), D("10")).rule == "max_order_size"  # type: ignore[union-attr]
    assert rule.check(OrderType.LIMIT, Side.BUY, D("101"), D("10")) is None


def test_notional_switches_apply_separately_to_market_orders() -> None:
    live = _btcusdt("0.00001", "0.00001", apply_min=True, apply_max=False)  # live BTCUSDT's shape
    assert live.apply_min_notional_to_market and live.apply_max_notional_to_market is False
    assert live.check(OrderType.MARKET, Side.BUY, D("99"), D("100000")) is None  # 9.9M over the max
    assert live.check(OrderType.LIMIT, Side.BUY, D("99"), D("100000")).rule == "max_notional"  # type: ignore[union-attr]
    assert live.check(OrderType.MARKET, Side.BUY, D("0.00001"), D("60000")).rule == "min_notional"  # type: ignore[union-attr]
    strict = _btcusdt("0.00001", "0.00001", apply_min=False, apply_max=True)
    assert strict.check(OrderType.MARKET, Side.BUY, D("99"), D("100000")).rule == "max_notional"  # type: ignore[union-attr]
    assert strict.check(OrderType.MARKET, Side.BUY, D("0.00001"), D("60000")) is None


def test_trading_rule_max_switch_defaults_to_the_min_switch() -> None:
    base: dict[str, Any] = {"min_notional": D("10"), "max_notional": D("100")}
    cases = [(True, None, True, True), (False, None, False, False), (False, True, False, True),
             (True, False, True, False)]
    for apply_min, apply_max, min_judged, max_judged in cases:
        rule = TradingRule("X-Y", D("0.01"), D("0.01"), **base, apply_min_notional_to_market=apply_min,
                           apply_max_notional_to_market=apply_max)
        low = rule.check(OrderType.MARKET, Side.BUY, D("1"), D("1"))
        high = rule.check(OrderType.MARKET, Side.BUY, D("1000"), D("1"))
        assert (low is not None) is min_judged and (high is not None) is max_judged
        assert rule.check(OrderType.LIMIT, Side.BUY, D("1000"), D("1")).rule == "max_notional"  # type: ignore[union-attr]


steps = st.builds(lambda n, e: D(n).scaleb(-e), st.integers(1, 10_000), st.integers(0, 18))


@settings(max_examples=200, deadline=None)
@given(a=steps, b=steps)
def test_common_step_is_the_least_common_multiple(a: Decimal, b: Decimal) -> None:
    m = Fraction(_common_step(a, b))
    qa, qb = m / Fraction(a), m / Fraction(b)
    assert qa.denominator == 1 and qb.denominator == 1  # a multiple of both
    assert math.gcd(qa.numerator, qb.numerator) == 1  # and no smaller common multiple exists


def test_market_step_none_without_market_lot_step() -> None:
    rule = _btcusdt("0.001", "0")
    assert rule.market_step_size is None
    assert rule.quantize_amount(D("0.01234"), OrderType.MARKET) == D("0.012")


def test_fixture_payloads_still_parse() -> None:
    # the hardening refuses nothing Binance's documented samples contain
    codec.parse_balances(load_fixture("rest_get_api_v3_account.json"))
    codec.parse_trades(load_fixture("rest_get_api_v3_myTrades.json"), SYMBOLS)
    codec.parse_open_orders(load_fixture("rest_get_api_v3_openOrders.json"), SYMBOLS)
    codec.parse_place_order(load_fixture("rest_post_api_v3_order_full.json"), order())
    for name in ("ws_executionReport_new.json", "ws_executionReport_trade.json",
                 "ws_executionReport_canceled.json", "ws_outboundAccountPosition.json"):
        codec.parse_user_message(copy.deepcopy(load_fixture(name)), SYMBOLS)
    assert codec.parse_market_message(load_fixture("ws_bookTicker.json"), SYMBOLS) is not None


def test_a_market_subscription_answer_is_matched_to_its_request_id() -> None:
    from marketlink.net.errors import MalformedMessage, Rejected
    from marketlink.venues.binance import BinanceSpotCodec

    codec = BinanceSpotCodec()
    assert codec.parse_market_ack({"result": None, "id": 7}, 7) is True
    assert codec.parse_market_ack({"result": None, "id": 6}, 7) is None  # another request's answer
    refused = codec.parse_market_ack({"code": 2, "msg": "Invalid request: too many streams", "id": 7}, 7)
    assert isinstance(refused, Rejected) and refused.code == 2 and "too many streams" in str(refused)
    assert codec.parse_market_ack({"code": 2, "msg": "no id"}, 7) is None
    assert codec.parse_market_ack({"stream": "btcusdt@trade", "data": {}, "id": 7}, 7) is None
    assert codec.parse_market_ack([1, 2], 7) is None
    assert isinstance(codec.parse_market_ack({"result": [], "id": 7}, 7), MalformedMessage)
