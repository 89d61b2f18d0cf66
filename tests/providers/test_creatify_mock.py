"""Creatify lipsyncs_v2 client against hand-written answers: DRF error shapes, statuses, progress."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from provider_helpers import Recorder, answer, make_account, make_job, url_ref

from lipbatch.errors import (
    ModerationError,
    NotFoundError,
    OutOfCreditsError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from lipbatch.model import InputRef
from lipbatch.providers.base import Phase
from lipbatch.providers.creatify import Client, parse_progress, parse_state

KIND = "creatify-lipsync"
pytestmark = pytest.mark.anyio
AVATAR = "3f2a9c1e-0000-4000-8000-000000000001"
ACCENT = "6f8ba4c2-0000-4000-8000-000000000002"
TASK = {"id": "7d0c2a57-0000-4000-8000-000000000003", "status": "pending", "output": None, "progress": "0",
        "failed_reason": None, "credits_used": 5, "duration": 4}


def client(recorder: Recorder) -> Client:
    return Client(make_account(KIND), recorder.client(), {"api_id": "the-id", "api_key": "the-key"})


def text_job(**params: object):
    return make_job(KIND, {}, {"avatar_id": AVATAR, "voice_id": ACCENT, "text": "Hello there", **params})


async def test_text_job_body_headers_and_reference() -> None:
    recorder = Recorder(answer(201, TASK))
    submission = await client(recorder).submit(text_job(), {})
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/lipsyncs_v2/")
    assert (request.headers["x-api-id"], request.headers["x-api-key"]) == ("the-id", "the-key")
    body = recorder.body()
    assert body["name"] == "k" * 64
    [scene] = body["video_inputs"]
    assert scene["character"] == {"type": "avatar", "avatar_id": AVATAR}
    assert scene["voice"] == {"type": "text", "input_text": "Hello there", "voice_id": ACCENT}
    assert not {"background", "caption_setting"} & scene.keys()
    assert not {"aspect_ratio", "model_version"} & body.keys()
    assert submission.task_id == TASK["id"] and submission.credits == 5
    assert submission.state is not None and submission.state.phase is Phase.PENDING


@pytest.mark.parametrize("captions", [True, False])
async def test_audio_url_and_options(captions: bool) -> None:
    recorder = Recorder(answer(201, TASK))
    audio = url_ref("https://media.example.com/line.mp3", "audio", "audio/mpeg")
    job = make_job(KIND, {"audio": audio}, {
        "avatar_id": AVATAR, "aspect_ratio": "16x9", "model_version": "aurora_v1_fast", "captions": captions,
        "background_url": "https://media.example.com/bg.jpg"})
    await client(recorder).submit(job, {})
    body = recorder.body()
    scene = body["video_inputs"][0]
    assert scene["voice"] == {"type": "audio", "audio_url": audio.url}
    assert scene["caption_setting"] == {"hidden": not captions}
    assert scene["background"]["url"] == "https://media.example.com/bg.jpg"
    assert (body["aspect_ratio"], body["model_version"]) == ("16x9", "aurora_v1_fast")


@pytest.mark.parametrize(
    ("inputs", "params", "needle"),
    [
        ({"audio": InputRef(role="audio", media_type="audio/wav", path=None, sha256="ab")},
         {"avatar_id": AVATAR}, "public https URL"),
        ({}, {"avatar_id": AVATAR, "text": "hi"}, "voice"),
        ({}, {"voice_id": ACCENT, "text": "hi"}, "avatar"),
    ],
)
async def test_incomplete_jobs_are_refused_before_any_request(inputs: dict, params: dict, needle: str) -> None:
    recorder = Recorder(answer(201, TASK))
    with pytest.raises(PermanentError, match=needle):
        await client(recorder).submit(make_job(KIND, inputs, params), {})
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("status", "phase"),
    [("pending", Phase.PENDING), ("in_queue", Phase.PENDING), ("running", Phase.RUNNING),
     ("paused", Phase.PENDING)],
)
async def test_non_terminal_statuses(status: str, phase: Phase) -> None:
    recorder = Recorder(answer(200, {**TASK, "status": status, "progress": "0.25"}))
    state = await client(recorder).poll(TASK["id"])
    assert recorder.requests[0].url.path == f"/api/lipsyncs_v2/{TASK['id']}/"
    assert (state.phase, state.raw_status, state.progress) == (phase, status, 0.25)


def test_done_gives_the_output() -> None:
    state = parse_state({**TASK, "status": "done", "output": "https://cdn.example.com/o.mp4", "progress": "1"})
    assert (state.phase, state.result_url, state.progress) == (Phase.SUCCEEDED, "https://cdn.example.com/o.mp4", 1.0)


def test_done_without_output_keeps_polling() -> None:
    assert parse_state({**TASK, "status": "done", "output": None}).phase is Phase.RUNNING


@pytest.mark.parametrize(
    ("status", "reason", "error_type"),
    [("failed", "Audio file could not be downloaded", PermanentError),
     ("failed", "Inappropriate content detected", ModerationError),
     ("failed", "Insufficient credits", OutOfCreditsError),
     ("rejected", "Avatar not allowed", ModerationError),
     ("rejected", None, ModerationError)],
)
def test_failures_are_classified(status: str, reason: str | None, error_type: type) -> None:
    state = parse_state({**TASK, "status": status, "failed_reason": reason})
    assert state.phase is Phase.FAILED
    assert type(state.error) is error_type
    assert (reason or status) in state.error.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.42", 0.42), ("42", 0.42), ("42%", 0.42), (" 100 % ", 1.0), (0.5, 0.5), (75, 0.75), ("1", 1.0),
     ("", None), ("n/a", None), (None, None), ("250", 1.0)],
)
def test_progress_strings(value: object, expected: float | None) -> None:
    assert parse_progress(value) == (pytest.approx(expected) if expected is not None else None)


@given(st.text(max_size=12) | st.floats(allow_nan=False) | st.integers())
def test_progress_is_always_a_fraction_or_none(value: object) -> None:
    result = parse_progress(value)
    assert result is None or 0.0 <= result <= 1.0


@pytest.mark.parametrize(
    ("status", "body", "headers", "error_type", "needle", "retry_after"),
    [
        (400, {"video_inputs": ["This field is required."], "aspect_ratio": ['"4x3" is not a valid choice.']},
         {}, PermanentError, "video_inputs: This field is required.", None),
        (400, {"video_inputs": [{"voice": {"voice_id": ["Invalid voice."]}}]}, {}, PermanentError,
         "video_inputs", None),
        (401, {"detail": "Authentication credentials were not provided."}, {}, PermanentError,
         "Authentication credentials", None),
        (403, {"detail": "You do not have enough credits to perform this action."}, {}, OutOfCreditsError,
         "enough credits", None),
        (400, {"non_field_errors": ["Insufficient credits"]}, {}, OutOfCreditsError, "Insufficient credits", None),
        (402, {"detail": "Payment required"}, {}, OutOfCreditsError, "Payment", None),
        (404, {"detail": "Not found."}, {}, NotFoundError, "Not found", None),
        (429, {"detail": "Request was throttled. Expected available in 12 seconds."}, {}, RateLimitedError,
         "throttled", 12.0),
        (429, {"detail": "Request was throttled. Expected available in 12 seconds."}, {"Retry-After": "3"},
         RateLimitedError, "throttled", 3.0),
        (503, {"detail": "Service unavailable"}, {}, TransientError, "unavailable", None),
    ],
)
async def test_drf_errors_are_classified(status: int, body: dict, headers: dict, error_type: type,
                                         needle: str, retry_after: float | None) -> None:
    with pytest.raises(error_type) as caught:
        await client(Recorder(answer(status, body, headers))).submit(text_job(), {})
    assert type(caught.value) is error_type
    assert needle in caught.value.message
    assert caught.value.retry_after == retry_after
    assert "the-key" not in str(caught.value)


@pytest.mark.parametrize("paginated", [False, True])
async def test_catalogue_lists_bare_or_paginated(paginated: bool) -> None:
    voices = [{"name": "Lily", "gender": "female", "accents": [{"id": ACCENT, "accent_name": "British"}]}]
    personas = [{"id": AVATAR, "creator_name": "Anna", "gender": "f"}]

    def handler(request: httpx.Request) -> httpx.Response:
        items = voices if request.url.path == "/api/voices/" else personas
        return httpx.Response(200, json={"count": 1, "next": None, "results": items} if paginated else items)

    recorder = Recorder(handler)
    assert await client(recorder).list_voices() == voices
    assert await client(recorder).list_avatars() == personas
    assert [r.url.path for r in recorder.requests] == ["/api/voices/", "/api/personas/"]


async def test_no_reconcile_without_a_documented_lookup() -> None:
    recorder = Recorder(answer(200, []))
    assert Client.can_reconcile is False
    assert await client(recorder).find_task("k" * 64) is None
    assert recorder.requests == []
