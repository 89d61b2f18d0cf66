"""Emulator of Creatify's AI Avatar lip sync v2 (``/api/lipsyncs_v2/``) and its catalogue endpoints.

Contract: ../shared/providers/creatify-lipsync.md. The server is Django REST Framework, so errors
follow DRF. Readings where the docs are silent:

- Auth: both ``X-API-ID`` and ``X-API-KEY`` must be non-empty, else 401 ``{"detail": "Authentication
  credentials were not provided."}``; with ``config.valid_tokens`` set, the key (or ``id:key``) must be
  listed, else 401 ``{"detail": "Incorrect authentication credentials."}``. ``X-API-ID`` is the account.
- Every path ends with ``/``; without it the answer is Django's ``301`` to the slashed path.
- Validation: 400 with DRF field errors, nested for scenes: ``{"video_inputs": [{"voice": {"voice_id":
  ["..."]}}]}`` (``{}`` for valid scenes). A scene needs ``character`` (``type: avatar`` and a known
  ``avatar_id`` from ``/api/personas/``) and ``voice``: ``{"type": "text", "input_text", "voice_id"}``
  (an accent id from ``/api/voices/``) or ``{"type": "audio", "audio_url"}`` (the field name is the
  notes' guess; http(s) URLs only, as DRF's URLField). ``name`` <= 255, ``webhook_url`` a URL <= 200
  (the response schema's limit). Other scene settings (background, captions, ...) are echoed unchecked.
- Credits (charged at create, when the duration is known): ``standard`` 5 per started 30 s; aurora
  per ``config.creatify_aurora_pricing``: ``per_block`` 20 (``aurora_v1``) / 10 (``aurora_v1_fast``) per
  started 15 s, or ``per_second`` 1 / 0.5 per second rounded up. Not enough credits is 400
  ``{"detail": "Insufficient credits: ..."}``. Failed tasks are refunded. With unlimited credits
  ``/api/remaining_credits/`` counts down from 1,000,000.
- Lifecycle: ``pending`` (the create answer, and a 0.5 virtual s pickup delay) -> ``in_queue``
  (waiting for a ``config.max_jobs`` slot per account; unlimited by default) -> ``running`` -> ``done`` /
  ``failed``. Text with a ``config.moderate`` word fails when rendering starts, with a
  ``failed_reason`` naming content moderation (``rejected`` is never used: the webhook docs list only
  pending, in_queue, running, failed, done). Audio that cannot be decoded fails too; audio URLs the
  sandbox cannot reach render a tone instead.
- ``progress`` is a string fraction with two decimals (``"0.00"`` .. ``"1.00"``).
- ``duration`` is the output length rounded to whole seconds (at least 1). Several scenes are
  approximated: their texts are spoken as one, or the first audio scene's audio plays for the
  summed duration.
- ``output`` is a sandbox CDN URL, fresh on each GET, expiring after ``config.download_ttl`` (never by
  default). ``video_thumbnail``, ``preview``, ``editor_url`` and ``media_job`` stay null (no thumbnails
  or editor here); stock personas and voices carry no preview media.
- ``GET /api/lipsyncs_v2/`` lists the account's tasks (newest first), filtered by ``?ids=`` (<= 100
  comma-separated uuids), as a plain array.
- Webhook: ``{"id", "status", "failed_reason", "output"}`` POSTed once when the task is done or failed.
- Only the v2 create/get/list endpoints are emulated (no preview/render, no v1).
- Forgetting (``/_sandbox/forget``): there are no uploads; forgotten tasks, and finished ones whose
  video is forgotten, answer 404 ``{"detail": "Not found."}`` and leave ``GET /api/lipsyncs_v2/``.
  A webhook still due when a persistent world reloads is sent at the task's next GET.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from lipbatch.sandbox import render as media
from lipbatch.sandbox.core import Lifecycle, Sandbox, accepts, forget_tasks, json_body, probe_input
from lipbatch.sandbox.creatify_requests import PERSONAS, VOICES, validate
from lipbatch.sandbox.responses import JSONResponse

PATH = "/api/lipsyncs_v2/"
PICKUP_DELAY = 0.5
MAX_IDS = 100
UNLIMITED_CREDITS = 1_000_000

NOT_PROVIDED = "Authentication credentials were not provided."
INCORRECT = "Incorrect authentication credentials."


@dataclass
class _Task:
    id: str
    account: str
    request: dict[str, Any]
    lifecycle: Lifecycle
    credits: int
    duration: int
    token: str | None
    failure: str | None
    base: str  # the sandbox URL the task was created through (for the webhook's output URL)
    refunded: bool = False


def price(model: str, seconds: float, pricing: str) -> int:
    """Credits for ``seconds`` of video (rounded up per started block, or per second)."""
    def per_block(size: float, cost: int) -> int:
        return cost * max(1, math.ceil(seconds / size - 1e-9))

    if model == "standard":
        return per_block(30, 5)
    rate = 1.0 if model == "aurora_v1" else 0.5
    if pricing == "per_second":
        return max(1, math.ceil(seconds * rate - 1e-9))
    return per_block(15, 20 if model == "aurora_v1" else 10)


class Emulator:
    """Creatify: lipsyncs_v2 tasks, stock personas and voices, credits, webhooks."""

    name = "creatify"
    prefixes: tuple[str, ...] = ("/api/",)

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.tasks: dict[str, _Task] = {}

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route(PATH, self._create, methods=["POST"]),
            Route(PATH, self._list, methods=["GET"]),
            Route(PATH + "{id}/", self._get, methods=["GET"]),
            Route("/api/personas/", self._personas, methods=["GET"]),
            Route("/api/voices/", self._voices, methods=["GET"]),
            Route("/api/remaining_credits/", self._credits, methods=["GET"]),
        ]
        slashless = [Route(route.path.rstrip("/"), _append_slash, methods=["GET", "POST", "HEAD"])
                     for route in routes if isinstance(route, Route) and route.methods != {"POST"}]
        return routes + slashless

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        if status == 429:
            wait = (headers or {}).get("Retry-After", "1")
            message = f"Request was throttled. Expected available in {wait} seconds."
        return JSONResponse({"detail": message}, status_code=status, headers=dict(headers or {}))

    def reset(self) -> None:
        self.tasks.clear()

    def forget(self, *, uploads: bool, tasks: bool, results: bool) -> dict[str, int]:
        """No uploads here (audio comes by URL); forgotten tasks (and those whose video is
        forgotten) answer 404 ``{"detail": "Not found."}`` and leave the listings."""
        return {"uploads": 0, **forget_tasks(self.sandbox, self.tasks, tasks=tasks, results=results)}

    def snapshot(self) -> dict[str, Any]:
        return {"tasks": [[t.id, t.account, t.request, t.lifecycle.to_json(), t.credits, t.duration, t.token,
                           t.failure, t.base, t.refunded] for t in self.tasks.values()]}

    def restore(self, data: Mapping[str, Any]) -> None:
        self.tasks = {}
        for ident, account, request, lifecycle, credits, duration, token, failure, base, refunded in data["tasks"]:
            self.tasks[ident] = _Task(ident, account, dict(request),
                                      self.sandbox.lifecycle_from_json(self.name, account, lifecycle),
                                      int(credits), int(duration), token, failure, base, bool(refunded))

    def _auth(self, request: Request) -> tuple[str | None, Response | None]:
        api_id = request.headers.get("x-api-id", "").strip()
        api_key = request.headers.get("x-api-key", "").strip()
        if not api_id or not api_key:
            return None, self.error(401, NOT_PROVIDED, headers={"WWW-Authenticate": "X-API-KEY"})
        if not accepts(self.sandbox, api_id, api_key):
            return None, self.error(401, INCORRECT, headers={"WWW-Authenticate": "X-API-KEY"})
        return api_id, None

    # -- catalogue ------------------------------------------------------------------------------

    async def _personas(self, request: Request) -> Response:
        _, refused = self._auth(request)
        return refused or JSONResponse(PERSONAS)

    async def _voices(self, request: Request) -> Response:
        _, refused = self._auth(request)
        return refused or JSONResponse(VOICES)

    async def _credits(self, request: Request) -> Response:
        account, refused = self._auth(request)
        if refused:
            return refused
        left = self.sandbox.credits_left(self.name, account or "")
        if left is None:
            left = UNLIMITED_CREDITS - self.sandbox.credits_used(self.name, account or "")
        return JSONResponse({"remaining_credits": int(left)})

    # -- tasks ----------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        account, refused = self._auth(request)
        if refused:
            return refused
        assert account is not None
        body = await json_body(request)
        errors = validate(body)
        if errors:
            return JSONResponse(errors, status_code=400)
        scenes = body["video_inputs"]
        model = body.get("model_version", "standard")
        texts = [s["voice"]["input_text"] for s in scenes if s["voice"]["type"] == "text"]
        audios = [self.sandbox.fetch_input(s["voice"]["audio_url"]) if s["voice"]["type"] == "audio" else None
                  for s in scenes]
        failure = None
        if any(self.sandbox.is_moderated(text) for text in texts):
            failure = "Rejected by content moderation: the script contains prohibited content."
        for data in audios:
            info = await probe_input(data)
            if data is not None and (info is None or not info.has_audio):
                failure = failure or "Failed to process the audio: it could not be decoded."
        seconds = 0.0
        for scene, audio in zip(scenes, audios, strict=True):
            text = scene["voice"].get("input_text") if scene["voice"]["type"] == "text" else None
            seconds += await trio.to_thread.run_sync(lambda a=audio, t=text: media.output_seconds(audio=a, tts_text=t))
        credits = price(model, seconds, self.sandbox.config.creatify_aurora_pricing)
        if not self.sandbox.charge(self.name, account, credits):
            left = self.sandbox.credits_left(self.name, account) or 0
            return JSONResponse({"detail": f"Insufficient credits: this video needs {credits} credits, "
                                           f"{int(left)} remaining."}, status_code=400)
        self.sandbox.record_create(self.name, body)
        token = None
        if failure is None:
            first_audio = next((a for a in audios if a is not None), None)
            output = await self.sandbox.render(audio=first_audio, tts_text=" ".join(texts) or None,
                                               seconds=seconds)
            token = self.sandbox.publish(output, filename="output.mp4", provider=self.name)
        moderated = failure is not None and "moderation" in failure
        task = _Task(
            id=self.sandbox.new_id(), account=account, credits=credits, token=token, failure=failure,
            duration=max(1, int(seconds + 0.5)), base=str(request.base_url),
            request={"aspect_ratio": "9x16", "model_version": "standard", "name": None, "webhook_url": None}
            | {k: body[k] for k in ("aspect_ratio", "model_version", "name", "webhook_url") if k in body}
            | {"video_inputs": scenes},
            lifecycle=self.sandbox.lifecycle(self.name, account, capacity=self.sandbox.config.max_jobs,
                                             delay=PICKUP_DELAY, seconds=0.0 if moderated else None))
        self.tasks[task.id] = task
        self.sandbox.call_at(task.lifecycle.finished_at, lambda: self._finish(task))
        return JSONResponse(self._view(task, pending=True), status_code=201)

    def _finish(self, task: _Task) -> None:
        """At the end: refund a failed task; POST the webhook once."""
        if task.refunded or task.lifecycle.phase() != "finished":
            return
        task.refunded = True
        if task.failure:
            self.sandbox.refund(self.name, task.account, task.credits)
        if task.request["webhook_url"]:
            view = self._view(task)
            self.sandbox.callback(task.request["webhook_url"], {k: view[k] for k in
                                                                ("id", "status", "failed_reason", "output")})

    async def _get(self, request: Request) -> Response:
        account, refused = self._auth(request)
        if refused:
            return refused
        task = self.tasks.get(request.path_params["id"])
        if task is None or task.account != account:
            return JSONResponse({"detail": "Not found."}, status_code=404)
        self._finish(task)
        return JSONResponse(self._view(task, request))

    async def _list(self, request: Request) -> Response:
        account, refused = self._auth(request)
        if refused:
            return refused
        wanted = None
        if "ids" in request.query_params:
            wanted = [i.strip() for i in request.query_params["ids"].split(",") if i.strip()]
            if len(wanted) > MAX_IDS:
                return JSONResponse({"ids": [f"Ensure this field has no more than {MAX_IDS} elements."]},
                                    status_code=400)
            for value in wanted:
                try:
                    uuid.UUID(value)
                except ValueError:
                    return JSONResponse({"ids": [f"“{value}” is not a valid UUID."]}, status_code=400)
        tasks = [t for t in reversed(self.tasks.values())
                 if t.account == account and (wanted is None or t.id in wanted)]
        for task in tasks:
            self._finish(task)
        return JSONResponse([self._view(task, request) for task in tasks])

    def _view(self, task: _Task, request: Request | None = None, *, pending: bool = False) -> dict[str, Any]:
        lc = task.lifecycle
        phase = lc.phase()
        now = self.sandbox.now()
        output, progress, updated = None, "0.00", lc.created_at
        if pending or now < lc.ready_at:
            status = "pending"
        elif phase == "queued":
            status, updated = "in_queue", lc.ready_at
        elif phase == "running":
            status, progress, updated = "running", f"{lc.progress():.2f}", lc.started_at
        else:
            status, updated = ("failed", lc.finished_at) if task.failure else ("done", lc.finished_at)
            if task.token:
                progress = "1.00"
                output, _ = self.sandbox.result_url(request or task.base, task.token)
        return {
            "id": task.id,
            "output": output,
            "video_thumbnail": None,
            "created_at": self.sandbox.iso(lc.created_at),
            "updated_at": self.sandbox.iso(updated),
            "credits_used": 0 if status == "failed" else task.credits,
            "duration": task.duration,
            "progress": progress,
            "failed_reason": task.failure if status == "failed" else None,
            "status": status,
            "preview": None,
            "editor_url": None,
            "media_job": None,
        } | task.request


async def _append_slash(request: Request) -> Response:
    """Django's APPEND_SLASH: a permanent redirect to the same path with ``/``."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"{request.url.path}/{query}", status_code=301)


