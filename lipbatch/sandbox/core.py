"""What every provider emulator shares: configuration, virtual time, faults, stats, results.

INTERFACE FIRST: the signatures below are the contract between the sandbox
core and the emulators (``sandbox/useapi.py``, ``magichour.py``, ``aimlapi.py``,
``creatify.py``). Bodies marked ``NotImplementedError`` are filled in by the
sandbox-core work; emulator authors code against the signatures only.

The emulators know the providers' contracts and nothing of lipbatch's runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute


@dataclass
class SandboxConfig:
    """Every knob of the sandbox; also settable at run time via ``POST /_sandbox/config``."""

    job_seconds: float = 3.0  # virtual seconds a job spends processing (after any queueing)
    time_scale: float = 1.0  # real seconds per virtual second: 0.01 makes everything 100x faster
    max_jobs: int | None = None  # per-account concurrency cap; None = each provider's default
    rate_429: float = 0.0  # fraction of provider requests answered 429 with Retry-After
    rate_5xx: float = 0.0  # fraction answered 500/502/503
    rate_reset: float = 0.0  # fraction whose connection is dropped mid-response
    rate_truncate: float = 0.0  # fraction of result downloads cut short
    download_ttl: float | None = None  # virtual seconds a result URL stays valid; None = forever
    moderate: tuple[str, ...] = ()  # jobs whose text contains one of these words fail moderation
    credits: float | None = None  # credits per account; None = unlimited
    seed: int = 0
    pixverse_success_status: str = "succeeded"  # or "completed": the docs say both
    creatify_aurora_pricing: str = "per_block"  # "per_block" (20/15 s, 10/15 s) or "per_second" (1/s, 0.5/s)
    valid_tokens: tuple[str, ...] = ()  # credentials accepted; empty = any non-empty value
    extra: dict[str, Any] = field(default_factory=dict)


class Emulator(Protocol):
    """One provider API (or one family sharing a host, like useapi.net)."""

    name: str  # "useapi" | "magichour" | "aimlapi" | "creatify"
    prefixes: tuple[str, ...]  # URL path prefixes it serves, for stats and fault attribution

    def routes(self) -> list[BaseRoute]: ...

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        """A response in this provider's documented error shape (used by auth and fault injection)."""
        ...

    def reset(self) -> None: ...


class Lifecycle:
    """Virtual-time lifecycle of one emulated task: queued -> running -> finished.

    ``slots`` is the emulator's per-account capacity gate: a task starts
    running only when fewer than ``capacity`` earlier tasks of the same account
    are running; otherwise it stays queued (the provider's pending state).
    """

    def phase(self) -> str:
        """'queued' | 'running' | 'finished' at the sandbox's current virtual time."""
        raise NotImplementedError

    def progress(self) -> float:
        """0..1 through the running phase."""
        raise NotImplementedError

    def eta(self) -> float:
        """Virtual seconds until it starts (queued) or finishes (running)."""
        raise NotImplementedError


class Sandbox:
    """Shared services handed to every emulator. One instance per app."""

    config: SandboxConfig

    def now(self) -> float:
        """Virtual seconds since the sandbox started (real elapsed / time_scale)."""
        raise NotImplementedError

    def lifecycle(self, provider: str, account: str, *, capacity: int | None = None,
                  seconds: float | None = None) -> Lifecycle:
        """Start a task's lifecycle now on ``account`` (capacity None = unlimited)."""
        raise NotImplementedError

    def active_tasks(self, provider: str, account: str) -> int:
        """Tasks of this account not yet finished (queued or running)."""
        raise NotImplementedError

    def charge(self, provider: str, account: str, credits: float) -> bool:
        """Deduct credits; False (and nothing deducted) when the account cannot pay."""
        raise NotImplementedError

    def refund(self, provider: str, account: str, credits: float) -> None:
        raise NotImplementedError

    def is_moderated(self, text: str | None) -> bool:
        raise NotImplementedError

    def record_create(self, kind: str, body: Mapping[str, Any]) -> None:
        """Count a successful create; also counts ``duplicate_creates`` for repeated bodies."""
        raise NotImplementedError

    async def render(self, *, video: bytes | None = None, image: bytes | None = None,
                     audio: bytes | None = None, tts_text: str | None = None,
                     seconds: float | None = None) -> bytes:
        """A playable MP4: the video (or the image held still, or a generated picture) with the
        audio (or a tone whose length follows ``tts_text``) muxed in, lasting as long as the audio."""
        raise NotImplementedError

    def publish(self, data: bytes, *, filename: str = "output.mp4") -> str:
        """Store a result; returns a token for ``result_url``."""
        raise NotImplementedError

    def result_url(self, request: Request, token: str) -> tuple[str, float | None]:
        """A fresh download URL for a published result and its expiry (virtual-time epoch) or None."""
        raise NotImplementedError

    def fetch_input(self, url: str) -> bytes | None:
        """Bytes behind an input URL the emulator was given: data URIs, this sandbox's own
        files, or None (a remote URL the sandbox cannot reach: the emulator then renders a
        synthetic stand-in)."""
        raise NotImplementedError

    def callback(self, url: str, payload: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> None:
        """POST ``payload`` to a replyUrl/webhook in the background; loopback URLs only."""
        raise NotImplementedError
