"""PixVerse lip sync on AI/ML API, as documented (../shared/providers/aimlapi-pixverse-lipsync.md)."""

from __future__ import annotations

import urllib.parse
from datetime import datetime
from typing import Any

import pytest
from emulator_kit import data_uri, download, follow, in_order, probe_bytes, video_bytes, wav_bytes

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer aiml-test-key"}
PATH = "/v2/video/generations"
UNAUTHORIZED = ("This request requires a valid API key. You can create a new API key on the Billing page: "
                "https://aimlapi.com/app/keys")
OUT_OF_CREDITS = ("You've run out of credits. Please top up your balance or update your payment method "
                  "to continue: https://aimlapi.com/app/billing/")
SPEAKERS = ["Harper", "Ava", "Isabella", "Sophia", "Emily", "Chloe", "Julia", "Mason", "Jack", "Liam", "James",
            "Oliver", "Adrian", "Ethan", "Auto"]
VIDEO = "https://cdn.example.com/racoon-in-the-forest.mp4"


def tts(text: str = "Through the forest, past the roots, no time to stop!", **extra: Any) -> dict:
    return {"model": "pixverse/lip-sync", "video_url": VIDEO, "lip_sync_tts_content": text,
            "lip_sync_tts_speaker": "Oliver"} | extra


def with_audio(audio_url: str, video_url: str = VIDEO) -> dict:
    return {"model": "pixverse/lip-sync", "video_url": video_url, "audio_url": audio_url}


async def create(client, payload: dict, headers: dict = AUTH) -> dict:
    answer = await client.post(PATH, headers=headers, json=payload)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def fetch(client, generation_id: str) -> dict:
    answer = await client.get(PATH, headers=AUTH, params={"generation_id": generation_id})
    assert answer.status_code == 200, answer.text
    return answer.json()


def assert_generic_error(answer, status: int, message: str | None = None) -> dict:
    assert answer.status_code == status
    error = answer.json()
    assert set(error) >= {"message", "path", "requestId", "statusCode", "timestamp"}
    assert int(error["statusCode"]) == status
    assert error["path"] == PATH
    datetime.fromisoformat(error["timestamp"].replace("Z", "+00:00"))
    if message is not None:
        assert error["message"] == message
    return error


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "aiml-test-key"}])
async def test_requests_without_a_bearer_key_are_401(emu, headers):
    for method, params, payload in (("POST", None, tts()), ("GET", {"generation_id": "x"}, None)):
        answer = await emu.client.request(method, PATH, headers=headers, params=params, json=payload)
        assert_generic_error(answer, 401, UNAUTHORIZED)
    billing = await emu.client.get("/v2/billing", headers=headers)
    assert billing.status_code == 401 and billing.json()["message"] == UNAUTHORIZED


async def test_keys_outside_the_accepted_set_are_401(emu):
    emu.configure(valid_tokens=("good",))
    assert_generic_error(await emu.client.post(PATH, headers=AUTH, json=tts()), 401, UNAUTHORIZED)
    assert (await emu.client.post(PATH, headers={"Authorization": "Bearer good"}, json=tts())).status_code == 200


# -- validation ---------------------------------------------------------------------------------


def _drop(payload: dict, *keys: str) -> dict:
    return {k: v for k, v in payload.items() if k not in keys}


@pytest.mark.parametrize("payload,field", [
    (_drop(tts(), "model"), "model"),
    (tts(model="pixverse/v5/text-to-video-typo"), "model"),
    (_drop(tts(), "video_url"), "video_url"),
    (tts(video_url="ftp://files.example.com/a.mp4"), "video_url"),
    (tts(video_url="http://plain.example.com/a.mp4"), "video_url"),
    (tts(video_url="not a url"), "video_url"),
    (tts(audio_url="https://cdn.example.com/a.mp3"), "audio_url"),
    ({"model": "pixverse/lip-sync", "video_url": VIDEO}, "audio_url"),
    (_drop(tts(), "lip_sync_tts_content"), "lip_sync_tts_content"),
    (_drop(tts(), "lip_sync_tts_speaker"), "lip_sync_tts_speaker"),
    (tts(lip_sync_tts_speaker="Bob"), "lip_sync_tts_speaker"),
    (tts(lip_sync_tts_content=""), "lip_sync_tts_content"),
    (with_audio("mailto:someone@example.com"), "audio_url"),
])
async def test_invalid_bodies_are_400_body_validation_errors(emu, payload, field):
    answer = await emu.client.post(PATH, headers=AUTH, json=payload)
    error = assert_generic_error(answer, 400, "Body validation error!")
    assert field in str(error.get("errors"))
    assert (await emu.stats())["creates"].get("aimlapi", 0) == 0


async def test_a_bad_speaker_names_the_enum(emu):
    answer = await emu.client.post(PATH, headers=AUTH, json=tts(lip_sync_tts_speaker="Bob"))
    details = str(answer.json()["errors"])
    assert "Invalid enum value" in details and "'Bob'" in details and "'Harper'" in details


@pytest.mark.parametrize("speaker", SPEAKERS)
async def test_every_documented_speaker_is_accepted(emu, speaker):
    await create(emu.client, tts(lip_sync_tts_speaker=speaker))


async def test_poll_without_generation_id_is_400_and_unknown_ids_are_404(emu):
    assert (await emu.client.get(PATH, headers=AUTH)).status_code == 400
    answer = await emu.client.get(PATH, headers=AUTH, params={"generation_id": "nope"})
    assert_generic_error(answer, 404)


# -- create, ids, lifecycle ---------------------------------------------------------------------


