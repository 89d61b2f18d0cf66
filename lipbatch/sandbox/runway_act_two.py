"""``POST /v1/runwayml/gen4/act-two-voice``: Runway Act-Two voice swap through useapi.net.

The answer wraps the task: ``{"task": {...}}`` (lip sync answers flat).

Assumptions: a clip outside 3–30 s (inclusive) is a 400 (the server's
behaviour is undocumented); the clip length comes from probing the uploaded
asset, else from the upload's ``duration`` query parameter, and a clip whose
length is unknown is a 400 too. Runway moderates the video: here the asset's
name stands in for its content. The output keeps the picture and the clip
length, with a synthetic tone standing in for the new voice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from lipbatch.sandbox.responses import JSONResponse
from lipbatch.sandbox.useapi import BadRequest, check_common, check_voice, read_body

if TYPE_CHECKING:
    from lipbatch.sandbox.useapi import Emulator

KIND = "runway-act-two-voice"
MIN_SECONDS, MAX_SECONDS = 3.0, 30.0


async def create(emu: Emulator, request: Request) -> Response:
    body = await read_body(request)
    for name in ("video_assetId", "voiceId"):
        if body.get(name) in (None, ""):
            raise BadRequest(f"Parameter {name} is required")
    check_common(body)
    voice = check_voice(body)
    video = emu.resolve_asset(request, body["video_assetId"], "video_assetId", "video")
    if isinstance(video, Response):
        return video
    seconds = video.duration
    if seconds is None:
        raise BadRequest(f"Unable to determine the duration of video asset {video.uuid}")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise BadRequest(f"Video duration must be between 3 and 30 seconds, video_assetId is {seconds:.2f} seconds")

    name = f"{voice['name']}_{video.name}"
    options: dict[str, Any] = {
        "name": name,
        "video": emu.asset_url(video, request),
        "voiceId": voice["voiceId"],
        "seconds": round(seconds, 2),
        "exploreMode": bool(body.get("exploreMode", False)),
        "assetGroupId": emu.sandbox.new_id(),
    }
    task = await emu.submit(
        request, kind=KIND, body=body, assets=[video], task_type="workflow_s2s_video", name=name,
        options=options, render_inputs={"video": video.file_token, "seconds": seconds},
        output_seconds=seconds, moderated=emu.sandbox.is_moderated(video.name), progress_as_string=True,
        extra_fields={"sourceAssetId": None},
    )
    if isinstance(task, Response):
        return task
    view = await emu.task_view(task, request, initial=True)
    view["code"] = 200
    return JSONResponse({"task": view})
