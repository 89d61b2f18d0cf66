"""The provider protocol: what every ``providers/<kind>.py`` client implements.

Shaped like pre-commit's ``lang_base``: a small protocol, one module per kind.
A client is thin: it maps a job to HTTP calls and the provider's answers to a
common ``TaskState`` or a classified ``ProviderError``. It holds no retry
loops, limits, state or download code; the runner does all of that once.

The runner gives each client an ``httpx.AsyncClient`` (whose transport the
runner may wrap for rate limiting, and tests may swap for an in-process
emulator) and the resolved secrets (role -> value) for its account.

``HttpClient`` is the concrete base every client subclasses: it holds what all
kinds repeat (auth headers, base URL, one JSON call, the "no upload / no
reconcile" defaults), so a client module keeps only its provider's mapping.
The word heuristics for providers that document no error codes
(``classify_text``) live here too, one set for every kind.
"""

from __future__ import annotations

import email.utils
import enum
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx
import trio

from lipbatch.errors import (
    ModerationError,
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
    #: True when https inputs may be passed through as URLs; False (useapi: uploaded assets only)
    #: lets manifest validation reject URL inputs for the kind before anything is sent
    accepts_input_urls: ClassVar[bool]

    def __init__(self, account: Account, http: httpx.AsyncClient, secrets: Mapping[str, str]) -> None: ...

    def needs_upload(self, ref: InputRef) -> bool:
        """True when a local input must be uploaded before submit (URLs/data URIs need not)."""
        ...

    async def upload(self, ref: InputRef) -> Upload:
        """Upload one local input; the runner calls it once per content hash per account."""
        ...

    async def prepare(self, job: Job, uploads: Mapping[str, Upload]) -> Any:
        """The whole create request body, built before anything is sent (inputs read, data URIs
        encoded), so the runner records its intent only right before the one ``create`` call.
        ``uploads`` maps input role -> handle for uploaded inputs. Carries ``job.reference`` (the
        key, with the take after the first) in the provider's reference field where one exists.
        """
        ...

    async def create(self, body: Any) -> Submission:
        """Send one prepared create request: the only call that can cost money."""
        ...

    async def submit(self, job: Job, uploads: Mapping[str, Upload]) -> Submission:
        """``prepare`` then ``create``."""
        ...

    async def poll(self, task_id: str) -> TaskState:
        """Read the task's current state."""
        ...

    async def find_task(self, reference: str) -> str | None:
        """Find the task submitted with ``reference`` (after a crash between POST and record)."""
        ...

    def gone_uploads(self, error: ProviderError, uploads: Mapping[str, Upload]) -> set[str]:
        """The roles of ``uploads`` a refused create says the provider no longer has (empty: none)."""
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


# -- what every client shares -------------------------------------------------------------------

_UPLOAD_CHUNK = 1 << 20

_UPLOAD_GONE = re.compile(r"(asset|file).{0,80}(not found|deleted|does not exist|expired)", re.IGNORECASE)
_MODERATION = re.compile(
    r"moderat|nsfw|sensitive|inappropriate|offensive|content polic|violat|prohibited|unsafe", re.IGNORECASE
)
_OUT_OF_CREDITS = re.compile(
    r"out of credit|top up|insufficient (credit|balance|fund)|enough (credit|balance)|no (remaining )?credits"
    r"|credits? exhausted",
    re.IGNORECASE,
)


def classify_text(message: str, status: int | None, default: type[ProviderError]) -> ProviderError:
    """Providers that document no error codes: out of credits and moderation told by their words."""
    if _OUT_OF_CREDITS.search(message):
        return OutOfCreditsError(message, status=status)
    if _MODERATION.search(message):
        return ModerationError(message, status=status)
    return default(message, status=status)


def refine_by_text(error: ProviderError, message: str | None = None) -> ProviderError:
    """A classified error answer refined by its words; retryable ones (429, 5xx, 408) keep their class.

    ``message`` replaces the error's own text when a provider's body needs its own reading.
    """
    if error.retryable:
        return error
    return classify_text(message or error.message, error.status, type(error))


def json_object(body: Any, what: str) -> Mapping[str, Any]:
    """A task body that must be a JSON object; anything else is a garbled answer, worth another poll."""
    if not isinstance(body, Mapping):
        raise TransientError(f"unexpected {what}: {str(body)[:200]}")
    return body


def json_number(value: Any) -> float | None:
    """A JSON number (credits, costs) as a float; strings, booleans and null are None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def submission_from(answer: Any, parse_state: Callable[[Any], TaskState], id_field: str = "id") -> Submission:
    """A create answer as a ``Submission``.

    An answer without an id is a ``TransientError`` without a status: the task may
    exist, so the runner treats the outcome as unknown instead of failing (and
    later resubmitting, paying twice) or retrying blindly.
    """
    if not isinstance(answer, Mapping) or not answer.get(id_field):
        raise TransientError(f"create answer without a task id: {str(answer)[:200]}")
    state = parse_state(answer)
    return Submission(task_id=str(answer[id_field]), credits=state.credits, state=state)


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file as an async byte stream, so uploads keep memory flat."""
    async with await trio.open_file(path, "rb") as handle:
        while chunk := await handle.read(_UPLOAD_CHUNK):
            yield chunk


class HttpClient:
    """Concrete base of every client: account, HTTP client, auth headers and one JSON call.

    A subclass sets ``kind`` (its ``credential_defaults`` follow from it), and
    overrides ``auth_headers``, ``classify`` and the upload/reconcile defaults
    only where its provider differs.
    """

    kind: ClassVar[str]
    credential_defaults: ClassVar[Mapping[str, str]]
    can_reconcile: ClassVar[bool] = False
    accepts_input_urls: ClassVar[bool] = True
    #: error answer -> ``ProviderError``; a kind refines the common mapping with its own
    classify = staticmethod(classify_response)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            # Imported here: the package's __init__ imports this module first.
            from lipbatch.providers import DEFAULT_CREDENTIALS

            cls.credential_defaults = DEFAULT_CREDENTIALS[cls.kind]

    def __init__(self, account: Account, http: httpx.AsyncClient, secrets: Mapping[str, str]) -> None:
        self.account = account
        self.http = http
        self.base_url = account.base_url.rstrip("/")
        self.headers = self.auth_headers(secrets)

    def auth_headers(self, secrets: Mapping[str, str]) -> dict[str, str]:
        """The headers that authenticate every call: a Bearer token unless a kind says otherwise."""
        return {"Authorization": f"Bearer {secrets['token']}"}

    async def call(self, method: str, path: str, *, headers: Mapping[str, str] | None = None,
                   **kwargs: Any) -> Any:
        """One authenticated JSON exchange with ``base_url + path``, errors classified by the kind."""
        return await request_json(self.http, method, self.base_url + path,
                                  headers={**self.headers, **(headers or {})}, classify=self.classify, **kwargs)

    def needs_upload(self, ref: InputRef) -> bool:
        return False

    async def upload(self, ref: InputRef) -> Upload:
        raise PermanentError(f"{self.kind} has no upload endpoint; its inputs are sent as URLs or inline")

    async def submit(self, job: Job, uploads: Mapping[str, Upload]) -> Submission:
        return await self.create(await self.prepare(job, uploads))

    async def find_task(self, reference: str) -> str | None:
        return None

    def gone_uploads(self, error: ProviderError, uploads: Mapping[str, Upload]) -> set[str]:
        """Which uploaded inputs a refused create says the provider no longer has.

        Providers purge uploads (Magic Hour after 7 days; useapi assets can be deleted) and answer
        the create with a 4xx naming the handle or the missing file. Only such a refusal makes the
        runner upload again; it created nothing, so uploading and creating again pays once. The
        handles the message names, else (a message about a missing file naming none) all of them.
        """
        if error.status not in (400, 404, 410, 422):
            return set()
        named = {role for role, upload in uploads.items() if upload.handle in error.message}
        if named or not _UPLOAD_GONE.search(error.message):
            return named
        return set(uploads)
