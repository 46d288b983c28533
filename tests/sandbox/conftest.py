"""Fixtures for the sandbox engine tests."""

from __future__ import annotations

import pytest
from sandbox_support import Recorder, make_exchange

from marketlink.sandbox.exchange import Exchange


@pytest.fixture
def ex() -> Exchange:
    return make_exchange()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()
