"""PixVerse (AI/ML API) client against hand-written answers in the documented shapes,
including the ones the emulator may never produce."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from provider_helpers import Recorder, answer, local_ref, make_account, make_job, url_ref

from lipbatch.errors import (
    ModerationError,
    NotFoundError,
    OutOfCreditsError,
    PermanentError,
    RateLimitedError,
    TransientError,
)
from lipbatch.providers import aimlapi_pixverse
from lipbatch.providers.aimlapi_pixverse import DATA_URI_LIMIT_BYTES, PIXVERSE_SPEAKERS, Client, parse_state
from lipbatch.providers.base import Phase

KIND = "aimlapi-pixverse-lipsync"
pytestmark = pytest.mark.anyio
CREATED = {"id": "z-IMFJo2ORUJBR7OWIqDM", "status": "queued", "meta": {"usage": {"credits_used": 2000000}}}


def client(recorder: Recorder) -> Client:
    return Client(make_account(KIND), recorder.client(), {"token": "secret-key"})


async def test_local_video_goes_inline_with_tts(tiny_video: Path) -> None:
    recorder = Recorder(answer(200, CREATED))
    job = make_job(KIND, {"video": local_ref(tiny_video, "video", "video/mp4")}, {"speaker": "Ava", "text": "Hi"})
    submission = await client(recorder).submit(job, {})

    request = recorder.requests[0]
    assert request.method == "POST" and request.url.path == "/v2/video/generations"
    assert request.headers["authorization"] == "Bearer secret-key"
    body = recorder.body()
    prefix = "data:video/mp4;base64,"
    assert body["video_url"].startswith(prefix)
    assert base64.b64decode(body["video_url"][len(prefix):]) == tiny_video.read_bytes()
    assert body["model"] == "pixverse/lip-sync"
    assert (body["lip_sync_tts_speaker"], body["lip_sync_tts_content"]) == ("Ava", "Hi")
    assert "audio_url" not in body
    assert submission.task_id == CREATED["id"]
    assert submission.credits == 2000000
    assert submission.state is not None and submission.state.phase is Phase.PENDING


async def test_urls_pass_through_and_audio_excludes_tts(tiny_audio: Path) -> None:
    recorder = Recorder(answer(200, CREATED))
    video = url_ref("https://cdn.example.com/a%2Fb/face.mp4?x=1", "video", "video/mp4")
    job = make_job(KIND, {"video": video, "audio": local_ref(tiny_audio, "audio", "audio/wav")}, {})
    await client(recorder).submit(job, {})
    body = recorder.body()
    assert body["video_url"] == video.url
    assert body["audio_url"].startswith("data:audio/wav;base64,")
    assert not {"lip_sync_tts_speaker", "lip_sync_tts_content"} & body.keys()


@pytest.mark.parametrize(
    ("with_audio", "params", "needle"),
    [
        (True, {"speaker": "Ava", "text": "Hi"}, "not both"),
        (False, {"speaker": "Ava"}, "together with text"),
        (False, {"speaker": "Zed", "text": "Hi"}, "unknown PixVerse speaker"),
    ],
)
async def test_invalid_voice_combinations_are_refused_before_any_request(
    with_audio: bool, params: dict, needle: str
) -> None:
    recorder = Recorder(answer(200, CREATED))
    inputs = {"video": url_ref("https://x.test/v.mp4", "video", "video/mp4")}
    if with_audio:
        inputs["audio"] = url_ref("https://x.test/a.wav", "audio", "audio/wav")
    with pytest.raises(PermanentError, match=needle):
        await client(recorder).submit(make_job(KIND, inputs, params), {})
    assert recorder.requests == []


async def test_oversize_local_file_names_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(DATA_URI_LIMIT_BYTES + 1)
    ref = local_ref(tmp_path / "big.mp4", "video", "video/mp4")
    recorder = Recorder(answer(200, CREATED))
    with pytest.raises(PermanentError, match=r"limited to 20 MiB"):
        await client(recorder).submit(make_job(KIND, {"video": ref}, {"speaker": "Ava", "text": "Hi"}), {})
    assert recorder.requests == []


async def test_file_changed_since_planning_is_refused(tiny_video: Path) -> None:
    ref = local_ref(tiny_video, "video", "video/mp4")
    tiny_video.write_bytes(b"other bytes")
    recorder = Recorder(answer(200, CREATED))
    with pytest.raises(PermanentError, match="changed"):
        await client(recorder).submit(make_job(KIND, {"video": ref}, {"speaker": "Ava", "text": "Hi"}), {})
    assert recorder.requests == []


async def test_generation_id_is_url_encoded_in_the_query() -> None:
    task_id = "3f2a:pixverse/lip-sync&x=1+2 #3"
    recorder = Recorder(answer(200, {"id": task_id, "status": "generating"}))
    state = await client(recorder).poll(task_id)
    request = recorder.requests[0]
    assert request.url.path == "/v2/video/generations"
    assert request.url.params["generation_id"] == task_id
    assert list(request.url.params.keys()) == ["generation_id"]
    raw_query = request.url.query.decode()
    assert "&x=" not in raw_query and "#" not in raw_query and " " not in raw_query
    assert state.phase is Phase.RUNNING


VIDEO_URL = "https://cdn.aimlapi.com/panda/pixverse%2Fmp4%2Fmedia%2Fweb%2Fori%2Fout.mp4"


@pytest.mark.parametrize("status", ["completed", "succeeded"])
async def test_both_documented_success_statuses(status: str) -> None:
    body = {"id": "g1", "status": status, "video": {"url": VIDEO_URL}, "error": None,
            "meta": {"usage": {"credits_used": 1000000}}}
    state = await client(Recorder(answer(200, body))).poll("g1")
    assert state.phase is Phase.SUCCEEDED
    assert state.result_url == VIDEO_URL  # verbatim: percent-encoded slashes untouched
    assert state.credits == 1000000


@pytest.mark.parametrize(
    ("status", "phase"),
    [("queued", Phase.PENDING), ("waiting", Phase.PENDING), ("generating", Phase.RUNNING),
     ("processing", Phase.PENDING), ("", Phase.PENDING)],
)
def test_pending_running_and_undocumented_statuses_keep_polling(status: str, phase: Phase) -> None:
    state = parse_state({"id": "g1", "status": status, "video": None, "error": None})
    assert state.phase is phase
    assert state.raw_status == status
    assert state.error is None


def test_success_without_video_keeps_polling() -> None:
    state = parse_state({"id": "g1", "status": "completed", "video": None})
    assert state.phase is Phase.RUNNING and state.result_url is None


@pytest.mark.parametrize(
    ("body", "error_type", "needle"),
    [
        ({"status": "error", "error": {"name": "ValidationError", "message": "video too long"}},
         PermanentError, "ValidationError: video too long"),
        ({"status": "failed", "error": {"detail": [{"loc": ["body", "video_url"], "msg": "bad url",
                                                    "type": "value_error", "input": "x"}]}},
         PermanentError, "body.video_url: bad url"),
        ({"status": "error", "error": "The content may contain sensitive information"},
         ModerationError, "sensitive"),
        ({"status": "error", "error": {"message": "Generation timeout", "statusCode": 504}},
         PermanentError, "Generation timeout"),
        ({"status": "error", "error": None}, PermanentError, "generation error"),
        ({"error": {"name": "Oops", "message": "broken"}}, PermanentError, "Oops: broken"),
    ],
)
def test_failure_shapes_are_parsed_and_classified(body: dict, error_type: type, needle: str) -> None:
    state = parse_state({"id": "g1", "video": None, **body})
    assert state.phase is Phase.FAILED
    assert type(state.error) is error_type
    assert needle in state.error.message


@pytest.mark.parametrize(
    ("status", "body", "headers", "error_type", "needle"),
    [
        (403, {"message": "You've run out of credits. Please top up your balance", "statusCode": 403,
               "path": "/v2/video/generations", "requestId": "r", "timestamp": "t"},
         {}, OutOfCreditsError, "run out of credits"),
        (403, {"message": "Forbidden"}, {}, PermanentError, "Forbidden"),
        (401, {"message": "This request requires a valid API key.", "statusCode": 401},
         {}, PermanentError, "valid API key"),
        (400, {"message": "Body validation error!",
               "detail": [{"loc": ["body", "lip_sync_tts_speaker"], "msg": "Invalid enum value"}]},
         {}, PermanentError, "Invalid enum value"),
        (400, {"message": "Prompt violates our content policy"}, {}, ModerationError, "content policy"),
        (429, {"message": "Too Many Requests"}, {"Retry-After": "7"}, RateLimitedError, "Too Many"),
        (500, {"message": "The model is under maintenance"}, {}, TransientError, "maintenance"),
        (504, {"message": "Generation timeout"}, {}, TransientError, "timeout"),
    ],
)
async def test_http_errors_are_classified(status: int, body: dict, headers: dict, error_type: type,
                                          needle: str) -> None:
    recorder = Recorder(answer(status, body, headers))
    job = make_job(KIND, {"video": url_ref("https://x.test/v.mp4", "video", "video/mp4")},
                   {"speaker": "Ava", "text": "Hi"})
    with pytest.raises(error_type) as caught:
        await client(recorder).submit(job, {})
    assert type(caught.value) is error_type
    assert needle in caught.value.message
    assert "secret-key" not in str(caught.value)
    if headers:
        assert caught.value.retry_after == 7


async def test_unknown_generation_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        await client(Recorder(answer(404, {"message": "Not found"}))).poll("nope")


async def test_dropped_connection_is_transient() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset")

    with pytest.raises(TransientError):
        await client(Recorder(drop)).poll("g1")


def test_contract_flags_and_constants() -> None:
    assert Client.kind == KIND and Client.can_reconcile is False
    assert Client.credential_defaults == {"token": "AIMLAPI_KEY"}
    assert len(PIXVERSE_SPEAKERS) == 15 and "Auto" in PIXVERSE_SPEAKERS
    ref = url_ref("https://x.test/v.mp4", "video", "video/mp4")
    assert Client(make_account(KIND), httpx.AsyncClient(), {"token": "t"}).needs_upload(ref) is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@given(status=st.sampled_from(["completed", "error", "failed", "queued", "odd"]) | st.text(max_size=8),
       error=json_values, video=json_values, meta=json_values)
def test_any_json_body_maps_to_a_state(status: str, error: object, video: object, meta: object) -> None:
    state = parse_state({"id": "g", "status": status, "error": error, "video": video, "meta": meta})
    assert (state.phase is Phase.FAILED) == (state.error is not None)
    assert (state.phase is Phase.SUCCEEDED) == (state.result_url is not None)


def test_describe_error_joins_detail_items() -> None:
    assert aimlapi_pixverse.describe_error({"detail": [{"msg": "a"}, {"msg": "b"}]}) == "a; b"


async def test_a_clip_shared_by_many_jobs_is_read_and_encoded_once(tiny_video: Path, monkeypatch) -> None:
    ref = local_ref(tiny_video, "video", "video/mp4")
    reads: list[Path] = []
    real_read_bytes = Path.read_bytes

    def counting_read_bytes(self: Path) -> bytes:
        reads.append(self)
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", counting_read_bytes)
    recorder = Recorder(answer(200, CREATED))
    for text in ("one", "two", "three"):
        await client(recorder).submit(make_job(KIND, {"video": ref}, {"speaker": "Ava", "text": text}), {})
    assert reads.count(tiny_video) == 1
    assert len({recorder.body(i)["video_url"] for i in range(3)}) == 1
