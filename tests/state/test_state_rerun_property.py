"""Property: whatever is cut or deleted, a rerun (after `state repair` when refused) never submits a job
whose output file is present, and never changes such a file."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from harness import Harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kinds import Case, write_manifest
from statekit import killed_at_close

from lipbatch import cli
from lipbatch.errors import EXIT_OK
from lipbatch.hashing import file_sha256
from lipbatch.model import Project
from lipbatch.state import StateDamagedError, backup_path, journal_path

pytestmark = pytest.mark.slow

KIND = "magichour-lipsync"
DAMAGE = ("cut the journal", "delete the snapshot", "delete snapshot and backup", "delete the journal",
          "delete the backup and cut the journal")


@dataclass
class Template:
    case: Case
    harness: Harness  # the sandbox that knows the template's tasks


def _kill_after(done: int, jobs: int, tmp: Path, media, monkeypatch) -> Template:
    """Run ``jobs`` jobs and die (kill -9: nothing compacted) once ``done`` of them are done."""
    case = write_manifest(KIND, tmp, media, jobs=jobs, concurrency=2)
    h = Harness()
    project = h.project(case.manifest)
    finished = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            async def run() -> None:
                await h.run(project, environ=case.env,
                            sink=lambda e: finished.append(e) if e.type == "job_done" else None)
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                while len(finished) < done:
                    await trio.sleep(0.001)
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            nursery.start_soon(watch)

    with killed_at_close(monkeypatch):
        trio.run(main)
    return Template(case, h)


@pytest.fixture(scope="module")
def templates(tmp_path_factory, media) -> dict[str, Template]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {"finished": _kill_after(4, 4, tmp_path_factory.mktemp("finished"), media, monkeypatch),
                "midway": _kill_after(2, 5, tmp_path_factory.mktemp("midway"), media, monkeypatch)}


def _present(project: Project) -> dict[str, str]:
    return {job.output: file_sha256(project.output_dir / job.output) for job in project.jobs
            if (project.output_dir / job.output).is_file()}


def _damage(project: Project, how: str, position: int) -> None:
    state, journal = project.state_path, journal_path(project.state_path)
    if "cut" in how:
        raw = journal.read_bytes()
        journal.write_bytes(raw[: position % (len(raw) + 1)])
    if "snapshot" in how:
        state.unlink()
    if "backup" in how:
        backup_path(state).unlink()
    if how == "delete the journal":
        journal.unlink()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(["finished", "midway"]), how=st.sampled_from(DAMAGE),
       position=st.integers(min_value=0), trust=st.booleans())
def test_no_damage_makes_a_rerun_pay_for_a_present_output(templates, template, how, position, trust) -> None:
    source = templates[template]
    h = source.harness
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "c")
        shutil.copytree(source.case.manifest.parent, root)
        manifest = root / source.case.manifest.name
        project = h.project(manifest)
        _damage(project, how, position)
        present = _present(project)
        h.events.clear()
        try:
            trio.run(lambda: h.run(project, environ=source.case.env))
        except StateDamagedError:
            flags = ["--trust-outputs"] if trust else []
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(["state", "repair", str(manifest), "--sandbox", *flags]) == EXIT_OK
            trio.run(lambda: h.run(project, environ=source.case.env))
        submitted = {event.job for event in h.events if event.type == "job_submitted"}
        assert not submitted & {job.key for job in project.jobs if job.output in present}
        assert {output: file_sha256(project.output_dir / output) for output in present} == present
