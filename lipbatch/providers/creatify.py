"""Creatify AI Avatar lip sync (``/api/lipsyncs_v2/``): a persona speaks text or an audio URL.

A job is one single-scene task. Auth is two headers (``X-API-ID``,
``X-API-KEY``). There is no upload endpoint: audio and background must be
public URLs (the manifest refuses local audio before anything is sent).

Readings chosen where the docs are ambiguous or silent:

- The audio voice of a v2 scene is ``{"type": "audio", "audio_url": ...}``:
  the docs imply an audio variant but never name its field; ``audio_url`` is
  the likely guess (HeyGen-style, as the sandbox emulates).
- ``captions`` maps to ``caption_setting.hidden`` (true -> visible, false ->
  hidden); ``background_url`` to ``background {type: image, url, fit: crop}``;
  unset options are omitted so Creatify's defaults apply (9x16, standard).
- The character sends only ``type`` and ``avatar_id``; the docs' other fields
  (offset, scale, style) are example defaults.
- ``name`` carries the job key as our reference.
- ``progress`` is an undocumented string: "0.42", "42", "42%" all read as 0.42.
- ``rejected`` (listed in some schema versions) is read as a moderation
  rejection and never retried; ``failed`` is permanent unless its reason
  reads as moderation or missing credits (the word heuristics of
  ``base.classify_text``, shared by every kind).
- ``done`` without ``output`` keeps polling rather than failing (failing could
  make the runner pay again for a rendered video).
- Error bodies follow Django REST Framework: ``{"detail": "..."}`` or field
  errors ``{"field": ["..."]}``; insufficient credits are recognised by their
  text at any status (and 402); a 429 without ``Retry-After`` takes the wait
  from DRF's "Expected available in N seconds." text.
- ``can_reconcile = False``: the list endpoint is documented only with an
  ``?ids=`` filter (up to 100 ids), with no name filter and no documented
  unfiltered listing or pagination, so a task cannot be found by our ``name``
  reliably; guessing could make a lost task look absent and get paid twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx

from lipbatch.errors import ModerationError, PermanentError, ProviderError, RateLimitedError
from lipbatch.model import Job
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

KIND = "creatify-lipsync"
LIPSYNCS_PATH = "/api/lipsyncs_v2/"
VOICES_PATH = "/api/voices/"
PERSONAS_PATH = "/api/personas/"

PENDING_STATUSES = frozenset({"pending", "in_queue"})
RUNNING_STATUSES = frozenset({"running"})
FAILURE_STATUSES = frozenset({"failed", "rejected"})

_THROTTLE_WAIT = re.compile(r"available in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


def classify(response: httpx.Response) -> ProviderError:
    """Base classification refined for DRF bodies: credits, moderation, throttle waits."""
    error = refine_by_text(classify_response(response))
    if (isinstance(error, RateLimitedError) and error.retry_after is None
            and (match := _THROTTLE_WAIT.search(error.message))):
        error.retry_after = float(match.group(1))
    return error


def parse_progress(value: Any) -> float | None:
    """0..1 from Creatify's undocumented progress string (or number)."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        number = float(text.rstrip("%").strip())
    except ValueError:
        return None
    if percent or number > 1:
        number /= 100
    return min(1.0, max(0.0, number))


def parse_state(body: Any) -> TaskState:
    """A lipsync task body (create or poll answer) in common terms."""
    body = json_object(body, "lipsync body")
    raw = str(body.get("status") or "")
    status = raw.lower()
    credits = json_number(body.get("credits_used"))
    progress = parse_progress(body.get("progress"))
    if status == "done":
        output = body.get("output")
        if isinstance(output, str) and output:
            return TaskState(Phase.SUCCEEDED, raw, progress=1.0, result_url=output, credits=credits)
        log.warning("Creatify task %s is done without output; polling on", body.get("id"))
        return TaskState(Phase.RUNNING, raw, progress=progress, credits=credits)
    if status in FAILURE_STATUSES:
        reason = str(body.get("failed_reason") or f"task {raw}")
        error = ModerationError(reason) if status == "rejected" else classify_text(reason, None, PermanentError)
        return TaskState(Phase.FAILED, raw, progress=progress, credits=credits, error=error)
    if status in RUNNING_STATUSES:
        return TaskState(Phase.RUNNING, raw, progress=progress, credits=credits)
    if status not in PENDING_STATUSES:
        log.info("Creatify task %s has undocumented status %r; polling on", body.get("id"), raw)
    return TaskState(Phase.PENDING, raw, progress=progress, credits=credits)


def build_body(job: Job) -> dict[str, Any]:
    """The v2 create body for one job: a single scene, ``name`` = job key."""
    params = job.params
    avatar_id = params.get("avatar_id")
    if not avatar_id:
        raise PermanentError("Creatify needs an avatar (a clip with `avatar:`)")
    audio = job.inputs.get("audio")
    if audio is not None:
        if not audio.url:
            raise PermanentError("Creatify has no upload endpoint: audio must be a public https URL")
        voice: dict[str, Any] = {"type": "audio", "audio_url": audio.url}
    elif params.get("text") and params.get("voice_id"):
        voice = {"type": "text", "input_text": params["text"], "voice_id": params["voice_id"]}
    else:
        raise PermanentError("Creatify needs an audio URL, or text with a voice (accent) id")
    scene: dict[str, Any] = {"character": {"type": "avatar", "avatar_id": avatar_id}, "voice": voice}
    if params.get("background_url"):
        scene["background"] = {"type": "image", "url": params["background_url"], "fit": "crop"}
    if params.get("captions") is not None:
        scene["caption_setting"] = {"hidden": not params["captions"]}
    body: dict[str, Any] = {"video_inputs": [scene], "name": job.reference}
    for key in ("aspect_ratio", "model_version"):
        if params.get(key):
            body[key] = params[key]
    return body


def _items(answer: Any) -> list[Mapping[str, Any]]:
    """A DRF list answer, bare or paginated (``{"results": [...]}``)."""
    if isinstance(answer, Mapping):
        answer = answer.get("results", [])
    return [item for item in answer or [] if isinstance(item, Mapping)]


class Client(HttpClient):
    """Creatify ``lipsyncs_v2`` client, bound to one account.

    Inputs are public URLs only (audio, background); local audio is refused by
    manifest validation, so the base's "no upload endpoint" defaults apply.
    """

    kind = KIND
    classify = staticmethod(classify)

    def auth_headers(self, secrets: Mapping[str, str]) -> dict[str, str]:
        return {"X-API-ID": secrets["api_id"], "X-API-KEY": secrets["api_key"]}

    async def prepare(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        return build_body(job)

    async def create(self, body: Any) -> Submission:
        return submission_from(await self.call("POST", LIPSYNCS_PATH, json=body), parse_state)

    async def poll(self, task_id: str) -> TaskState:
        return parse_state(await self.call("GET", f"{LIPSYNCS_PATH}{task_id}/"))

    async def list_voices(self) -> list[Mapping[str, Any]]:
        """Voices with their accents (``GET /api/voices/``); an accent ``id`` is a manifest voice id."""
        return _items(await self.call("GET", VOICES_PATH))

    async def list_avatars(self) -> list[Mapping[str, Any]]:
        """Personas (``GET /api/personas/``); a persona ``id`` is a manifest ``avatar:`` id."""
        return _items(await self.call("GET", PERSONAS_PATH))
