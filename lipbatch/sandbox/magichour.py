"""Emulator of Magic Hour's lip-sync API (``/v1/files/upload-urls``, ``/v1/lip-sync``, ``/v1/video-projects``).

Contract: ../shared/providers/magichour-lipsync.md. Readings where the docs are silent:

- Auth: ``Authorization: Bearer <key>``; anything else is 401 ``{"message": "Unauthorized"}``. The key
  is the account (concurrency, credits and project visibility are per key), kept under its
  ``account_label``.
- Uploads: presigned ``PUT`` URLs live on this sandbox under ``/api-assets/<id>/<type>.<ext>`` and take
  no auth; they are valid for 1 virtual hour (a bad or stale signature is S3's 403 XML). Stored files
  are deleted 7 virtual days after their PUT; a create naming a missing/expired ``file_path`` is a
  400 naming the field. Inputs may also be http(s) URLs whose path ends with a supported extension;
  ones the sandbox cannot reach render a synthetic stand-in (generated picture, tone).
- Validation: 400 ``{"message": "<field path>: <problem>"}``; the first problem found is reported.
- Credits: the estimate (``ceil(seconds * min(30, max_fps_limit))`` frames, x2 for ``pro``) is charged
  at create, else 402 ``{"message": "Payment required"}``. On completion it is settled to
  ``ceil(seconds * min(input fps, max_fps_limit))`` (input fps 30 when the input is unreachable; an
  extra charge the account cannot pay is waived); an errored job is refunded to 0.
- Concurrency: per plan (``config.extra["magichour_plan"]``: free 1 (undocumented, our pick),
  creator 3 (default), pro 5, business unlimited), or ``config.max_jobs``. Jobs above the cap are
  accepted and stay ``queued`` until a slot frees (the docs do not say queued vs rejected; queuing
  is what a web-app queue does). ``draft`` and ``canceled`` never occur; ``generation_mode: pro`` on
  the free plan is 403.
- Output: the input video with the audio muxed in, lasting ``end - start`` (clamped to the video's
  length). Known gap: the picture starts at the video's beginning, not at ``start_seconds``
  (``Sandbox.render`` has no start offset). ``fps`` reports the billing basis (min(input fps,
  limit)), not the sandbox's fixed render rate. An input video or audio that cannot be decoded ends
  the job in ``error`` with ``{"code": "invalid_input", ...}``.
- Download URLs expire after ``config.download_ttl`` or else 24 virtual hours; every GET returns
  fresh ones. ``expires_at``/``created_at`` are wall-clock stamps of those virtual instants.
- DELETE (204) disables the project: ``enabled: false``, no downloads; the render still finishes.
- Moderation words (``config.moderate``) do not apply: this endpoint takes no text.
- Webhooks are registered in the dashboard, not through the API, so none are sent.
- Forgetting (``/_sandbox/forget``): forgotten uploads are gone as after the 7-day deletion (a create
  naming one is the 400 above; an unused upload URL's PUT is 403). Forgotten projects poll 404
  ``"Not Found"``. Forgotten results turn complete projects into the docs' deleted project
  (``enabled: false``, no downloads) and their download URLs answer 404. Credit settlement still due
  when a persistent world reloads happens at the project's next GET.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lipbatch.sandbox.core import (
    Lifecycle,
    Sandbox,
    accepts,
    account_label,
    bearer_token,
    forget_tasks,
    json_body,
    probe_input,
    record_json,
)
from lipbatch.sandbox.magichour_requests import Invalid, lip_sync_spec
from lipbatch.sandbox.magichour_uploads import Upload, Uploads
from lipbatch.sandbox.responses import JSONResponse

PLAN_CONCURRENCY: dict[str, int | None] = {"free": 1, "creator": 3, "pro": 5, "business": None}
DOWNLOAD_TTL = 86400.0
ESTIMATE_FPS = 30.0


@dataclass
class _Project:
    id: str
    account: str
    name: str
    created_at: float
    start: float
    end: float
    mode: str
    fps_limit: float | None
    lifecycle: Lifecycle
    estimate: int
    actual: int
    fps: float
    width: int
    height: int
    token: str | None
    failure: dict[str, str] | None
    enabled: bool = True
    settled: bool = False


class Emulator(Uploads):
    """Magic Hour: upload URLs, lip-sync projects, per-plan concurrency, frame credits."""

    name = "magichour"
    prefixes: tuple[str, ...] = ("/v1/files/", "/v1/lip-sync", "/v1/video-projects", "/api-assets/")

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.uploads: dict[str, Upload] = {}
        self.projects: dict[str, _Project] = {}
        sandbox.add_input_resolver(self._resolve_url)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/files/upload-urls", self._upload_urls, methods=["POST"]),
            Route("/api-assets/{asset}/{filename}", self._put_asset, methods=["PUT"]),
            Route("/v1/lip-sync", self._create, methods=["POST"]),
            Route("/v1/video-projects/{id}", self._project, methods=["GET", "DELETE"]),
        ]

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return JSONResponse({"message": message}, status_code=status, headers=dict(headers or {}))

    def reset(self) -> None:
        self.uploads.clear()
        self.projects.clear()

    def forget(self, *, uploads: bool, tasks: bool, results: bool) -> dict[str, int]:
        """Uploads: every file_path (and unused upload URL) is gone, as after the 7-day deletion.
        Tasks: projects poll 404 "Not Found". Results: a complete project stays, but deleted as the
        docs show one (``enabled: false``, no downloads); its old download URLs answer 404."""
        counts = {"uploads": 0, "tasks": 0, "results": 0}
        if uploads:
            for upload in self.uploads.values():
                counts["uploads"] += self.sandbox.drop_file(upload.token)
            self.uploads.clear()
        if tasks:
            counts |= forget_tasks(self.sandbox, self.projects, tasks=True, results=results)
        elif results:
            for project in self.projects.values():
                if project.lifecycle.phase() == "finished" and self.sandbox.drop_file(project.token):
                    project.token, project.enabled = None, False
                    counts["results"] += 1
        return counts

    def snapshot(self) -> dict[str, Any]:
        return {"uploads": [[u.path, u.url_expires, u.token, u.stored_at] for u in self.uploads.values()],
                "projects": [record_json(p, lifecycle=p.lifecycle.to_json()) for p in self.projects.values()]}

    def restore(self, data: Mapping[str, Any]) -> None:
        self.uploads = {path: Upload(path, float(expires), token, stored_at)
                        for path, expires, token, stored_at in data["uploads"]}
        self.projects = {}
        for fields in data["projects"]:
            lifecycle = self.sandbox.lifecycle_from_json(self.name, fields["account"], fields["lifecycle"])
            self.projects[fields["id"]] = _Project(**(fields | {"lifecycle": lifecycle}))

    # -- lip sync -------------------------------------------------------------------------------

    def _capacity(self) -> int | None:
        if self.sandbox.config.max_jobs is not None:
            return self.sandbox.config.max_jobs
        return PLAN_CONCURRENCY.get(self._plan(), 3)

    def _plan(self) -> str:
        return str(self.sandbox.config.extra.get("magichour_plan", "creator")).lower()

    async def _create(self, request: Request) -> Response:
        key = bearer_token(request) or ""
        if not accepts(self.sandbox, key):
            return self.error(401, "Unauthorized")
        account = account_label(key)
        body = await json_body(request)
        try:
            spec = lip_sync_spec(body)
            if spec["mode"] == "pro" and self._plan() == "free":
                raise Invalid("style.generation_mode: pro requires a Creator, Pro or Business plan", 403)
            assets = spec["assets"]
            if assets["video_source"] == "file":
                video_ok, video = self._input(assets["video_file_path"], "assets.video_file_path", "video")
            else:
                video_ok, video = False, None
            audio_ok, audio = self._input(assets["audio_file_path"], "assets.audio_file_path", "audio")
        except Invalid as exc:
            return self.error(exc.status, str(exc))

        seconds = spec["end"] - spec["start"]
        multiplier = 2 if spec["mode"] == "pro" else 1
        limit = spec["fps_limit"]
        estimate = math.ceil(seconds * min(ESTIMATE_FPS, limit or ESTIMATE_FPS) - 1e-9) * multiplier
        if not self.sandbox.charge(self.name, account, estimate):
            return self.error(402, "Payment required")
        self.sandbox.record_create(self.name, body)

        failure, in_fps = None, ESTIMATE_FPS
        video_info = await probe_input(video) if video_ok else None
        audio_info = await probe_input(audio) if audio_ok else None
        if video_ok and (video_info is None or not video_info.has_video):
            failure = {"code": "invalid_input", "message": "The video file could not be decoded"}
        elif audio_ok and (audio_info is None or not audio_info.has_audio):
            failure = {"code": "invalid_input", "message": "The audio file could not be decoded"}
        elif video_info is not None:
            in_fps = video_info.fps or ESTIMATE_FPS
            if video_info.duration:
                if spec["start"] >= video_info.duration:
                    failure = {"code": "invalid_input", "message": "start_seconds is past the end of the video"}
                seconds = max(0.1, min(spec["end"], video_info.duration) - spec["start"])
        fps = min(in_fps, limit or in_fps)
        token, width, height = None, -1, -1
        if failure is None:
            output = await self.sandbox.render(video=video, audio=audio, seconds=seconds, start=spec["start"])
            token = self.sandbox.publish(output, filename="output.mp4", provider=self.name)
            info = await probe_input(output)
            if info is not None:
                width, height = info.width or -1, info.height or -1

        now = self.sandbox.now()
        project = _Project(
            id="c" + _base36(int(self.sandbox.new_id().replace("-", ""), 16))[:24], account=account,
            name=spec["name"] or f"Lip Sync - {self.sandbox.iso(now)}", created_at=now,
            start=spec["start"], end=spec["end"], mode=spec["mode"], fps_limit=limit,
            lifecycle=self.sandbox.lifecycle(self.name, account, capacity=self._capacity()),
            estimate=estimate, actual=math.ceil(seconds * fps - 1e-9) * multiplier, fps=fps,
            width=width, height=height, token=token, failure=failure)
        self.projects[project.id] = project
        self.sandbox.call_at(project.lifecycle.finished_at, lambda: self._settle(project))
        return JSONResponse({"id": project.id, "credits_charged": estimate, "estimated_frame_cost": estimate})

    def _settle(self, project: _Project) -> None:
        """At completion: refund a failed job, or settle the estimate to the rendered frames."""
        if project.settled or project.lifecycle.phase() != "finished":
            return
        project.settled = True
        if project.failure is not None:
            self.sandbox.refund(self.name, project.account, project.estimate)
        elif project.actual < project.estimate:
            self.sandbox.refund(self.name, project.account, project.estimate - project.actual)
        elif project.actual > project.estimate and not self.sandbox.charge(
                self.name, project.account, project.actual - project.estimate):
            project.actual = project.estimate

    async def _project(self, request: Request) -> Response:
        key = bearer_token(request) or ""
        if not accepts(self.sandbox, key):
            return self.error(401, "Unauthorized")
        account = account_label(key)
        project = self.projects.get(request.path_params["id"])
        if project is None or project.account != account:
            return self.error(404, "Not Found")
        if request.method == "DELETE":
            project.enabled = False
            return Response(status_code=204)
        self._settle(project)
        return JSONResponse(self._view(request, project))

    def _view(self, request: Request, project: _Project) -> dict[str, Any]:
        phase = project.lifecycle.phase()
        credits = project.estimate
        status = {"queued": "queued", "running": "rendering"}.get(phase)
        if status is None:
            status = "error" if project.failure else "complete"
            credits = 0 if project.failure else project.actual
        downloads = []
        if status == "complete" and project.enabled and project.token:
            ttl = self.sandbox.config.download_ttl
            url, expires = self.sandbox.result_url(request, project.token, ttl=DOWNLOAD_TTL if ttl is None else ttl)
            downloads.append({"url": url, "expires_at": self.sandbox.iso(expires)})
        return {
            "id": project.id,
            "name": project.name,
            "status": status,
            "type": "LIP_SYNC",
            "created_at": self.sandbox.iso(project.created_at),
            "width": project.width,
            "height": project.height,
            "enabled": project.enabled,
            "start_seconds": project.start,
            "end_seconds": project.end,
            "credits_charged": credits,
            "total_frame_cost": credits,
            "fps": project.fps,
            "error": project.failure if status == "error" else None,
            "downloads": downloads,
            "download": downloads[0] if downloads else None,
        }


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"


