"""The three clients, written from the docs, against the in-process emulators: full lifecycles,
results that are playable video, and the emulators' refusals classified."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from provider_helpers import SANDBOX_URL, local_ref, make_account, make_job, until_terminal, url_ref

from lipbatch.errors import ModerationError, OutOfCreditsError, PermanentError
from lipbatch.media import verify_playable
from lipbatch.providers import SANDBOX_PREFIXES, aimlapi_pixverse, creatify, runway_act_two
from lipbatch.providers.base import Phase
from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import Sandbox, SandboxConfig
from lipbatch.sandbox.render import render_mp4

pytestmark = pytest.mark.anyio


class Env:
    def __init__(self, http: httpx.AsyncClient, sandbox: Sandbox) -> None:
        self.http = http
        self.sandbox = sandbox

    def client(self, module: Any, secrets: dict[str, str], **options: Any) -> Any:
        kind = module.Client.kind
        return module.Client(make_account(kind, SANDBOX_URL + SANDBOX_PREFIXES[kind], **options), self.http, secrets)

    async def playable(self, url: str, tmp_path: Path) -> None:
        answer = await self.http.get(url)
        assert answer.status_code == 200
        path = tmp_path / "result.mp4"
        path.write_bytes(answer.content)
        info = await trio.to_thread.run_sync(verify_playable, path)
        assert info.has_video and info.has_audio


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    app = build_app(SandboxConfig(job_seconds=2.0, time_scale=0.01))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SANDBOX_URL) as http:
        yield Env(http, app.state.sandbox)


@functools.cache
def clip_bytes(seconds: float) -> bytes:
    return render_mp4(seconds=seconds)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "anna.mp4"
    path.write_bytes(clip_bytes(3.5))
    return path


# -- PixVerse -----------------------------------------------------------------------------------

PIX = {"token": "aiml-key"}


@pytest.mark.parametrize("success", ["succeeded", "completed"])
async def test_pixverse_tts_from_a_local_clip(env: Env, clip: Path, tmp_path: Path, success: str) -> None:
    env.sandbox.configure({"pixverse_success_status": success})
    client = env.client(aimlapi_pixverse, PIX)
    job = make_job("aimlapi-pixverse-lipsync", {"video": local_ref(clip, "video", "video/mp4")},
                   {"speaker": "Ava", "text": "Welcome to the spring collection."})
    submission = await client.submit(job, {})
    assert "+" in submission.task_id  # the emulator's ids only survive a URL-encoded query
    assert submission.state.phase is Phase.PENDING and submission.credits == 2_000_000
    state, seen = await until_terminal(client, submission.task_id, env.sandbox.advance)
    assert state.phase is Phase.SUCCEEDED and state.raw_status == success
    assert Phase.RUNNING in seen
    assert "%2F" in state.result_url
    await env.playable(state.result_url, tmp_path)


async def test_pixverse_audio_url_and_moderated_text(env: Env, clip: Path) -> None:
    env.sandbox.configure({"moderate": ["forbidden"]})
    client = env.client(aimlapi_pixverse, PIX)
    video = local_ref(clip, "video", "video/mp4")
    moderated = await client.submit(
        make_job("aimlapi-pixverse-lipsync", {"video": video}, {"speaker": "Liam", "text": "a forbidden word"}), {})
    spoken = await client.submit(make_job("aimlapi-pixverse-lipsync", {
        "video": video, "audio": url_ref("https://media.example.com/line.wav", "audio", "audio/wav")}, {}), {})
    state, _ = await until_terminal(client, moderated.task_id, env.sandbox.advance)
    assert state.phase is Phase.FAILED and isinstance(state.error, ModerationError)
    state, _ = await until_terminal(client, spoken.task_id, env.sandbox.advance)
    assert state.phase is Phase.SUCCEEDED


async def test_pixverse_refusals(env: Env, clip: Path) -> None:
    job = make_job("aimlapi-pixverse-lipsync", {"video": local_ref(clip, "video", "video/mp4")},
                   {"speaker": "Ava", "text": "Hello"})
    env.sandbox.configure({"credits": 1})
    with pytest.raises(OutOfCreditsError, match="run out of credits"):
        await env.client(aimlapi_pixverse, PIX).submit(job, {})
    env.sandbox.configure({"credits": None, "valid_tokens": ["the-real-key"]})
    with pytest.raises(PermanentError, match="valid API key") as caught:
        await env.client(aimlapi_pixverse, PIX).submit(job, {})
    assert caught.value.status == 401


# -- Creatify -----------------------------------------------------------------------------------

CREATIFY = {"api_id": "creatify-id", "api_key": "creatify-key"}


async def test_creatify_catalogue_then_text_job(env: Env, tmp_path: Path) -> None:
    client = env.client(creatify, CREATIFY)
    avatar = (await client.list_avatars())[0]["id"]
    accent = (await client.list_voices())[0]["accents"][0]["id"]
    job = make_job("creatify-lipsync", {}, {"avatar_id": avatar, "voice_id": accent, "text": "Hello there, welcome.",
                                            "aspect_ratio": "16x9", "model_version": "aurora_v1_fast",
                                            "captions": False, "background_url": "https://media.example.com/bg.jpg"})
    submission = await client.submit(job, {})
    assert submission.state.phase is Phase.PENDING and submission.credits == 10
    state, seen = await until_terminal(client, submission.task_id, env.sandbox.advance)
    assert state.phase is Phase.SUCCEEDED and state.progress == 1.0
    assert Phase.RUNNING in seen
    await env.playable(state.result_url, tmp_path)
    listed = (await env.http.get("/api/lipsyncs_v2/", headers={"X-API-ID": "creatify-id",
                                                               "X-API-KEY": "creatify-key"})).json()
    assert [(t["name"], t["aspect_ratio"]) for t in listed] == [(job.key, "16x9")]


async def test_creatify_audio_url_moderation_and_refusals(env: Env) -> None:
    client = env.client(creatify, CREATIFY)
    avatar = (await client.list_avatars())[0]["id"]
    audio = url_ref("https://media.example.com/line.mp3", "audio", "audio/mpeg")
    spoken = await client.submit(make_job("creatify-lipsync", {"audio": audio}, {"avatar_id": avatar}), {})
    state, _ = await until_terminal(client, spoken.task_id, env.sandbox.advance)
    assert state.phase is Phase.SUCCEEDED

    env.sandbox.configure({"moderate": ["forbidden"]})
    accent = (await client.list_voices())[0]["accents"][0]["id"]
    text = {"avatar_id": avatar, "voice_id": accent, "text": "something forbidden"}
    moderated = await client.submit(make_job("creatify-lipsync", {}, text), {})
    state, _ = await until_terminal(client, moderated.task_id, env.sandbox.advance)
    assert state.phase is Phase.FAILED and isinstance(state.error, ModerationError)

    with pytest.raises(PermanentError, match="video_inputs") as caught:
        await client.submit(make_job("creatify-lipsync", {}, {**text, "voice_id": "no-such-accent"}), {})
    assert type(caught.value) is PermanentError and caught.value.status == 400
    env.sandbox.configure({"credits": 1})
    with pytest.raises(OutOfCreditsError):
        await client.submit(make_job("creatify-lipsync", {}, {**text, "text": "fine words"}), {})


# -- Act-Two ------------------------------------------------------------------------------------

USEAPI = {"token": "user:1234-useapi-token"}


async def test_act_two_upload_swap_and_reconcile(env: Env, clip: Path, tmp_path: Path) -> None:
    client = env.client(runway_act_two, USEAPI, exploreMode=False)
    voices = (await env.http.get("/v1/runwayml/lipsync/voices/",
                                 headers={"Authorization": f"Bearer {USEAPI['token']}"})).json()
    ref = local_ref(clip, "video", "video/mp4")
    upload = await client.upload(ref)
    job = make_job("runway-act-two-voice", {"video": ref}, {"voice_id": voices[0]["voiceId"], "exploreMode": False})
    submission = await client.submit(job, {"video": upload})
    assert submission.task_id.startswith("user:") and "-task:" in submission.task_id
    assert await client.find_task(job.key) == submission.task_id
    state, _ = await until_terminal(client, submission.task_id, env.sandbox.advance)
    assert state.phase is Phase.SUCCEEDED
    await env.playable(state.result_url, tmp_path)


async def test_act_two_unknown_voice_is_refused(env: Env, clip: Path) -> None:
    client = env.client(runway_act_two, USEAPI)
    ref = local_ref(clip, "video", "video/mp4")
    upload = await client.upload(ref)
    with pytest.raises(PermanentError, match="voiceId"):
        await client.submit(make_job("runway-act-two-voice", {"video": ref}, {"voice_id": "nope"}),
                            {"video": upload})
