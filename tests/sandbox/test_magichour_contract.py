"""Magic Hour lip sync, as documented (../shared/providers/magichour-lipsync.md), against the emulator."""

from __future__ import annotations

import copy
import math
from datetime import datetime
from typing import Any

import httpx
import pytest
from emulator_kit import download, follow, in_order, probe_bytes, video_bytes, wav_bytes

pytestmark = pytest.mark.anyio

TOKEN = "mhk_live_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIFECYCLE = ["queued", "rendering", "complete"]
TERMINAL = {"complete", "error", "canceled"}


def iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def upload(client: httpx.AsyncClient, data: bytes, kind: str, extension: str) -> str:
    answer = await client.post("/v1/files/upload-urls", headers=AUTH,
                               json={"items": [{"type": kind, "extension": extension}]})
    assert answer.status_code == 200, answer.text
    item = answer.json()["items"][0]
    put = await client.put(httpx.URL(item["upload_url"]), content=data)
    assert put.status_code in (200, 204), put.text
    return item["file_path"]


async def inputs(client: httpx.AsyncClient, *, video: bytes | None = None, audio_seconds: float = 1.0) -> dict:
    return {
        "video_source": "file",
        "video_file_path": await upload(client, video or video_bytes(), "video", "mp4"),
        "audio_file_path": await upload(client, wav_bytes(audio_seconds), "audio", "wav"),
    }


def body(assets: dict, **fields: Any) -> dict:
    return {"name": "job-ref-1", "start_seconds": 0, "end_seconds": 1.0, "assets": assets,
            "style": {"generation_mode": "lite"}} | fields


