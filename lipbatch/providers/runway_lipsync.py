"""Runway "Lip Sync Video" through useapi.net (``POST /lipsync/create``).

Everything but the create body lives in ``providers/useapi.py``. The create
answer is a flat task object (``read_create`` accepts a wrapped one too).
Exactly one of image/video and exactly one of audio or voice+text, as the
useapi connector describes; the manifest guarantees that shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lipbatch.model import Job
from lipbatch.providers.base import Upload
from lipbatch.providers.useapi import UseapiClient


class Client(UseapiClient):
    """runway-lipsync client."""

    kind = "runway-lipsync"
    create_path = "/lipsync/create"

    def create_body(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for role in ("image", "video", "audio"):
            if role in uploads:
                body[f"{role}_assetId"] = uploads[role].handle
        params = job.params
        if "audio" not in uploads:
            body["voiceId"] = params["voice_id"]
            body["voice_text"] = params["text"]
            if "model_id" in params:
                body["model_id"] = params["model_id"]
        if "exploreMode" in params:
            body["exploreMode"] = bool(params["exploreMode"])
        return body
