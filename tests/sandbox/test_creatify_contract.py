"""Creatify lipsyncs_v2, as documented (../shared/providers/creatify-lipsync.md), against the emulator."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
import trio
from emulator_kit import WebhookReceiver, download, follow, host, probe_bytes, wav_bytes

pytestmark = pytest.mark.anyio

AUTH = {"X-API-ID": "api-id-1", "X-API-KEY": "api-key-1"}
PATH = "/api/lipsyncs_v2/"
TERMINAL = {"done", "failed", "rejected"}
OBJECT_FIELDS = {"id", "output", "video_thumbnail", "created_at", "updated_at", "credits_used", "duration",
                 "progress", "failed_reason", "status", "preview", "editor_url", "aspect_ratio", "video_inputs",
                 "name", "media_job", "webhook_url", "model_version"}


async def stock(client) -> tuple[str, str]:
    """The first stock avatar and the first voice accent."""
    personas = (await client.get("/api/personas/", headers=AUTH)).json()
    voices = (await client.get("/api/voices/", headers=AUTH)).json()
    return personas[0]["id"], voices[0]["accents"][0]["id"]


def scene(avatar_id: str, voice: dict) -> dict:
    return {"character": {"type": "avatar", "avatar_id": avatar_id, "avatar_style": "normal"}, "voice": voice}


def text_body(avatar_id: str, voice_id: str, text: str = "Hello from the sandbox, nice to meet you.",
              **fields: Any) -> dict:
    return {"video_inputs": [scene(avatar_id, {"type": "text", "input_text": text, "voice_id": voice_id})],
            "name": "job-ref-1"} | fields


async def create(client, payload: dict) -> dict:
    answer = await client.post(PATH, headers=AUTH, json=payload)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def task(client, task_id: str) -> dict:
    answer = await client.get(f"{PATH}{task_id}/", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def finish(client, task_id: str) -> tuple[list[str], dict]:
    return await follow(lambda: task(client, task_id), TERMINAL)


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-ID": "api-id-1"}, {"X-API-KEY": "api-key-1"},
                                     {"X-API-ID": "", "X-API-KEY": "api-key-1"},
                                     {"Authorization": "Bearer api-key-1"}])
@pytest.mark.parametrize("method,path", [("POST", PATH), ("GET", PATH), ("GET", f"{PATH}{uuid.uuid4()}/"),
                                         ("GET", "/api/personas/"), ("GET", "/api/voices/"),
                                         ("GET", "/api/remaining_credits/")])
async def test_both_headers_are_required(emu, headers, method, path):
    answer = await emu.client.request(method, path, headers=headers, json={})
    assert answer.status_code == 401
    assert set(answer.json()) == {"detail"}


async def test_wrong_credentials_are_refused(emu):
    emu.configure(valid_tokens=("api-key-1",))
    answer = await emu.client.get("/api/voices/", headers={"X-API-ID": "api-id-1", "X-API-KEY": "wrong"})
    assert answer.status_code in (401, 403)
    assert set(answer.json()) == {"detail"}
    assert (await emu.client.get("/api/voices/", headers=AUTH)).status_code == 200


# -- catalogue endpoints ------------------------------------------------------------------------


async def test_personas_voices_and_credits_have_the_documented_shapes(emu):
    emu.configure(credits=100)
    personas = (await emu.client.get("/api/personas/", headers=AUTH)).json()
    assert len(personas) >= 2
    for persona in personas:
        assert set(persona) >= {"id", "creator_name", "gender", "age_range", "location", "style", "video_scene",
                                "keywords", "is_active", "process_status", "failed_reason", "type"}
        uuid.UUID(persona["id"])
        assert persona["gender"] in ("m", "f", "nb")
    voices = (await emu.client.get("/api/voices/", headers=AUTH)).json()
    assert voices and all(set(v) >= {"name", "gender", "accents"} for v in voices)
    assert all(set(a) >= {"id", "accent_name", "preview_url"} for v in voices for a in v["accents"])
    credits = (await emu.client.get("/api/remaining_credits/", headers=AUTH)).json()
    assert credits == {"remaining_credits": 100}


async def test_paths_without_the_trailing_slash_redirect(emu):
    answer = await emu.client.get("/api/voices", headers=AUTH)
    assert answer.status_code == 301
    assert answer.headers["location"].endswith("/api/voices/")


# -- create validation --------------------------------------------------------------------------


async def test_create_answers_201_with_the_full_object(emu):
    avatar, voice = await stock(emu.client)
    payload = text_body(avatar, voice, webhook_url="http://127.0.0.1:9/hook")
    created = await create(emu.client, payload)
    assert set(created) >= OBJECT_FIELDS
    uuid.UUID(created["id"])
    assert created["status"] == "pending"
    assert created["output"] is None and created["failed_reason"] is None
    assert isinstance(created["progress"], str)
    assert created["aspect_ratio"] == "9x16" and created["model_version"] == "standard"
    assert created["name"] == "job-ref-1" and created["webhook_url"] == "http://127.0.0.1:9/hook"
    assert created["video_inputs"] == payload["video_inputs"]
    assert isinstance(created["credits_used"], int) and isinstance(created["duration"], int)


def _cases(avatar: str, voice: str) -> list[tuple[dict, tuple[str, ...]]]:
    good = text_body(avatar, voice)
    sc = good["video_inputs"][0]
    return [
        ({}, ("video_inputs",)),
        ({"video_inputs": []}, ("video_inputs",)),
        ({"video_inputs": [{"voice": sc["voice"]}]}, ("video_inputs", "character")),
        ({"video_inputs": [scene(avatar, {"type": "text", "voice_id": voice})]}, ("video_inputs", "voice", "input_text")),
        ({"video_inputs": [scene(avatar, {"type": "text", "input_text": "hi"})]}, ("video_inputs", "voice", "voice_id")),
        ({"video_inputs": [scene(avatar, {"type": "text", "input_text": "hi", "voice_id": str(uuid.uuid4())})]},
         ("video_inputs", "voice", "voice_id")),
        ({"video_inputs": [scene(avatar, {"type": "audio"})]}, ("video_inputs", "voice", "audio_url")),
        ({"video_inputs": [scene(avatar, {"type": "audio", "audio_url": "not a url"})]},
         ("video_inputs", "voice", "audio_url")),
        ({"video_inputs": [scene(avatar, {"type": "song"})]}, ("video_inputs", "voice", "type")),
        ({"video_inputs": [{"character": {"type": "avatar"}, "voice": sc["voice"]}]},
         ("video_inputs", "character", "avatar_id")),
        ({"video_inputs": [scene(str(uuid.uuid4()), sc["voice"])]}, ("video_inputs", "character", "avatar_id")),
        (good | {"aspect_ratio": "4x3"}, ("aspect_ratio",)),
        (good | {"model_version": "aurora_v9"}, ("model_version",)),
        (good | {"name": "n" * 256}, ("name",)),
        (good | {"webhook_url": "not a url"}, ("webhook_url",)),
    ]


@pytest.mark.parametrize("case", range(15))
async def test_invalid_creates_are_400_field_errors(emu, case):
    avatar, voice = await stock(emu.client)
    payload, path = _cases(avatar, voice)[case]
    answer = await emu.client.post(PATH, headers=AUTH, json=payload)
    assert answer.status_code == 400
    node: Any = answer.json()
    for key in path:
        if isinstance(node, list):
            node = next(item for item in node if item)
        assert key in node, (key, answer.json())
        node = node[key]
    assert node and isinstance(node, list | dict)
    assert (await emu.stats())["creates"].get("creatify", 0) == 0


# -- lifecycle ----------------------------------------------------------------------------------


async def test_a_task_goes_pending_in_queue_running_done(emu, tmp_path):
    emu.configure(job_seconds=10.0, time_scale=100.0, max_jobs=1)  # the clock only moves by advance()
    avatar, voice = await stock(emu.client)
    first = await create(emu.client, text_body(avatar, voice))
    second = await create(emu.client, text_body(avatar, voice, name="job-ref-2"))
    assert first["status"] == second["status"] == "pending"
    steps = []
    for advance in (0.0, 1.0, 5.0, 5.0, 10.0):
        emu.advance(advance)
        steps.append([(await task(emu.client, t["id"]))["status"] for t in (first, second)])
    assert steps == [["pending", "pending"], ["running", "in_queue"], ["running", "in_queue"],
                     ["done", "running"], ["done", "done"]]
    done = await task(emu.client, second["id"])
    assert done["progress"] == "1.00"
    assert done["output"] and done["failed_reason"] is None
    result = await download(emu.client, done["output"])
    info = await probe_bytes(result.content, tmp_path)
    assert info.has_video and info.has_audio
    assert done["duration"] == max(1, round(info.duration))


async def test_progress_is_a_string_fraction_that_grows(emu):
    emu.configure(job_seconds=10.0, time_scale=100.0)
    avatar, voice = await stock(emu.client)
    created = await create(emu.client, text_body(avatar, voice))
    values = []
    for advance in (0.0, 1.5, 4.0, 4.0, 10.0):
        emu.advance(advance)
        values.append((await task(emu.client, created["id"]))["progress"])
    assert all(isinstance(v, str) for v in values)
    numbers = [float(v) for v in values]
    assert numbers == sorted(numbers) and numbers[0] == 0.0 and numbers[-1] == 1.0
    assert 0.0 < numbers[2] < 1.0


async def test_unknown_tasks_are_404(emu):
    for path in (f"{PATH}{uuid.uuid4()}/", f"{PATH}not-a-uuid/"):
        answer = await emu.client.get(path, headers=AUTH)
        assert answer.status_code == 404
        assert set(answer.json()) == {"detail"}


async def test_tasks_are_listed_by_ids(emu):
    avatar, voice = await stock(emu.client)
    ids = [(await create(emu.client, text_body(avatar, voice, name=f"n{i}")))["id"] for i in range(3)]
    answer = await emu.client.get(PATH, headers=AUTH, params={"ids": ",".join(ids[:2])})
    assert answer.status_code == 200
    assert sorted(item["id"] for item in answer.json()) == sorted(ids[:2])
    everything = (await emu.client.get(PATH, headers=AUTH)).json()
    assert sorted(item["id"] for item in everything) == sorted(ids)
    other = await emu.client.get(PATH, headers={"X-API-ID": "someone-else", "X-API-KEY": "k"},
                                 params={"ids": ids[0]})
    assert other.json() == []
    too_many = await emu.client.get(PATH, headers=AUTH, params={"ids": ",".join(str(uuid.uuid4()) for _ in range(101))})
    assert too_many.status_code == 400


# -- audio voices, output media -----------------------------------------------------------------


async def test_an_audio_voice_renders_the_fetched_audio(emu, tmp_path):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    avatar, _ = await stock(emu.client)
    audio_url = await host(emu, wav_bytes(2.5), "line.wav")
    created = await create(emu.client, {"video_inputs": [scene(avatar, {"type": "audio", "audio_url": audio_url})]})
    _, done = await finish(emu.client, created["id"])
    info = await probe_bytes((await download(emu.client, done["output"])).content, tmp_path)
    assert info.duration == pytest.approx(2.5, abs=0.15)
    assert done["duration"] in (2, 3)


async def test_an_unreachable_audio_url_still_renders_a_stand_in(emu, tmp_path):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    avatar, _ = await stock(emu.client)
    voice = {"type": "audio", "audio_url": "https://cdn.example.com/line.mp3"}
    created = await create(emu.client, {"video_inputs": [scene(avatar, voice)]})
    _, done = await finish(emu.client, created["id"])
    assert done["status"] == "done"
    info = await probe_bytes((await download(emu.client, done["output"])).content, tmp_path)
    assert info.has_audio and info.duration > 0


# -- credits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pricing", ["per_block", "per_second"])
@pytest.mark.parametrize("model", ["standard", "aurora_v1", "aurora_v1_fast"])
async def test_credits_follow_model_version_and_duration(emu, pricing, model):
    emu.configure(creatify_aurora_pricing=pricing, credits=1000)
    avatar, _ = await stock(emu.client)
    audio_url = await host(emu, wav_bytes(2.5), "line.wav")
    created = await create(emu.client, {"video_inputs": [scene(avatar, {"type": "audio", "audio_url": audio_url})],
                                        "model_version": model})
    expected = {
        ("standard", "per_block"): 5, ("standard", "per_second"): 5,
        ("aurora_v1", "per_block"): 20, ("aurora_v1", "per_second"): math.ceil(2.5 * 1),
        ("aurora_v1_fast", "per_block"): 10, ("aurora_v1_fast", "per_second"): math.ceil(2.5 * 0.5),
    }[(model, pricing)]
    assert created["credits_used"] == expected
    left = (await emu.client.get("/api/remaining_credits/", headers=AUTH)).json()["remaining_credits"]
    assert left == 1000 - expected


async def test_long_videos_pay_per_started_block(emu):
    emu.configure(creatify_aurora_pricing="per_block")
    avatar, voice = await stock(emu.client)
    text = "word " * 100  # well over 15 s of speech
    created = await create(emu.client, text_body(avatar, voice, text=text, model_version="aurora_v1"))
    assert created["duration"] > 15
    assert created["credits_used"] == 20 * math.ceil(created["duration"] / 15)


async def test_insufficient_credits_refuse_the_create(emu):
    emu.configure(credits=7)
    avatar, voice = await stock(emu.client)
    await create(emu.client, text_body(avatar, voice))
    answer = await emu.client.post(PATH, headers=AUTH, json=text_body(avatar, voice, name="other"))
    assert answer.status_code in (400, 402, 403)
    assert "credit" in str(answer.json()).lower()
    assert (await emu.stats())["creates"]["creatify"] == 1


# -- moderation and webhooks --------------------------------------------------------------------


async def test_moderated_text_fails_with_a_reason_and_a_refund(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01, moderate=("forbidden",), credits=5)
    avatar, voice = await stock(emu.client)
    created = await create(emu.client, text_body(avatar, voice, text="This has a forbidden word."))
    _, failed = await finish(emu.client, created["id"])
    assert failed["status"] == "failed"
    assert "moderation" in failed["failed_reason"].lower()
    assert failed["output"] is None
    credits = (await emu.client.get("/api/remaining_credits/", headers=AUTH)).json()
    assert credits == {"remaining_credits": 5}


async def test_webhooks_report_done_and_failed(emu, webhook_receiver):
    emu.configure(job_seconds=1.0, time_scale=0.01, moderate=("forbidden",))
    avatar, voice = await stock(emu.client)
    good = await create(emu.client, text_body(avatar, voice, webhook_url=webhook_receiver.url))
    bad = await create(emu.client, text_body(avatar, voice, text="forbidden!", webhook_url=webhook_receiver.url))
    posts = await webhook_receiver.wait(2)
    by_id = {post["id"]: post for post in posts}
    assert set(by_id) == {good["id"], bad["id"]}
    for post in posts:
        assert set(post) == {"id", "status", "failed_reason", "output"}
    assert by_id[good["id"]]["status"] == "done" and by_id[good["id"]]["output"]
    assert by_id[bad["id"]]["status"] == "failed" and by_id[bad["id"]]["failed_reason"]
    assert by_id[bad["id"]]["output"] is None


async def test_injected_429s_use_the_drf_shape(emu):
    emu.configure(rate_429=1.0)
    answer = await emu.client.get("/api/voices/", headers=AUTH)
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert set(answer.json()) == {"detail"}


@pytest.fixture
def webhook_receiver(emu) -> WebhookReceiver:
    receiver = WebhookReceiver()
    emu.sandbox.callback_transport = receiver.transport()
    return receiver


@pytest.mark.slow
async def test_over_a_real_socket_the_webhook_reaches_a_loopback_server(served):
    from lipbatch.sandbox.server import serve

    served.configure(job_seconds=1.0, time_scale=0.01)
    receiver = WebhookReceiver()
    async with trio.open_nursery() as nursery:
        base = await nursery.start(serve, receiver.app)
        avatar, voice = await stock(served.client)
        created = await create(served.client, text_body(avatar, voice, webhook_url=f"{base}/hook"))
        (post,) = await receiver.wait(1)
        nursery.cancel_scope.cancel()
    assert post["id"] == created["id"] and post["status"] == "done"
    result = await download(served.client, post["output"])
    assert result.status_code == 200 and result.content[4:8] == b"ftyp"


async def test_an_expired_output_url_is_refreshed_by_polling_again(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01, download_ttl=5.0)
    avatar, voice = await stock(emu.client)
    created = await create(emu.client, text_body(avatar, voice))
    _, done = await finish(emu.client, created["id"])
    emu.advance(10.0)
    assert (await download(emu.client, done["output"])).status_code >= 400
    fresh = (await task(emu.client, created["id"]))["output"]
    assert fresh != done["output"]
    assert (await download(emu.client, fresh)).status_code == 200


async def test_unlimited_credits_still_count_down(emu):
    avatar, voice = await stock(emu.client)
    before = (await emu.client.get("/api/remaining_credits/", headers=AUTH)).json()["remaining_credits"]
    created = await create(emu.client, text_body(avatar, voice))
    after = (await emu.client.get("/api/remaining_credits/", headers=AUTH)).json()["remaining_credits"]
    assert before - after == created["credits_used"] > 0
