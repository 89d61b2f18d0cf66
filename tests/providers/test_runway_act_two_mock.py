"""Act-Two voice swap client: create body, the {"task": ...} wrapper, flat and wrapped polls."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from provider_helpers import Recorder, answer, local_ref, make_account, make_job

from lipbatch.errors import BusyError, ModerationError, OutOfCreditsError
from lipbatch.providers.base import Phase, Upload
from lipbatch.providers.runway_act_two import Client

KIND = "runway-act-two-voice"
pytestmark = pytest.mark.anyio
TASK_ID = "user:1234-runwayml:someone@example.com-task:9b1c0000-0000-4000-8000-000000000001"
ASSET = "user:1234-runwayml:someone@example.com-asset:5a0e0000-0000-4000-8000-000000000002"
VOICE = "pNInz6obpgDQGcFmaJgB"
TASK = {"id": "9b1c0000-0000-4000-8000-000000000001", "taskType": "workflow_s2s_video", "status": "PENDING",
        "error": None, "progressRatio": "0", "estimatedTimeToStartSeconds": 0, "artifacts": [],
        "taskId": TASK_ID, "code": 200}


def client(recorder: Recorder) -> Client:
    return Client(make_account(KIND), recorder.client(), {"token": "user:1234-secret"})


def job(tiny_video: Path, **params: object):
    return make_job(KIND, {"video": local_ref(tiny_video, "video", "video/mp4")}, {"voice_id": VOICE, **params})


@pytest.mark.parametrize("wrapped", [True, False])
async def test_create_reads_the_task_wrapper(tiny_video: Path, wrapped: bool) -> None:
    recorder = Recorder(answer(200, {"task": TASK} if wrapped else TASK))
    submission = await client(recorder).submit(job(tiny_video, exploreMode=True), {"video": Upload(ASSET)})
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/runwayml/gen4/act-two-voice")
    assert request.headers["authorization"] == "Bearer user:1234-secret"
    assert recorder.body() == {"video_assetId": ASSET, "voiceId": VOICE, "exploreMode": True, "replyRef": "k" * 64}
    assert submission.task_id == TASK_ID
    assert submission.state is not None and submission.state.phase is Phase.PENDING


async def test_explore_mode_is_omitted_unless_set(tiny_video: Path) -> None:
    recorder = Recorder(answer(200, {"task": TASK}))
    await client(recorder).submit(job(tiny_video), {"video": Upload(ASSET)})
    assert "exploreMode" not in recorder.body()


ARTIFACT = {"assetId": "a", "url": "https://dnznrvs05pmza.cloudfront.net/out.mp4", "fileSize": "123"}


@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize(
    ("task", "phase"),
    [
        ({"status": "RUNNING", "progressRatio": "0.5"}, Phase.RUNNING),
        ({"status": "THROTTLED"}, Phase.PENDING),
        ({"status": "SUCCEEDED", "progressRatio": "1", "artifacts": [ARTIFACT]}, Phase.SUCCEEDED),
        ({"status": "FAILED", "error": {"errorMessage": "Flagged", "reason": "SAFETY",
                                        "moderation_category": "violence", "tally_asimov": True}}, Phase.FAILED),
    ],
)
async def test_poll_accepts_flat_and_wrapped_tasks(task: dict, phase: Phase, wrapped: bool) -> None:
    body = {**TASK, **task}
    recorder = Recorder(answer(200, {"task": body} if wrapped else body))
    state = await client(recorder).poll(TASK_ID)
    assert state.phase is phase
    assert state.raw_status == task["status"]
    if phase is Phase.SUCCEEDED:
        assert state.result_url == ARTIFACT["url"]
    if phase is Phase.RUNNING:
        assert state.progress == 0.5
    if phase is Phase.FAILED:
        assert isinstance(state.error, ModerationError)


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (412, {"error": "You do not have enough credits to run this task."}, OutOfCreditsError),
        (429, {"error": "Account someone@example.com is busy executing 2 tasks",
               "runningTasks": {"someone@example.com": []}, "code": 429}, BusyError),
        (429, {"error": "You have too many tasks running or pending. Please wait for some of them to finish "
                        "before starting more."}, BusyError),
    ],
)
async def test_create_errors_from_the_act_two_page(tiny_video: Path, status: int, body: dict,
                                                   error_type: type) -> None:
    with pytest.raises(error_type):
        await client(Recorder(answer(status, body))).submit(job(tiny_video), {"video": Upload(ASSET)})


def test_uploads_local_video_and_reconciles_by_reply_ref(tiny_video: Path) -> None:
    c = Client(make_account(KIND), httpx.AsyncClient(), {"token": "t"})
    assert c.needs_upload(local_ref(tiny_video, "video", "video/mp4"))
    assert Client.can_reconcile is True
    assert Client.credential_defaults == {"token": "USEAPI_TOKEN"}
