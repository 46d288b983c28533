"""Binance signing against the published known-answer vectors (exchange-protocols.md §1).

REST and the WebSocket API sign different strings; each vector pins one of them byte for byte.
Ed25519 has no published vector with its key, so it is checked by verifying with the public key
and by the sandbox's own verifier, which implements Binance's server-side check.
"""

from __future__ import annotations

import base64
import pickle
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core.credentials import Credentials
from marketlink.core.errors import ConfigError
from marketlink.net import jsoncodec
from marketlink.net.http import RestRequest
from marketlink.sandbox.context import ApiCredential
from marketlink.sandbox.venues.binance import auth as sandbox_auth
from marketlink.venues.binance import VENUE
from marketlink.venues.binance.auth import BinanceAuth

SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
HMAC = BinanceAuth(Credentials(API_KEY, SECRET))
ORDER = {
    "symbol": "LTCBTC",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "1",
    "price": "0.1",
}

# Ed25519: a fixed seed, so the test is deterministic (Binance publishes no usable Ed25519 vector).
ED_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ED_PEM = ED_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
ED_PUBLIC_PEM = ED_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
ED25519 = BinanceAuth(Credentials(API_KEY, private_key_pem=ED_PEM))


def split(target: str) -> tuple[str, str, str]:
    path, _, query = target.partition("?")
    unsigned, _, signature = query.rpartition("&signature=")
    return path, unsigned, signature


# -- REST ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "signed_string", "signature"),
    [
        (  # vector 1: POST /api/v3/order
            ORDER,
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
            "&timestamp=1499827319559",
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
        ),
        (  # vector 2: a non-ASCII symbol is percent-encoded before signing
            {**ORDER, "symbol": "１２３４５６"},
            "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
            "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
            "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3",
        ),
        (  # vector 7: timestamp only (recvWindow given as None is left out)
            {"recvWindow": None},
            "timestamp=1499827319559",
            "2222d49722f6af5da13f6da6bfc0d7de19ca2815ebc98bbc49e4942268472f3f",
        ),
        (  # vector 8: cancel
            {"symbol": "LTCBTC", "orderId": 4},
            "symbol=LTCBTC&orderId=4&recvWindow=5000&timestamp=1499827319559",
            "dce5c7acb3375587e7db55cae77d0e328aabe084ff52ccb81e2b05ed748aeab4",
        ),
    ],
    ids=["vector1", "vector2-non-ascii", "vector7-timestamp-only", "vector8-cancel"],
)
def test_rest_hmac_vectors(params: dict[str, object], signed_string: str, signature: str) -> None:
    prepared = HMAC.sign(RestRequest("POST", "/api/v3/order", params, signed=True), 1499827319559)  # type: ignore[arg-type]
    path, unsigned, sent = split(prepared.url_path_with_query)
    assert (path, unsigned, sent) == ("/api/v3/order", signed_string, signature)
    assert prepared.url_path_with_query.endswith(f"&signature={signature}")  # the last parameter
    assert prepared.headers == {"X-MBX-APIKEY": API_KEY}
    assert prepared.body is None and prepared.method == "POST"


def test_rest_decimal_params_are_plain_digits() -> None:
    request = RestRequest("GET", "/api/v3/order", {"quantity": Decimal("1E-8"), "flag": True}, signed=True)
    _, unsigned, _ = split(HMAC.sign(request, 1).url_path_with_query)
    assert unsigned == "quantity=0.00000001&flag=true&recvWindow=5000&timestamp=1"


def test_rest_recv_window_is_configurable_and_bounded() -> None:
    auth = BinanceAuth(Credentials(API_KEY, SECRET), recv_window_ms=60_000)
    _, unsigned, _ = split(
        auth.sign(RestRequest("GET", "/api/v3/account", signed=True), 7).url_path_with_query
    )
    assert unsigned == "recvWindow=60000&timestamp=7"
    for bad in (0, 60_001):
        with pytest.raises(ConfigError, match="recvWindow"):
            BinanceAuth(Credentials(API_KEY, SECRET), recv_window_ms=bad)


def test_rest_body_is_refused_rather_than_signed_wrong() -> None:
    with pytest.raises(ConfigError, match="query string"):
        HMAC.sign(RestRequest("POST", "/api/v3/order", body={"a": 1}, signed=True), 1)


def test_rest_ed25519_signature_is_base64_percent_encoded_and_verifies() -> None:
    prepared = ED25519.sign(RestRequest("POST", "/api/v3/order", ORDER, signed=True), 1499827319559)
    _, unsigned, sent = split(prepared.url_path_with_query)
    assert "+" not in sent and "/" not in sent and "=" not in sent  # percent-encoded
    raw = base64.b64decode(unquote(sent), validate=True)
    assert len(raw) == 64
    ED_KEY.public_key().verify(raw, unsigned.encode())  # raises if wrong


@pytest.mark.parametrize("auth", [HMAC, ED25519], ids=["hmac", "ed25519"])
def test_the_sandbox_verifier_accepts_our_rest_signature(auth: BinanceAuth) -> None:
    cred = ApiCredential(
        API_KEY,
        "acct",
        secret=SECRET if auth is HMAC else None,
        ed25519_public_key_pem=ED_PUBLIC_PEM if auth is ED25519 else None,
    )
    prepared = auth.sign(RestRequest("POST", "/api/v3/order", {**ORDER, "symbol": "１２３"}, signed=True), 5)
    payload, signature = sandbox_auth.rest_payload(prepared.url_path_with_query.partition("?")[2], "")
    sandbox_auth.Verifier(lambda key: cred).verify(cred, payload, signature, encoded=True)


