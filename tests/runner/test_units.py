"""Unit tests: pacing (limits.py) and the two runner-owned provider clients (useapi, Magic Hour)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from lipbatch.errors import (
    BusyError,
    ModerationError,
    NotFoundError,
    OutOfCreditsError,
    PermanentError,
    RateLimitedError,
)
from lipbatch.limits import AdaptiveLimiter, Backoff, TokenBucket
from lipbatch.model import Account, InputRef, Job
from lipbatch.providers import magichour, runway_lipsync, useapi
from lipbatch.providers.base import Phase, Upload

# -- limits -----------------------------------------------------------------------------------------


def _with_waiters(limiter: AdaptiveLimiter, holders: int, waiters: int, body) -> None:
    async def main() -> None:
        for i in range(holders):
            await limiter.acquire(("holder", i))
        async with trio.open_nursery() as nursery:
            for i in range(waiters):
                nursery.start_soon(limiter.acquire, ("waiter", i))
            await trio.testing.wait_all_tasks_blocked()
            body()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_limiter_starts_at_two_and_grows_only_while_jobs_wait_never_above_cap():
    limiter = AdaptiveLimiter(4)
    assert limiter.limit == 2
    assert AdaptiveLimiter(1).limit == 1

    def grow() -> None:
        for _ in range(10):
            limiter.on_success()
        assert limiter.limit == 4

    _with_waiters(limiter, holders=2, waiters=3, body=grow)

    idle = AdaptiveLimiter(5)
    for _ in range(10):
        idle.on_success()  # nobody waits: no reason to grow
    assert idle.limit == 2


def test_busy_shrinks_to_what_the_provider_accepted_then_probes_slowly():
    limiter = AdaptiveLimiter(5, start=5)

    def scenario() -> None:
        limiter.on_busy()  # five held, the fifth was refused: four were accepted
        assert limiter.limit == 4
        limiter.on_success()
        assert limiter.limit == 4  # after a busy answer, growth needs `limit` successes in a row
        for _ in range(3):
            limiter.on_success()
        assert limiter.limit == 5

    _with_waiters(limiter, holders=5, waiters=2, body=scenario)

    lonely = AdaptiveLimiter(3)

    async def one_holder() -> None:
        await lonely.acquire("only")
        lonely.on_busy()
        assert lonely.limit == 1  # never below one

    trio.run(one_holder)


def test_token_bucket_paces_requests_to_its_rate():
    async def main() -> float:
        bucket = TokenBucket(rate=10.0, burst=5)
        start = trio.current_time()
        for _ in range(25):
            await bucket.take()
        return trio.current_time() - start

    elapsed = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert elapsed == pytest.approx((25 - 5) / 10.0, abs=0.05)


@given(st.integers(min_value=0, max_value=60), st.floats(min_value=0.01, max_value=10))
def test_backoff_is_full_jitter_below_the_capped_exponential(attempt, base):
    policy = Backoff(base=base, cap=30.0)
    assert 0.0 <= policy.delay(attempt) <= min(30.0, base * 2 ** min(attempt, 30))


def test_retry_after_wins_but_is_capped():
    policy = Backoff(base=1.0, cap=5.0, max_retry_after=60.0)
    assert policy.delay(3, retry_after=12.0) == 12.0
    assert policy.delay(3, retry_after=10_000.0) == 60.0
    assert policy.scaled(0.1).delay(0, retry_after=12.0) == 6.0  # the cap scales, the server's value not


# -- useapi -------------------------------------------------------------------------------------------


def _response(status: int, body: dict | list, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers or {})


@pytest.mark.parametrize(("status", "body", "expected"), [
    (429, {"error": "Account a@b.c is busy executing 2 tasks", "runningTasks": {}, "code": 429}, BusyError),
    (429, {"error": "You have too many tasks running or pending. Please wait for some of them to finish "
                    "before starting more."}, BusyError),
    (412, {"error": "You do not have enough credits to run this task."}, OutOfCreditsError),
    (400, {"error": "You do not have enough credits to run this task."}, OutOfCreditsError),
    (404, {"error": "Not found.", "code": 404}, NotFoundError),
    (401, {"error": "Unauthorized", "code": 401}, PermanentError),
    (422, {"error": "Prompt failed moderation"}, ModerationError),
])
def test_useapi_errors_are_classified(status, body, expected):
    error = useapi.classify(_response(status, body))
    assert type(error) is expected
    assert error.message == body["error"]


def test_plain_429_is_rate_limited_with_its_retry_after():
    error = useapi.classify(_response(429, {"error": "Too many requests"}, {"Retry-After": "7"}))
    assert type(error) is RateLimitedError and error.retry_after == 7.0


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("ratio", ["0.25", 0.25])
def test_task_states_flat_or_wrapped(wrap, ratio):
    def shape(task: dict) -> dict:
        return useapi.unwrap_task({"task": task} if wrap else task)

    assert useapi.task_state(shape({"status": "THROTTLED"})).phase is Phase.PENDING
    pending = useapi.task_state(shape({"status": "PENDING", "estimatedTimeToStartSeconds": 12}))
    assert pending.phase is Phase.PENDING and pending.eta_seconds == 12
    running = useapi.task_state(shape({"status": "RUNNING", "progressRatio": ratio}))
    assert running.phase is Phase.RUNNING and running.progress == 0.25
    done = useapi.task_state(shape({"status": "SUCCEEDED", "artifacts": [{"url": "https://cdn/x.mp4"}]}))
    assert done.phase is Phase.SUCCEEDED and done.result_url == "https://cdn/x.mp4"
    failed = useapi.task_state(shape({"status": "FAILED", "error": {
        "errorMessage": "Content flagged", "moderation_category": "violence"}}))
    assert failed.phase is Phase.FAILED and isinstance(failed.error, ModerationError)
    assert "Content flagged" in failed.error.message
    plain = useapi.task_state(shape({"status": "FAILED", "error": {"reason": "internal"}}))
    assert type(plain.error) is PermanentError


def _account(kind: str, url: str = "https://api.test/v1/runwayml") -> Account:
    return Account(name="acct", kind=kind, base_url=url, credentials={}, concurrency=2)


async def _find(tasks: list[dict], key: str) -> tuple[str | None, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        return _response(200, tasks[offset:offset + limit])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = runway_lipsync.Client(_account("runway-lipsync"), http, {"token": "t"})
        return await client.find_task(key), seen


@pytest.mark.anyio
async def test_find_task_pages_through_the_list_by_reply_ref():
    tasks = [{"taskId": f"task-{i}", "replyRef": f"key-{i}"} for i in range(450)]
    found, seen = await _find(tasks, "key-333")
    assert found == "task-333" and len(seen) == 2
    missing, seen = await _find(tasks, "nope")
    assert missing is None and len(seen) == 3  # a short page ends the search


@pytest.mark.anyio
async def test_find_task_stops_after_the_documented_offsets():
    tasks = [{"taskId": f"task-{i}", "replyRef": "other"} for i in range(5000)]
    missing, seen = await _find(tasks, "nope")
    assert missing is None
    assert max(int(r.url.params["offset"]) for r in seen) <= 1000


@pytest.mark.anyio
async def test_useapi_upload_sends_raw_bytes_with_the_media_type(tmp_path: Path):
    path = tmp_path / "face.mp4"
    path.write_bytes(b"x" * 3000)
    ref = InputRef(role="video", media_type="video/mp4", path=path, sha256="0" * 64, size=3000, duration=2.5)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _response(200, {"assetId": "user:1-runwayml:a@b.c-asset:u"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = runway_lipsync.Client(_account("runway-lipsync"), http, {"token": "tok"})
        upload = await client.upload(ref)
    assert upload.handle == "user:1-runwayml:a@b.c-asset:u"
    request = seen[0]
    assert request.url.path == "/v1/runwayml/assets/" and request.url.params["name"] == "face.mp4"
    assert request.headers["content-type"] == "video/mp4" and request.headers["authorization"] == "Bearer tok"
    assert request.content == b"x" * 3000


@pytest.mark.anyio
async def test_runway_lipsync_body_carries_the_job_key_as_reply_ref():
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return _response(200, {"taskId": "t-1", "status": "PENDING", "estimatedTimeToStartSeconds": 3})

    job = Job(key="k" * 64, account="acct", kind="runway-lipsync", clip="c", script="s", lang="en", voice="v",
              outputs=("a.mp4",), inputs={}, params={"voice_id": "pNInz6obpgDQGcFmaJgB", "text": "hi",
                                                     "model_id": "eleven_multilingual_v2"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = runway_lipsync.Client(_account("runway-lipsync"), http, {"token": "tok"})
        submission = await client.submit(job, {"video": Upload("asset-v")})
    assert submission.task_id == "t-1" and submission.state.eta_seconds == 3
    assert bodies == [{"video_assetId": "asset-v", "voiceId": "pNInz6obpgDQGcFmaJgB", "voice_text": "hi",
                       "model_id": "eleven_multilingual_v2", "replyRef": "k" * 64}]


# -- Magic Hour ---------------------------------------------------------------------------------------


def test_magichour_project_states():
    assert magichour.project_state({"status": "queued"}).phase is Phase.PENDING
    assert magichour.project_state({"status": "rendering"}).phase is Phase.RUNNING
    done = magichour.project_state({"status": "complete", "credits_charged": 24, "downloads": [
        {"url": "https://videos/x.mp4", "expires_at": "2030-01-01T00:00:00.000Z"}]})
    assert done.phase is Phase.SUCCEEDED and done.credits == 24.0
    assert done.result_expires_at == pytest.approx(1893456000.0)
    error = magichour.project_state({"status": "error", "error": {"code": "no_source_face",
                                                                   "message": "no face"}})
    assert error.phase is Phase.FAILED and "no_source_face" in error.error.message
    assert magichour.project_state({"status": "canceled"}).phase is Phase.FAILED


@pytest.mark.anyio
async def test_magichour_upload_puts_bytes_without_our_key(tmp_path: Path):
    path = tmp_path / "line.wav"
    path.write_bytes(b"RIFF" + b"\0" * 100)
    ref = InputRef(role="audio", media_type="audio/wav", path=path, sha256="1" * 64, size=104)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            assert json.loads(request.content) == {"items": [{"type": "audio", "extension": "wav"}]}
            return _response(200, {"items": [{"upload_url": "https://videos.test/put?sig=1",
                                              "expires_at": "2030-01-01T00:00:00Z",
                                              "file_path": "api-assets/x/audio.wav"}]})
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = magichour.Client(_account("magichour-lipsync", "https://mh.test"), http, {"token": "mhk"})
        upload = await client.upload(ref)
    assert upload.handle == "api-assets/x/audio.wav"
    assert upload.expires_at is not None
    post, put = seen
    assert post.headers["authorization"] == "Bearer mhk"
    assert put.method == "PUT" and "authorization" not in put.headers and put.content == path.read_bytes()
    assert not magichour.Client.can_reconcile
