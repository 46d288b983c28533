"""The market-data fast path of the Binance codec: ``decode_market`` must change speed, never meaning.

Every frame is decoded two ways, by ``decode_market`` (typed depth structs straight from the
bytes) and by plain ``jsoncodec.decode``, and both must parse to the same core value and key;
frames that only look like depth diffs, or are malformed, must take the checked path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from marketlink.core.market import DepthUpdate
from marketlink.net import jsoncodec
from marketlink.net.errors import MalformedMessage
from marketlink.venues.binance import VENUE
from marketlink.venues.binance.schemas import DepthFrame

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "binance"
SYMBOLS = {"BNBBTC": "BNB-BTC", "BNBUSDT": "BNB-USDT"}
codec = VENUE.codec


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def combined(stream: str, data: Any) -> str:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":"))


FRAMES = [
    combined("bnbbtc@depth@100ms", fixture("ws_depthUpdate.json")),
    combined("bnbusdt@bookTicker", fixture("ws_bookTicker.json")),
    combined("bnbbtc@trade", {"e": "trade", "E": 1, "s": "BNBBTC", "t": 12345, "p": "0.001", "q": "100",
                              "T": 1672515782136, "m": True, "M": True}),
    '{"result":null,"id":1}',
    json.dumps(fixture("ws_depthUpdate.json")),  # a raw /ws frame (no stream name)
]


@pytest.mark.parametrize("as_bytes", [False, True])
@pytest.mark.parametrize("frame", FRAMES)
def test_decode_market_parses_like_plain_json(frame: str, as_bytes: bool) -> None:
    raw: bytes | str = frame.encode() if as_bytes else frame
    fast, plain = codec.decode_market(raw), jsoncodec.decode(raw)
    assert codec.parse_market_message(fast, SYMBOLS) == codec.parse_market_message(plain, SYMBOLS)
    assert codec.market_message_key(fast) == codec.market_message_key(plain)


def test_depth_frames_take_the_typed_path() -> None:
    fast = codec.decode_market(FRAMES[0])
    assert isinstance(fast, DepthFrame) and fast.stream == "bnbbtc@depth@100ms"
    update = codec.parse_market_message(fast, SYMBOLS)
    assert update == DepthUpdate("BNB-BTC", 157, 160, [("0.0024", "10")], [("0.0026", "100")],
                                 timestamp=1672515782.136)
    assert all(type(level[0]) is str for level in update.bids)  # exact strings, never floats


def test_frames_that_only_look_like_depth_take_the_checked_path() -> None:
    shutdown = combined("bnbbtc@depth@100ms", {"e": "serverShutdown", "E": 1})
    assert isinstance(codec.decode_market(shutdown), dict)
    assert codec.parse_market_message(codec.decode_market(shutdown), SYMBOLS) is None
    bad = fixture("ws_depthUpdate.json")
    bad["b"] = [[0.0024, "10"]]  # a float price: refused, naming the field
    decoded = codec.decode_market(combined("bnbbtc@depth@100ms", bad))
    assert isinstance(decoded, dict)
    with pytest.raises(MalformedMessage, match=r"\$\.b\[0\]\[0\]"):
        codec.parse_market_message(decoded, SYMBOLS)


def test_undecodable_bytes_raise() -> None:
    with pytest.raises(msgspec.DecodeError):
        codec.decode_market(b'{"stream":"bnbbtc@depth@100ms","data":{')


def test_an_unknown_symbol_on_the_typed_path_is_malformed() -> None:
    fast = codec.decode_market(FRAMES[0])
    assert isinstance(fast, DepthFrame)
    with pytest.raises(MalformedMessage, match="unknown symbol 'BNBBTC'"):
        codec.parse_market_message(fast, {"BNBUSDT": "BNB-USDT"})


def test_depth_updates_are_immutable_values() -> None:
    update = codec.parse_market_message(codec.decode_market(FRAMES[0]), SYMBOLS)
    assert isinstance(update, DepthUpdate)
    with pytest.raises(AttributeError):
        update.final_id = 1  # type: ignore[misc]
    assert update == DepthUpdate("BNB-BTC", 157, 160, update.bids, update.asks, None, False, 1672515782.136)
    assert update != DepthUpdate("BNB-BTC", 157, 161, update.bids, update.asks, None, False, 1672515782.136)
