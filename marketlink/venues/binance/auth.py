"""Binance request signing: REST and the WebSocket API, with an HMAC or an Ed25519 key.

The two transports sign different strings, and peers mix them up (exchange-protocols.md §2.2):

* REST signs the query string exactly as sent (percent-encoded, in our parameter order, with
  ``recvWindow`` and ``timestamp`` added here), and the signature goes last. An Ed25519 signature
  is base64, so it is percent-encoded too (``+``, ``/``, ``=``).
* The WebSocket API signs its ``params`` sorted by name, ``k=v`` joined by ``&``, raw UTF-8 with
  no percent-encoding, ``apiKey`` included.

HMAC signatures are hex; Ed25519 ones base64. Signing happens at send time (the HTTP client calls
``sign`` after the throttler), so a wait never stales a timestamp. The secret stays inside a
closure: no attribute, ``repr``, error or pickle shows it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from marketlink.core.credentials import Credentials
from marketlink.core.errors import ConfigError
from marketlink.net.http import ParamValue, PreparedRequest, RestRequest, encode_query
from marketlink.net.jsoncodec import plain_decimal

API_KEY_HEADER = "X-MBX-APIKEY"


def _hmac_signer(secret: str) -> Callable[[bytes], str]:
    # The key's inner and outer pads are computed once; each signature copies that state.
    keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def sign(payload: bytes) -> str:
        mac = keyed.copy()
        mac.update(payload)
        return mac.hexdigest()

    return sign


def _ed25519_signer(pem: str) -> Callable[[bytes], str]:
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("binance: the private key is not a readable unencrypted PEM key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("binance: the private key must be an Ed25519 key")
    return lambda payload: base64.b64encode(key.sign(payload)).decode()


def _ws_text(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain_decimal(value)
    return str(value)


class BinanceAuth:
    """Signs for one API key. An Ed25519 key is used when the credentials hold one (Binance's
    recommendation), else the HMAC secret."""

    __slots__ = ("_api_key", "_kind", "_recv_window_ms", "_sign")

    def __init__(self, credentials: Credentials, recv_window_ms: int = 5_000) -> None:
        if not 0 < recv_window_ms <= 60_000:
            raise ConfigError(f"binance: recvWindow must be 1..60000 ms, got {recv_window_ms}")
        self._api_key = credentials.api_key
        self._recv_window_ms = recv_window_ms
        if credentials.private_key_pem:
            self._kind, self._sign = "ed25519", _ed25519_signer(credentials.private_key_pem)
        else:
            assert credentials.api_secret  # Credentials refuses neither secret nor key
            self._kind, self._sign = "hmac", _hmac_signer(credentials.api_secret)

    def sign(self, request: RestRequest, timestamp_ms: int) -> PreparedRequest:
        if request.body is not None:
            raise ConfigError(f"binance: {request.path} must carry its parameters in the query string")
        params: dict[str, ParamValue | None] = dict(request.params or {})
        params.setdefault("recvWindow", self._recv_window_ms)
        params["timestamp"] = timestamp_ms
        query = encode_query(params)
        signature = self._sign(query.encode())
        if self._kind != "hmac":  # hex needs no escaping; base64 has + / =
            signature = quote(signature, safe="")
        return PreparedRequest(
            request.method,
            f"{request.path}?{query}&signature={signature}",
            headers={API_KEY_HEADER: self._api_key},
        )

    def sign_ws_params(self, params: Mapping[str, ParamValue], timestamp_ms: int) -> dict[str, Any]:
        """``params`` plus ``apiKey``, ``timestamp`` and ``signature``, for a WS-API request."""
        signed: dict[str, Any] = {**params, "apiKey": self._api_key, "timestamp": timestamp_ms}
        payload = "&".join(f"{name}={_ws_text(signed[name])}" for name in sorted(signed))
        signed["signature"] = self._sign(payload.encode())
        return signed

    def __repr__(self) -> str:
        hint = self._api_key[-4:] if len(self._api_key) > 8 else ""
        return f"BinanceAuth({self._kind}, key …{hint})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("credentials are not picklable: they would leave the process in clear")
