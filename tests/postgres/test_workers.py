"""Several `lipbatch run` processes on one manifest and one PostgreSQL state, against a served sandbox:
the jobs are shared, the account's cap holds across them, a worker killed with kill -9 has its jobs
finished by the others, and a database restart loses nothing and pays nothing twice.

Slow: each case starts several Python processes. The sandbox is served in this test process
(``test_crash.served``) and the runs are ``lipbatch run --sandbox-url URL --state postgresql://...``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
import trio
from harness import assert_all_done
from kinds import write_manifest
from test_crash import Run, lipbatch_run, served

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_INVALID, EXIT_OK
from lipbatch.state.backend import read_backend

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CAP = 5
JOBS = 16
#: useapi's emulator holds 5 tasks per account and lets Runway run them all (no 429 of its own at the cap)
RUNWAY_ROOM = {"extra": {"runway_capacity": CAP, "runway_queue": 0}}


async def together(manifest, url: str, state: str, n: int,
                   watch: dict[int, Callable[[Run], bool]] | None = None) -> list[Run]:
    """``n`` workers at once; ``watch[i]`` decides when worker ``i`` gets kill -9."""
    runs: list[Run | None] = [None] * n

    async def one(i: int) -> None:
        until = (watch or {}).get(i)
        runs[i] = await lipbatch_run(manifest, url, "--state", state, until=until, sig=signal.SIGKILL)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return runs  # type: ignore[return-value]


def why(runs: list[Run]) -> list[object]:
    """What each run said went wrong (for assertion messages)."""
    return [[e for e in run.events if e["type"] in ("job_failed", "job_not_run", "job_blocked", "job_unknown",
                                                     "job_lost", "halted")] or run.stderr[-500:] for run in runs]


def submitted(run: Run) -> dict[str, str]:
    return {e["job"]: e["data"]["task_id"] for e in run.events if e["type"] == "job_submitted"}


async def test_three_workers_share_a_campaign_and_its_cap(tmp_path, media, pg_url, monkeypatch):
    monkeypatch.setenv("LIPBATCH_STATE_LEASE", "10")
    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=JOBS, concurrency=CAP)
    project = load_campaign(case.manifest, sandbox=True)
    async with served() as (url, sandbox):
        runs = await together(case.manifest, url, pg_url, 3)
        stats = sandbox.stats()
    assert [r.code for r in runs] == [EXIT_OK] * 3, why(runs)
    assert stats["creates_total"] == JOBS and stats["duplicate_creates"] == 0
    assert 2 <= max(stats["max_active_tasks"].values()) <= CAP
    assert sum(r.count("job_done") for r in runs) == JOBS  # each job made by one worker
    assert sum(1 for r in runs if r.count("job_submitted")) >= 2  # the work was really shared
    for run in runs:  # every worker says who it is and ends seeing every job done
        (hello,) = [e for e in run.events if e["type"] == "worker"]
        assert hello["data"]["worker"] in hello["message"]
        finished = run.events[-1]
        assert finished["type"] == "run_finished" and finished["data"]["done"] + finished["data"]["skipped"] == JOBS
    assert_all_done(project, read_backend(project, pg_url).loaded.jobs)


async def test_kill_9_of_a_worker_its_jobs_are_finished_by_the_others_after_the_lease(
        tmp_path, media, pg_url, monkeypatch):
    monkeypatch.setenv("LIPBATCH_STATE_LEASE", "2")
    case = write_manifest("runway-lipsync", tmp_path, media, jobs=JOBS, concurrency=CAP)
    project = load_campaign(case.manifest, sandbox=True)
    async with served(job_seconds=20.0, **RUNWAY_ROOM) as (url, sandbox):  # 1 s of real time per task
        runs = await together(case.manifest, url, pg_url, 3,
                              watch={0: lambda run: run.count("job_submitted") >= 2})
        stats = sandbox.stats()
    killed, *others = runs
    assert killed.signalled and killed.code == -signal.SIGKILL
    assert [r.code for r in others] == [EXIT_OK] * 2, why(others)
    assert stats["duplicate_creates"] == 0 and stats["creates_total"] == JOBS
    assert max(stats["max_active_tasks"].values()) <= CAP
    records = read_backend(project, pg_url).loaded.jobs
    assert_all_done(project, records)
    finished_before_the_kill = {e["job"] for e in killed.events if e["type"] == "job_done"}
    orphaned = {key: task for key, task in submitted(killed).items() if key not in finished_before_the_kill}
    assert len(submitted(killed)) >= 2 and orphaned  # a slow watcher may let one finish before the kill
    for key, task_id in orphaned.items():  # polled by another worker, never submitted again
        assert records[key].task_id == task_id and records[key].attempts == 1
    assert {e["job"] for r in others for e in r.events if e["type"] == "job_done"} >= orphaned.keys()


async def test_a_database_restart_mid_run_loses_nothing_and_pays_nothing_twice(tmp_path, media, pg, pg_url,
                                                                               monkeypatch):
    monkeypatch.setenv("LIPBATCH_STATE_LEASE", "8")  # workers retry for half a lease
    case = write_manifest("runway-lipsync", tmp_path, media, jobs=JOBS, concurrency=CAP)
    project = load_campaign(case.manifest, sandbox=True)
    restart = trio.Event()

    def restart_after_three_submissions(run: Run) -> bool:
        if run.count("job_submitted") >= 3:
            restart.set()
        return False

    started: list[object] = []

    async def restart_database() -> None:
        await restart.wait()
        started.append(await trio.to_thread.run_sync(pg.started_at))
        await trio.to_thread.run_sync(pg.restart)
        started.append(await trio.to_thread.run_sync(pg.started_at))

    async with served(job_seconds=10.0, **RUNWAY_ROOM) as (url, sandbox):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(restart_database)
            runs = await together(case.manifest, url, pg_url, 3, watch={0: restart_after_three_submissions})
        assert len(set(started)) == 2  # the server really went away mid-run
        for run in runs:  # reconnected and finished, or stopped with a clear message
            assert run.code in (EXIT_OK, EXIT_INVALID), why([run])
            assert "Traceback" not in run.stderr
            if run.code == EXIT_INVALID:
                # mid-run ("unreachable": what was recorded is kept) or at start (a worker launched
                # while the server was down: "cannot reach", nothing started)
                assert ("unreachable" in run.stderr or "cannot reach" in run.stderr) and "run again" in run.stderr
        if any(run.code != EXIT_OK for run in runs):
            (rerun,) = await together(case.manifest, url, pg_url, 1)
            assert rerun.code == EXIT_OK, rerun.stderr
        stats = sandbox.stats()
    assert stats["duplicate_creates"] == 0 and stats["creates_total"] == JOBS
    assert_all_done(project, read_backend(project, pg_url).loaded.jobs)
