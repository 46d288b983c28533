"""The QA checklist (shared/reference/qa-checklist.md), automated: each row runs once per venue of the
conformance harness, so a venue added there runs these rows unchanged.

What the rows add to the harness is in ``qa_support.py`` (bots: a strategy under a runner on a
virtual clock, with a journal; the venue extras these rows need). Fixtures here only wire it.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# The conformance harness is reused, not copied: its directory joins the import path here.
_CONFORMANCE = str(Path(__file__).resolve().parent.parent / "conformance")
if _CONFORMANCE not in sys.path:
    sys.path.insert(0, _CONFORMANCE)

from harness import HARNESSES, VenueHarness, World  # noqa: E402
from qa_support import QALab  # noqa: E402

from marketlink.journal import Journal  # noqa: E402


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def venue(request: pytest.FixtureRequest) -> VenueHarness:
    harness: VenueHarness = request.param
    return harness


@pytest.fixture
async def lab(venue: VenueHarness) -> AsyncIterator[QALab]:
    lab = QALab(venue)
    try:
        yield lab
    finally:
        await lab.close()


@pytest.fixture
async def world(lab: QALab) -> World:
    """A started connector trading BTC-USDT on a quiet sandbox (no market flow)."""
    return await lab.world()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "journal.sqlite")
    try:
        yield j
    finally:
        j.close()
