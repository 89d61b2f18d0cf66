"""The run engine on a shared state, in one process: several workers in one trio loop against the
in-process sandbox (the subprocess versions are in test_workers.py)."""

from __future__ import annotations

import httpx
import pytest
import trio
from harness import Harness, assert_all_done, fast_options
from kinds import write_manifest

from lipbatch.errors import EXIT_OK
from lipbatch.runner import Runner, run_project
from lipbatch.state.backend import read_backend
from lipbatch.state.postgres import PostgresState

pytestmark = pytest.mark.anyio

KIND = "magichour-lipsync"  # uploads local files; its emulator queues any number of tasks (no cap of its own)


async def workers(h: Harness, project, url: str, env: dict[str, str], n: int):
    """``n`` runs of ``project`` at once, each a worker on the shared state; their summaries and events."""
    summaries, events = [None] * n, [[] for _ in range(n)]

    async def one(i: int) -> None:
        summaries[i] = await run_project(project, fast_options(), transport=httpx.ASGITransport(app=h.app),
                                         sink=events[i].append, environ=env, state_url=url)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return summaries, events


def upload_requests(stats: dict) -> int:
    return stats["requests_by_route"].get("POST /v1/files/upload-urls", 0)


@pytest.mark.slow
async def test_three_workers_share_the_jobs_the_caps_and_the_uploads(tmp_path, media, pg_url):
    case = write_manifest(KIND, tmp_path, media, jobs=4, accounts=2, concurrency=2)
    h = Harness(job_seconds=10.0)  # 0.1 s of real time per task: long enough for slots to overlap
    project = h.project(case.manifest)

    summaries, events = await workers(h, project, pg_url, case.env, 3)

    assert [s.exit_code for s in summaries] == [EXIT_OK] * 3, summaries
    assert sum(s.done for s in summaries) == case.jobs  # each job made by exactly one worker
    assert all(s.done + s.skipped == case.jobs for s in summaries)  # the others saw it done
    stats = h.stats()
    assert stats["creates_total"] == case.jobs and stats["duplicate_creates"] == 0
    active = stats["max_active_tasks"].values()
    assert len(active) == 2 and max(active) == 2  # the cap of 2 reached, and held across the three
    per_account = {(job.account, ref.sha256) for job in project.jobs for ref in job.inputs.values()}
    assert upload_requests(stats) == len(per_account)  # one upload per file and account, whoever needed it
    workers_seen = {e.data["worker"] for evs in events for e in evs if e.type == "worker"}
    assert len(workers_seen) == 3
    view = read_backend(project, pg_url)
    assert_all_done(project, view.loaded.jobs)
    assert view.holders == {} and view.workers == []  # everyone gave everything back

    before = h.stats()["requests"]
    (again,), _ = await workers(h, project, pg_url, case.env, 1)
    assert again.exit_code == EXIT_OK and again.skipped == case.jobs
    assert h.stats()["requests"] == before


async def test_a_job_in_flight_in_the_shared_state_is_polled_not_paid_again(tmp_path, media, pg_url):
    case = write_manifest(KIND, tmp_path, media, jobs=3, concurrency=3)
    h = Harness()
    project = h.project(case.manifest)
    stop = trio.Event()

    def stop_after_first_submission(event) -> None:
        if event.type == "job_submitted":
            stop.set()

    first = await run_project(project, fast_options(), transport=httpx.ASGITransport(app=h.app),
                              sink=stop_after_first_submission, stop=stop, environ=case.env, state_url=pg_url)
    assert first.interrupted
    creates = h.stats()["creates_total"]
    assert creates >= 1

    (second,), _ = await workers(h, project, pg_url, case.env, 1)
    assert second.exit_code == EXIT_OK
    assert h.stats()["creates_total"] == case.jobs and h.stats()["duplicate_creates"] == 0


async def test_status_shows_which_worker_holds_which_job(tmp_path, media, pg_url, run_cli):
    case = write_manifest(KIND, tmp_path, media, jobs=2, concurrency=2)
    project = Harness().project(case.manifest)
    key = project.jobs[0].key
    with PostgresState.open(pg_url, "ignored", manifest=case.manifest.name, worker=True) as worker:
        worker.leases.enlist([key])
        worker.leases.claim([key], 1)
        shown = run_cli("status", str(case.manifest), "--sandbox", "--state", pg_url, "--json")
        assert shown.code == EXIT_OK, shown.err
        data = shown.json()
        assert [w["id"] for w in data["workers"]] == [worker.leases.worker]
        assert {row["key"]: row["worker"] for row in data["jobs"]} == {key: worker.leases.worker,
                                                                        project.jobs[1].key: None}
        table = run_cli("status", str(case.manifest), "--sandbox", "--state", pg_url)
        assert f"{worker.leases.worker} (pid" in table.out and "holds" in table.out
    planned = run_cli("plan", str(case.manifest), "--sandbox", "--state", pg_url, "--json")
    assert planned.code == EXIT_OK and {job["status"] for job in planned.json()["jobs"]} == {"new"}


def test_a_url_with_a_password_is_refused_by_every_command_without_echo(tmp_path, media, run_cli):
    case = write_manifest(KIND, tmp_path, media, jobs=1)
    url = "postgresql://me:hunter2-secret@127.0.0.1:1/db"
    for command in (("status",), ("plan",), ("run", "--sandbox"), ("state", "push")):
        args = [*command, str(case.manifest)]
        args += ["--to", url] if command == ("state", "push") else ["--state", url]
        if command == ("state", "push"):
            (case.manifest.parent / f"{case.manifest.stem}.lipbatch-state.json").write_text(
                '{"format": 2, "seq": 0, "uploads": [], "takes": [], "jobs": []}')
        result = run_cli(*args)
        assert result.code == 2, (command, result.err)
        assert "PGPASSWORD" in result.err and "hunter2" not in result.out + result.err


async def test_outputs_another_worker_wrote_after_this_one_loaded_the_state_are_not_foreign(
        tmp_path, media, pg_url):
    case = write_manifest(KIND, tmp_path, media, jobs=3, concurrency=3)
    h = Harness()
    project = h.project(case.manifest)
    late = PostgresState.open(pg_url, "ignored", manifest=case.manifest.name, worker=True)  # loads nothing yet
    (first,), _ = await workers(h, project, pg_url, case.env, 1)  # another worker does every job meanwhile
    assert first.done == case.jobs
    creates = h.stats()["creates_total"]

    with late:  # its pre-pass finds files its records do not know: decided again under the claim
        runner = Runner(project, fast_options(), late, transport=httpx.ASGITransport(app=h.app), environ=case.env,
                        sink=None, stop=None)
        summary = await runner.run()
    assert summary.exit_code == EXIT_OK and summary.blocked == 0 and summary.skipped == case.jobs
    assert h.stats()["creates_total"] == creates