async def create(client: httpx.AsyncClient, payload: dict) -> dict:
    answer = await client.post("/v1/lip-sync", headers=AUTH, json=payload)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def project(client: httpx.AsyncClient, project_id: str) -> dict:
    answer = await client.get(f"/v1/video-projects/{project_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def finish(client: httpx.AsyncClient, project_id: str) -> tuple[list[str], dict]:
    return await follow(lambda: project(client, project_id), TERMINAL)


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
@pytest.mark.parametrize("method,path", [("POST", "/v1/files/upload-urls"), ("POST", "/v1/lip-sync"),
                                         ("GET", "/v1/video-projects/x"), ("DELETE", "/v1/video-projects/x")])
async def test_requests_without_a_bearer_key_are_unauthorized(emu, headers, method, path):
    answer = await emu.client.request(method, path, headers=headers, json={})
    assert answer.status_code == 401
    assert answer.json() == {"message": "Unauthorized"}


async def test_keys_outside_the_accepted_set_are_unauthorized(emu):
    emu.configure(valid_tokens=("mhk_live_good",))
    bad = await emu.client.post("/v1/files/upload-urls", headers=AUTH,
                                json={"items": [{"type": "video", "extension": "mp4"}]})
    good = await emu.client.post("/v1/files/upload-urls", headers={"Authorization": "Bearer mhk_live_good"},
                                 json={"items": [{"type": "video", "extension": "mp4"}]})
    assert bad.status_code == 401 and bad.json() == {"message": "Unauthorized"}
    assert good.status_code == 200


# -- upload flow --------------------------------------------------------------------------------


async def test_upload_urls_come_back_in_request_order_with_asset_paths(emu):
    items = [{"type": "video", "extension": "mp4"}, {"type": "audio", "extension": "mp3"},
             {"type": "image", "extension": "png"}]
    answer = await emu.client.post("/v1/files/upload-urls", headers=AUTH, json={"items": items})
    assert answer.status_code == 200
    got = answer.json()["items"]
    assert len(got) == 3
    for item, asked in zip(got, items, strict=True):
        assert item["file_path"].startswith("api-assets/")
        assert item["file_path"].endswith(f"/{asked['type']}.{asked['extension']}")
        assert httpx.URL(item["upload_url"]).path.endswith(item["file_path"])
        assert iso(item["expires_at"]) > 0
    assert len({item["file_path"] for item in got}) == 3


@pytest.mark.parametrize("payload,field", [
    (None, "body"),
    ({}, "items"),
    ({"items": []}, "items"),
    ({"items": [{"type": "gif", "extension": "gif"}]}, "type"),
    ({"items": [{"type": "video"}]}, "extension"),
    ({"items": [{"type": "video", "extension": "MP4"}]}, "extension"),
    ({"items": [{"type": "video", "extension": ".mp4"}]}, "extension"),
    ({"items": [{"type": "video", "extension": "mp3"}]}, "extension"),
    ({"items": [{"type": "audio", "extension": "mp4"}]}, "extension"),
])
async def test_bad_upload_requests_are_400_naming_the_field(emu, payload, field):
    answer = await emu.client.post("/v1/files/upload-urls", headers=AUTH, json=payload)
    assert answer.status_code == 400
    assert field in answer.json()["message"].lower()


async def test_presigned_put_needs_no_key_and_the_job_uses_the_uploaded_bytes(emu, tmp_path):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    assets = await inputs(emu.client, video=video_bytes(seconds=3.0), audio_seconds=2.0)
    created = await create(emu.client, body(assets, start_seconds=0.5, end_seconds=2.5))
    _, done = await finish(emu.client, created["id"])
    assert done["status"] == "complete"
    result = await download(emu.client, done["downloads"][0]["url"])
    assert result.status_code == 200
    info = await probe_bytes(result.content, tmp_path)
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(2.0, abs=0.15)


async def test_uploaded_inputs_are_gone_after_seven_days(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    assets = await inputs(emu.client)
    emu.advance(7 * 86400 + 60)
    answer = await emu.client.post("/v1/lip-sync", headers=AUTH, json=body(assets))
    assert answer.status_code in (400, 422)
    assert "video_file_path" in answer.json()["message"]


# -- create validation --------------------------------------------------------------------------

_ASSETS = {"video_source": "file", "video_file_path": "https://cdn.example.com/face.mp4",
           "audio_file_path": "https://cdn.example.com/line.mp3"}


def _without(path: str) -> dict:
    payload = copy.deepcopy(body(_ASSETS))
    *parents, leaf = path.split(".")
    node = payload
    for part in parents:
        node = node[part]
    del node[leaf]
    return payload


def _with(path: str, value: Any) -> dict:
    payload = copy.deepcopy(body(_ASSETS))
    *parents, leaf = path.split(".")
    node = payload
    for part in parents:
        node = node[part]
    node[leaf] = value
    return payload


@pytest.mark.parametrize("payload,field", [
    (_without("start_seconds"), "start_seconds"),
    (_with("start_seconds", -0.5), "start_seconds"),
    (_with("start_seconds", "zero"), "start_seconds"),
    (_without("end_seconds"), "end_seconds"),
    (_with("end_seconds", 0.05), "end_seconds"),
    (_with("start_seconds", 2) | {"end_seconds": 2}, "end_seconds"),
    (_with("start_seconds", 3) | {"end_seconds": 2}, "end_seconds"),
    (_without("assets"), "assets"),
    (_without("assets.video_source"), "video_source"),
    (_with("assets.video_source", "vimeo"), "video_source"),
    (_without("assets.video_file_path"), "video_file_path"),
    (_with("assets.video_source", "youtube"), "youtube_url"),
    (_without("assets.audio_file_path"), "audio_file_path"),
    (_with("assets.audio_file_path", ""), "audio_file_path"),
    (_with("max_fps_limit", 0), "max_fps_limit"),
    (_with("style.generation_mode", "ultra"), "generation_mode"),
])
async def test_invalid_creates_are_400_naming_the_field(emu, payload, field):
    answer = await emu.client.post("/v1/lip-sync", headers=AUTH, json=payload)
    assert answer.status_code == 400
    assert field in answer.json()["message"]
    assert (await emu.stats())["creates"].get("magichour", 0) == 0


async def test_a_missing_body_is_400(emu):
    answer = await emu.client.post("/v1/lip-sync", headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["message"]


async def test_deprecated_width_and_height_are_still_accepted(emu):
    created = await create(emu.client, body(_ASSETS, width=512, height=960))
    assert created["id"]


# -- create answer and credits ------------------------------------------------------------------


@pytest.mark.parametrize("mode,limit,seconds,expected", [
    ("lite", None, 1.0, 30), ("standard", None, 2.0, 60), ("pro", None, 1.0, 60), ("lite", 12, 2.0, 24),
])
async def test_create_charges_an_estimate_at_30_fps(emu, mode, limit, seconds, expected):
    payload = body(_ASSETS, end_seconds=seconds, style={"generation_mode": mode})
    if limit:
        payload["max_fps_limit"] = limit
    created = await create(emu.client, payload)
    assert set(created) >= {"id", "credits_charged", "estimated_frame_cost"}
    assert created["credits_charged"] == expected
    assert created["estimated_frame_cost"] == expected


async def test_out_of_credits_is_402_payment_required(emu):
    emu.configure(credits=50)
    first = await emu.client.post("/v1/lip-sync", headers=AUTH, json=body(_ASSETS))
    second = await emu.client.post("/v1/lip-sync", headers=AUTH, json=body(_ASSETS, name="other"))
    assert first.status_code == 200
    assert second.status_code == 402
    assert second.json() == {"message": "Payment required"}
    assert (await emu.stats())["creates"]["magichour"] == 1


async def test_completion_settles_credits_to_rendered_frames(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    assets = await inputs(emu.client, video=video_bytes(seconds=2.0, fps=10))
    created = await create(emu.client, body(assets, end_seconds=1.0))
    assert created["credits_charged"] == 30
    _, done = await finish(emu.client, created["id"])
    assert done["credits_charged"] == 10  # 1 s at the input's 10 fps
    assert done["total_frame_cost"] == 10
    assert done["fps"] == pytest.approx(10)


async def test_a_failed_render_refunds_its_credits(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01, credits=40)
    assets = await inputs(emu.client, video=b"\x00\x00\x00\x18ftypmp42 not a video")
    created = await create(emu.client, body(assets))
    refused = await emu.client.post("/v1/lip-sync", headers=AUTH, json=body(_ASSETS, name="other"))
    assert refused.status_code == 402
    seen, failed = await finish(emu.client, created["id"])
    assert failed["status"] == "error"
    assert seen[-2:] == ["rendering", "error"] or seen == ["error"]
    assert failed["error"]["code"] and failed["error"]["message"]
    assert failed["credits_charged"] == 0
    assert failed["downloads"] == []
    again = await emu.client.post("/v1/lip-sync", headers=AUTH, json=body(_ASSETS, name="other"))
    assert again.status_code == 200


# -- status, lifecycle, concurrency -------------------------------------------------------------


async def test_a_project_goes_queued_rendering_complete_with_every_documented_field(emu, tmp_path):
    emu.configure(job_seconds=10.0, time_scale=100.0, max_jobs=1)  # the clock only moves by advance()
    assets = await inputs(emu.client)
    first = await create(emu.client, body(assets))
    second = await create(emu.client, body(assets, name="job-ref-2"))
    waiting = await project(emu.client, second["id"])
    assert waiting["downloads"] == [] and waiting["download"] is None
    steps = [[(await project(emu.client, first["id"]))["status"], waiting["status"]]]
    for advance in (5.0, 5.0, 10.0):
        emu.advance(advance)
        steps.append([(await project(emu.client, p["id"]))["status"] for p in (first, second)])
    assert steps == [["rendering", "queued"], ["rendering", "queued"], ["complete", "rendering"],
                     ["complete", "complete"]]
    done = await project(emu.client, second["id"])
    assert set(done) >= {"id", "name", "status", "type", "created_at", "width", "height", "enabled",
                         "start_seconds", "end_seconds", "credits_charged", "total_frame_cost", "fps",
                         "error", "downloads", "download"}
    assert done["id"] == second["id"] and done["type"] == "LIP_SYNC" and done["name"] == "job-ref-2"
    assert done["enabled"] is True and done["error"] is None
    assert done["start_seconds"] == 0 and done["end_seconds"] == 1.0
    assert iso(done["created_at"]) > 0
    assert done["download"]["url"] == done["downloads"][0]["url"]
    result = await download(emu.client, done["downloads"][0]["url"])
    info = await probe_bytes(result.content, tmp_path)
    assert info.duration == pytest.approx(1.0, abs=0.15)
    assert (done["width"], done["height"]) == (info.width, info.height)


async def test_polled_statuses_only_move_forward(emu):
    emu.configure(job_seconds=2.0, time_scale=0.02)
    created = await create(emu.client, body(_ASSETS))
    seen, _ = await finish(emu.client, created["id"])
    assert in_order(seen, LIFECYCLE) and seen[-1] == "complete" and "draft" not in seen


async def test_the_creator_plan_renders_three_at_once_and_queues_the_rest(emu):
    emu.configure(job_seconds=1000.0, time_scale=0.01)
    ids = [(await create(emu.client, body(_ASSETS, name=f"n{i}")))["id"] for i in range(4)]
    statuses = [(await project(emu.client, pid))["status"] for pid in ids]
    assert statuses.count("rendering") == 3 and statuses[3] == "queued"


async def test_accounts_have_their_own_concurrency(emu):
    emu.configure(job_seconds=1000.0, time_scale=0.01, max_jobs=1)
    other = {"Authorization": "Bearer mhk_live_other"}
    mine = await create(emu.client, body(_ASSETS))
    theirs = (await emu.client.post("/v1/lip-sync", headers=other, json=body(_ASSETS))).json()
    assert (await project(emu.client, mine["id"]))["status"] == "rendering"
    answer = await emu.client.get(f"/v1/video-projects/{theirs['id']}", headers=other)
    assert answer.json()["status"] == "rendering"
    hidden = await emu.client.get(f"/v1/video-projects/{theirs['id']}", headers=AUTH)
    assert hidden.status_code == 404


async def test_a_default_name_is_given_when_none_is_sent(emu):
    payload = body(_ASSETS)
    del payload["name"]
    created = await create(emu.client, payload)
    assert (await project(emu.client, created["id"]))["name"].startswith("Lip Sync")


async def test_moderation_words_do_not_apply_to_magic_hour(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01, moderate=("forbidden",))
    created = await create(emu.client, body(_ASSETS, name="forbidden words here"))
    _, done = await finish(emu.client, created["id"])
    assert done["status"] == "complete"


async def test_unknown_projects_are_404_not_found(emu):
    for method in ("GET", "DELETE"):
        answer = await emu.client.request(method, "/v1/video-projects/cuid-nope", headers=AUTH)
        assert answer.status_code == 404
        assert answer.json() == {"message": "Not Found"}


async def test_delete_answers_204_and_disables_the_project(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    created = await create(emu.client, body(_ASSETS))
    await finish(emu.client, created["id"])
    answer = await emu.client.delete(f"/v1/video-projects/{created['id']}", headers=AUTH)
    assert answer.status_code == 204 and answer.content == b""
    after = await project(emu.client, created["id"])
    assert after["enabled"] is False and after["downloads"] == []


# -- result URLs --------------------------------------------------------------------------------


async def test_download_urls_expire_after_24_hours_by_default(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    created = await create(emu.client, body(_ASSETS))
    _, done = await finish(emu.client, created["id"])
    entry = done["downloads"][0]
    lifetime = iso(entry["expires_at"]) - iso(done["created_at"])  # wall-clock stamps of virtual instants
    assert lifetime == pytest.approx(86400 * emu.sandbox.config.time_scale, abs=2)


async def test_expired_download_urls_fail_and_a_new_get_gives_fresh_ones(emu, tmp_path):
    emu.configure(job_seconds=1.0, time_scale=0.01, download_ttl=5.0)
    created = await create(emu.client, body(_ASSETS))
    _, done = await finish(emu.client, created["id"])
    old = done["downloads"][0]
    emu.advance(10.0)
    stale = await download(emu.client, old["url"])
    assert stale.status_code >= 400
    fresh = (await project(emu.client, created["id"]))["downloads"][0]
    assert fresh["url"] != old["url"]
    assert iso(fresh["expires_at"]) >= iso(old["expires_at"])
    result = await download(emu.client, fresh["url"])
    assert result.status_code == 200
    await probe_bytes(result.content, tmp_path)


# -- shared middleware behaviour in this provider's shape ---------------------------------------


async def test_injected_429s_carry_retry_after_and_the_message_shape(emu):
    emu.configure(rate_429=1.0)
    answer = await emu.client.post("/v1/lip-sync", headers=AUTH, json=body(_ASSETS))
    assert answer.status_code == 429
    assert float(answer.headers["retry-after"]) >= 0
    assert set(answer.json()) == {"message"}


async def test_repeated_identical_creates_are_counted_as_duplicates(emu):
    await create(emu.client, body(_ASSETS))
    await create(emu.client, body(_ASSETS))
    stats = await emu.stats()
    assert stats["creates"]["magichour"] == 2
    assert stats["duplicate_creates"] >= 1


async def test_each_result_lasts_its_window_and_pays_its_frames(emu, tmp_path):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    created = []
    for seconds in (1.0, 1.5):
        assets = await inputs(emu.client, audio_seconds=seconds)
        created.append((seconds, await create(emu.client, body(assets, end_seconds=seconds))))
    for seconds, job in created:
        _, done = await finish(emu.client, job["id"])
        result = await download(emu.client, done["downloads"][0]["url"])
        info = await probe_bytes(result.content, tmp_path, f"{job['id']}.mp4")
        assert info.duration == pytest.approx(seconds, abs=0.15)
        assert done["credits_charged"] == math.ceil(seconds * 10)



@pytest.mark.slow
async def test_over_a_real_socket_upload_create_and_download(served, tmp_path):
    served.configure(job_seconds=1.0, time_scale=0.01)
    assets = await inputs(served.client, audio_seconds=1.0)
    created = await create(served.client, body(assets))
    _, done = await finish(served.client, created["id"])
    result = await download(served.client, done["downloads"][0]["url"])
    info = await probe_bytes(result.content, tmp_path)
    assert info.duration == pytest.approx(1.0, abs=0.15)
