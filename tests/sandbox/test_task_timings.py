"""Per-task timings in the sandbox's stats (``extra["task_timings"]``): when each task was created,
started and finished, and when provider requests read its state (the polls that saw it)."""

from __future__ import annotations

import contextvars

import pytest
import trio

from lipbatch.sandbox.core import Sandbox, SandboxConfig

pytestmark = pytest.mark.anyio

FROZEN = 1e6  # real seconds per virtual second: time stands still unless advanced
AUTH = {"Authorization": "Bearer aiml-test-key"}
PATH = "/v2/video/generations"
TTS = {"model": "pixverse/lip-sync", "video_url": "https://cdn.example.com/face.mp4",
       "lip_sync_tts_content": "A short line.", "lip_sync_tts_speaker": "Oliver"}


def timed_sandbox(**extra) -> Sandbox:
    return Sandbox(SandboxConfig(time_scale=FROZEN, job_seconds=10.0, extra={"task_timings": True} | extra))


async def test_every_poll_of_a_task_is_timed_once_and_so_is_its_finish(emu):
    emu.configure(time_scale=FROZEN, job_seconds=10.0, extra={"task_timings": True})
    created = await emu.client.post(PATH, headers=AUTH, json=TTS)
    assert created.status_code == 200, created.text
    ident = created.json()["id"]

    async def poll() -> str:
        answer = await emu.client.get(PATH, headers=AUTH, params={"generation_id": ident})
        assert answer.status_code == 200, answer.text
        return answer.json()["status"]

    assert await poll() == "generating"
    emu.advance(4.0)
    assert await poll() == "generating"
    emu.advance(6.0)
    assert await poll() == "succeeded"
    assert await poll() == "succeeded"
    (task,) = (await emu.stats())["tasks"]
    assert task["provider"] == "aimlapi"
    assert task["started"] == pytest.approx(task["created"], abs=1e-3)
    assert task["finished"] == pytest.approx(task["created"] + 10.0, abs=1e-3)
    polls = task["polls"]
    assert len(polls) == 4  # one per request, though the handler reads the phase more than once
    assert [p >= task["finished"] for p in polls] == [False, False, True, True]
    assert polls[1] - polls[0] == pytest.approx(4.0, abs=1e-3)
    assert polls[2] == pytest.approx(task["finished"], abs=1e-3)  # the first poll that saw it finished


async def test_stats_list_no_tasks_unless_asked(emu):
    created = await emu.client.post(PATH, headers=AUTH, json=TTS)
    assert created.status_code == 200, created.text
    assert "tasks" not in await emu.stats()
    emu.configure(extra={"task_timings": True})  # tasks created from now on are timed
    assert (await emu.stats())["tasks"] == []


async def test_timers_and_reads_outside_a_request_are_not_polls():
    sandbox = timed_sandbox()
    lc = sandbox.lifecycle("p", "a")
    fired = trio.Event()

    def settle() -> None:  # an emulator's timer at the task's end reads its phase
        assert lc.phase() == "finished"
        fired.set()

    sandbox.call_at(lc.finished_at, settle)
    sandbox.advance(10.0)
    with trio.fail_after(5):
        await fired.wait()
    assert lc.phase() == "finished"
    assert sandbox.stats()["tasks"][0]["polls"] == []


def test_requests_count_once_each_and_reset_forgets_the_timings():
    def run() -> None:
        sandbox = timed_sandbox()
        lc = sandbox.lifecycle("p", "a")
        sandbox.record_request("p", "GET /task/{id}")  # what the fault middleware does for every request
        lc.phase()
        lc.progress()
        sandbox.advance(12.0)
        sandbox.record_request("p", "GET /task/{id}")
        lc.phase()
        (task,) = sandbox.stats()["tasks"]
        assert task["polls"] == pytest.approx([task["created"], task["created"] + 12.0], abs=1e-3)
        sandbox.reset()
        assert sandbox.stats()["tasks"] == []

    contextvars.copy_context().run(run)  # the request marker must not outlive this test


def test_only_the_latest_tasks_are_kept(monkeypatch):
    monkeypatch.setattr("lipbatch.sandbox.core.TASK_TIMINGS_LIMIT", 3)
    sandbox = timed_sandbox()
    for _ in range(5):
        sandbox.lifecycle("p", "a")
    assert [t["created"] for t in sandbox.stats()["tasks"]] == [pytest.approx(0.0, abs=1e-3)] * 3
    assert len(sandbox._timed) == 3 and min(sandbox._timed) == 3
