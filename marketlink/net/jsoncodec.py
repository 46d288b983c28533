"""The one place where venue JSON becomes Python values and back.

Venues send prices and amounts mostly as strings, but some fields arrive as bare JSON numbers;
decoding those as ``float`` would lose exactness before any code could stop it. So every JSON
number with a fraction or exponent is decoded straight into ``Decimal`` from its literal text,
and every outgoing ``Decimal`` is written as plain positional digits (``0.00000001``, never
``1E-8``, which venues reject). Integers stay ``int``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec

__all__ = ["JsonDecodeError", "decode", "encode", "plain_decimal"]

JsonDecodeError = msgspec.DecodeError
"""Raised by :func:`decode` on malformed input (callers turn it into a typed venue error)."""

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder()


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode one JSON document; JSON reals become ``Decimal``. Raises :data:`JsonDecodeError`."""
    return _decoder.decode(data)


def plain_decimal(value: Decimal) -> str:
    """Positional notation a venue accepts; a non-finite value is a bug upstream, so refuse it."""
    if not value.is_finite():
        raise ValueError(f"non-finite Decimal {value!r} cannot be sent to a venue")
    return format(value, "f")


def encode(obj: Any) -> bytes:
    """Encode to compact JSON bytes, with every ``Decimal`` as a plain-digit string."""
    return _encoder.encode(_plain(obj))


def _plain(obj: Any) -> Any:
    # msgspec writes Decimal with str(), which may use exponents; rewrite them first. Payloads we
    # send (order bodies, subscriptions) are small, so one walk costs nothing that matters.
    if isinstance(obj, Decimal):
        return plain_decimal(obj)
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
