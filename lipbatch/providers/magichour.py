"""Magic Hour lip sync (``POST /v1/lip-sync``, ``GET /v1/video-projects/{id}``).

Readings of the docs (../shared/providers/magichour-lipsync.md):

- Uploads: ``POST /v1/files/upload-urls`` for one item, then a ``PUT`` of the
  raw bytes to the presigned URL *without* our Authorization header (it is a
  storage URL; the key must not leak to it). Uploaded inputs are deleted after
  7 days, so ``Upload.expires_at`` is set a day short of that, and the runner
  uploads again after it.
- https inputs are passed through as file paths (the docs allow public URLs).
- ``name`` carries the job key, so a task is recognisable in the dashboard.
  But the API has no documented list/search endpoint (the SDK's
  ``video_projects`` has only get and delete): a task id can be confirmed by
  GET, never found by name. So ``can_reconcile`` is False: a job whose create
  answer was lost is *unknown* and resubmitted only with ``--resubmit-unknown``.
- ``error`` and ``canceled`` are terminal failures; ``draft`` counts as pending.
- 402 is out of credits (the common mapping); ``credits_charged`` (an estimate
  at queue time, settled on completion) is reported as the task's credits.
- A create answer without an ``id`` leaves the outcome unknown (``submission_from``):
  the project may exist and be charged, so the job is not failed and resubmitted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from lipbatch.errors import PermanentError, TransientError
from lipbatch.model import InputRef, Job
from lipbatch.providers.base import (
    HttpClient,
    Phase,
    Submission,
    TaskState,
    Upload,
    classify_response,
    file_chunks,
    json_number,
    json_object,
    submission_from,
)

INPUT_LIFETIME = 7 * 86400.0
_LIFETIME_MARGIN = 86400.0


def parse_time(value: Any) -> float | None:
    """An ISO-8601 timestamp (``Z`` suffix allowed) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def project_state(project: Any) -> TaskState:
    """Map a video project (create or poll answer) onto the common ``TaskState``."""
    project = json_object(project, "video project answer")
    raw = str(project.get("status") or "queued").lower()
    credits = json_number(project.get("credits_charged"))
    if raw == "rendering":
        return TaskState(Phase.RUNNING, raw, credits=credits)
    if raw == "complete":
        downloads = project.get("downloads") or []
        if not downloads and isinstance(project.get("download"), dict):
            downloads = [project["download"]]
        first = downloads[0] if downloads and isinstance(downloads[0], dict) else {}
        if not first.get("url"):
            return TaskState(Phase.RUNNING, raw, progress=1.0, credits=credits)
        return TaskState(Phase.SUCCEEDED, raw, progress=1.0, result_url=first["url"],
                         result_expires_at=parse_time(first.get("expires_at")), credits=credits)
    if raw in ("error", "canceled"):
        error = project.get("error")
        if isinstance(error, dict) and (error.get("message") or error.get("code")):
            message = ": ".join(str(error[k]) for k in ("code", "message") if error.get(k))
        else:
            message = "canceled in the Magic Hour web app" if raw == "canceled" else "render failed"
        return TaskState(Phase.FAILED, raw, credits=credits, error=PermanentError(message))
    return TaskState(Phase.PENDING, raw, credits=credits)


class Client(HttpClient):
    """magichour-lipsync client."""

    kind = "magichour-lipsync"

    def needs_upload(self, ref: InputRef) -> bool:
        return ref.path is not None

    async def upload(self, ref: InputRef) -> Upload:
        assert ref.path is not None
        item = {"type": ref.role, "extension": ref.path.suffix.lower().lstrip(".")}
        data = await self.call("POST", "/v1/files/upload-urls", json={"items": [item]})
        try:
            target = data["items"][0]
            upload_url, file_path = target["upload_url"], target["file_path"]
        except (KeyError, IndexError, TypeError) as exc:
            raise PermanentError(f"upload-urls answered without an upload URL: {str(data)[:200]}") from exc
        headers = {"Content-Length": str(ref.size)} if ref.size is not None else {}
        try:
            response = await self.http.put(upload_url, content=file_chunks(ref.path), headers=headers)
        except httpx.TransportError as exc:
            raise TransientError(f"upload PUT: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise classify_response(response)
        return Upload(handle=file_path, expires_at=time.time() + INPUT_LIFETIME - _LIFETIME_MARGIN)

    def create_body(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        """The lip-sync request; inputs are upload file paths or passed-through URLs."""
        def source(role: str) -> str:
            return uploads[role].handle if role in uploads else str(job.inputs[role].url)

        params = job.params
        body: dict[str, Any] = {
            "name": job.reference,
            "start_seconds": params["start_seconds"],
            "end_seconds": params["end_seconds"],
            "assets": {
                "video_source": "file",
                "video_file_path": source("video"),
                "audio_file_path": source("audio"),
            },
        }
        if "max_fps_limit" in params:
            body["max_fps_limit"] = params["max_fps_limit"]
        if "generation_mode" in params:
            body["style"] = {"generation_mode": params["generation_mode"]}
        return body

    async def prepare(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        return self.create_body(job, uploads)

    async def create(self, body: Any) -> Submission:
        return submission_from(await self.call("POST", "/v1/lip-sync", json=body), project_state)

    async def poll(self, task_id: str) -> TaskState:
        return project_state(await self.call("GET", f"/v1/video-projects/{task_id}"))
