"""What the two useapi.net Runway kinds share: auth, asset upload, task polling, errors, reconcile.

``runway-lipsync`` and ``runway-act-two-voice`` subclass ``UseapiClient``; each
only says where it creates (``create_path``), what it sends (``create_body``)
and, if needed, how to read its create answer (``read_create``).

Readings of the docs (see ../shared/providers/runway-*.md):

- Inputs must be useapi *assets*: there is no field taking an https URL, and
  the runner does not fetch arbitrary URLs. ``accepts_input_urls = False``
  lets manifest validation reject URL inputs for these kinds up front.
- Task objects come flat (lip sync create, GET /tasks) or wrapped in
  ``{"task": ...}`` (Act-Two create, maybe its GET): both are accepted everywhere.
- Both documented 429 bodies ("Account ... is busy executing N tasks" and
  Runway's "too many tasks running or pending") mean the account's slots are
  full: ``BusyError``. Any other 429 is a plain ``RateLimitedError``.
- 412 or a "... not have enough credits" message means out of credits (useapi's own
  client); a message mentioning moderation is a ``ModerationError``. The words are
  read by ``base.classify_text``, the heuristics every kind shares; answers that
  are retried as such (429, 5xx, 408) keep their class.
- ``maxJobs`` is not sent: the cap configured on the linked account rules, and
  the runner's adaptive limiter finds the real one from busy answers.
- ``find_task`` pages ``GET /tasks/`` (``offset`` 0..1000 per the docs) looking
  for our ``replyRef`` (``Job.reference``: the job key, plus the take after the first); a bounded number of pages.
- Credits: useapi reports only account-wide plan counters, no per-task cost, so
  ``credits`` stays None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from lipbatch.errors import (
    BusyError,
    ModerationError,
    OutOfCreditsError,
    PermanentError,
    ProviderError,
    RateLimitedError,
)
from lipbatch.model import InputRef, Job
from lipbatch.providers.base import (
    HttpClient,
    Phase,
    Submission,
    TaskState,
    Upload,
    classify_response,
    file_chunks,
    refine_by_text,
)

_BUSY_MARKERS = ("is busy executing", "too many tasks")
_LIST_PAGE = 200
_LIST_MAX_OFFSET = 1000  # documented valid range of ``offset``


def classify(response: httpx.Response) -> ProviderError:
    """useapi.net's error answers: busy 429s, 412 out of credits, then the shared word heuristics."""
    error = classify_response(response)
    if isinstance(error, RateLimitedError) and any(marker in error.message.lower() for marker in _BUSY_MARKERS):
        return BusyError(error.message, status=error.status, retry_after=error.retry_after)
    if error.status == 412:
        return OutOfCreditsError(error.message, status=error.status)
    return refine_by_text(error)


def unwrap_task(data: Any) -> dict[str, Any]:
    """The task object from a flat or ``{"task": ...}``-wrapped answer."""
    if isinstance(data, dict) and isinstance(data.get("task"), dict):
        return data["task"]
    if isinstance(data, dict):
        return data
    raise PermanentError(f"unexpected task answer: {str(data)[:200]}")


def _number(value: Any) -> float | None:
    """progressRatio and friends arrive as numbers or numeric strings."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def task_state(task: Mapping[str, Any]) -> TaskState:
    """Map a useapi/Runway task object onto the common ``TaskState``."""
    raw = str(task.get("status") or "PENDING").upper()
    eta = _number(task.get("estimatedTimeToStartSeconds"))
    if raw in ("PENDING", "THROTTLED"):
        return TaskState(Phase.PENDING, raw, eta_seconds=eta)
    if raw == "RUNNING":
        progress = _number(task.get("progressRatio"))
        return TaskState(Phase.RUNNING, raw, progress=progress, eta_seconds=eta)
    if raw == "SUCCEEDED":
        artifacts = task.get("artifacts") or []
        url = artifacts[0].get("url") if artifacts and isinstance(artifacts[0], dict) else None
        if not url:
            # Succeeded without an artifact yet: keep polling rather than fail a paid job.
            return TaskState(Phase.RUNNING, raw, progress=1.0)
        return TaskState(Phase.SUCCEEDED, raw, progress=1.0, result_url=url)
    if raw == "FAILED":
        return TaskState(Phase.FAILED, raw, error=task_error(task.get("error")))
    return TaskState(Phase.PENDING, raw, eta_seconds=eta)


def task_error(error: Any) -> ProviderError:
    """A FAILED task's ``error`` object, classified (moderation is never retried)."""
    if not isinstance(error, dict):
        return PermanentError(str(error) if error else "task failed without a reason")
    parts = [str(error[k]) for k in ("errorMessage", "reason", "message") if error.get(k)]
    message = "; ".join(dict.fromkeys(parts)) or "task failed without a reason"
    category = error.get("moderation_category")
    if category:
        return ModerationError(f"{message} (moderation: {category})")
    return PermanentError(message)


