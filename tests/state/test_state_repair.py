"""Rebuilding a damaged state: every surviving copy is used, nothing invented, losses reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from statekit import crash, new_job

from lipbatch.state import JobStatus, State, backup_path, journal_path, read_state
from lipbatch.state import repair as repair_module
from lipbatch.state.repair import rebuild, repair

SHA1, SHA2 = "11" * 32, "22" * 32
KNOWN = {f"k{i}": ("acct", "runway-lipsync", (f"out/k{i}.mp4",)) for i in range(6)}


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


def _history(path: Path) -> dict:
    """Three jobs before a compaction, more events after it, then kill -9: returns the records then."""
    state = State.open(path)
    for i in range(3):
        new_job(state, f"k{i}")
    state.compact()
    state.update("k0", status="in_flight", task_id="t0")
    state.update("k1", attempts=2)
    state.update("k2", status="done", output_sha256=SHA1, output_size=5)
    state.update("k2", output_sha256=SHA2)
    new_job(state, "k3", status="done", output_sha256=SHA1)
    new_job(state, "zz", account="gone")  # a job the manifest no longer has
    records = dict(state.jobs)
    crash(state)
    return records


def test_a_deleted_snapshot_is_rebuilt_from_backup_and_journal_losslessly(path: Path) -> None:
    records = _history(path)
    path.unlink()
    rebuilt = rebuild(path, KNOWN)
    assert rebuilt.loaded.jobs == records
    assert any("state.json.backup (event 3)" in note for note in rebuilt.notes)
    assert not any("lost" in note for note in rebuilt.notes)


def test_a_cut_journal_keeps_its_prefix_and_reports_what_is_lost(path: Path) -> None:
    _history(path)
    raw = journal_path(path).read_bytes()
    journal_path(path).write_bytes(raw[: raw.index(b'"op":"job","key":"k2"')])  # cut inside k2's first update
    rebuilt = rebuild(path, KNOWN)
    assert rebuilt.loaded.jobs["k0"].task_id == "t0" and rebuilt.loaded.jobs["k1"].attempts == 2
    assert rebuilt.loaded.jobs["k2"].status is JobStatus.SUBMITTING and "k3" not in rebuilt.loaded.jobs
    assert "events 6..9 are lost (the journal was cut or a file replaced)" in rebuilt.notes
    assert rebuilt.loaded.seq == 9  # numbering continues after every event ever acknowledged


def test_jobs_whose_first_record_is_lost_are_rebuilt_from_the_manifest(path: Path) -> None:
    _history(path)
    path.unlink()
    backup_path(path).unlink()
    rebuilt = rebuild(path, KNOWN)
    jobs = rebuilt.loaded.jobs
    assert jobs["k0"].status is JobStatus.IN_FLIGHT and jobs["k0"].task_id == "t0"  # polled, never paid again
    assert jobs["k0"].account == "acct" and jobs["k0"].outputs == ["out/k0.mp4"]
    assert jobs["k1"].status is JobStatus.UNKNOWN and jobs["k1"].attempts == 2  # never resubmitted blindly
    assert jobs["k2"].status is JobStatus.DONE and jobs["k2"].output_sha256 == SHA2
    assert jobs["k3"].output_sha256 == SHA1  # created in the journal: whole
    assert "zz" in jobs  # its creation survived too
    assert "3 job record(s) rebuilt from their surviving events and the manifest" in rebuilt.notes


def test_every_sha256_any_copy_recorded_is_evidence(path: Path) -> None:
    _history(path)
    evidence = rebuild(path, KNOWN).evidence
    assert set(evidence["k2"]) == {SHA1, SHA2} and evidence["k2"][SHA1] == 5
    assert set(evidence["k3"]) == {SHA1} and "k0" not in evidence


def test_repair_keeps_the_damaged_files_and_leaves_a_whole_state(path: Path) -> None:
    _history(path)
    raw = journal_path(path).read_bytes()
    journal_path(path).write_bytes(raw[: len(raw) // 2])
    damaged = {name: name.read_bytes() for name in (path, backup_path(path), journal_path(path))}
    state, rebuilt = repair(path, KNOWN)
    with state:
        state.update("k0", attempts=7)
    assert sorted(p.name.split(".damaged-")[0] for p in rebuilt.kept) == sorted(p.name for p in damaged)
    for kept in rebuilt.kept:
        original = next(name for name in damaged if kept.name.startswith(name.name + ".damaged-"))
        assert kept.read_bytes() == damaged[original]
    loaded = read_state(path)
    assert loaded.jobs["k0"].attempts == 7 and loaded.seq == 10


def test_a_kill_during_repair_leaves_a_state_that_loads(path: Path, monkeypatch) -> None:
    _history(path)
    raw = journal_path(path).read_bytes()
    journal_path(path).write_bytes(raw[: raw.index(b'"op":"job","key":"k2"')])

    class Killed(BaseException):
        pass

    real = repair_module.replace_all
    monkeypatch.setattr(repair_module, "replace_all", lambda pairs: (_ for _ in ()).throw(Killed))
    with pytest.raises(Killed):  # the new snapshot and backup are in place; the journal is the damaged one
        repair(path, KNOWN)
    monkeypatch.setattr(repair_module, "replace_all", real)
    loaded = read_state(path)  # its old lines are all within the new snapshot: skipped, nothing refused
    assert loaded.jobs["k0"].task_id == "t0" and loaded.skipped > 0
    assert os.path.exists(backup_path(path))


def test_repair_and_check_of_a_whole_state_change_nothing(path: Path, tmp_path: Path, media, run_cli) -> None:
    from kinds import write_manifest

    from lipbatch.campaign import load_campaign

    case = write_manifest("magichour-lipsync", tmp_path / "c", media, jobs=1)
    project = load_campaign(case.manifest)
    assert run_cli("state", "check", str(case.manifest)).out.endswith("no state yet (nothing run)\n")
    with State.open(project.state_path) as state:
        new_job(state, "k0")
    before = project.state_path.read_bytes()
    result = run_cli("state", "repair", str(case.manifest))
    assert result.code == 0 and "is whole: nothing to repair" in result.out
    assert project.state_path.read_bytes() == before
    assert "whole: 1 job record(s)" in run_cli("state", "check", str(case.manifest)).out
