"""Emulator of the creatify lip-sync API (stub; being implemented)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from lipbatch.sandbox.core import Sandbox


class Emulator:
    """creatify emulator."""

    name = "creatify"
    prefixes: tuple[str, ...] = ()

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def routes(self) -> list[BaseRoute]:
        return []

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return JSONResponse({"message": message}, status_code=status, headers=dict(headers or {}))

    def reset(self) -> None:
        pass
