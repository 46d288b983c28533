"""Fixtures for the Binance front-end tests: a started harness, closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from binance_frontend_support import Harness, start_harness, stop_harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await start_harness()
    yield harness
    await stop_harness(harness)
