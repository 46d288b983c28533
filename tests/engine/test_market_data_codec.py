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

from marketlink.core.book import BookDataError, OrderBook
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
    fast_value = codec.parse_market_message(fast, SYMBOLS)
    plain_value = codec.parse_market_message(plain, SYMBOLS)
    if isinstance(fast_value, DepthUpdate):  # the same diff; only the fast path vouches for it
        assert isinstance(plain_value, DepthUpdate) and not plain_value.checked
        assert fast_value.checked is isinstance(fast, DepthFrame)
        fast_value = msgspec.structs.replace(fast_value, checked=False)
    assert fast_value == plain_value
    assert codec.market_message_key(fast) == codec.market_message_key(plain)


def test_depth_frames_take_the_typed_path() -> None:
    fast = codec.decode_market(FRAMES[0])
    assert isinstance(fast, DepthFrame) and fast.stream == "bnbbtc@depth@100ms"
    update = codec.parse_market_message(fast, SYMBOLS)
    assert update == DepthUpdate("BNB-BTC", 157, 160, [("0.0024", "10")], [("0.0026", "100")],
                                 timestamp=1672515782.136, checked=True)
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
    same = DepthUpdate("BNB-BTC", 157, 160, update.bids, update.asks, None, False, 1672515782.136, True)
    assert update == same and update != msgspec.structs.replace(same, final_id=161)


# -- the proof over the raw frame ----------------------------------------------------------------


def depth_frame(bids: list[list[str]], asks: list[list[str]]) -> bytes:
    data = {"e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": 157, "u": 160, "b": bids, "a": asks}
    return combined("bnbbtc@depth@100ms", data).encode()


def decoded_update(raw: bytes | str) -> tuple[Any, DepthUpdate]:
    decoded = codec.decode_market(raw)
    update = codec.parse_market_message(decoded, SYMBOLS)
    assert isinstance(update, DepthUpdate)
    return decoded, update


@pytest.mark.parametrize("as_text", [False, True])
def test_binance_spelled_levels_take_the_vouched_path(as_text: bool) -> None:
    raw = depth_frame([["30000.01000000", "0.01234000"], ["29999.00000000", "0.00000000"]],
                      [["30001.00000000", "12.50000000"]])
    decoded, update = decoded_update(raw.decode() if as_text else raw)
    assert isinstance(decoded, DepthFrame) and update.checked
    assert update.bids == [("30000.01000000", "0.01234000"), ("29999.00000000", "0.00000000")]


BAD_STRINGS = [
    "-1.00000000", "+1.0", "1e5", "1E+5", "1.2.3", " 1.0", "1.0 ", "1_0.0", "NaN", "Infinity", "0x10",
    "ESCAPED-0661",  # an escaped Arabic-Indic digit (\\u0661.0 in the JSON text)
    "١.0",  # the same digit written raw (UTF-8)
    "ESCAPED-0031",  # an escaped ASCII "1" (\\u0031.0): plain once decoded, not as Binance writes it
    "12.3" * 8,  # 32 characters: past the 30-character bound
]


@pytest.mark.parametrize("position", ["price", "size", "ask size"])
@pytest.mark.parametrize("text", BAD_STRINGS)
def test_strings_the_proof_cannot_vouch_for_take_the_checked_path(text: str, position: str) -> None:
    bids = [["30000.01000000", "0.01234000"], ["29999.00000000", "1.00000000"]]
    asks = [["30001.00000000", "12.50000000"]]
    # The same frame with good strings first, so that its skeleton is known good.
    assert isinstance(codec.decode_market(depth_frame(bids, asks)), DepthFrame)
    if position == "price":
        bids[1][0] = text
    elif position == "size":
        bids[1][1] = text
    else:
        asks[0][1] = text
    raw = depth_frame(bids, asks).replace(b"ESCAPED-", b"\\u")
    raw = raw.replace(b'\\u0661"', b'\\u0661.0"').replace(b'\\u0031"', b'\\u0031.0"')
    decoded = codec.decode_market(raw)
    assert not isinstance(decoded, DepthFrame)
    update = codec.parse_market_message(decoded, SYMBOLS)
    assert isinstance(update, DepthUpdate) and not update.checked  # the book checks it, and refuses


