"""PixVerse lip sync through AI/ML API's universal async video endpoint.

There is no upload endpoint: local inputs travel inline as base64 data URIs
(read at submit time, in a worker thread), URLs are passed through verbatim.

Readings chosen where the docs are ambiguous or silent:

- Success is ``completed`` (schema) or ``succeeded`` (what the example runs
  print); pending is ``queued``/``generating``/``waiting``; failure is
  ``error``/``failed``. Any other status keeps the job polling (PENDING, the
  raw status is kept in ``TaskState.raw_status`` and logged once).
- A success status without ``video.url`` keeps polling instead of failing:
  AI/ML API bills completed generations, so failing (and resubmitting) could
  pay twice; the runner's job timeout bounds the wait.
- The generation id is opaque (ids seen: ``z-IMFJo...``, UUIDs, ``<uuid>:<model>``)
  and goes into the ``generation_id`` query parameter, URL-encoded by httpx.
- Error bodies are parsed defensively: ``{name, message}`` (schema),
  ``{detail: [{loc, msg, ...}]}`` (other AIML video models), the generic
  ``{message, path, requestId, statusCode, timestamp}`` (its details in
  ``detail``/``details``/``errors`` lists are appended), or a bare string.
- Classification heuristics on the provider's text (``base.classify_text``,
  shared by every kind): a 403 (or failure) saying the account ran out
  of credits / must top up / has not enough credits -> ``OutOfCreditsError``;
  words of content moderation ("moderat...", "nsfw", "sensitive",
  "inappropriate", "offensive", "content polic...", "violat...", "prohibited",
  "unsafe") -> ``ModerationError``; other failures are permanent (failed
  generations are never charged, so ``--retry-failed`` may safely resubmit).
- ``credits`` is ``meta.usage.credits_used`` as reported (AI/ML API credits,
  2,000,000 = 1 USD); on create it is an estimate, billing happens on completion.
- The data-URI limit (``DATA_URI_LIMIT_BYTES``, 20 MiB of file bytes, before the
  base64 growth of a third) is ours: AI/ML API documents none.
- No list endpoint is documented, so a task cannot be found again by
  reference (``can_reconcile = False``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import trio

from lipbatch.errors import PermanentError, ProviderError
from lipbatch.model import InputRef, Job
from lipbatch.providers.base import (
    HttpClient,
    Phase,
    Submission,
    TaskState,
    Upload,
    classify_response,
    classify_text,
    json_number,
    json_object,
    refine_by_text,
    submission_from,
)

log = logging.getLogger(__name__)

KIND = "aimlapi-pixverse-lipsync"
MODEL = "pixverse/lip-sync"
GENERATIONS_PATH = "/v2/video/generations"

#: The documented ``lip_sync_tts_speaker`` enum (manifest validation checks voice ids against it).
PIXVERSE_SPEAKERS: tuple[str, ...] = (
    "Harper", "Ava", "Isabella", "Sophia", "Emily", "Chloe", "Julia",
    "Mason", "Jack", "Liam", "James", "Oliver", "Adrian", "Ethan", "Auto",
)

#: Largest local file sent inline as a data URI (file bytes, before base64).
DATA_URI_LIMIT_BYTES = 20 * 1024 * 1024

PENDING_STATUSES = frozenset({"queued", "waiting"})
RUNNING_STATUSES = frozenset({"generating"})
SUCCESS_STATUSES = frozenset({"completed", "succeeded"})
FAILURE_STATUSES = frozenset({"error", "failed"})


def describe_error(error: Any) -> str:
    """The provider's reason from any of the error shapes a generation or response may carry."""
    if error is None:
        return ""
    if isinstance(error, str):
        return error
    if isinstance(error, list):
        return "; ".join(filter(None, (describe_error(item) for item in error)))
    if isinstance(error, Mapping):
        parts: list[str] = []
        for key in ("message", "msg", "error", "detail", "details", "errors"):
            text = describe_error(error.get(key))
            if text and text not in parts:
                parts.append(text)
        message = "; ".join(parts)
        loc, name = error.get("loc", error.get("path")), error.get("name")
        if message and isinstance(loc, list) and loc:
            message = f"{'.'.join(map(str, loc))}: {message}"
        if name and str(name) not in message:
            message = f"{name}: {message}" if message else str(name)
        if message:
            return message
    return str(error)[:300]


