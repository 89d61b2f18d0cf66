"""verify, prune, redo and review on a shared PostgreSQL campaign: they read the shared records, and the
writers change a job only under its claim (a job a live worker holds is refused, its record untouched).

Each campaign is made by a real run on the shared state (in-process sandbox, ``run_project`` with
``state_url``), so no local state file exists; the commands are the CLI in-process (``run_cli``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from harness import Harness, assert_all_done, fast_options
from kinds import Case, write_manifest
from pgserver import connect

import lipbatch.state.edit as edit
from lipbatch.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.model import Project
from lipbatch.review import rejected_takes
from lipbatch.runner import RunSummary, run_project
from lipbatch.state import JobStatus
from lipbatch.state.backend import StateView, read_backend
from lipbatch.state.postgres import PostgresState
from lipbatch.state.records import job_dict

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # end to end: real runs on a shared database

KIND = "aimlapi-pixverse-lipsync"  # text lines, one YAML line each: dropping a language is one line


@dataclass
class Shared:
    case: Case
    harness: Harness
    project: Project  # the rehearsal's paths (``--sandbox``), endpoints at the harness's sandbox
    url: str

    @property
    def manifest(self) -> str:
        return str(self.case.manifest)

    async def run(self) -> RunSummary:
        """A worker run on the shared state, honouring the review's rejections there (as `lipbatch run`)."""
        options = fast_options(rejected=rejected_takes(self.project, sandbox=True, url=self.url))
        return await run_project(self.project, options, transport=httpx.ASGITransport(app=self.harness.app),
                                 environ=self.case.env, state_url=self.url)

    def view(self) -> StateView:
        return read_backend(self.project, self.url)

    def worker(self) -> PostgresState:
        """Another worker on the campaign (as a `lipbatch run` elsewhere holds its claims)."""
        return PostgresState.open(self.url, "ignored", manifest=self.case.manifest.name, worker=True)

    def beside_manifest(self) -> dict[str, int]:
        """Files beside the manifest (not the output folder) and their modification times."""
        return {p.name: p.stat().st_mtime_ns for p in self.case.manifest.parent.iterdir() if p.is_file()}


async def finished(tmp_path: Path, media, url: str, jobs: int = 3) -> Shared:
    case = write_manifest(KIND, tmp_path, media, jobs=jobs)
    h = Harness()
    shared = Shared(case, h, h.project(case.manifest), url)
    assert (await shared.run()).exit_code == EXIT_OK
    assert_all_done(shared.project, shared.view().loaded.jobs)
    assert not shared.project.state_path.exists()  # the run kept its state in the database only
    return shared


def hold(worker: PostgresState, key: str) -> None:
    worker.leases.enlist([key])
    assert worker.leases.claim([key], 1) == [key]


async def test_redo_on_a_shared_campaign_is_made_by_the_next_run_and_no_local_state_is_written(
        tmp_path, media, pg_url, run_cli, monkeypatch):
    shared = await finished(tmp_path, media, pg_url)
    target = shared.project.jobs[0]
    first_bytes = (shared.project.output_dir / target.output).read_bytes()
    before = shared.view().loaded.jobs[target.key]
    files = shared.beside_manifest()

    monkeypatch.setenv("LIPBATCH_STATE_URL", pg_url)  # as a producer would: the variable, no --state
    result = run_cli("redo", shared.manifest, "--sandbox", f"key={target.key[:10]}")
    assert result.code == EXIT_OK, result.err
    assert f"new take asked for: {target.output}" in result.out
    assert shared.beside_manifest() == files and not shared.project.state_path.exists()
    view = shared.view()
    assert view.loaded.jobs[target.key].redo == "requested"
    assert view.holders == {} and view.workers == []  # the command's claims and registration are gone
    status = run_cli("status", shared.manifest, "--sandbox", "--json").json()
    assert {row["key"]: row["status"] for row in status["jobs"]}[target.key] == "redo"

    creates = shared.harness.stats()["creates_total"]
    summary = await shared.run()
    assert summary.done == 1 and summary.skipped == len(shared.project.jobs) - 1
    assert shared.harness.stats()["creates_total"] == creates + 1
    loaded = shared.view().loaded
    record = loaded.jobs[target.key]
    assert record.take == 2 and record.status is JobStatus.DONE and record.redo is None
    takes = [take for take in loaded.takes if take.output == target.output]
    assert [(take.take, take.task_id) for take in takes] == [(1, before.task_id)]
    assert record.task_id != before.task_id
    assert (shared.project.output_dir / takes[0].kept).read_bytes() == first_bytes
    assert not shared.project.state_path.exists()


