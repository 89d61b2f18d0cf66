"""The sandbox under test: ``Emu`` (an app plus a client pointed at it) and ``fast_app``.

Imported by ``conftest.py`` and by tests (a uniquely named module, unlike ``conftest``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import Sandbox, SandboxConfig

FAST = {"job_seconds": 1.0, "time_scale": 0.01}


class Emu:
    """One sandbox under test and a client pointed at it."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient, url: str) -> None:
        self.app = app
        self.client = client
        self.url = url

    @property
    def sandbox(self) -> Sandbox:
        return self.app.state.sandbox

    def configure(self, **changes: Any) -> None:
        self.sandbox.configure(changes)

    def advance(self, seconds: float) -> None:
        self.sandbox.advance(seconds)

    async def stats(self) -> dict[str, Any]:
        answer = await self.client.get("/_sandbox/stats")
        answer.raise_for_status()
        return answer.json()


def fast_app(*, world: Path | None = None, **changes: Any) -> Starlette:
    return build_app(SandboxConfig(**(FAST | changes)), world=world)
