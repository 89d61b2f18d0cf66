"""Every OS error is a message: `lipbatch run` (and plan/status) exit 2, or 1 for one job's failure, naming
the path and what to do; never a traceback.

Runs go through the real CLI in-process, pointed (``--sandbox-url``) at the in-process harness sandbox.
Permission errors are simulated by making ``os.open``/``os.mkdir`` refuse a path (the tests may run as root,
which ignores permission bits); a full disk by a writer that raises ``ENOSPC``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from harness import SANDBOX_URL, TIME_SCALE, Harness
from kinds import write_manifest

from lipbatch import download, verifier
from lipbatch.commands import run as run_command
from lipbatch.errors import EXIT_INVALID, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.hashing import file_sha256
from lipbatch.runner import run_project
from lipbatch.state import JobStatus, State, journal_path, lock_path, read_state

KIND = "magichour-lipsync"


@pytest.fixture
def campaign(tmp_path, media, monkeypatch, run_cli):
    """A 3-job manifest, and ``run()``: `lipbatch run MANIFEST --sandbox-url ... --json` on one harness sandbox."""
    case = write_manifest(KIND, tmp_path, media, jobs=3)
    h = Harness()
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)

    async def scale(url: str) -> float:
        return TIME_SCALE

    def through_harness(project, options, **kwargs):
        return run_project(project, options, transport=httpx.ASGITransport(app=h.app), **kwargs)

    monkeypatch.setattr(run_command, "sandbox_time_scale", scale)
    monkeypatch.setattr(run_command, "run_project", through_harness)

    class Campaign:
        manifest = case.manifest
        harness = h
        project = h.project(case.manifest)

        @staticmethod
        def run():
            result = run_cli("run", str(case.manifest), "--sandbox-url", SANDBOX_URL, "--json")
            assert "Traceback" not in result.err
            events = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
            finished = [e for e in events if e["type"] == "run_finished"]
            return result, (finished[0]["data"] if finished else None)

    return Campaign


def _refuse(monkeypatch, function: str, matches, error: int) -> None:
    """``os.<function>`` raises ``error`` for paths ``matches`` accepts (as a permission bit or a full disk would)."""
    real = getattr(os, function)

    def refusing(path, *args, **kwargs):
        if matches(os.fspath(path), *args):
            raise OSError(error, os.strerror(error), os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, function, refusing)


def test_a_read_only_journal_is_a_message(campaign, monkeypatch):
    with State.open(campaign.project.state_path):
        pass
    journal = str(journal_path(campaign.project.state_path))
    _refuse(monkeypatch, "open", lambda path, flags, *_: path == journal and flags & os.O_WRONLY, errno.EACCES)
    result, summary = campaign.run()
    assert result.code == EXIT_INVALID and summary is None
    assert f"cannot write the state journal {journal}" in result.err and "writable" in result.err
    assert not lock_path(campaign.project.state_path).exists()
    assert campaign.harness.stats()["creates_total"] == 0


def test_a_read_only_state_folder_is_a_message(campaign, monkeypatch):
    lock = str(lock_path(campaign.project.state_path))
    _refuse(monkeypatch, "open", lambda path, *_: path == lock, errno.EROFS)
    result, _ = campaign.run()
    assert result.code == EXIT_INVALID
    assert f"cannot create the lock {lock}" in result.err and "writable" in result.err


def test_an_unreadable_state_file_is_a_message_for_plan_and_status(campaign, monkeypatch, run_cli):
    with State.open(campaign.project.state_path):
        pass
    state = campaign.project.state_path
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied", str(self))) if self == state else real(self))
    for command in ("plan", "status"):
        result = run_cli(command, str(campaign.manifest), "--sandbox")
        assert result.code == EXIT_INVALID and "Traceback" not in result.err
        assert f"cannot read state file {state}" in result.err


def test_a_disk_filling_during_a_download_fails_that_job_and_a_rerun_fetches_it_without_paying(
        campaign, monkeypatch):
    victim = campaign.project.output_dir / campaign.project.jobs[1].output
    real = download._Part.open

    def open_on_a_full_disk(part):
        real(part)
        if part.dest == victim:  # its temp file's descriptor now writes to /dev/full: ENOSPC from the kernel
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, part._fd)
            os.close(full)

    monkeypatch.setattr(download._Part, "open", open_on_a_full_disk)
    result, summary = campaign.run()
    assert result.code == EXIT_JOBS_FAILED and summary["done"] == 2 and summary["failed"] == 1
    reason = summary["failures"][campaign.project.jobs[1].output]
    assert str(victim) in reason and "free some space" in reason and "a rerun downloads it" in reason
    assert not victim.exists() and not list(victim.parent.glob(".*.part"))
    record = read_state(campaign.project.state_path).jobs[campaign.project.jobs[1].key]
    assert record.status is JobStatus.SUCCEEDED  # paid for; waiting to be fetched

    monkeypatch.setattr(download._Part, "open", real)
    again, summary = campaign.run()
    assert again.code == EXIT_OK and summary["done"] == 1 and summary["skipped"] == 2
    assert campaign.harness.stats()["creates_total"] == 3


def test_an_output_folder_vanishing_mid_download_fails_its_jobs_only(campaign, monkeypatch):
    victim = campaign.project.output_dir / campaign.project.jobs[0].output
    real = verifier.verify_playable

    def verify_then_vanish(path):
        info = real(path)
        if path.name.startswith(f".{victim.name}."):
            shutil.rmtree(victim.parent, ignore_errors=True)  # the folder goes while the file waits to be renamed
        return info

    monkeypatch.setattr(verifier, "verify_playable", verify_then_vanish)
    result, summary = campaign.run()
    assert result.code == EXIT_JOBS_FAILED and summary["failed"] >= 1, result.err  # the others in that folder may go too
    reason = summary["failures"][campaign.project.jobs[0].output]
    assert str(victim) in reason and "vanished" in reason
    monkeypatch.setattr(verifier, "verify_playable", real)
    again, _ = campaign.run()
    assert again.code == EXIT_OK and victim.is_file()
    assert campaign.harness.stats()["creates_total"] == 3


def test_a_permission_error_on_the_output_folder_fails_the_jobs_with_the_path(campaign, monkeypatch):
    output_dir = str(campaign.project.output_dir)
    _refuse(monkeypatch, "open", lambda path, *_: path == output_dir, errno.EACCES)
    result, summary = campaign.run()
    assert result.code == EXIT_JOBS_FAILED and summary["failed"] == 3
    for reason in summary["failures"].values():
        assert output_dir in reason and "writable by this user" in reason


def test_a_full_disk_under_the_journal_stops_the_run_with_a_message(campaign, monkeypatch):
    journal = journal_path(campaign.project.state_path)
    with State.open(campaign.project.state_path):
        pass
    real = os.pwrite
    writes = []

    def pwrite(fd, data, offset):
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(journal.resolve()):
            writes.append(offset)
            if len(writes) > 4:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to tell the journal's descriptor")
    monkeypatch.setattr(os, "pwrite", pwrite)
    result, _ = campaign.run()
    assert result.code == EXIT_INVALID
    assert f"cannot write state journal {journal}" in result.err and "No space left" in result.err
    monkeypatch.setattr(os, "pwrite", real)
    assert read_state(campaign.project.state_path) is not None  # what was acknowledged is intact


def test_a_symlinked_subfolder_is_never_written_through(campaign, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    victim = campaign.project.output_dir / campaign.project.jobs[0].output
    victim.parent.parent.mkdir(parents=True)
    victim.parent.symlink_to(outside, target_is_directory=True)  # e.g. acct/face -> ../../elsewhere
    result, summary = campaign.run()
    assert result.code == EXIT_JOBS_FAILED
    assert list(outside.iterdir()) == []  # nothing written outside the output folder
    reasons = list(summary["failures"].values())
    assert reasons and all("is a symbolic link" in reason and str(victim.parent) in reason for reason in reasons)
    victim.parent.unlink()
    again, summary = campaign.run()
    assert again.code == EXIT_OK and file_sha256(victim)
    assert campaign.harness.stats()["creates_total"] == 3
