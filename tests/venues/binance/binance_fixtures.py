"""Loads the Binance codec tests' payloads: the docs' samples, decoded as the net layer does.

``jsoncodec.decode`` turns JSON reals into ``Decimal``, so a payload with a bare number where
Binance sends a string reaches the codec exactly as it would in production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marketlink.net import jsoncodec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "binance"


def load_fixture(name: str) -> Any:
    return jsoncodec.decode((FIXTURES / name).read_bytes())
