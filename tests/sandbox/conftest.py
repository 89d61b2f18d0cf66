"""Fixtures for the emulator tests: the sandbox in-process (``emu``) or on a real loopback socket (``served``).

Both yield an ``Emu``: ``client`` (an ``httpx.AsyncClient`` whose base URL is the sandbox),
``sandbox`` (the ``Sandbox`` itself), ``configure(**fields)``, ``advance(seconds)`` and
``await stats()``. Time runs 100x faster than real time by default (1 virtual s = 10 ms).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import httpx
import pytest
import trio
from sandbox_kit import Emu, fast_app

from lipbatch.sandbox.server import serve


@pytest.fixture
async def emu() -> AsyncIterator[Emu]:
    """The sandbox in-process, over ``httpx.ASGITransport`` (no sockets)."""
    app = fast_app()
    url = "http://127.0.0.1:8765"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=url) as client:
        yield Emu(app, client, url)


@pytest.fixture
async def served() -> AsyncIterator[Emu]:
    """The sandbox served by hypercorn on an ephemeral loopback port."""
    app = fast_app()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, app))
        async with httpx.AsyncClient(base_url=url) as client:
            yield Emu(app, client, url)
        nursery.cancel_scope.cancel()
