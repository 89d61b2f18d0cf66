"""Magic Hour emulator: what a request body must hold (upload items, the lip-sync create).

Each check raises ``Invalid`` naming the first bad field, as the API's 400 ``{"message": ...}`` does.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

EXTENSIONS: dict[str, tuple[str, ...]] = {
    "video": ("mp4", "m4v", "mov", "webm"),
    "audio": ("mp3", "wav", "aac", "flac", "webm", "m4a", "weba", "opus", "ogg", "oga", "aiff", "amr"),
    "image": ("png", "jpg", "jpeg", "heic", "webp", "avif", "jp2", "tiff", "bmp"),
}
GENERATION_MODES = ("lite", "standard", "pro")


class Invalid(Exception):
    """A request field is wrong; the message names it."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def upload_items(body: Any) -> list[tuple[str, str]]:
    if body is None:
        raise Invalid("Missing request body")
    if not isinstance(body, dict):
        raise Invalid("body: expected an object")
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise Invalid("items: must be a non-empty array")
    out = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise Invalid(f"{where}: expected an object")
        kind, extension = item.get("type"), item.get("extension")
        if kind not in EXTENSIONS:
            raise Invalid(f"{where}.type: must be one of video, audio, image")
        if not isinstance(extension, str) or not extension:
            raise Invalid(f"{where}.extension: required")
        if not re.fullmatch(r"[a-z0-9]+", extension) or extension not in EXTENSIONS[kind]:
            raise Invalid(f"{where}.extension: {extension!r} is not a supported {kind} extension "
                          f"(lowercase, no dot: {', '.join(EXTENSIONS[kind])})")
        out.append((kind, extension))
    return out


def lip_sync_spec(body: Any) -> dict[str, Any]:
    """The validated create request; raises ``Invalid`` naming the first bad field."""
    if body is None:
        raise Invalid("Missing request body")
    if not isinstance(body, dict):
        raise Invalid("body: expected an object")
    start, end = body.get("start_seconds"), body.get("end_seconds")
    if not _number(start):
        raise Invalid("start_seconds: required number")
    if start < 0:
        raise Invalid("start_seconds: must be >= 0")
    if not _number(end):
        raise Invalid("end_seconds: required number")
    if end < 0.1:
        raise Invalid("end_seconds: must be >= 0.1")
    if end <= start:
        raise Invalid("end_seconds: must be greater than start_seconds")
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise Invalid("name: must be a string")
    for dim in ("width", "height"):
        if body.get(dim) is not None and not isinstance(body[dim], int):
            raise Invalid(f"{dim}: must be an integer or null")
    limit = body.get("max_fps_limit")
    if limit is not None and (not _number(limit) or limit < 1):
        raise Invalid("max_fps_limit: must be a number >= 1")
    style = body.get("style") or {}
    if not isinstance(style, dict):
        raise Invalid("style: expected an object")
    mode = style.get("generation_mode", "lite")
    if mode not in GENERATION_MODES:
        raise Invalid(f"style.generation_mode: must be one of {', '.join(GENERATION_MODES)}")
    assets = body.get("assets")
    if not isinstance(assets, dict):
        raise Invalid("assets: required object")
    source = assets.get("video_source")
    if source not in ("file", "youtube"):
        raise Invalid("assets.video_source: must be one of file, youtube")
    needed = "video_file_path" if source == "file" else "youtube_url"
    value = assets.get(needed)
    if not isinstance(value, str) or not value:
        raise Invalid(f"assets.{needed}: required when video_source is {source}")
    if source == "youtube" and urlsplit(value).scheme not in ("http", "https"):
        raise Invalid("assets.youtube_url: must be a URL")
    audio = assets.get("audio_file_path")
    if not isinstance(audio, str) or not audio:
        raise Invalid("assets.audio_file_path: required, minLength 1")
    return {"start": float(start), "end": float(end), "name": name, "mode": mode,
            "fps_limit": float(limit) if limit is not None else None, "assets": assets}