@pytest.mark.parametrize("size", ["5", ".", "0"])
def test_one_character_strings_take_the_checked_path(size: str) -> None:
    # "." has no digit; the skeleton cannot tell it from "5." so the length bound keeps it out.
    decoded, update = decoded_update(depth_frame([["30000.01000000", size]], []))
    assert not isinstance(decoded, DepthFrame) and not update.checked


def test_a_key_given_twice_is_proved_on_the_copy_the_decoder_keeps() -> None:
    good = depth_frame([["30000.01000000", "1.00000000"]], [])
    bad_levels = b'"b":[["30000.01000000","-1.00000000"]]'
    first_bad = good.replace(b'"data":{', b'"data":{' + bad_levels + b",")
    assert first_bad.count(b'"b":') == 2
    decoded, update = decoded_update(first_bad)  # msgspec keeps the later, good "b"
    assert isinstance(decoded, DepthFrame) and update.checked
    assert update.bids == [("30000.01000000", "1.00000000")]
    last_bad = good[:-2] + b"," + bad_levels + b"}}"
    decoded, update = decoded_update(last_bad)
    assert not isinstance(decoded, DepthFrame) and not update.checked
    assert update.bids == [("30000.01000000", "-1.00000000")]  # what the book will refuse


def test_a_field_after_the_levels_costs_speed_not_meaning() -> None:
    raw = combined("bnbbtc@depth@100ms", {"e": "depthUpdate", "E": 1, "s": "BNBBTC", "U": 1, "u": 2,
                                          "b": [["1.00", "2.00"]], "a": [], "x": 1})
    decoded, update = decoded_update(raw)
    assert not isinstance(decoded, DepthFrame) and update.bids == [("1.00", "2.00")]


def test_digits_in_key_names_cannot_borrow_a_proved_skeleton() -> None:
    # Audit G: "b1" and "b" share a skeleton. With unknown fields allowed, a frame whose clean
    # lists sat under "b"/"a" last proved a skeleton that a frame with the bad lists under
    # "b"/"a" (and clean ones under "b7"/"a7") would reuse. Unknown fields are refused on the
    # vouched path, so neither frame is vouched for, and the book refuses the bad one.
    head = b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BNBBTC","U":11,"u":11,'
    first = head + b'"b1":[["10","0e0"]],"a1":[["20","-1"]],"b":[["10","1.0"]],"a":[["20","1.0"]]}}'
    second = head + b'"b":[["10","0e0"]],"a":[["20","-1"]],"b7":[["10","1.0"]],"a7":[["20","1.0"]]}}'
    assert first.translate(None, b"0123456789") == second.translate(None, b"0123456789")
    for raw in (first, second):
        decoded, update = decoded_update(raw)
        assert not isinstance(decoded, DepthFrame) and not update.checked
    book = OrderBook(0, "binance_spot")
    book.apply_snapshot([["10", "1"]], [["20", "1"]], 10)
    _, update = decoded_update(second)
    with pytest.raises(BookDataError):
        book.apply_diff(update.bids, update.asks, update.first_id, update.final_id, None, update.checked)


def test_a_depth_shaped_frame_of_another_event_is_not_vouched_for() -> None:
    raw = combined("bnbbtc@depth@100ms", {"e": "trade", "E": 1, "s": "BNBBTC", "U": 1, "u": 2,
                                          "b": [["1.00", "2.00"]], "a": []})
    assert not isinstance(codec.decode_market(raw), DepthFrame)
    with pytest.raises(MalformedMessage):
        codec.parse_market_message(codec.decode_market(raw), SYMBOLS)  # as the checked path says
