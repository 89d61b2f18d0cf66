"""Runway Act-Two voice swap through useapi.net (``POST /gen4/act-two-voice``).

Everything but the create body lives in ``providers/useapi.py`` (upload,
polling of flat or ``{"task": ...}``-wrapped tasks, errors, ``find_task`` by
``replyRef`` = job key). The create answer is wrapped in ``{"task": ...}``;
the shared ``read_create`` unwraps it (and would accept a flat one too).

Readings: no ``email`` (the account owning the uploaded video runs the job),
no ``model_id`` (undocumented here), no ``maxJobs`` (the shared base leaves the
account's configured cap in force). The 3-30 s clip duration is checked by the
manifest validation before any upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lipbatch.model import Job
from lipbatch.providers.base import Upload
from lipbatch.providers.useapi import UseapiClient


class Client(UseapiClient):
    """runway-act-two-voice client."""

    kind = "runway-act-two-voice"
    create_path = "/gen4/act-two-voice"

    def create_body(self, job: Job, uploads: Mapping[str, Upload]) -> dict[str, Any]:
        body: dict[str, Any] = {"video_assetId": uploads["video"].handle, "voiceId": job.params["voice_id"]}
        if "exploreMode" in job.params:
            body["exploreMode"] = bool(job.params["exploreMode"])
        return body
