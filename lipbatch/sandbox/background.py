"""Work the sandbox does outside any request: timers at virtual instants, and callbacks.

Both belong to the sandbox's reset generation: a reset (or a reload) voids the
timers of the one before, and a callback's outcome counts only in the stats of
the generation that sent it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import trio

from lipbatch.sandbox.request_helpers import is_loopback_host

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox

log = logging.getLogger("lipbatch.sandbox")


def spawn(fn: Callable[[], Awaitable[None]], name: str) -> bool:
    """Run ``fn`` detached from any request (works in-process and under hypercorn)."""
    async def guarded() -> None:
        try:
            await fn()
        except Exception:  # a background failure must never take the server down
            log.exception("sandbox background task %s failed", name)

    try:
        trio.lowlevel.spawn_system_task(guarded, name=name)
    except RuntimeError:  # not inside trio: nothing can run in the background
        return False
    return True


def call_at(sandbox: Sandbox, when: float, fn: Callable[[], Awaitable[None] | None]) -> None:
    """Call ``fn`` (sync or async) at virtual time ``when``, unless the sandbox is reset first."""
    generation = sandbox.generation

    async def later() -> None:
        await sandbox.sleep_until(when)
        if generation == sandbox.generation:
            result = fn()
            if result is not None:
                await result

    spawn(later, "sandbox-timer")


def send_callback(sandbox: Sandbox, url: str, payload: Mapping[str, Any], *,
                  headers: Mapping[str, str] | None = None) -> None:
    """POST ``payload`` to a replyUrl/webhook in the background; loopback URLs only."""
    entry: dict[str, Any] = {"url": url, "payload": dict(payload), "status": None}
    sandbox.callbacks_log.append(entry)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
        entry["status"] = "refused"
        sandbox.record_callback("refused")
        return
    generation = sandbox.generation

    async def post() -> None:
        try:
            async with httpx.AsyncClient(transport=sandbox.callback_transport, timeout=10) as client:
                response = await client.post(url, json=dict(payload), headers=dict(headers or {}))
            entry["status"] = response.status_code
            outcome = "sent" if response.is_success else "failed"
        except httpx.HTTPError as exc:
            entry["status"] = type(exc).__name__
            outcome = "failed"
        if generation == sandbox.generation:
            sandbox.record_callback(outcome)

    if not spawn(post, "sandbox-callback"):
        entry["status"] = "no-event-loop"
        sandbox.record_callback("failed")
