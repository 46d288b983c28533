"""Every conformance scenario runs once per venue in ``HARNESSES`` (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness import HARNESSES, Lab, VenueHarness, World


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def venue(request: pytest.FixtureRequest) -> VenueHarness:
    harness: VenueHarness = request.param
    return harness


@pytest.fixture
async def lab(venue: VenueHarness) -> AsyncIterator[Lab]:
    lab = Lab(venue)
    try:
        yield lab
    finally:
        await lab.close()


@pytest.fixture
async def world(lab: Lab) -> World:
    """A started connector trading BTC-USDT on a quiet sandbox (no market flow)."""
    return await lab.world()