async def test_redo_of_a_job_a_live_worker_holds_is_refused_and_its_record_untouched(
        tmp_path, media, pg_url, run_cli):
    shared = await finished(tmp_path, media, pg_url)
    held, *others = shared.project.jobs
    with shared.worker() as worker:
        hold(worker, held.key)
        worker.update(held.key, task_id="fresh-task-of-the-worker")  # what a stale write would lose
        stored = job_dict(shared.view().loaded.jobs[held.key])

        result = run_cli("redo", shared.manifest, "--sandbox", "--state", pg_url, f"provider={shared.case.account}")
        assert result.code == EXIT_JOBS_FAILED, result.err
        assert f"a worker holds it right now ({worker.leases.worker} (pid" in result.out
        assert held.output in result.out and "again once it is settled" in result.out
        assert all(f"new take asked for: {job.output}" in result.out for job in others)
        view = shared.view()
        assert job_dict(view.loaded.jobs[held.key]) == stored  # not a field changed, the task id kept
        assert view.loaded.jobs[held.key].task_id == "fresh-task-of-the-worker"
        assert all(view.loaded.jobs[job.key].redo == "requested" for job in others)
        assert view.holders == {held.key: worker.leases.worker}  # the command gave back what it claimed
        assert [w["id"] for w in view.workers] == [worker.leases.worker]

    again = run_cli("redo", shared.manifest, "--sandbox", "--state", pg_url, f"key={held.key[:12]}")
    assert again.code == EXIT_OK, again.out + again.err
    record = shared.view().loaded.jobs[held.key]
    assert record.redo == "requested" and record.task_id == "fresh-task-of-the-worker"
    assert not shared.project.state_path.exists()


async def test_an_interrupted_redo_gives_its_claims_back(tmp_path, media, pg_url, run_cli, monkeypatch):
    shared = await finished(tmp_path, media, pg_url, jobs=1)

    def interrupted(self, key, **fields):
        raise KeyboardInterrupt

    monkeypatch.setattr(edit.Editing, "update", interrupted)
    result = run_cli("redo", shared.manifest, "--sandbox", "--state", pg_url, f"provider={shared.case.account}")
    assert result.code == EXIT_INTERRUPTED
    view = shared.view()
    assert view.holders == {} and view.workers == []
    assert all(record.redo is None for record in view.loaded.jobs.values())


async def test_a_command_whose_claim_lapsed_cannot_overwrite_the_worker_that_took_the_job(
        tmp_path, media, pg_url):
    shared = await finished(tmp_path, media, pg_url, jobs=1)
    (job,) = shared.project.jobs
    with edit.edit_jobs(shared.project, pg_url, [job.key]) as editing, shared.worker() as worker:
        assert editing.refused == {}
        with connect(pg_url) as conn:  # the command froze past its lease; a worker takes the job over
            conn.execute("UPDATE claims SET expires_at = now() WHERE key = %s", (job.key,))
        hold(worker, job.key)
        worker.update(job.key, task_id="the-worker-s-new-task")
        assert editing.update(job.key, redo="requested") is None  # fenced: the stale record is not written
        assert job.key in editing.refused
    record = shared.view().loaded.jobs[job.key]
    assert record.task_id == "the-worker-s-new-task" and record.redo is None


async def test_verify_and_status_agree_on_a_shared_campaign(tmp_path, media, pg_url, run_cli):
    shared = await finished(tmp_path, media, pg_url)
    gone = shared.project.jobs[1]
    (shared.project.output_dir / gone.output).unlink()
    (shared.project.output_dir / "notes.txt").write_text("mine")
    files = shared.beside_manifest()

    verified = run_cli("verify", shared.manifest, "--sandbox", "--state", pg_url, "--json")
    assert verified.code == EXIT_JOBS_FAILED, verified.err
    report = verified.json()
    assert report["missing"] == [gone.output] and report["unknown"] == ["notes.txt"]
    assert sorted(report["ok"]) == sorted(job.output for job in shared.project.jobs if job is not gone)
    assert report["state"] == shared.view().where
    status = run_cli("status", shared.manifest, "--sandbox", "--state", pg_url, "--json").json()
    missing = {row["outputs"][0] for row in status["jobs"] if row["status"] == "missing"}
    assert missing == set(report["missing"])
    assert {row["outputs"][0] for row in status["jobs"] if row["status"] == "done"} == set(report["ok"])
    assert shared.beside_manifest() == files  # read-only: nothing written beside the manifest

    local = run_cli("verify", shared.manifest, "--sandbox", "--json")  # no URL: the (absent) local state
    assert local.code == EXIT_JOBS_FAILED and local.json()["ok"] == [] and "state" not in local.json()


