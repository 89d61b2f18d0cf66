"""Emulator of PixVerse lip sync on AI/ML API (``/v2/video/generations``, ``/v2/billing``).

Contract: ../shared/providers/aimlapi-pixverse-lipsync.md. Readings where the docs are silent:

- Every error uses the generic body ``{"message", "path", "requestId", "statusCode", "timestamp"}``;
  validation failures are 400 ``"Body validation error!"`` with the zod-style details (``Invalid enum
  value. Expected ... received ...``) in an added ``errors`` list of ``{"path", "message"}``. A
  missing ``generation_id`` on the poll is reported the same way.
- ``video_url`` must be an https URL or a ``data:`` URI (the docs' wording); so must ``audio_url``.
  Exactly one of ``audio_url`` or the ``lip_sync_tts_speaker`` + ``lip_sync_tts_content`` pair must
  be given; a lone speaker or lone text is invalid. No TTS length limit is enforced (none documented).
- Ids are ``<base64>:pixverse/lip-sync`` where the base64 part always contains ``+`` (and may contain
  ``/``): a client must URL-encode the ``generation_id`` query value, or the ``+`` arrives as a space
  and the poll is 404. Unknown ids are 404 with the generic body.
- Lifecycle: ``queued`` (waiting for ``config.max_jobs`` slots per key; unlimited by default) ->
  ``generating`` -> ``config.pixverse_success_status`` (``succeeded`` as the example runs print, or
  ``completed`` as the schema says) / ``error`` with ``{"name", "message"}``.
- Moderation: text containing a ``config.moderate`` word fails as soon as generation starts, with
  ``{"name": "ContentModerationError", "message": "... flagged by content moderation ..."}``. An
  input that cannot be decoded fails at the end with ``{"name": "GenerationError", ...}``; remote
  inputs the sandbox cannot reach render a synthetic stand-in instead.
- Credits: a flat 2,000,000 (the documented run's ``credits_used``, 1 USD) reserved at create, else 403
  "You've run out of credits..."; failed generations are refunded (never billed) and report 0.
  ``/v2/billing`` answers ``{"current_balance": USD, "currency": "USD"}``; with unlimited credits the
  balance starts at 1,000,000 USD.
- ``video.url`` is a sandbox CDN URL whose last path segment carries percent-encoded slashes like the
  docs' CDN URL (``pixverse%2Fmp4%2Fmedia%2Fweb%2Fori%2F<name>.mp4``): clients must use it verbatim
  (not enforced: the sandbox's file route serves by token and ignores the file name).
  It expires after ``config.download_ttl`` (never by default); every poll returns a fresh one.
- Output: the input video with the input audio (or a tone following the TTS text's length), lasting
  as long as the audio.
- Accounts (credits, visibility) are per key, kept under its ``account_label``.
- Forgetting (``/_sandbox/forget``): there is no upload API; forgotten generations, and finished
  ones whose video is forgotten, poll 404 ``"Generation not found"`` (generic body) and their
  video URLs answer 404.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
)
from lipbatch.sandbox.responses import JSONResponse

MODEL = "pixverse/lip-sync"
SPEAKERS = ("Harper", "Ava", "Isabella", "Sophia", "Emily", "Chloe", "Julia", "Mason", "Jack", "Liam", "James",
            "Oliver", "Adrian", "Ethan", "Auto")
CREDITS_PER_GENERATION = 2_000_000
CREDITS_PER_USD = 2_000_000
UNLIMITED_USD = 1_000_000.0
PATH = "/v2/video/generations"
UNAUTHORIZED = ("This request requires a valid API key. You can create a new API key on the Billing page: "
                "https://aimlapi.com/app/keys")
OUT_OF_CREDITS = ("You've run out of credits. Please top up your balance or update your payment method "
                  "to continue: https://aimlapi.com/app/billing/")
VALIDATION = "Body validation error!"


@dataclass
class _Generation:
    id: str
    account: str
    lifecycle: Lifecycle
    credits: int
    token: str | None
    failure: dict[str, str] | None
    refunded: bool = False


class Emulator:
    """AI/ML API's universal video endpoint, serving the ``pixverse/lip-sync`` model."""

    name = "aimlapi"
    prefixes: tuple[str, ...] = ("/v2/video/generations", "/v2/billing")

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.generations: dict[str, _Generation] = {}
        self._next_id = 0

    def routes(self) -> list[BaseRoute]:
        return [
            Route(PATH, self._create, methods=["POST"]),
            Route(PATH, self._fetch, methods=["GET"]),
            Route("/v2/billing", self._billing, methods=["GET"]),
        ]

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None,
              path: str = PATH, errors: list[dict[str, Any]] | None = None) -> Response:
        body: dict[str, Any] = {"message": message, "path": path, "requestId": self.sandbox.new_id(),
                                "statusCode": status, "timestamp": self.sandbox.iso()}
        if errors is not None:
            body["errors"] = errors
        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def reset(self) -> None:
        self.generations.clear()

    def forget(self, *, uploads: bool, tasks: bool, results: bool) -> dict[str, int]:
        """No upload API to forget; forgotten generations (and those whose video is forgotten) poll 404."""
        return {"uploads": 0, **forget_tasks(self.sandbox, self.generations, tasks=tasks, results=results)}

    def snapshot(self) -> dict[str, Any]:
        return {"next_id": self._next_id, "generations": [
            [g.id, g.account, g.lifecycle.to_json(), g.credits, g.token, g.failure, g.refunded]
            for g in self.generations.values()]}

    def restore(self, data: Mapping[str, Any]) -> None:
        self._next_id = int(data["next_id"])
        self.generations = {}
        for ident, account, lifecycle, credits, token, failure, refunded in data["generations"]:
            self.generations[ident] = _Generation(
                ident, account, self.sandbox.lifecycle_from_json(self.name, account, lifecycle),
                int(credits), token, failure, bool(refunded))

    def _account(self, request: Request) -> str | None:
        token = bearer_token(request) or ""
        return account_label(token) if accepts(self.sandbox, token) else None

    def _new_id(self) -> str:
        while True:
            self._next_id += 1
            raw = base64.b64encode(self.sandbox.rng("aimlapi-id", self.sandbox.new_id(), self._next_id - 1)
                                   .randbytes(15)).decode()
            if "+" in raw:
                return f"{raw}:{MODEL}"

    async def _create(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return self.error(401, UNAUTHORIZED, path=request.url.path)
        body = await json_body(request)
        problems = _validate(body)
        if problems:
            return self.error(400, VALIDATION, errors=problems, path=request.url.path)
        if not self.sandbox.charge(self.name, account, CREDITS_PER_GENERATION):
            return self.error(403, OUT_OF_CREDITS, path=request.url.path)
        self.sandbox.record_create(self.name, body)

        text = body.get("lip_sync_tts_content")
        video = self.sandbox.fetch_input(body["video_url"])
        audio = self.sandbox.fetch_input(body["audio_url"]) if body.get("audio_url") else None
        failure = None
        moderated = self.sandbox.is_moderated(text)
        if moderated:
            failure = {"name": "ContentModerationError",
                       "message": "The input text was flagged by content moderation and cannot be generated."}
        else:
            failure = await _undecodable(video, "video", "has_video") or await _undecodable(audio, "audio", "has_audio")
        token = None
        if failure is None:
            output = await self.sandbox.render(video=video, audio=audio, tts_text=None if audio else text)
            name = base64.urlsafe_b64encode(self.sandbox.rng("aimlapi-file", self.sandbox.new_id()).randbytes(16))
            token = self.sandbox.publish(
                output, provider=self.name,
                filename=f"pixverse%2Fmp4%2Fmedia%2Fweb%2Fori%2F{name.decode().rstrip('=')}_seed0.mp4")
        generation = _Generation(
            id=self._new_id(), account=account, credits=CREDITS_PER_GENERATION, token=token, failure=failure,
            lifecycle=self.sandbox.lifecycle(self.name, account, capacity=self.sandbox.config.max_jobs,
                                             seconds=0.0 if moderated else None))
        self.generations[generation.id] = generation
        self.sandbox.call_at(generation.lifecycle.finished_at, lambda: self._refund_failed(generation))
        return JSONResponse({"id": generation.id, "status": "queued", "video": None, "error": None,
                             "meta": {"usage": {"credits_used": generation.credits}}})

    def _refund_failed(self, generation: _Generation) -> None:
        """Failed generations are never billed: give the reservation back once they end."""
        if generation.failure and not generation.refunded and generation.lifecycle.phase() == "finished":
            generation.refunded = True
            self.sandbox.refund(self.name, generation.account, generation.credits)

    async def _fetch(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return self.error(401, UNAUTHORIZED, path=request.url.path)
        generation_id = request.query_params.get("generation_id")
        if not generation_id:
            return self.error(400, VALIDATION, path=request.url.path, errors=[
                {"path": ["generation_id"], "message": "Required"}])
        generation = self.generations.get(generation_id)
        if generation is None or generation.account != account:
            return self.error(404, "Generation not found", path=request.url.path)
        self._refund_failed(generation)
        phase = generation.lifecycle.phase()
        answer: dict[str, Any] = {"id": generation.id, "status": {"queued": "queued", "running": "generating"}
                                  .get(phase), "video": None, "error": None,
                                  "meta": {"usage": {"credits_used": generation.credits}}}
        if phase == "finished" and generation.failure:
            answer |= {"status": "error", "error": generation.failure, "meta": {"usage": {"credits_used": 0}}}
        elif phase == "finished" and generation.token:
            url, _ = self.sandbox.result_url(request, generation.token)
            answer |= {"status": self.sandbox.config.pixverse_success_status, "video": {"url": url}}
        return JSONResponse(answer)

    async def _billing(self, request: Request) -> Response:
        account = self._account(request)
        if account is None:
            return self.error(401, UNAUTHORIZED, path=request.url.path)
        left = self.sandbox.credits_left(self.name, account)
        usd = (UNLIMITED_USD - self.sandbox.credits_used(self.name, account) / CREDITS_PER_USD if left is None
               else left / CREDITS_PER_USD)
        return JSONResponse({"current_balance": usd, "currency": "USD"})


async def _undecodable(data: bytes | None, kind: str, stream: str) -> dict[str, str] | None:
    """A generation error when fetched input bytes are not decodable media of ``kind``."""
    if data is None:
        return None
    info = await probe_input(data)
    if info is not None and getattr(info, stream):
        return None
    return {"name": "GenerationError", "message": f"The input {kind} could not be decoded."}


def _uri_problem(value: Any, field: str, required: bool) -> dict[str, Any] | None:
    if value is None:
        return {"path": [field], "message": "Required"} if required else None
    if not isinstance(value, str):
        return {"path": [field], "message": f"Expected string, received {type(value).__name__}"}
    if value.startswith("data:") and "," in value:
        return None
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.netloc:
        return None
    return {"path": [field], "message": "Invalid url: expected an https URL or a data URI"}


def _validate(body: Any) -> list[dict[str, Any]]:
    """Zod-style issues for a create body (empty when valid)."""
    if not isinstance(body, dict):
        return [{"path": [], "message": f"Expected object, received {type(body).__name__}"}]
    problems = []
    if body.get("model") != MODEL:
        problems.append({"path": ["model"], "message": f"Invalid enum value. Expected '{MODEL}', "
                                                      f"received '{body.get('model')}'"})
    for field, required in (("video_url", True), ("audio_url", False)):
        problem = _uri_problem(body.get(field), field, required)
        if problem:
            problems.append(problem)
    speaker, text = body.get("lip_sync_tts_speaker"), body.get("lip_sync_tts_content")
    if speaker is not None and speaker not in SPEAKERS:
        expected = " | ".join(f"'{s}'" for s in SPEAKERS)
        problems.append({"path": ["lip_sync_tts_speaker"],
                         "message": f"Invalid enum value. Expected {expected}, received '{speaker}'"})
    if text is not None and (not isinstance(text, str) or not text.strip()):
        problems.append({"path": ["lip_sync_tts_content"], "message": "String must contain at least 1 character(s)"})
    tts = speaker is not None or text is not None
    if body.get("audio_url") is not None and tts:
        problems.append({"path": ["audio_url"], "message": "Use either audio_url or (lip_sync_tts_speaker "
                                                           "together with lip_sync_tts_content), but not both"})
    elif body.get("audio_url") is None and not tts:
        problems.append({"path": ["audio_url"], "message": "Either audio_url or lip_sync_tts_speaker with "
                                                           "lip_sync_tts_content is required"})
    elif tts and (speaker is None or text is None):
        missing = "lip_sync_tts_content" if text is None else "lip_sync_tts_speaker"
        problems.append({"path": [missing], "message": "lip_sync_tts_speaker and lip_sync_tts_content go together"})
    return problems
