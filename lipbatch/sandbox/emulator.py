"""The contract every provider emulator implements for the sandbox core (``core.Sandbox``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from starlette.responses import Response
from starlette.routing import BaseRoute


class Emulator(Protocol):
    """One provider API (or one family sharing a host, like useapi.net).

    Optional extra: ``expired_response(self) -> Response`` answers a download
    of an expired result URL (default: S3/CloudFront-style 403 XML).
    """

    name: str  # "useapi" | "magichour" | "aimlapi" | "creatify"
    prefixes: tuple[str, ...]  # URL path prefixes it serves, for stats and fault attribution

    def routes(self) -> list[BaseRoute]: ...

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        """A response in this provider's documented error shape (used by auth and fault injection)."""
        ...

    def reset(self) -> None: ...

    def forget(self, *, uploads: bool, tasks: bool, results: bool) -> dict[str, int]:
        """Forget uploaded inputs / tasks / result files; counts of each (``Sandbox.forget``)."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Its records as JSON values: small (file bytes are the sandbox's), no credentials."""
        ...

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load ``snapshot()`` output (after ``Sandbox.restore``); KeyError/TypeError/ValueError if malformed."""
        ...
