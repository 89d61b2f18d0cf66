"""useapi.net's Runway API (lip sync, Act-Two voice swap) as documented, against the emulator.

Expected statuses and bodies come from ../shared/providers/runway-lipsync.md,
runway-act-two-voice.md and the useapi.net pages in ../shared/seeds/, not from the emulator.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import trio
from emulator_kit import download, follow, in_order, probe_bytes, video_bytes, wav_bytes
from sandbox_kit import Emu, fast_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

pytestmark = pytest.mark.anyio

API = "/v1/runwayml"
TOKEN = "user:1234-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VOICE = "pNInz6obpgDQGcFmaJgB"  # the docs' example voice
UNAUTHORIZED = {"error": "Unauthorized", "code": 401}
NOT_FOUND = {"error": "Not found.", "code": 404}
TOO_MANY = {"error": "You have too many tasks running or pending. "
                     "Please wait for some of them to finish before starting more."}
NO_CREDITS = {"error": "You do not have enough credits to run this task."}
LIFECYCLE = ["PENDING", "THROTTLED", "RUNNING", "SUCCEEDED"]
TERMINAL = {"SUCCEEDED", "FAILED"}
FROZEN = 1e6
ASSET_ID = re.compile(r"^user:(?P<user>\d+)-runwayml:(?P<email>[^@\s]+@[^\s]+)-asset:(?P<uuid>[0-9a-f-]{36})$")
TASK_ID = re.compile(r"^user:(?P<user>\d+)-runwayml:(?P<email>[^@\s]+@[^\s]+)-task:(?P<uuid>[0-9a-f-]{36})$")


async def upload(emu: Emu, data: bytes, content_type: str, name: str = "clip.mp4", *,
                 headers: dict | None = None, **params: Any) -> str:
    answer = await emu.client.post(f"{API}/assets/", params={"name": name, **params}, content=data,
                                   headers=(headers or AUTH) | {"Content-Type": content_type})
    assert answer.status_code == 200, answer.text
    return answer.json()["assetId"]


async def create_lipsync(emu: Emu, body: dict, headers: dict | None = None) -> httpx.Response:
    return await emu.client.post(f"{API}/lipsync/create", json=body, headers=headers or AUTH)


async def create_act_two(emu: Emu, body: dict) -> httpx.Response:
    return await emu.client.post(f"{API}/gen4/act-two-voice", json=body, headers=AUTH)


async def task(emu: Emu, task_id: str, headers: dict | None = None) -> dict:
    answer = await emu.client.get(f"{API}/tasks/{task_id}", headers=headers or AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def finish(emu: Emu, task_id: str) -> tuple[list[str], dict]:
    return await follow(lambda: task(emu, task_id), TERMINAL)


async def picture_and_audio(emu: Emu, audio_seconds: float = 1.5) -> tuple[str, str]:
    return (await upload(emu, video_bytes(2.0), "video/mp4"),
            await upload(emu, wav_bytes(audio_seconds), "audio/wav", "speech.wav"))


def assert_400(answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"error", "code"} and body["code"] == 400 and body["error"]


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
@pytest.mark.parametrize("method,path", [
    ("POST", "/lipsync/create"), ("POST", "/gen4/act-two-voice"), ("GET", "/tasks/x"),
    ("GET", "/tasks/?offset=0&limit=10"), ("POST", "/assets/?name=a.mp4"), ("GET", "/assets/x"),
    ("GET", "/lipsync/voices/"), ("GET", "/accounts"),
])
async def test_requests_without_a_valid_bearer_token_are_401(emu, headers, method, path):
    answer = await emu.client.request(method, API + path, headers=headers, json={})
    assert answer.status_code == 401
    assert answer.json() == UNAUTHORIZED


async def test_tokens_outside_the_accepted_set_are_401(emu):
    emu.configure(valid_tokens=("user:1-good",))
    assert (await emu.client.get(f"{API}/accounts", headers=AUTH)).json() == UNAUTHORIZED
    good = await emu.client.get(f"{API}/accounts", headers={"Authorization": "Bearer user:1-good"})
    assert good.status_code == 200


# -- accounts and voices ----------------------------------------------------------------------------


async def test_accounts_list_the_linked_runway_account_with_max_jobs(emu):
    accounts = (await emu.client.get(f"{API}/accounts", headers=AUTH)).json()
    assert len(accounts) == 1
    email, account = next(iter(accounts.items()))
    assert account["email"] == email and "@" in email and account["maxJobs"] == 5


@pytest.mark.parametrize("body", [
    {"email": "x@example.com", "password": "p", "maxJobs": 0},
    {"email": "x@example.com", "password": "p", "maxJobs": 11},
    {"email": "other@example.com", "password": "p", "maxJobs": 5},
    {"email": "x@example.com", "maxJobs": 5},
])
async def test_linking_an_account_validates_the_body(emu, body):
    assert_400(await emu.client.post(f"{API}/accounts/x@example.com", json=body, headers=AUTH))


async def test_with_two_accounts_uploads_must_name_one(emu):
    linked = await emu.client.post(f"{API}/accounts/second@example.com", headers=AUTH,
                                   json={"email": "second@example.com", "password": "p", "maxJobs": 3})
    assert linked.status_code == 200 and linked.json()["maxJobs"] == 3
    ambiguous = await emu.client.post(f"{API}/assets/?name=a.wav", content=wav_bytes(),
                                      headers=AUTH | {"Content-Type": "audio/wav"})
    assert_400(ambiguous)
    asset_id = await upload(emu, wav_bytes(), "audio/wav", "a.wav", email="second@example.com")
    assert ASSET_ID.match(asset_id)["email"] == "second@example.com"


async def test_voices_are_listed_with_ids_and_labels(emu):
    voices = (await emu.client.get(f"{API}/lipsync/voices/", headers=AUTH)).json()
    assert isinstance(voices, list) and voices
    assert any(v["voiceId"] == VOICE for v in voices)
    for voice in voices:
        assert len(voice["voiceId"]) == 20
        assert {"name", "labels", "sample", "createdAt"} <= set(voice)
        assert {"accent", "gender", "age"} <= set(voice["labels"])


# -- assets ---------------------------------------------------------------------------------------


async def test_upload_returns_an_asset_id_that_reads_back_with_a_downloadable_url(emu):
    data = video_bytes(2.0)
    answer = await emu.client.post(f"{API}/assets/", params={"name": "face.mp4"}, content=data,
                                   headers=AUTH | {"Content-Type": "video/mp4"})
    assert answer.status_code == 200
    body = answer.json()
    match = ASSET_ID.match(body["assetId"])
    assert match and match["user"] == "1234" and match["uuid"] == body["id"]
    assert {"user", "createdAt", "updatedAt"} <= set(body)
    got = (await emu.client.get(f"{API}/assets/{body['assetId']}", headers=AUTH)).json()
    assert got["assetId"] == body["assetId"] and got["mediaType"] == "video" and got["name"] == "face.mp4"
    assert got["metadata"]["duration"] == pytest.approx(2.0, abs=0.2)
    assert (await download(emu.client, got["url"])).content == data


@pytest.mark.parametrize("content_type", ["video/MP2T", "image/webp", "audio/mpeg", "video/quicktime"])
async def test_every_listed_content_type_is_accepted(emu, content_type):
    await upload(emu, b"\x00" * 64, content_type, "file")


@pytest.mark.parametrize("params,content_type,data", [
    ({}, "video/mp4", b"abc"),  # name is required
    ({"name": "a.txt"}, "text/plain", b"abc"),
    ({"name": "a.bin"}, "application/octet-stream", b"abc"),
    ({"name": "a.mp4"}, "video/mp4", b""),
])
async def test_bad_uploads_are_400(emu, params, content_type, data):
    assert_400(await emu.client.post(f"{API}/assets/", params=params, content=data,
                                     headers=AUTH | {"Content-Type": content_type}))


async def test_assets_list_filters_by_media_type_and_requires_paging(emu):
    video = await upload(emu, video_bytes(), "video/mp4")
    audio = await upload(emu, wav_bytes(), "audio/wav", "a.wav")
    listed = (await emu.client.get(f"{API}/assets/?offset=0&limit=50&mediaType=audio", headers=AUTH)).json()
    assert [a["assetId"] for a in listed] == [audio]
    everything = (await emu.client.get(f"{API}/assets/?offset=0&limit=50", headers=AUTH)).json()
    assert {a["assetId"] for a in everything} == {video, audio}
    for query in ("", "?offset=0", "?offset=0&limit=51", "?offset=0&limit=5&mediaType=gif"):
        assert_400(await emu.client.get(f"{API}/assets/{query}", headers=AUTH))


async def test_unknown_or_deleted_assets_are_404(emu):
    asset_id = await upload(emu, wav_bytes(), "audio/wav", "a.wav")
    assert (await emu.client.delete(f"{API}/assets/{asset_id}", headers=AUTH)).status_code in (200, 204)
    for candidate in (asset_id, "user:1234-runwayml:nobody@example.com-asset:0000"):
        answer = await emu.client.get(f"{API}/assets/{candidate}", headers=AUTH)
        assert answer.status_code == 404 and answer.json() == NOT_FOUND


async def test_assets_of_another_token_are_invisible(emu):
    asset_id = await upload(emu, wav_bytes(), "audio/wav", "a.wav")
    other = {"Authorization": "Bearer user:999-other"}
    assert (await emu.client.get(f"{API}/assets/{asset_id}", headers=other)).status_code == 404


# -- lip sync: validation -------------------------------------------------------------------------


@pytest.fixture
async def ids(emu) -> dict[str, str]:
    return {
        "video": await upload(emu, video_bytes(2.0), "video/mp4"),
        "image": await upload(emu, b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "image/png", "face.png"),
        "audio": await upload(emu, wav_bytes(1.5), "audio/wav", "speech.wav"),
    }


@pytest.mark.parametrize("fields", [
    {"audio": True},  # neither image nor video
    {"image": True, "video": True, "audio": True},  # both
    {"video": True},  # neither audio nor voice
    {"video": True, "audio": True, "voiceId": VOICE, "voice_text": "hello"},  # both audio and TTS
    {"video": True, "voiceId": VOICE},  # voiceId without voice_text
    {"video": True, "voice_text": "hello"},  # voice_text without voiceId
    {"video": True, "voiceId": VOICE, "voice_text": "hi", "model_id": "eleven_turbo"},
    {"video": True, "audio": True, "maxJobs": 0},
    {"video": True, "audio": True, "maxJobs": 11},
    {"video": True, "audio": True, "replyRef": "x" * 1025},
    {"video": True, "voiceId": "not-a-voice", "voice_text": "hi"},
    {"image": "audio", "audio": True},  # an image field naming an audio asset
])
async def test_invalid_lipsync_requests_are_400(emu, ids, fields):
    body: dict[str, Any] = {}
    for role in ("image", "video", "audio"):
        if fields.get(role):
            body[f"{role}_assetId"] = ids[fields[role] if isinstance(fields[role], str) else role]
    body |= {k: v for k, v in fields.items() if k not in ("image", "video", "audio")}
    assert_400(await create_lipsync(emu, body))
    assert (await emu.stats())["creates"] == {}


async def test_invalid_json_is_400(emu):
    answer = await emu.client.post(f"{API}/lipsync/create", content=b"{not json",
                                   headers=AUTH | {"Content-Type": "application/json"})
    assert_400(answer)


async def test_unknown_asset_is_404_with_the_documented_body(emu, ids):
    missing = "user:1234-runwayml:runway-1234@example.com-asset:0b7c1f7e-0000-4000-8000-000000000000"
    answer = await create_lipsync(emu, {"video_assetId": missing, "audio_assetId": ids["audio"]})
    assert answer.status_code == 404
    assert answer.json() == {"error": "Unable to retrieve assetId 0b7c1f7e-0000-4000-8000-000000000000 (Not found.)",
                             "code": 404}


# -- lip sync: lifecycle and results --------------------------------------------------------------


async def test_lipsync_create_returns_a_flat_pending_task(emu, ids):
    answer = await create_lipsync(emu, {"image_assetId": ids["image"], "audio_assetId": ids["audio"],
                                        "replyRef": "job-1", "exploreMode": False})
    assert answer.status_code == 200
    body = answer.json()
    assert "task" not in body
    match = TASK_ID.match(body["taskId"])
    assert match and match["uuid"] == body["id"] and match["user"] == "1234"
    assert body["taskType"] == "lipsync" and body["status"] == "PENDING"
    assert body["artifacts"] == [] and body["error"] is None and body["code"] == 200
    assert body["replyRef"] == "job-1"
    assert {"storageGB", "numPlanCredits_permitted", "numPlanCredits_used"} <= set(body["features"])
    assert body["options"]["image_asset_id"] == ASSET_ID.match(ids["image"])["uuid"]
    assert isinstance(body["estimatedTimeToStartSeconds"], int | float)


async def test_lipsync_runs_to_success_with_a_playable_result_as_long_as_the_audio(emu, ids, tmp_path):
    body = (await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": ids["audio"]})).json()
    seen, done = await finish(emu, body["taskId"])
    assert in_order(seen, LIFECYCLE) and seen[-1] == "SUCCEEDED"
    assert done["progressRatio"] in (1, "1")
    artifact = done["artifacts"][0]
    assert ASSET_ID.match(artifact["assetId"]) and artifact["taskId"] == body["taskId"]
    result = await download(emu.client, artifact["url"])
    assert result.status_code == 200 and int(artifact["fileSize"]) == len(result.content)
    info = await probe_bytes(result.content, tmp_path)
    assert info.has_audio and info.duration == pytest.approx(1.5, abs=0.2)
    assert artifact["metadata"]["duration"] == pytest.approx(info.duration, abs=0.05)


async def test_tts_lipsync_output_follows_the_text_length(emu, ids, tmp_path):
    text = "Hello there, this is a sixty character sentence for lip sync."[:60]
    body = (await create_lipsync(emu, {"image_assetId": ids["image"], "voiceId": VOICE, "voice_text": text,
                                       "model_id": "eleven_multilingual_v2"})).json()
    assert body["options"]["gen_audio_options"]["text"] == text
    _, done = await finish(emu, body["taskId"])
    result = await download(emu.client, done["artifacts"][0]["url"])
    info = await probe_bytes(result.content, tmp_path)
    assert info.duration == pytest.approx(4.0, abs=0.3)  # ~15 characters per second


async def test_running_tasks_report_progress_as_a_ratio(emu, ids):
    emu.configure(time_scale=FROZEN, job_seconds=10.0)
    body = (await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": ids["audio"]})).json()
    emu.advance(6.0)
    running = await task(emu, body["taskId"])
    assert running["status"] == "RUNNING"
    assert 0 < float(running["progressRatio"]) < 1
    emu.advance(6.0)
    assert (await task(emu, body["taskId"]))["status"] == "SUCCEEDED"


async def test_unknown_or_foreign_task_is_404(emu, ids):
    body = (await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": ids["audio"]})).json()
    for task_id in (body["taskId"].replace(body["id"], "0b7c1f7e-0000-4000-8000-000000000000"), "garbage"):
        answer = await emu.client.get(f"{API}/tasks/{task_id}", headers=AUTH)
        assert answer.status_code == 404 and answer.json() == NOT_FOUND
    other = await emu.client.get(f"{API}/tasks/{body['taskId']}", headers={"Authorization": "Bearer user:9-x"})
    assert other.status_code == 404


async def test_result_urls_expire_and_a_new_poll_gives_a_fresh_one(emu, ids):
    emu.configure(download_ttl=30.0)
    body = (await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": ids["audio"]})).json()
    _, done = await finish(emu, body["taskId"])
    first_url = done["artifacts"][0]["url"]
    assert (await download(emu.client, first_url)).status_code == 200
    emu.advance(31.0)
    assert (await download(emu.client, first_url)).status_code in (403, 404)
    again = await task(emu, body["taskId"])
    fresh = again["artifacts"][0]["url"]
    assert fresh != first_url
    assert (await download(emu.client, fresh)).status_code == 200
    by_asset = (await emu.client.get(f"{API}/assets/{again['artifacts'][0]['assetId']}", headers=AUTH)).json()
    assert (await download(emu.client, by_asset["url"])).status_code == 200


async def test_moderated_text_fails_the_task_with_a_moderation_category(emu, ids):
    emu.configure(moderate=("forbidden",))
    body = (await create_lipsync(emu, {"image_assetId": ids["image"], "voiceId": VOICE,
                                       "voice_text": "say the Forbidden thing"})).json()
    seen, done = await finish(emu, body["taskId"])
    assert seen[-1] == "FAILED" and "SUCCEEDED" not in seen
    assert done["error"]["moderation_category"]
    assert {"errorMessage", "reason", "message", "tally_asimov"} <= set(done["error"])
    assert done["artifacts"] == []


async def test_multipart_create_is_accepted(emu, ids):
    answer = await emu.client.post(f"{API}/lipsync/create", headers=AUTH,
                                   files={"video_assetId": (None, ids["video"]),
                                          "audio_assetId": (None, ids["audio"]),
                                          "maxJobs": (None, "3"), "exploreMode": (None, "true")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["options"]["exploreMode"] is True


# -- concurrency ----------------------------------------------------------------------------------


async def test_a_full_account_queue_answers_the_busy_429_listing_running_tasks(emu, ids):
    emu.configure(time_scale=FROZEN)
    body = {"video_assetId": ids["video"], "audio_assetId": ids["audio"], "maxJobs": 1, "replyRef": "r1"}
    first = (await create_lipsync(emu, body)).json()
    busy = await create_lipsync(emu, body | {"replyRef": "r2"})
    assert busy.status_code == 429
    email = TASK_ID.match(first["taskId"])["email"]
    assert busy.json() == {
        "error": f"Account {email} is busy executing 1 tasks",
        "runningTasks": {email: [{"email": email, "taskId": first["taskId"], "id": first["id"], "replyRef": "r1"}]},
        "code": 429,
    }


async def test_runway_refuses_beyond_its_dynamic_capacity_and_throttles_the_queue(emu, ids):
    emu.configure(time_scale=FROZEN, job_seconds=10.0)
    body = {"video_assetId": ids["video"], "audio_assetId": ids["audio"]}
    accepted: list[dict] = []
    refusal = None
    for _ in range(10):
        answer = await create_lipsync(emu, body)
        if answer.status_code != 200:
            refusal = answer
            break
        accepted.append(answer.json())
    assert refusal is not None and refusal.status_code == 429 and refusal.json() == TOO_MANY
    assert 1 <= len(accepted) < 5  # at least one job, below the default maxJobs of 5
    emu.advance(1.5)
    statuses = [(await task(emu, t["taskId"]))["status"] for t in accepted]
    assert statuses.count("RUNNING") >= 1
    if len(accepted) > statuses.count("RUNNING"):
        assert "THROTTLED" in statuses
    listed = (await emu.client.get(f"{API}/tasks/?offset=0&limit=100&statuses=THROTTLED,RUNNING",
                                   headers=AUTH)).json()
    assert len(listed) == len(accepted)
    emu.advance(100.0)
    assert (await create_lipsync(emu, body)).status_code == 200  # slots free again


# -- credits --------------------------------------------------------------------------------------


async def test_insufficient_credits_is_412_and_explore_mode_is_free(emu, ids):
    emu.configure(credits=1)
    long_audio = await upload(emu, wav_bytes(3.0), "audio/wav", "long.wav")
    answer = await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": long_audio})
    assert answer.status_code == 412 and answer.json() == NO_CREDITS
    explore = await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": long_audio,
                                         "exploreMode": True})
    assert explore.status_code == 200
    assert explore.json()["features"]["numPlanCredits_permitted"] == 1


# -- Act-Two voice swap ---------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [2.0, 31.0])
async def test_act_two_rejects_clips_outside_3_to_30_seconds(emu, seconds):
    video = await upload(emu, video_bytes(seconds, fps=5, size=(32, 24)), "video/mp4")
    assert_400(await create_act_two(emu, {"video_assetId": video, "voiceId": VOICE}))


@pytest.mark.parametrize("body", [{"voiceId": VOICE}, {"video_assetId": "VIDEO"}, {"video_assetId": "VIDEO",
                                  "voiceId": VOICE, "maxJobs": 0}, {"video_assetId": "AUDIO", "voiceId": VOICE}])
async def test_act_two_requires_a_video_and_a_voice(emu, ids, body):
    body = {k: ids[v.lower()] if v in ("VIDEO", "AUDIO") else v for k, v in body.items()}
    assert_400(await create_act_two(emu, body))


async def test_act_two_unknown_video_is_404(emu):
    missing = "user:1234-runwayml:runway-1234@example.com-asset:0b7c1f7e-0000-4000-8000-000000000001"
    answer = await create_act_two(emu, {"video_assetId": missing, "voiceId": VOICE})
    assert answer.status_code == 404
    assert answer.json() == {"error": "Unable to retrieve assetId 0b7c1f7e-0000-4000-8000-000000000001 (Not found.)",
                             "code": 404}


async def test_act_two_wraps_the_task_and_delivers_a_clip_of_the_same_length(emu, tmp_path):
    video = await upload(emu, video_bytes(4.0), "video/mp4", "talk.mp4")
    answer = await create_act_two(emu, {"video_assetId": video, "voiceId": VOICE, "replyRef": "ref-9"})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"task"}
    created = body["task"]
    assert TASK_ID.match(created["taskId"]) and created["code"] == 200
    assert created["taskType"] == "workflow_s2s_video" and created["status"] == "PENDING"
    assert created["progressRatio"] == "0" and created["artifacts"] == []
    assert created["options"]["voiceId"] == VOICE
    assert created["options"]["seconds"] == pytest.approx(4.0, abs=0.2)
    assert created["name"].endswith("talk.mp4")
    seen, done = await finish(emu, created["taskId"])
    assert in_order(seen, LIFECYCLE) and seen[-1] == "SUCCEEDED"
    assert isinstance(done["progressRatio"], str)
    info = await probe_bytes((await download(emu.client, done["artifacts"][0]["url"])).content, tmp_path)
    assert info.has_audio and info.duration == pytest.approx(4.0, abs=0.2)


async def test_act_two_moderated_video_fails(emu):
    emu.configure(moderate=("forbidden",))
    video = await upload(emu, video_bytes(3.5), "video/mp4", "forbidden clip.mp4")
    created = (await create_act_two(emu, {"video_assetId": video, "voiceId": VOICE})).json()["task"]
    seen, done = await finish(emu, created["taskId"])
    assert seen[-1] == "FAILED" and done["error"]["moderation_category"]


# -- task listing, callbacks, stats ---------------------------------------------------------------


async def test_tasks_list_filters_by_status_and_echoes_reply_refs(emu, ids):
    emu.configure(time_scale=FROZEN)
    body = {"video_assetId": ids["video"], "audio_assetId": ids["audio"], "replyRef": "job-key-1"}
    created = (await create_lipsync(emu, body)).json()
    pending = (await emu.client.get(f"{API}/tasks/?offset=0&limit=10&statuses=PENDING,RUNNING,THROTTLED",
                                    headers=AUTH)).json()
    assert [(t["taskId"], t["replyRef"]) for t in pending] == [(created["taskId"], "job-key-1")]
    done = (await emu.client.get(f"{API}/tasks/?offset=0&limit=10&statuses=SUCCEEDED", headers=AUTH)).json()
    assert done == []
    for query in ("", "?offset=0", "?offset=0&limit=0", "?offset=0&limit=1001", "?offset=0&limit=5&statuses=DONE"):
        assert_400(await emu.client.get(f"{API}/tasks/{query}", headers=AUTH))


async def test_reply_url_receives_progress_until_the_task_ends(emu, ids):
    received: list[dict] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({})

    emu.sandbox.callback_transport = httpx.ASGITransport(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    body = (await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": ids["audio"],
                                       "replyUrl": "http://127.0.0.1:9/hook", "replyRef": "cb"})).json()
    await finish(emu, body["taskId"])
    for _ in range(2000):
        if received and received[-1]["status"] in TERMINAL:
            break
        await trio.sleep(0.002)
    assert received[-1]["status"] == "SUCCEEDED" and received[-1]["artifacts"][0]["url"]
    assert all(item["taskId"] == body["taskId"] and item["replyRef"] == "cb" for item in received)


async def test_remote_reply_urls_are_never_called(emu, ids):
    body = (await create_lipsync(emu, {"video_assetId": ids["video"], "audio_assetId": ids["audio"],
                                       "replyUrl": "https://webhook.site/abc"})).json()
    await finish(emu, body["taskId"])
    for _ in range(200):
        if (await emu.stats())["callbacks"].get("refused") == 2:  # one at start, one at the end
            break
        await trio.sleep(0.002)
    assert (await emu.stats())["callbacks"] == {"refused": 2}


async def test_stats_count_requests_creates_and_duplicates_and_reset_clears_them(emu, ids):
    body = {"video_assetId": ids["video"], "audio_assetId": ids["audio"]}
    first = (await create_lipsync(emu, body)).json()
    await finish(emu, first["taskId"])
    second = (await create_lipsync(emu, dict(reversed(list(body.items()))))).json()
    third = await create_lipsync(emu, body | {"replyRef": "different"})
    assert third.status_code == 200
    stats = await emu.stats()
    assert stats["creates"] == {"runway-lipsync": 3}
    assert stats["duplicate_creates"] == 1 and stats["duplicate_creates_by_kind"] == {"runway-lipsync": 1}
    assert stats["requests_by_provider"]["useapi"] >= 6
    assert any(route.startswith("POST /v1/runwayml/lipsync/create") for route in stats["requests_by_route"])
    await emu.client.post("/_sandbox/reset")
    assert (await emu.client.get(f"{API}/tasks/{second['taskId']}", headers=AUTH)).status_code == 404
    assert (await emu.stats())["creates"] == {}


# -- faults ---------------------------------------------------------------------------------------


async def test_injected_429_has_the_useapi_error_shape_and_retry_after(emu):
    emu.configure(rate_429=1.0, time_scale=1.0)
    answer = await emu.client.get(f"{API}/accounts", headers=AUTH)
    assert answer.status_code == 429 and answer.json()["code"] == 429 and answer.headers["retry-after"]


async def _fault_trace(seed: int) -> list[int]:
    app = fast_app(seed=seed, rate_5xx=0.4)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        return [(await client.get(f"{API}/lipsync/voices/", headers=AUTH)).status_code for _ in range(30)]


async def test_faults_are_reproducible_for_a_seed():
    trace = await _fault_trace(11)
    assert trace == await _fault_trace(11)
    assert 200 in trace and any(status >= 500 for status in trace)


async def test_reset_create_over_a_real_socket_is_processed_and_can_be_found(served):
    video = await upload(served, video_bytes(), "video/mp4")
    audio = await upload(served, wav_bytes(), "audio/wav", "a.wav")
    served.configure(rate_reset=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await create_lipsync(served, {"video_assetId": video, "audio_assetId": audio, "replyRef": "lost-1"})
    served.configure(rate_reset=0.0)
    assert (await served.stats())["creates"] == {"runway-lipsync": 1}
    listed = (await served.client.get(f"{API}/tasks/?offset=0&limit=10", headers=AUTH)).json()
    assert [t["replyRef"] for t in listed] == ["lost-1"]
    served.configure(rate_truncate=1.0)
    _, done = await finish(served, listed[0]["taskId"])
    with pytest.raises(httpx.RemoteProtocolError):
        await download(served.client, done["artifacts"][0]["url"])
