"""The rate limits a venue publishes with its markets tighten the spec's, never loosen them."""

from __future__ import annotations

import logging

import pytest

from marketlink.core.market import PublishedLimit
from marketlink.engine.connector import SpotConnector
from marketlink.venues.binance import VENUE, local_endpoints


def _connector() -> SpotConnector:
    return SpotConnector(VENUE, ["BTC-USDT"], None, endpoints=local_endpoints("http://127.0.0.1:9"))


def test_lower_and_new_windows_are_taken_higher_ones_and_unknown_pools_are_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = _connector()
    throttler = conn.ctx.throttler
    assert throttler.windows("ORDERS") == [(10.0, 50), (86_400.0, 160_000)]
    caplog.set_level(logging.WARNING, logger="marketlink")
    conn._adopt_limits([
        PublishedLimit("ORDERS", 10.0, 20),  # cut since the spec was written: taken
        PublishedLimit("ORDERS", 86_400.0, 200_000),  # raised: the spec's margin stays
        PublishedLimit("REQUEST_WEIGHT", 1.0, 100),  # a window the spec lacks: counted too
        PublishedLimit("HOURLY_MAGIC", 3_600.0, 5),  # a pool nobody charges: reported only
    ])
    assert throttler.windows("ORDERS") == [(10.0, 20), (86_400.0, 160_000)]
    assert throttler.windows("REQUEST_WEIGHT") == [(1.0, 100), (60.0, 6_000)]
    text = caplog.text
    assert "ORDERS 20 per 10s, below our 50" in text
    assert "REQUEST_WEIGHT 100 per 1s, a window our spec lacks" in text
    assert "'HOURLY_MAGIC', which our spec does not know" in text
    assert "200000" not in text
