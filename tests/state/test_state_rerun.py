"""Damaged states end to end: runs, plan and status refuse; `state repair` rebuilds; a rerun pays nothing
for an output on disk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio
from harness import Harness, assert_all_done
from kinds import write_manifest
from statekit import killed_at_close

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_INVALID, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.hashing import file_sha256
from lipbatch.state import StateDamagedError, backup_path, journal_path, read_state

pytestmark = pytest.mark.anyio

KIND = "magichour-lipsync"


def _outputs(project) -> dict[str, str]:
    """sha256 of every output file present."""
    return {job.output: file_sha256(project.output_dir / job.output) for job in project.jobs
            if (project.output_dir / job.output).exists()}


async def _killed_after_finishing(tmp_path, media, monkeypatch, jobs=4):
    """Every job done and downloaded, then kill -9 before the state was compacted: all in the journal."""
    case = write_manifest(KIND, tmp_path, media, jobs=jobs)
    h = Harness()
    project = h.project(case.manifest)
    with killed_at_close(monkeypatch):
        assert (await h.run(project, environ=case.env)).done == jobs
    return case, h, project


def _refused_everywhere(run_cli, manifest: Path, *names: str) -> None:
    for command in (["plan", "--json"], ["status"], ["state", "check"]):
        result = run_cli(command[0], *command[1:], str(manifest), "--sandbox")
        assert result.code == EXIT_INVALID, result
        assert "Traceback" not in result.err
        assert f"lipbatch state repair {manifest} --sandbox" in result.err
        for name in names:
            assert name in result.err


async def test_a_cut_journal_refuses_everything_and_repair_plus_rerun_pays_nothing(tmp_path, media, monkeypatch,
                                                                                    run_cli):
    case, h, project = await _killed_after_finishing(tmp_path, media, monkeypatch)
    before = _outputs(project)
    journal = journal_path(project.state_path)
    raw = journal.read_bytes()
    journal.write_bytes(raw[: len(raw) // 2 + 5])  # mid-line, in the middle
    _refused_everywhere(run_cli, case.manifest, str(journal), "cut")
    with pytest.raises(StateDamagedError):
        await h.run(project, environ=case.env)
    creates = h.stats()["creates_total"]

    repaired = run_cli("state", "repair", str(case.manifest), "--sandbox")
    assert repaired.code == EXIT_OK, repaired.err
    assert "are lost" in repaired.out and "damaged file kept as" in repaired.out
    assert run_cli("state", "check", str(case.manifest), "--sandbox").code == EXIT_OK
    rerun = await h.run(project, environ=case.env)
    assert h.stats()["creates_total"] == creates  # nothing paid again
    assert rerun.done + rerun.skipped + rerun.blocked == len(project.jobs) and rerun.blocked >= 1
    assert _outputs(project) == before  # no output overwritten

    # the blocked files are lipbatch's own: the user says so, and the campaign is whole again
    trusted = run_cli("state", "repair", str(case.manifest), "--sandbox", "--trust-outputs")
    assert trusted.code == EXIT_OK and f"{rerun.blocked} adopted" in trusted.out
    last = await h.run(project, environ=case.env)
    assert last.exit_code == EXIT_OK and last.skipped == len(project.jobs)
    assert h.stats()["creates_total"] == creates
    assert_all_done(project, read_state(project.state_path).jobs)


async def test_a_snapshot_deleted_after_a_clean_finish_is_repaired_losslessly(tmp_path, media, run_cli):
    case = write_manifest(KIND, tmp_path, media, jobs=3)
    h = Harness()
    project = h.project(case.manifest)
    assert (await h.run(project, environ=case.env)).exit_code == EXIT_OK
    before, records = _outputs(project), read_state(project.state_path).jobs
    project.state_path.unlink()
    _refused_everywhere(run_cli, case.manifest, str(project.state_path), backup_path(project.state_path).name)

    repaired = run_cli("state", "repair", str(case.manifest), "--sandbox")
    assert repaired.code == EXIT_OK and "records from" in repaired.out and ".backup" in repaired.out
    assert read_state(project.state_path).jobs == records
    rerun = await h.run(project, environ=case.env)
    assert rerun.exit_code == EXIT_OK and rerun.skipped == 3
    assert h.stats()["creates_total"] == 3 and _outputs(project) == before


async def test_snapshot_and_backup_deleted_block_every_present_output_after_repair(tmp_path, media, run_cli):
    case = write_manifest(KIND, tmp_path, media, jobs=3)
    h = Harness()
    project = h.project(case.manifest)
    assert (await h.run(project, environ=case.env)).exit_code == EXIT_OK
    before = _outputs(project)
    project.state_path.unlink()
    backup_path(project.state_path).unlink()
    _refused_everywhere(run_cli, case.manifest, "is missing")

    repaired = run_cli("state", "repair", str(case.manifest), "--sandbox")
    assert repaired.code == EXIT_OK and "3 without a record" in repaired.out
    rerun = await h.run(project, environ=case.env)
    assert rerun.blocked == 3 and rerun.exit_code == EXIT_JOBS_FAILED
    assert h.stats()["creates_total"] == 3 and _outputs(project) == before


async def test_a_snapshot_deleted_mid_run_is_refused_and_the_rerun_pays_each_job_once(tmp_path, media,
                                                                                      monkeypatch, run_cli):
    case = write_manifest(KIND, tmp_path, media, jobs=5, concurrency=2)
    h = Harness()
    project = h.project(case.manifest)
    done = []

    def kill_after_two(event) -> None:
        if event.type == "job_done":
            done.append(event)

    with killed_at_close(monkeypatch):
        with trio.move_on_after(30) as scope:
            async def watch():
                while len(done) < 2:
                    await trio.sleep(0.001)
                scope.cancel()  # the process dies here: nothing more is written
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await h.run(project, environ=case.env, sink=kill_after_two)
                nursery.cancel_scope.cancel()
    assert 2 <= len(done) < 5
    project.state_path.unlink()
    _refused_everywhere(run_cli, case.manifest, "is missing")
    assert run_cli("state", "repair", str(case.manifest), "--sandbox").code == EXIT_OK
    rerun = await h.run(project, environ=case.env)
    assert rerun.exit_code == EXIT_OK
    assert h.stats()["creates_total"] == 5  # every job paid exactly once, across both runs
    assert_all_done(project, read_state(project.state_path).jobs)


def test_a_real_run_on_a_damaged_state_exits_2_before_any_request(tmp_path, media, run_cli):
    case = write_manifest(KIND, tmp_path, media, jobs=1)
    project = load_campaign(case.manifest)
    from lipbatch.state import State

    with State.open(project.state_path) as state:
        state.update("k", account="a", kind=KIND, outputs=["x.mp4"], status="in_flight", task_id="t")
    os.unlink(project.state_path)
    result = run_cli("run", str(case.manifest))
    assert result.code == EXIT_INVALID and "Traceback" not in result.err
    assert f"lipbatch state repair {case.manifest}\n" in result.err  # no --sandbox for the real campaign
    shutil.rmtree(project.output_dir, ignore_errors=True)