async def test_prune_on_a_shared_campaign_forgets_under_claims_and_spares_a_held_job(
        tmp_path, media, pg_url, run_cli):
    shared = await finished(tmp_path, media, pg_url)
    dropped = [job for job in shared.project.jobs if job.lang != shared.project.jobs[0].lang]
    assert len(dropped) == 2
    data = yaml.safe_load(shared.case.manifest.read_text())
    for script in data["scripts"].values():
        for job in dropped:
            script["lines"].pop(job.lang)
    data["state"] = pg_url  # the manifest's `state:` this time
    shared.case.manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    spared, pruned = dropped

    listing = run_cli("prune", shared.manifest, "--sandbox")
    assert listing.code == EXIT_OK, listing.err
    assert all(f"would remove: {job.output}" in listing.out for job in dropped)
    with shared.worker() as worker:
        hold(worker, spared.key)
        removed = run_cli("prune", shared.manifest, "--sandbox", "--yes")
        assert removed.code == EXIT_JOBS_FAILED, removed.err
        assert f"kept, a worker holds its job right now ({worker.leases.worker}" in removed.out
        assert spared.output in removed.out and "removed 1 file(s)" in removed.out
        assert f"removed: {pruned.output}" in removed.out and f"removed: {spared.output}" not in removed.out
        records = shared.view().loaded.jobs
        assert records[spared.key].outputs == [spared.output]  # not forgotten
        assert (shared.project.output_dir / spared.output).is_file()  # nor removed
        assert records[pruned.key].outputs == [] and not (shared.project.output_dir / pruned.output).exists()
    finally_ = run_cli("prune", shared.manifest, "--sandbox", "--yes")
    assert finally_.code == EXIT_OK and not (shared.project.output_dir / spared.output).exists()
    assert shared.view().loaded.jobs[spared.key].outputs == []
    assert shared.view().holders == {} and not shared.project.state_path.exists()


async def test_review_reads_the_shared_campaign_and_a_rejection_is_redone_by_the_next_run(
        tmp_path, media, pg_url, run_cli):
    shared = await finished(tmp_path, media, pg_url, jobs=2)
    good, bad = shared.project.jobs
    records = shared.view().loaded.jobs
    page = run_cli("review", shared.manifest, "--sandbox", "--state", pg_url)
    assert page.code == EXIT_OK, page.err
    html = Path(page.out.strip()).read_text()
    assert "no take yet" not in html and html.count('class="cell"') == 2 and all(records[job.key].output_sha256[:12] in html
                                                     for job in shared.project.jobs)
    approved = run_cli("review", shared.manifest, "--sandbox", "--state", pg_url, "--approve", f"key={good.key[:12]}")
    assert approved.code == EXIT_OK, approved.err
    rejected = run_cli("review", shared.manifest, "--sandbox", "--state", pg_url, "--reject", f"key={bad.key[:12]}",
                       "--note", "lips drift")
    assert rejected.code == EXIT_OK, rejected.err
    status = run_cli("status", shared.manifest, "--sandbox", "--state", pg_url, "--json").json()
    assert {row["key"]: row["decision"] for row in status["jobs"]} == {good.key: "approved", bad.key: "rejected"}
    assert shared.view().loaded.jobs == records  # review wrote nothing into the state

    summary = await shared.run()  # the rejection, read from the shared state, is redone
    assert summary.done == 1 and shared.view().loaded.jobs[bad.key].take == 2
    assert not shared.project.state_path.exists()


def test_bad_urls_and_an_unreachable_database_are_messages_for_every_command(tmp_path, media, run_cli):
    case = write_manifest(KIND, tmp_path, media, jobs=1)
    commands = (("verify",), ("prune", "--yes"), ("redo", "lang=en"), ("review",), ("review", "--approve", "lang=en"))
    cases = (("postgresql://me:hunter2-secret@127.0.0.1:1/db", "PGPASSWORD"),
             ("state.json", "--state takes a postgresql://"),
             ("postgresql://me@127.0.0.1:1/db", "cannot reach the state database me@127.0.0.1:1/db"))
    for command in commands:
        for url, said in cases:
            result = run_cli(command[0], str(case.manifest), *command[1:], "--state", url)
            assert result.code == EXIT_INVALID, (command, url, result.out, result.err)
            assert said in result.err and "Traceback" not in result.err, (command, result.err)
            assert "hunter2" not in result.out + result.err
    assert sorted(p.name for p in case.manifest.parent.iterdir()) == [case.manifest.name]


async def test_plan_on_a_shared_campaign_counts_its_superseded_takes_against_the_budget(
        tmp_path, media, pg_url, run_cli):
    """The budget's "used" is every take's cost, the earlier ones kept in the database's takes too."""
    case = write_manifest(KIND, tmp_path, media, jobs=3)
    data = yaml.safe_load(case.manifest.read_text())
    data["providers"][case.account].update(budget=100_000_000, allow_unknown_cost=True)  # cost known once run
    case.manifest.write_text(yaml.safe_dump(data))
    h = Harness()
    shared = Shared(case, h, h.project(case.manifest), pg_url)
    assert (await shared.run()).exit_code == EXIT_OK
    target = shared.project.jobs[0]
    assert run_cli("redo", shared.manifest, "--sandbox", "--state", pg_url, f"key={target.key[:10]}").code == EXIT_OK
    assert (await shared.run()).done == 1
    loaded = shared.view().loaded
    [take] = loaded.takes
    assert take.credits and not shared.project.state_path.exists()

    result = run_cli("plan", shared.manifest, "--sandbox", "--state", pg_url, "--json")
    assert result.code == EXIT_OK, result.err
    [budget] = result.json()["budgets"]
    assert budget["used"] == pytest.approx(sum(r.credits or 0 for r in loaded.jobs.values()) + take.credits)
