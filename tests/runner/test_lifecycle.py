"""A campaign's second and later runs: endpoints, takes, restores, hand-placed files, verify and prune."""

from __future__ import annotations

import os
import threading

import pytest
from harness import Harness, assert_all_done, fast_options
from kinds import Media, mediagen, write_manifest

from lipbatch.errors import EXIT_INVALID, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.hashing import file_sha256
from lipbatch.paths import take_path
from lipbatch.runner import point_at_sandbox
from lipbatch.state import JobStatus, State, read_state

pytestmark = pytest.mark.anyio


async def _finished(kind, tmp_path, media, jobs=3):
    case = write_manifest(kind, tmp_path, media, jobs=jobs)
    h = Harness()
    project = h.project(case.manifest)
    assert (await h.run(project, environ=case.env)).exit_code == EXIT_OK
    return case, h, project


@pytest.mark.parametrize("kind", ["runway-lipsync", "magichour-lipsync"])
async def test_records_of_another_endpoint_are_never_done_there(kind, tmp_path, media):
    case, first, project = await _finished(kind, tmp_path, media)
    old = {job.output: file_sha256(project.output_dir / job.output) for job in project.jobs}
    other = Harness()
    elsewhere = point_at_sandbox(project, "http://other-sandbox.test")
    summary = await other.run(elsewhere, environ=case.env)
    assert summary.done == len(project.jobs) and summary.skipped == 0
    assert other.stats()["creates_total"] == len(project.jobs)
    loaded = read_state(project.state_path)
    assert_all_done(project, loaded.jobs)
    for job in project.jobs:
        record = loaded.jobs[job.key]
        assert record.endpoint == elsewhere.accounts[job.account].endpoint and record.take == 2
        kept = project.output_dir / take_path(job.output, 1)
        assert file_sha256(kept) == old[job.output]  # the first endpoint's take is kept, not lost
        assert [t.reason for t in loaded.takes if t.output == job.output] == ["endpoint"]
    # back on the first endpoint: its records now belong to the other one, so it makes take 3
    again = await first.run(project, environ=case.env)
    assert again.done == len(project.jobs) and first.stats()["creates_total"] == 2 * len(project.jobs)


async def test_deleted_output_is_restored_without_paying(tmp_path, media):
    case, h, project = await _finished("aimlapi-pixverse-lipsync", tmp_path, media)
    victim = project.output_dir / project.jobs[1].output
    recorded = file_sha256(victim)
    victim.unlink()
    summary = await h.run(project, environ=case.env)
    assert summary.exit_code == EXIT_OK and summary.done == 1
    assert h.stats()["creates_total"] == len(project.jobs)
    assert file_sha256(victim) == recorded
    assert read_state(project.state_path).jobs[project.jobs[1].key].status is JobStatus.DONE


@pytest.mark.parametrize("kind", ["runway-lipsync", "creatify-lipsync"])
async def test_redo_makes_exactly_one_new_take_and_keeps_the_old(kind, tmp_path, media, run_cli):
    case, h, project = await _finished(kind, tmp_path, media)
    target = project.jobs[0]
    first_bytes = (project.output_dir / target.output).read_bytes()
    result = run_cli("redo", str(case.manifest), "--sandbox", f"key={target.key[:10]}")
    assert result.code == EXIT_OK, result.err
    assert "new take asked for" in result.out
    plan = run_cli("plan", str(case.manifest), "--sandbox", "--json").json()
    assert [job["status"] for job in plan["jobs"] if job["key"] == target.key] == ["redo"]

    summary = await h.run(project, environ=case.env)
    assert summary.done == 1 and summary.skipped == len(project.jobs) - 1
    assert h.stats()["creates_total"] == len(project.jobs) + 1
    loaded = read_state(project.state_path)
    record = loaded.jobs[target.key]
    assert record.take == 2 and record.status is JobStatus.DONE and record.redo is None
    takes = [t for t in loaded.takes if t.output == target.output]
    assert len(takes) == 1 and takes[0].take == 1 and takes[0].task_id and takes[0].task_id != record.task_id
    assert (project.output_dir / takes[0].kept).read_bytes() == first_bytes
    assert file_sha256(project.output_dir / target.output) == record.output_sha256
    # a third run pays nothing more
    assert (await h.run(project, environ=case.env)).skipped == len(project.jobs)
    assert h.stats()["creates_total"] == len(project.jobs) + 1


async def test_an_old_take_is_never_moved_through_a_symlinked_takes_folder(tmp_path, media, run_cli):
    case, h, project = await _finished("creatify-lipsync", tmp_path, media)
    target = project.jobs[0]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project.output_dir / "takes").symlink_to(outside, target_is_directory=True)
    assert run_cli("redo", str(case.manifest), "--sandbox", f"key={target.key[:10]}").code == EXIT_OK
    summary = await h.run(project, environ=case.env)
    assert summary.failed == 1 and "symbolic link" in summary.failures[target.output]
    assert list(outside.rglob("*")) == []  # nothing written or moved outside the output folder
    assert (project.output_dir / target.output).is_file()  # the old take stays where it was


