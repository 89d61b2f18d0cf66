"""Reading useapi.net requests: bodies, shared create parameters, paging, and the catalogues checked.

A ``BadRequest`` raised anywhere in an endpoint becomes useapi's documented 400
(``useapi.Emulator`` turns it into ``json_error``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from lipbatch.sandbox.responses import JSONResponse

CONTENT_TYPES: dict[str, tuple[str, str]] = {
    "image/png": ("image", "png"), "image/jpeg": ("image", "jpeg"), "image/gif": ("image", "gif"),
    "image/webp": ("image", "webp"), "image/mpo": ("image", "mpo"),
    "video/mp4": ("video", "mp4"), "video/quicktime": ("video", "mov"), "video/3gpp": ("video", "3gp"),
    "video/x-matroska": ("video", "mkv"), "video/x-flv": ("video", "flv"), "video/mpeg": ("video", "mpeg"),
    "video/mp2t": ("video", "ts"), "video/x-msvideo": ("video", "avi"),
    "video/x-motion-jpeg": ("video", "mjpeg"), "video/webm": ("video", "webm"), "video/ogg": ("video", "ogv"),
    "audio/wav": ("audio", "wav"), "audio/wave": ("audio", "wav"), "audio/mpeg": ("audio", "mp3"),
    "audio/flac": ("audio", "flac"), "audio/ogg": ("audio", "ogg"), "audio/webm": ("audio", "webm"),
}

VOICES: tuple[dict[str, Any], ...] = (
    {"voiceId": "pNInz6obpgDQGcFmaJgB", "name": "Benjamin", "accent": "american", "gender": "male",
     "age": "middle aged", "description": "deep", "use case": "narration"},
    {"voiceId": "EXAVITQu4vr4xnSDxMaL", "name": "Sarah", "accent": "american", "gender": "female",
     "age": "young", "description": "soft", "use case": "news"},
    {"voiceId": "TxGEqnHWrfWFTfGW9XjX", "name": "Josh", "accent": "american", "gender": "male",
     "age": "young", "description": "deep", "use case": "narration"},
    {"voiceId": "XB0fDUnXU5powFXDhCwa", "name": "Charlotte", "accent": "swedish", "gender": "female",
     "age": "young", "description": "seductive", "use case": "video games"},
    {"voiceId": "onwK4e9ZLuTAKqWW03F9", "name": "Daniel", "accent": "british", "gender": "male",
     "age": "middle aged", "description": "deep", "use case": "news presenter"},
    {"voiceId": "XrExE9yKIg1WjnnlVkGX", "name": "Matilda", "accent": "american", "gender": "female",
     "age": "young", "description": "warm", "use case": "audiobook"},
)
VOICE_IDS = {voice["voiceId"]: voice for voice in VOICES}


class BadRequest(Exception):
    """A 400 with useapi's ``{"error", "code"}`` body."""


def json_error(status: int, message: str, *, code: bool = True, headers: Mapping[str, str] | None = None,
               **fields: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message, **fields}
    if code:
        body["code"] = status
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON (or multipart/form-data) body as a dict; a 400 otherwise."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        body: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise BadRequest(f"Field {key} must be a value, not a file")
            body[key] = {"true": True, "false": False}.get(value, value)
        for key in ("maxJobs",):
            if isinstance(body.get(key), str) and body[key].strip().lstrip("-").isdigit():
                body[key] = int(body[key])
        return body
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    return body


def check_max_jobs(body: Mapping[str, Any]) -> int | None:
    value = body.get("maxJobs")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise BadRequest("Parameter maxJobs must be a number between 1 and 10")
    return value


def check_common(body: Mapping[str, Any]) -> None:
    """exploreMode, replyUrl, replyRef and maxJobs, shared by both create endpoints."""
    if "exploreMode" in body and not isinstance(body["exploreMode"], bool):
        raise BadRequest("Parameter exploreMode must be true or false")
    for name in ("replyUrl", "replyRef"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 1024):
            raise BadRequest(f"Parameter {name} must be a string of at most 1024 characters")
    check_max_jobs(body)


def check_voice(body: Mapping[str, Any]) -> dict[str, Any]:
    voice_id = body.get("voiceId")
    if not isinstance(voice_id, str) or voice_id not in VOICE_IDS:
        raise BadRequest(f"Parameter voiceId {voice_id!r} is not a valid voice, see GET /lipsync/voices")
    return VOICE_IDS[voice_id]


def paging(request: Request, *, limit_max: int) -> tuple[int, int]:
    values = []
    for name, low, high in (("offset", 0, 1000), ("limit", 1, limit_max)):
        raw = request.query_params.get(name)
        if raw is None:
            raise BadRequest(f"Parameter {name} is required")
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"Parameter {name} must be a number") from None
        if not low <= value <= high:
            raise BadRequest(f"Parameter {name} must be between {low} and {high}")
        values.append(value)
    return values[0], values[1]