def classify(response: httpx.Response) -> ProviderError:
    """Base classification, refined: credits (403) and moderation are recognised by their text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = describe_error(body) if isinstance(body, (Mapping, list)) else None
    return refine_by_text(classify_response(response), message)


def _failure(error: Any, raw_status: str) -> ProviderError:
    return classify_text(describe_error(error) or f"generation {raw_status}", None, PermanentError)


def _video_url(video: Any) -> str | None:
    if isinstance(video, str):
        return video or None
    if isinstance(video, list):
        return next(filter(None, map(_video_url, video)), None)
    if isinstance(video, Mapping):
        url = video.get("url")
        return url if isinstance(url, str) and url else None
    return None


def _credits(body: Mapping[str, Any]) -> float | None:
    meta = body.get("meta")
    usage = meta.get("usage") if isinstance(meta, Mapping) else None
    value = usage.get("credits_used") if isinstance(usage, Mapping) else None
    return json_number(value)


_unknown_seen: set[str] = set()


def parse_state(body: Any) -> TaskState:
    """A generation body (create or poll answer) in common terms."""
    body = json_object(body, "generation body")
    raw = str(body.get("status") or "")
    status = raw.lower()
    credits = _credits(body)
    if status in SUCCESS_STATUSES:
        url = _video_url(body.get("video"))
        if url:
            return TaskState(Phase.SUCCEEDED, raw, progress=1.0, result_url=url, credits=credits)
        log.warning("generation %s reports %r without a video url; polling on", body.get("id"), raw)
        return TaskState(Phase.RUNNING, raw, credits=credits)
    if status in FAILURE_STATUSES or (not status and body.get("error")):
        return TaskState(Phase.FAILED, raw or "error", credits=credits, error=_failure(body.get("error"), raw))
    if status in RUNNING_STATUSES:
        return TaskState(Phase.RUNNING, raw, credits=credits)
    if status not in PENDING_STATUSES and raw not in _unknown_seen:
        _unknown_seen.add(raw)
        log.warning("PixVerse generation %s has undocumented status %r; polling on", body.get("id"), raw)
    return TaskState(Phase.PENDING, raw, credits=credits)


@functools.lru_cache(maxsize=4)  # a clip shared by many jobs is read and encoded once, not once per job
def _read_data_uri(path: Path, media_type: str, sha256: str | None) -> str:
    """Blocking: the file as a data URI, refusing oversize files and files changed since planning.

    Cached by content hash (part of the key), so a hit sends exactly the bytes that were validated."""
    size = path.stat().st_size
    if size > DATA_URI_LIMIT_BYTES:
        raise PermanentError(
            f"{path.name} is {size / 2**20:.1f} MiB; PixVerse inputs are sent inline as data URIs, limited to "
            f"{DATA_URI_LIMIT_BYTES // 2**20} MiB per file: host it and use an https URL"
        )
    data = path.read_bytes()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise PermanentError(f"{path} changed since the manifest was validated; run again to re-plan")
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


async def input_url(ref: InputRef) -> str:
    """What PixVerse gets for an input: the URL as given, or the local file inline."""
    if ref.url:
        return ref.url
    if ref.path is None:
        raise PermanentError(f"input {ref.role} has neither a path nor a URL")
    return await trio.to_thread.run_sync(_read_data_uri, Path(ref.path), ref.media_type, ref.sha256)


class Client(HttpClient):
    """AI/ML API client for ``pixverse/lip-sync``, bound to one account."""

    kind = KIND
    classify = staticmethod(classify)

    async def build_body(self, job: Job) -> dict[str, Any]:
        """The create body: video, and audio XOR (speaker + text)."""
        body: dict[str, Any] = {"model": MODEL, "video_url": await input_url(job.inputs["video"])}
        audio = job.inputs.get("audio")
        speaker, text = job.params.get("speaker"), job.params.get("text")
        if audio is not None:
            if speaker or text:
                raise PermanentError("PixVerse takes either audio or a TTS speaker with text, not both")
            body["audio_url"] = await input_url(audio)
            return body
        if not (speaker and text):
            raise PermanentError("PixVerse needs audio, or a TTS speaker together with text")
        if speaker not in PIXVERSE_SPEAKERS:
            raise PermanentError(f"unknown PixVerse speaker {speaker!r}; one of {', '.join(PIXVERSE_SPEAKERS)}")
        body["lip_sync_tts_speaker"] = speaker
        body["lip_sync_tts_content"] = text
        return body

    async def prepare(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        return await self.build_body(job)

    async def create(self, body: Any) -> Submission:
        return submission_from(await self.call("POST", GENERATIONS_PATH, json=body), parse_state)

    async def poll(self, task_id: str) -> TaskState:
        return parse_state(await self.call("GET", GENERATIONS_PATH, params={"generation_id": task_id}))
