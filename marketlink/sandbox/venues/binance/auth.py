"""Binance request authentication, exactly as the venue checks it (BSD ``rest-api.md`` "SIGNED
Endpoint security", ``web-socket-api.md`` "Request security").

REST signs the *bytes the client sent*: the raw query string followed by the raw body, with no
separator, minus the ``signature`` pair itself. Nothing is decoded, re-ordered or re-encoded
before hashing, so a client that percent-encodes differently, re-orders parameters after signing
or adds a separator gets ``-1022`` here as it would on Binance. The WebSocket API signs its
``params`` sorted by name, joined as ``k=v&...`` in raw UTF-8 (no percent-encoding).

HMAC keys sign with SHA-256 and send hex (case-insensitive); Ed25519 keys send base64 of the
64-byte signature. Then the timing rule: ``timestamp < serverTime + 1000`` and
``serverTime - timestamp <= recvWindow`` (``recvWindow`` defaults to 5000, at most 60000, may
carry microsecond decimals; ``timestamp`` may be in microseconds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from marketlink.net import jsoncodec
from marketlink.sandbox.context import ApiCredential
from marketlink.sandbox.venues.binance import errors
from marketlink.sandbox.venues.binance.errors import BinanceError

_API_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,20}$")
_RECV_WINDOW = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,3})?$")
_MICROS_FROM = 10**14  # a timestamp this large is in microseconds (ms values stay below until 5138)


# -- payloads --------------------------------------------------------------------------------------


def split_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` (a query string or form body, undecoded) without its ``signature`` pair, and the
    signature's raw value. Every other byte stays as sent."""
    if "signature=" not in raw:
        return raw, None
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&"):
        if part.startswith("signature="):
            if signature is None:
                signature = part[len("signature="):]
            continue
        kept.append(part)
    return "&".join(kept), signature


def rest_payload(raw_query: str, raw_body: str) -> tuple[bytes, str | None]:
    """The bytes a REST signature covers (query then body, no separator) and the signature sent."""
    query, sig_q = split_signature(raw_query)
    body, sig_b = split_signature(raw_body)
    signature = sig_q if sig_q is not None else sig_b
    return (query + body).encode("utf-8", "surrogateescape"), signature


def wsapi_value(value: object) -> str:
    """A WS-API parameter as it appears in the signed string: JSON text for non-strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    return jsoncodec.encode(value).decode()


def wsapi_payload(params: Mapping[str, object]) -> bytes:
    """Every parameter but ``signature``, sorted by name, ``k=v`` joined by ``&``, raw UTF-8."""
    return "&".join(f"{k}={wsapi_value(params[k])}" for k in sorted(params) if k != "signature").encode()


def hmac_hex(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


# -- verification ----------------------------------------------------------------------------------


class Verifier:
    """Looks API keys up and checks signatures; parsed Ed25519 keys are cached per API key."""

    def __init__(self, lookup: Callable[[str], ApiCredential | None]) -> None:
        self._lookup = lookup
        self._ed25519: dict[str, tuple[str, Ed25519PublicKey]] = {}

    def credential(self, api_key: str | None) -> ApiCredential:
        """``-2014`` for a missing or malformed key, ``-2015`` for one the sandbox does not know."""
        if not api_key or not _API_KEY.match(api_key):
            raise errors.bad_api_key_format()
        cred = self._lookup(api_key)
        if cred is None:
            raise errors.rejected_key()
        return cred

    def verify(self, cred: ApiCredential, payload: bytes, signature: str | None, *, encoded: bool) -> None:
        """Check ``signature`` over ``payload``; ``encoded``: the value is percent-encoded (REST)."""
        if not signature:
            raise errors.mandatory("signature")
        if encoded:
            signature = unquote(signature)
        if cred.secret is not None:
            expected = hmac_hex(cred.secret, payload)
            if hmac.compare_digest(expected, signature.lower()):
                return
            if cred.ed25519_public_key_pem is None:
                raise errors.bad_signature()
        if cred.ed25519_public_key_pem is not None and self._ed25519_ok(cred, payload, signature):
            return
        raise errors.bad_signature()

    def _ed25519_ok(self, cred: ApiCredential, payload: bytes, signature: str) -> bool:
        pem = cred.ed25519_public_key_pem
        assert pem is not None
        cached = self._ed25519.get(cred.api_key)
        if cached is None or cached[0] != pem:
            key = load_pem_public_key(pem.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise errors.bad_signature()
            cached = self._ed25519[cred.api_key] = (pem, key)
        try:
            raw = base64.b64decode(signature, validate=True)
            cached[1].verify(raw, payload)
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        return True


def check_timestamp(
    timestamp: str | None,
    recv_window: str | None,
    server_ms: int,
    *,
    default_window_ms: int = 5_000,
    max_window_ms: int = 60_000,
    tolerance_ms: int = 1_000,
) -> None:
    """Binance's timing rule, in microseconds so sub-millisecond windows compare exactly."""
    if not timestamp:
        raise errors.mandatory("timestamp")
    if not _TIMESTAMP.match(timestamp):
        raise errors.illegal_chars("timestamp", errors.LONG_RANGE)
    ts_us = int(timestamp)
    if ts_us < _MICROS_FROM:
        ts_us *= 1000
    if recv_window is None or recv_window == "":
        window_us = default_window_ms * 1000
    else:
        if not _RECV_WINDOW.match(recv_window):
            raise errors.illegal_chars("recvWindow", r"^[0-9]{1,20}(\.[0-9]{1,3})?$")
        try:
            window_us = int(Decimal(recv_window) * 1000)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            raise errors.illegal_chars("recvWindow", errors.DECIMAL_RANGE) from None
        if window_us > max_window_ms * 1000:
            raise errors.too_large("recvWindow", max_window_ms)
    server_us = server_ms * 1000
    if ts_us >= server_us + tolerance_ms * 1000:
        raise errors.ahead_of_server(tolerance_ms)
    if server_us - ts_us > window_us:
        raise errors.outside_recv_window()


def authenticate(
    verifier: Verifier,
    api_key: str | None,
    payload: bytes,
    signature: str | None,
    timestamp: str | None,
    recv_window: str | None,
    server_ms: int,
    *,
    encoded: bool,
    windows: tuple[int, int, int],
) -> ApiCredential:
    """Key, then signature, then time: the full check of one SIGNED request."""
    cred = verifier.credential(api_key)
    verifier.verify(cred, payload, signature, encoded=encoded)
    default_ms, max_ms, tolerance = windows
    check_timestamp(
        timestamp, recv_window, server_ms,
        default_window_ms=default_ms, max_window_ms=max_ms, tolerance_ms=tolerance,
    )
    return cred


__all__ = [
    "BinanceError",
    "Verifier",
    "authenticate",
    "check_timestamp",
    "hmac_hex",
    "rest_payload",
    "split_signature",
    "wsapi_payload",
]