# -- WebSocket API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "timestamp", "signature"),
    [
        (  # vector 3: order.place, params sorted by name, apiKey included
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.01000000",
                "price": "52000.00",
                "recvWindow": 100,
            },
            1645423376532,
            "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24",
        ),
        (  # vector 4: raw UTF-8, no percent-encoding
            {
                "symbol": "１２３４５６",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": Decimal("1.00000000"),
                "price": Decimal("0.10000000"),
                "recvWindow": 5000,
            },
            1645423376532,
            "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd",
        ),
        (  # vector 9: userDataStream.subscribe.signature
            {},
            1747385641636,
            "681110a6057ad58657af22f5640fab9dd17418834cdfccdc81be8b0f7b2cde3e",
        ),
    ],
    ids=["vector3", "vector4-non-ascii", "vector9-user-stream"],
)
def test_ws_api_hmac_vectors(params: dict[str, object], timestamp: int, signature: str) -> None:
    signed = HMAC.sign_ws_params(params, timestamp)  # type: ignore[arg-type]
    assert signed == {**params, "apiKey": API_KEY, "timestamp": timestamp, "signature": signature}


def test_ws_api_booleans_sign_as_json_spells_them() -> None:
    signed = HMAC.sign_ws_params({"omitZeroBalances": True}, 1)
    text = f"apiKey={API_KEY}&omitZeroBalances=true&timestamp=1"
    assert signed["signature"] == sandbox_auth.hmac_hex(SECRET, text.encode())


@pytest.mark.parametrize("auth", [HMAC, ED25519], ids=["hmac", "ed25519"])
def test_the_sandbox_verifier_accepts_our_ws_api_signature(auth: BinanceAuth) -> None:
    cred = ApiCredential(
        API_KEY,
        "acct",
        secret=SECRET if auth is HMAC else None,
        ed25519_public_key_pem=ED_PUBLIC_PEM if auth is ED25519 else None,
    )
    frame = VENUE.codec.user_stream_subscribe(auth, 1747385641636, 1)
    params = frame["params"]
    sandbox_auth.Verifier(lambda key: cred).verify(
        cred, sandbox_auth.wsapi_payload(params), params["signature"], encoded=False
    )


# -- keys and secrecy ------------------------------------------------------------------------------


def test_ed25519_is_preferred_when_both_are_given() -> None:
    auth = BinanceAuth(Credentials(API_KEY, SECRET, private_key_pem=ED_PEM))
    signature = auth.sign_ws_params({}, 1)["signature"]
    ED_KEY.public_key().verify(base64.b64decode(signature), f"apiKey={API_KEY}&timestamp=1".encode())


def test_unusable_private_keys_are_configuration_errors() -> None:
    rsa_like = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError, match="PEM"):
        BinanceAuth(Credentials(API_KEY, private_key_pem=rsa_like))
    encrypted = ED_KEY.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")
    ).decode()
    with pytest.raises(ConfigError, match="PEM"):
        BinanceAuth(Credentials(API_KEY, private_key_pem=encrypted))
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(ConfigError, match="Ed25519"):
        BinanceAuth(Credentials(API_KEY, private_key_pem=ec_pem.decode()))


@pytest.mark.parametrize("auth", [HMAC, ED25519], ids=["hmac", "ed25519"])
def test_secrets_never_show(auth: BinanceAuth) -> None:
    for text in (repr(auth), str(auth), f"{auth}", repr(VENUE.make_auth(Credentials(API_KEY, SECRET)))):
        assert SECRET not in text and API_KEY not in text and "PRIVATE" not in text
        assert text.endswith("…Eh8A)")
    assert not hasattr(auth, "__dict__")  # slots only: no stray attribute to dump
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(auth)
    with pytest.raises(ConfigError) as caught:
        auth.sign(RestRequest("POST", "/x", body={}, signed=True), 1)
    assert SECRET not in str(caught.value) and API_KEY not in str(caught.value)


# -- properties: whatever the parameters, the server-side check accepts what we sign ----------------

_names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="&="), min_size=1, max_size=8)
_values = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-(10**9), max_value=10**9),
    st.booleans(),
)
_params = st.dictionaries(
    _names.filter(lambda n: n not in ("signature", "timestamp", "recvWindow", "apiKey")), _values, max_size=6
)


@settings(max_examples=150, deadline=None)
@given(params=_params, timestamp=st.integers(min_value=0, max_value=2**53))
def test_any_rest_parameters_sign_as_the_server_checks(params: dict[str, Any], timestamp: int) -> None:
    cred = ApiCredential(API_KEY, "acct", secret=SECRET)
    prepared = HMAC.sign(RestRequest("GET", "/api/v3/order", params, signed=True), timestamp)
    payload, signature = sandbox_auth.rest_payload(prepared.url_path_with_query.partition("?")[2], "")
    sandbox_auth.Verifier(lambda key: cred).verify(cred, payload, signature, encoded=True)


@settings(max_examples=150, deadline=None)
@given(params=_params, timestamp=st.integers(min_value=0, max_value=2**53))
def test_any_ws_api_parameters_sign_as_the_server_checks(params: dict[str, Any], timestamp: int) -> None:
    cred = ApiCredential(API_KEY, "acct", secret=SECRET)
    signed = HMAC.sign_ws_params(params, timestamp)
    wire = jsoncodec.decode(jsoncodec.encode(signed))  # what the server receives after JSON
    sandbox_auth.Verifier(lambda key: cred).verify(
        cred, sandbox_auth.wsapi_payload(wire), wire["signature"], encoded=False
    )