async def test_a_changed_request_keeps_the_old_file_as_a_take(tmp_path):
    media = Media(tmp_path / "media")  # private: this test re-records one of its files
    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=2)
    h = Harness()
    project = h.project(case.manifest)
    await h.run(project, environ=case.env)
    changed_job = project.jobs[0]
    before = (project.output_dir / changed_job.output).read_bytes()
    audio = changed_job.inputs["audio"].path
    mediagen.make_wav(audio, 2.0, pitch=777.0)  # re-recorded: new bytes, new key
    again = h.project(case.manifest)
    summary = await h.run(again, environ=case.env)
    assert summary.done == 1 and h.stats()["creates_total"] == 3
    loaded = read_state(again.state_path)
    kept = [t for t in loaded.takes if t.output == changed_job.output]
    assert [t.reason for t in kept] == ["changed"] and kept[0].key == changed_job.key
    assert (again.output_dir / kept[0].kept).read_bytes() == before
    new_job = next(j for j in again.jobs if j.output == changed_job.output)
    assert loaded.jobs[new_job.key].take == 2
    assert changed_job.output not in loaded.jobs[changed_job.key].outputs


async def test_a_superseded_take_is_recorded_on_the_trio_thread_while_other_jobs_write(tmp_path, monkeypatch):
    """The state is not thread-safe: a take moved aside during a download (a worker thread) is
    recorded through the trio thread, never beside other jobs' writes from another thread."""
    media = Media(tmp_path / "media")
    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=4)
    h = Harness()
    await h.run(h.project(case.manifest), environ=case.env)
    for pitch, job in zip((611.0, 733.0), h.project(case.manifest).jobs[:2], strict=False):
        mediagen.make_wav(job.inputs["audio"].path, 2.0, pitch=pitch)  # re-recorded: new keys, same outputs
    writers: list[str] = []
    real = State._append

    def append(self, event):
        writers.append(threading.current_thread().name)
        return real(self, event)

    monkeypatch.setattr(State, "_append", append)
    again = h.project(case.manifest)
    summary = await h.run(again, environ=case.env)
    assert summary.done == 2
    loaded = read_state(again.state_path)
    assert sorted(t.reason for t in loaded.takes) == ["changed", "changed"]
    assert writers and set(writers) == {threading.main_thread().name}


async def test_a_hand_placed_file_is_never_overwritten_and_nothing_is_paid(tmp_path, media, run_cli):
    case = write_manifest("creatify-lipsync", tmp_path, media, jobs=2)
    h = Harness()
    project = h.project(case.manifest)
    mine = project.output_dir / project.jobs[0].output
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the editor's own cut")
    assert run_cli("plan", str(case.manifest), "--sandbox", "--json").json()["jobs"][0]["status"] == "blocked"
    summary = await h.run(project, environ=case.env)
    assert summary.blocked == 1 and summary.done == 1 and summary.exit_code == EXIT_JOBS_FAILED
    assert mine.read_bytes() == b"the editor's own cut"
    assert h.stats()["creates_total"] == 1  # the blocked job was not paid for
    forced = await h.run(project, fast_options(force=True), environ=case.env)
    assert forced.done == 1 and mine.read_bytes() != b"the editor's own cut"


async def test_verify_rehashes_and_prune_removes_only_with_yes(tmp_path, media, run_cli):
    case, h, project = await _finished("aimlapi-pixverse-lipsync", tmp_path, media)
    assert run_cli("verify", str(case.manifest), "--sandbox").code == EXIT_OK
    # same size, same mtime, different bytes: only a full rehash sees it
    victim = project.output_dir / project.jobs[0].output
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    (project.output_dir / "notes.txt").write_text("mine")
    result = run_cli("verify", str(case.manifest), "--sandbox", "--json")
    assert result.code == EXIT_JOBS_FAILED
    report = result.json()
    assert report["altered"] == [project.jobs[0].output] and report["unknown"] == ["notes.txt"]

    # drop a language from the manifest: its output is an orphan
    dropped = next(job for job in project.jobs if job.lang == "en")  # a one-line text line
    case.manifest.write_text(_without_lang(case.manifest.read_text(), dropped.lang))
    listing = run_cli("prune", str(case.manifest), "--sandbox")
    assert listing.code == EXIT_OK and f"would remove: {dropped.output}" in listing.out
    assert (project.output_dir / dropped.output).exists()
    assert "left alone (lipbatch did not write it): notes.txt" in listing.out
    removed = run_cli("prune", str(case.manifest), "--sandbox", "--yes")
    assert removed.code == EXIT_OK and not (project.output_dir / dropped.output).exists()
    assert (project.output_dir / "notes.txt").exists()
    assert run_cli("prune", str(case.manifest), "--sandbox").out.strip().endswith("nothing to prune")


def _without_lang(text: str, lang: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith(f"{lang}:")) + "\n"


async def test_read_only_commands_write_nothing_beside_the_manifest(tmp_path, media, run_cli):
    case = write_manifest("creatify-lipsync", tmp_path / "c", media, jobs=1)
    before = sorted(p.name for p in case.manifest.parent.iterdir())
    for command in ("validate", "plan", "status", "verify"):
        assert run_cli(command, str(case.manifest)).code in (EXIT_OK, EXIT_JOBS_FAILED)
    assert sorted(p.name for p in case.manifest.parent.iterdir()) == before


def test_redo_refuses_nonsense_selectors(tmp_path, media, run_cli):
    case = write_manifest("creatify-lipsync", tmp_path, media, jobs=1)
    for words in (["colour=red"], ["lang="], ["zz"], ["key=xyz1"], ["lang=de"]):
        result = run_cli("redo", str(case.manifest), "--sandbox", *words)
        assert result.code == EXIT_INVALID and "Traceback" not in result.err, words
    assert "nothing to redo" in run_cli("redo", str(case.manifest), "--sandbox", "provider=acct").err
