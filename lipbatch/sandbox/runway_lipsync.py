"""``POST /v1/runwayml/lipsync/create``: Runway "Lip Sync Video" through useapi.net.

Validation follows useapi's connector description, which states the real rule
the REST page leaves implicit: exactly one of ``image_assetId``/``video_assetId``
and exactly one of ``audio_assetId`` or ``voiceId`` + ``voice_text``. The answer
is the flat task object (with ``features`` and ``code: 200``).

Assumptions: ``model_id`` is validated against the documented enum even
without ``voiceId`` (it is simply unused then); an unknown ``voiceId`` is a 400;
the output lasts as long as the audio (or the synthetic speech of
``voice_text``) and shows the image held still or the video looped/trimmed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from lipbatch.sandbox import render
from lipbatch.sandbox.responses import JSONResponse
from lipbatch.sandbox.useapi import BadRequest, check_common, check_voice, read_body

if TYPE_CHECKING:
    from lipbatch.sandbox.useapi import Emulator

MODEL_IDS = ("eleven_multilingual_v1", "eleven_multilingual_v2")
KIND = "runway-lipsync"


def _present(body: dict[str, Any], name: str) -> bool:
    return body.get(name) not in (None, "")


async def create(emu: Emulator, request: Request) -> Response:
    body = await read_body(request)
    check_common(body)
    pictures = [name for name in ("image_assetId", "video_assetId") if _present(body, name)]
    if len(pictures) != 1:
        raise BadRequest("Provide exactly one of image_assetId or video_assetId")
    tts = _present(body, "voiceId") or _present(body, "voice_text")
    if _present(body, "audio_assetId") == tts:
        raise BadRequest("Provide exactly one of audio_assetId or voiceId with voice_text")
    if tts and not (_present(body, "voiceId") and _present(body, "voice_text")):
        raise BadRequest("Parameters voiceId and voice_text must be provided together")
    if tts and not isinstance(body["voice_text"], str):
        raise BadRequest("Parameter voice_text must be a string")
    model_id = body.get("model_id")
    if model_id is not None and model_id not in MODEL_IDS:
        raise BadRequest(f"Parameter model_id must be one of {', '.join(MODEL_IDS)}")
    voice = check_voice(body) if tts else None

    picture_field = pictures[0]
    picture_type = "image" if picture_field == "image_assetId" else "video"
    picture = emu.resolve_asset(request, body[picture_field], picture_field, picture_type)
    if isinstance(picture, Response):
        return picture
    assets = [picture]
    audio = None
    if not tts:
        audio = emu.resolve_asset(request, body["audio_assetId"], "audio_assetId", "audio")
        if isinstance(audio, Response):
            return audio
        assets.append(audio)

    render_inputs: dict[str, Any] = {picture_type: picture.file_token}  # media by file: see useapi.Task
    options: dict[str, Any] = {
        "name": f"Lip Sync {picture.name}",
        "exploreMode": bool(body.get("exploreMode", False)),
        "paid_user_watermark_override": False,
        picture_type: emu.asset_url(picture, request),
        f"{picture_type}_asset_id": picture.uuid,
    }
    if audio is not None:
        render_inputs["audio"] = audio.file_token
        options["audio"] = emu.asset_url(audio, request)
        options["audio_asset_id"] = audio.uuid
        seconds = audio.duration or render.output_seconds(audio=emu.asset_bytes(audio))
    else:
        assert voice is not None
        render_inputs["tts_text"] = body["voice_text"]
        options["gen_audio_options"] = {"name": voice["name"], "text": body["voice_text"],
                                        "voice_id": voice["voiceId"], "model_id": model_id or MODEL_IDS[0]}
        seconds = render.tts_seconds(body["voice_text"])
    moderated = emu.sandbox.is_moderated(body.get("voice_text")) or any(
        emu.sandbox.is_moderated(asset.name) for asset in assets)

    task = await emu.submit(request, kind=KIND, body=body, assets=assets, task_type="lipsync",
                            name=options["name"], options=options, render_inputs=render_inputs,
                            output_seconds=seconds, moderated=moderated, progress_as_string=False)
    if isinstance(task, Response):
        return task
    view = await emu.task_view(task, request, initial=True)
    view["features"] = emu.features(task.account)
    view["code"] = 200
    view.setdefault("replyUrl", None)
    view.setdefault("replyRef", None)
    return JSONResponse(view)
