"""A result's folder is fsync'd before the state fsync that makes its DONE durable, shared by many."""

from __future__ import annotations

import functools
import json
import os
import stat

import httpx
import pytest
import trio
from harness import fast_options
from kinds import write_manifest

from lipbatch import confined
from lipbatch.engine import runner
from lipbatch.folder_syncs import FolderSyncs
from lipbatch.runner import run_project

pytestmark = pytest.mark.anyio


def _done_outputs(journal: bytes) -> set[str]:
    names = set()
    for line in journal.splitlines()[1:]:  # the head first
        event = json.loads(line) if line.strip() else {}
        changes = event.get("set", {})
        if changes.get("status") == "done":
            names.update(os.path.basename(output) for output in changes.get("outputs", []))
    return names


async def test_done_is_never_durable_before_its_rename_and_folders_share_fsyncs(tmp_path, media, harness,
                                                                                monkeypatch):
    case = write_manifest("creatify-lipsync", tmp_path, media, jobs=12, concurrency=6)
    h = harness()
    project = h.project(case.manifest)
    journal_name = project.state_path.name + ".journal"
    unsynced: dict[str, tuple[int, int]] = {}  # results renamed into place, by name -> their folder, until it syncs
    counts = {"journal": 0, "folder": 0, "rename": 0}
    order: list[str] = []  # "folder" (one that had renames), "journal": the fsyncs, in turn
    late: list[set[str]] = []
    real_fsync, real_publish = os.fsync, confined.publish

    def publish(folder: int, temp: str, name: str) -> None:
        real_publish(folder, temp, name)
        st = os.fstat(folder)
        unsynced[name] = (st.st_dev, st.st_ino)
        counts["rename"] += 1

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            synced = [name for name, folder in unsynced.items() if folder == (st.st_dev, st.st_ino)]
            counts["folder"] += bool(synced)
            if synced:
                order.append("folder")
            for name in synced:
                del unsynced[name]
        elif os.path.basename(path := os.readlink(f"/proc/self/fd/{fd}")) == journal_name:
            counts["journal"] += 1
            order.append("journal")
            with open(path, "rb") as journal:  # what this fsync makes durable
                written = journal.read()
            if early := _done_outputs(written) & set(unsynced):
                late.append(early)
        real_fsync(fd)

    monkeypatch.setattr(runner, "FolderSyncs", functools.partial(FolderSyncs, max_age=3600))  # none for age
    monkeypatch.setattr(confined, "publish", publish)
    monkeypatch.setattr(os, "fsync", fsync)
    summary = await h.run(project, environ=case.env)
    assert summary.done == 12 and counts["rename"] == 12
    assert late == [] and not unsynced
    # each folder fsync rides on a journal fsync (the one just after it), but the run's last
    riding = [i for i, kind in enumerate(order[:-1]) if kind == "folder" and order[i + 1] == "journal"]
    assert len(riding) >= counts["folder"] - 1 and counts["folder"] < counts["rename"], (order, counts)


async def test_an_interrupted_run_syncs_its_folders_and_leaves_none_open(tmp_path, media, harness, monkeypatch):
    case = write_manifest("creatify-lipsync", tmp_path, media, jobs=12, concurrency=6)
    h = harness()
    project = h.project(case.manifest)
    stop = trio.Event()
    renamed, synced = set(), set()
    real_fsync, real_publish = os.fsync, confined.publish

    def publish(folder: int, temp: str, name: str) -> None:
        real_publish(folder, temp, name)
        renamed.add(name)

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode) and os.path.samefile(f"/proc/self/fd/{fd}", out_folder()):
            synced.update(renamed)
        real_fsync(fd)

    def out_folder() -> str:
        return str(project.output_dir / project.jobs[0].output.rsplit("/", 1)[0])

    def open_output_folders() -> int:
        return sum(1 for fd in os.listdir("/proc/self/fd")
                   if os.path.realpath(f"/proc/self/fd/{fd}").startswith(str(project.output_dir)))

    def watch(event) -> None:
        if event.type == "job_done":
            stop.set()  # Ctrl-C after the first result

    monkeypatch.setattr(confined, "publish", publish)
    monkeypatch.setattr(os, "fsync", fsync)
    summary = await run_project(project, fast_options(), transport=httpx.ASGITransport(app=h.app), sink=watch,
                                environ=case.env, stop=stop)
    assert summary.interrupted and summary.done >= 1
    assert renamed and renamed <= synced  # every result placed before the stop is durable
    assert open_output_folders() == 0