async def test_create_answers_queued_with_usage_and_an_id_that_needs_encoding(emu):
    created = await create(emu.client, tts())
    assert created["status"] == "queued"
    assert created["meta"]["usage"]["credits_used"] > 0
    generation_id = created["id"]
    assert urllib.parse.quote(generation_id, safe="") != generation_id
    raw = await emu.client.get(f"{PATH}?generation_id={generation_id}", headers=AUTH)
    assert raw.status_code == 404  # sent without encoding, '+' reads as a space
    assert (await fetch(emu.client, generation_id))["id"] == generation_id


@pytest.mark.parametrize("success", ["completed", "succeeded"])
async def test_a_generation_goes_queued_generating_then_the_configured_success(emu, success, tmp_path):
    emu.configure(job_seconds=10.0, time_scale=100.0, max_jobs=1, pixverse_success_status=success)
    first = await create(emu.client, tts())
    second = await create(emu.client, with_audio(data_uri(wav_bytes(1.5), "audio/wav"),
                                                  data_uri(video_bytes(2.0), "video/mp4")))
    steps = []
    for advance in (0.0, 5.0, 5.0, 10.0):
        emu.advance(advance)
        steps.append([(await fetch(emu.client, g["id"]))["status"] for g in (first, second)])
    assert steps == [["generating", "queued"], ["generating", "queued"], [success, "generating"],
                     [success, success]]
    done = await fetch(emu.client, second["id"])
    assert done["error"] is None
    url = done["video"]["url"]
    assert "%2F" in httpx_path(url)
    result = await download(emu.client, url)
    assert result.status_code == 200
    info = await probe_bytes(result.content, tmp_path)
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(1.5, abs=0.15)


@pytest.mark.parametrize("success", ["completed", "succeeded"])
async def test_polled_statuses_only_move_forward(emu, success):
    emu.configure(job_seconds=2.0, time_scale=0.02, pixverse_success_status=success)
    created = await create(emu.client, tts())
    seen, _ = await follow(lambda: fetch(emu.client, created["id"]), {success, "error"})
    assert in_order(seen, ["queued", "generating", success]) and seen[-1] == success


def httpx_path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


async def test_tts_results_last_longer_for_longer_texts(emu, tmp_path):
    emu.configure(job_seconds=1.0, time_scale=0.01)
    durations = []
    for text in ("Hi there.", "Through the forest, past the roots, I have got to get there fast, no time to stop!"):
        created = await create(emu.client, tts(text))
        _, done = await follow(lambda cid=created["id"]: fetch(emu.client, cid), {"succeeded", "error"})
        result = await download(emu.client, done["video"]["url"])
        durations.append((await probe_bytes(result.content, tmp_path, f"{len(text)}.mp4")).duration)
    assert durations[0] < durations[1]


# -- moderation and credits ---------------------------------------------------------------------


async def test_moderated_text_ends_in_error_with_a_moderation_message_and_a_refund(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01, moderate=("forbidden",), credits=2_000_000)
    created = await create(emu.client, tts("This line has a forbidden word."))
    seen, failed = await follow(lambda: fetch(emu.client, created["id"]), {"succeeded", "error"})
    assert failed["status"] == "error" and failed["video"] is None
    assert set(failed["error"]) >= {"name", "message"}
    assert "moderation" in failed["error"]["message"].lower()
    again = await emu.client.post(PATH, headers=AUTH, json=tts())
    assert again.status_code == 200  # the failed generation was not charged


async def test_running_out_of_credits_is_403(emu):
    emu.configure(credits=2_000_000)
    await create(emu.client, tts())
    answer = await emu.client.post(PATH, headers=AUTH, json=tts("another line"))
    assert_generic_error(answer, 403, OUT_OF_CREDITS)
    assert (await emu.stats())["creates"]["aimlapi"] == 1


async def test_billing_reports_the_balance_in_usd(emu):
    emu.configure(credits=6_000_000)
    before = await emu.client.get("/v2/billing", headers=AUTH)
    assert before.status_code == 200
    assert before.json() == {"current_balance": pytest.approx(3.0), "currency": "USD"}
    created = await create(emu.client, tts())
    after = (await emu.client.get("/v2/billing", headers=AUTH)).json()
    spent = created["meta"]["usage"]["credits_used"] / 2_000_000
    assert after["current_balance"] == pytest.approx(3.0 - spent)


async def test_injected_429s_use_the_generic_error_shape(emu):
    emu.configure(rate_429=1.0)
    answer = await emu.client.post(PATH, headers=AUTH, json=tts())
    assert answer.status_code == 429 and "retry-after" in answer.headers
    assert set(answer.json()) >= {"message", "path", "requestId", "statusCode", "timestamp"}


@pytest.mark.slow
async def test_over_a_real_socket_the_encoded_id_and_the_verbatim_url_work(served, tmp_path):
    served.configure(job_seconds=1.0, time_scale=0.01)
    created = await create(served.client, tts("Short line."))
    _, done = await follow(lambda: fetch(served.client, created["id"]), {"succeeded", "error"})
    result = await download(served.client, done["video"]["url"])
    assert result.status_code == 200
    info = await probe_bytes(result.content, tmp_path)
    assert info.has_audio and info.duration >= 1.0


async def test_an_expired_video_url_is_refreshed_by_polling_again(emu):
    emu.configure(job_seconds=1.0, time_scale=0.01, download_ttl=5.0)
    created = await create(emu.client, tts())
    _, done = await follow(lambda: fetch(emu.client, created["id"]), {"succeeded", "error"})
    emu.advance(10.0)
    assert (await download(emu.client, done["video"]["url"])).status_code >= 400
    fresh = (await fetch(emu.client, created["id"]))["video"]["url"]
    assert fresh != done["video"]["url"]
    assert (await download(emu.client, fresh)).status_code == 200