class UseapiClient(HttpClient):
    """Base client for useapi.net's Runway endpoints; subclasses set ``kind`` and ``create_path``."""

    create_path: ClassVar[str]
    can_reconcile = True
    #: useapi takes assets only: manifest validation rejects https inputs for these kinds
    accepts_input_urls = False
    classify = staticmethod(classify)

    # -- what a kind supplies --------------------------------------------------------------------

    def create_body(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        """The create request's JSON body (without ``replyRef``, added here)."""
        raise NotImplementedError

    def read_create(self, data: Any) -> dict[str, Any]:
        """The task object from the create answer."""
        return unwrap_task(data)

    # -- the protocol ------------------------------------------------------------------------------

    def needs_upload(self, ref: InputRef) -> bool:
        return ref.path is not None

    async def upload(self, ref: InputRef) -> Upload:
        if ref.path is None:
            raise PermanentError(f"{self.kind} takes uploaded assets only, not URLs ({ref.url})")
        params: dict[str, Any] = {"name": ref.path.name}
        if ref.duration:
            params["duration"] = f"{ref.duration:.3f}"
        headers = {"Content-Type": ref.media_type}
        if ref.size is not None:
            headers["Content-Length"] = str(ref.size)
        data = await self.call("POST", "/assets/", params=params, content=file_chunks(ref.path), headers=headers)
        asset_id = data.get("assetId") if isinstance(data, dict) else None
        if not asset_id:
            raise PermanentError(f"asset upload answered without an assetId: {str(data)[:200]}")
        return Upload(handle=asset_id)

    async def prepare(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        return {**self.create_body(job, uploads), "replyRef": job.reference}

    async def create(self, body: Any) -> Submission:
        data = await self.call("POST", self.create_path, json=body)
        task = self.read_create(data)
        task_id = task.get("taskId")
        if not task_id:
            raise PermanentError(f"create answered without a taskId: {str(data)[:200]}")
        return Submission(task_id=task_id, state=task_state(task))

    async def poll(self, task_id: str) -> TaskState:
        # useapi's own client puts the taskId (with ':' and '@') into the path unencoded.
        return task_state(unwrap_task(await self.call("GET", f"/tasks/{task_id}")))

    async def find_task(self, reference: str) -> str | None:
        for offset in range(0, _LIST_MAX_OFFSET + 1, _LIST_PAGE):
            data = await self.call("GET", "/tasks/", params={"offset": offset, "limit": _LIST_PAGE})
            tasks = data.get("tasks", data.get("items", [])) if isinstance(data, dict) else data or []
            for item in tasks:
                task = unwrap_task(item)
                if task.get("replyRef") == reference and task.get("taskId"):
                    return task["taskId"]
            if len(tasks) < _LIST_PAGE:
                return None
        return None

    async def list_voices(self) -> list[Mapping[str, Any]]:
        """The lip-sync voice catalogue (``GET /lipsync/voices/``); a ``voiceId`` is a manifest voice id."""
        answer = await self.call("GET", "/lipsync/voices/")
        return [voice for voice in answer if isinstance(voice, Mapping)] if isinstance(answer, list) else []
