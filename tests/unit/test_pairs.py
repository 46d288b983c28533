"""Trading pairs and per-venue symbol maps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.errors import InvalidTradingPair, MarketlinkError, UnknownSymbol
from marketlink.core.pairs import SymbolMap, TradingPair, split_pair


@pytest.mark.parametrize(
    ("text", "base", "quote"),
    [
        ("BTC-USDT", "BTC", "USDT"),
        ("btc-usdt", "BTC", "USDT"),
        ("  eth-btc \n", "ETH", "BTC"),
        ("1000SHIB-USDT", "1000SHIB", "USDT"),
        ("BTC.D-USD_T", "BTC.D", "USD_T"),
        ("A" * 32 + "-B", "A" * 32, "B"),
    ],
)
def test_parse_normalizes(text: str, base: str, quote: str) -> None:
    pair = TradingPair.parse(text)
    assert (pair.base, pair.quote) == (base, quote)
    assert str(pair) == f"{base}-{quote}"
    assert split_pair(text) == (base, quote)


@pytest.mark.parametrize(
    "text",
    [
        "", "-", "BTCUSDT", "BTC-", "-USDT", "BTC-USD-T", "BTC--USDT", "BTC -USDT", "B TC-USDT",
        "_BTC-USDT", "BTC-.USDT", "BTC/USDT", "A" * 33 + "-B", "BTC-USDT!", "BTC\n-USDT", "BTC-US\nDT",
        "ÄBC-USDT",
    ],
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(InvalidTradingPair) as info:
        TradingPair.parse(text)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MarketlinkError)
    assert repr(text) in str(info.value)


asset = st.from_regex(r"[A-Z0-9][A-Z0-9._]{0,31}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(base=asset, quote=asset)
def test_parse_round_trips_every_valid_pair(base: str, quote: str) -> None:
    pair = TradingPair.parse(f"{base}-{quote}")
    assert pair == (base, quote)
    assert TradingPair.parse(str(pair)) == pair


def binance_map() -> SymbolMap:
    return SymbolMap("binance", [("BTCUSDT", "BTC-USDT"), ("ETHBTC", "eth-btc")])


def test_symbol_map_is_bidirectional() -> None:
    m = binance_map()
    assert m.pair("BTCUSDT") == "BTC-USDT" and m["ETHBTC"] == "ETH-BTC"  # pairs normalized
    assert m.symbol("BTC-USDT") == "BTCUSDT" and m.symbol("ETH-BTC") == "ETHBTC"
    assert m.has_pair("ETH-BTC") and not m.has_pair("BTC-ETH")
    assert m.pairs() == ["BTC-USDT", "ETH-BTC"]
    assert list(m) == ["BTCUSDT", "ETHBTC"] and len(m) == 2
    assert dict(m) == {"BTCUSDT": "BTC-USDT", "ETHBTC": "ETH-BTC"}
    assert repr(m) == "SymbolMap('binance', 2 symbols)"


def test_unknown_symbol_is_a_typed_error_naming_the_venue() -> None:
    m = binance_map()
    with pytest.raises(UnknownSymbol) as info:
        m.pair("XRPUSDT")
    assert (info.value.venue, info.value.symbol) == ("binance", "XRPUSDT")
    assert str(info.value) == "binance: unknown symbol 'XRPUSDT'"
    with pytest.raises(UnknownSymbol) as info:
        m.symbol("XRP-USDT")
    assert info.value.symbol == "XRP-USDT"
    with pytest.raises(UnknownSymbol):
        m["XRPUSDT"]
    # still a KeyError, so the Mapping protocol answers instead of raising
    assert "XRPUSDT" not in m and m.get("XRPUSDT") is None and "BTCUSDT" in m


def test_conflicting_entries_are_refused_and_leave_the_map_unchanged() -> None:
    m = binance_map()
    with pytest.raises(InvalidTradingPair):
        m.add("BTCUSDT", "BTC-USDC")  # same symbol, another pair
    with pytest.raises(InvalidTradingPair):
        m.add("BTC_USDT", "BTC-USDT")  # same pair, another symbol
    with pytest.raises(InvalidTradingPair):
        m.add("BADSYM", "not a pair")
    assert dict(m) == dict(binance_map())
    m.add("BTCUSDT", "btc-usdt")  # the same entry again is fine
    assert len(m) == 2


def test_symbol_maps_of_different_venues_are_independent() -> None:
    bybit = SymbolMap("bybit")
    bybit.add("BTCUSDT", "BTC-USDT")
    dashed = SymbolMap("gateway", [("BTC-USDT", "BTC-USDT")])
    assert bybit.symbol("BTC-USDT") == "BTCUSDT" and dashed.symbol("BTC-USDT") == "BTC-USDT"
    with pytest.raises(UnknownSymbol) as info:
        bybit.pair("ETHUSDT")
    assert info.value.venue == "bybit"


def test_parse_refuses_what_is_not_a_string_with_a_typed_error_and_caches_only_good_pairs() -> None:
    for bad in (5, ["BTC-USDT"], None, b"BTC-USDT"):
        with pytest.raises(InvalidTradingPair):
            TradingPair.parse(bad)  # type: ignore[arg-type]
    assert TradingPair.parse("eth-btc") == TradingPair.parse("ETH-BTC ") == ("ETH", "BTC")
    with pytest.raises(InvalidTradingPair):
        TradingPair.parse("ETHBTC")
    with pytest.raises(InvalidTradingPair):  # refused again: a failure is never remembered as a pair
        TradingPair.parse("ETHBTC")
