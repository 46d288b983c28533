"""One sandbox per test module, on 127.0.0.1 with a free port, ticked by hand.

``autotick=False``: the market flow moves only when a test calls ``await sandbox.tick()``, so a
client's view can be compared with the exchange's exactly, with no race against a timer. Tests
in a module share the sandbox (and an offline aiohttp session), so they assert against the
exchange's state at the time they look, never against fixed ids or balances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from faithfulness_support import assert_no_internal_errors, offline_session

from marketlink.sandbox.config import SandboxConfig
from marketlink.sandbox.server import Sandbox


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(), autotick=False) as sb:
        yield sb
        assert_no_internal_errors(sb)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    http = offline_session()
    yield http
    await http.close()
