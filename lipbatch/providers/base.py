"""The provider protocol: what every ``providers/<kind>.py`` client implements.

Shaped like pre-commit's ``lang_base``: a small protocol, one module per kind.
A client is thin: it maps a job to HTTP calls and the provider's answers to a
common ``TaskState`` or a classified ``ProviderError``. It holds no retry
loops, limits, state or download code; the runner does all of that once.

The runner gives each client an ``httpx.AsyncClient`` (whose transport the
runner may wrap for rate limiting, and tests may swap for an in-process
emulator) and the resolved secrets (role -> value) for its account.
"""

from __future__ import annotations

import email.utils
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx

from lipbatch.errors import (
    NotFoundError,
    OutOfCreditsError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from lipbatch.model import Account, InputRef, Job


class Phase(enum.StrEnum):
    """The common lifecycle every provider status maps onto."""

    PENDING = "pending"  # accepted, waiting (queued, THROTTLED, in_queue, ...)
    RUNNING = "running"  # generating / rendering
    SUCCEEDED = "succeeded"  # result_url is set
    FAILED = "failed"  # error is set (classified: moderation, permanent, ...)


@dataclass(frozen=True)
class TaskState:
    """One poll's answer, in common terms."""

    phase: Phase
    raw_status: str
    progress: float | None = None  # 0..1
    eta_seconds: float | None = None  # provider's estimate of time to start/finish
    result_url: str | None = None
    result_expires_at: float | None = None  # epoch seconds, when the provider says
    credits: float | None = None  # credits charged as reported by the provider
    error: ProviderError | None = None


@dataclass(frozen=True)
class Upload:
    """A provider-side handle for an uploaded input (assetId, file_path, ...)."""

    handle: str
    expires_at: float | None = None  # epoch seconds; Magic Hour deletes inputs after 7 days


@dataclass(frozen=True)
class Submission:
    """What a create call returned: the task id, at once recorded by the runner."""

    task_id: str
    credits: float | None = None
    state: TaskState | None = None


class Provider(Protocol):
    """A client for one provider kind, bound to one account."""

    kind: ClassVar[str]
    #: env var roles this kind needs, with default variable names
    credential_defaults: ClassVar[Mapping[str, str]]
    #: True when ``find_task`` can look a job up by the reference sent with it
    can_reconcile: ClassVar[bool]

    def __init__(self, account: Account, http: httpx.AsyncClient, secrets: Mapping[str, str]) -> None: ...

    def needs_upload(self, ref: InputRef) -> bool:
        """True when a local input must be uploaded before submit (URLs/data URIs need not)."""
        ...

    async def upload(self, ref: InputRef) -> Upload:
        """Upload one local input; the runner calls it once per content hash per account."""
        ...

    async def submit(self, job: Job, uploads: Mapping[str, Upload]) -> Submission:
        """Create the task. ``uploads`` maps input role -> handle for uploaded inputs.

        Sends ``job.key`` as the provider's reference field where one exists.
        """
        ...

    async def poll(self, task_id: str) -> TaskState:
        """Read the task's current state."""
        ...

    async def find_task(self, job_key: str) -> str | None:
        """Find the task submitted for ``job_key`` (after a crash between POST and record)."""
        ...


# -- shared HTTP plumbing -----------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message(response: httpx.Response) -> str:
    """The provider's reason from any of the documented error shapes, else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        for field in ("error", "message", "detail", "failed_reason"):
            value = body.get(field)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                inner = value.get("message") or value.get("errorMessage")
                if inner:
                    return str(inner)
            if isinstance(value, list) and value:
                return "; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value)
        # DRF field errors: {"field": ["message"]}
        parts = [f"{k}: {v[0]}" for k, v in body.items() if isinstance(v, list) and v]
        if parts:
            return "; ".join(parts)
    return str(body)[:300]


def classify_response(response: httpx.Response) -> ProviderError:
    """Default mapping of an error response to an error class; clients refine per provider."""
    status = response.status_code
    message = error_message(response)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        return RateLimitedError(message, status=status, retry_after=retry_after)
    if status == 402:
        return OutOfCreditsError(message, status=status)
    if status == 404:
        return NotFoundError(message, status=status)
    if status >= 500 or status == 408:
        return TransientError(message, status=status, retry_after=retry_after)
    return PermanentError(message, status=status)


async def request_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    classify=classify_response,
    **kwargs: Any,
) -> Any:
    """One HTTP exchange: the decoded JSON body on 2xx, else a classified ``ProviderError``.

    Network failures become ``TransientError``; no retries happen here.
    """
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
    if response.is_success:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise TransientError(f"undecodable JSON from {method} {response.url.path}") from exc
    raise classify(response)
