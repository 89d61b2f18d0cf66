"""Creatify emulator: the stock catalog (personas, voices) and DRF-style checks of a create body.

``validate`` answers like Django REST framework: ``{field: [messages]}`` (nested per scene),
empty when the body is valid.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

ASPECT_RATIOS = ("9x16", "16x9", "1x1")
MODEL_VERSIONS = ("standard", "aurora_v1", "aurora_v1_fast")
_NS = uuid.UUID("6f1c2a0e-5b7d-4e8a-9c3f-2d4b6a8e0c11")
REQUIRED = "This field is required."


def _stock_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{name}"))


PERSONAS = [
    {"id": _stock_id("persona", name), "creator_name": name, "gender": gender, "age_range": age,
     "location": location, "style": style, "video_scene": scene, "keywords": keywords,
     "preview_image_16_9": None, "preview_image_1_1": None, "preview_image_9_16": None,
     "preview_video_16_9": None, "preview_video_1_1": None, "preview_video_9_16": None,
     "landscape_preview_video": None, "squared_preview_video": None, "is_active": True,
     "process_status": "done", "failed_reason": None, "type": "stock"}
    for name, gender, age, location, style, scene, keywords in (
        ("Nora", "f", "adult", "indoor", "presenter", "office", "business,friendly"),
        ("Marcus", "m", "adult", "outdoor", "casual", "street", "lifestyle"),
        ("Sam", "nb", "young_adult", "indoor", "selfie", "home", "ugc,tech"),
    )
]
VOICES = [
    {"name": name, "gender": gender,
     "accents": [{"id": _stock_id("accent", f"{name}/{accent}"), "accent_name": accent, "preview_url": None}
                 for accent in accents]}
    for name, gender, accents in (
        ("Aria", "female", ("American", "British")),
        ("Bruno", "male", ("American", "Australian")),
        ("Quinn", "neutral", ("Canadian",)),
    )
]
_PERSONA_IDS = {p["id"] for p in PERSONAS}
_ACCENT_IDS = {a["id"] for v in VOICES for a in v["accents"]}


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _choice(value: Any) -> list[str]:
    return [f'"{value}" is not a valid choice.']


def _validate_scene(scene: Any) -> dict[str, Any]:
    if not isinstance(scene, dict):
        return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(scene).__name__}."]}
    errors: dict[str, Any] = {}
    character = scene.get("character")
    if not isinstance(character, dict):
        errors["character"] = [REQUIRED] if character is None else ["Invalid data. Expected a dictionary."]
    else:
        problems: dict[str, list[str]] = {}
        if character.get("type", "avatar") != "avatar":
            problems["type"] = _choice(character.get("type"))
        avatar = character.get("avatar_id")
        if not avatar:
            problems["avatar_id"] = [REQUIRED]
        elif avatar not in _PERSONA_IDS:
            problems["avatar_id"] = [f'Invalid pk "{avatar}" - object does not exist.']
        if problems:
            errors["character"] = problems
    voice = scene.get("voice")
    if not isinstance(voice, dict):
        errors["voice"] = [REQUIRED] if voice is None else ["Invalid data. Expected a dictionary."]
        return errors
    problems = {}
    kind = voice.get("type")
    if kind == "text":
        text = voice.get("input_text")
        if not isinstance(text, str) or not text.strip():
            problems["input_text"] = [REQUIRED if text is None else "This field may not be blank."]
        accent = voice.get("voice_id")
        if not accent:
            problems["voice_id"] = [REQUIRED]
        elif accent not in _ACCENT_IDS:
            problems["voice_id"] = [f'Invalid pk "{accent}" - object does not exist.']
    elif kind == "audio":
        audio = voice.get("audio_url")
        if audio is None:
            problems["audio_url"] = [REQUIRED]
        elif not _is_url(audio):
            problems["audio_url"] = ["Enter a valid URL."]
    else:
        problems["type"] = [REQUIRED] if kind is None else _choice(kind)
    if problems:
        errors["voice"] = problems
    return errors


def validate(body: Any) -> dict[str, Any]:
    """DRF-style field errors for a create body (empty when valid)."""
    if not isinstance(body, dict):
        return {"non_field_errors": ["Invalid data. Expected a dictionary."]}
    errors: dict[str, Any] = {}
    scenes = body.get("video_inputs")
    if scenes is None:
        errors["video_inputs"] = [REQUIRED]
    elif not isinstance(scenes, list):
        errors["video_inputs"] = [f'Expected a list of items but got type "{type(scenes).__name__}".']
    elif not scenes:
        errors["video_inputs"] = ["This list may not be empty."]
    else:
        scene_errors = [_validate_scene(scene) for scene in scenes]
        if any(scene_errors):
            errors["video_inputs"] = scene_errors
    for field, choices in (("aspect_ratio", ASPECT_RATIOS), ("model_version", MODEL_VERSIONS)):
        if field in body and body[field] not in choices:
            errors[field] = _choice(body[field])
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        errors["name"] = ["Ensure this field has no more than 255 characters." if isinstance(name, str)
                          else "Not a valid string."]
    hook = body.get("webhook_url")
    if hook is not None:
        if not _is_url(hook):
            errors["webhook_url"] = ["Enter a valid URL."]
        elif len(hook) > 200:
            errors["webhook_url"] = ["Ensure this field has no more than 200 characters."]
    return errors
