"""Folder fsyncs after renames: deferred to the state's next fsync, shared, never left open."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trio

from lipbatch import batched, folder_syncs
from lipbatch.folder_syncs import FolderSyncs


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The folders (device, inode) fsync'd, in order."""
    seen: list[tuple[int, int]] = []
    real = folder_syncs.confined.sync_folder

    def counting(folder: int) -> None:
        st = os.fstat(folder)
        seen.append((st.st_dev, st.st_ino))
        real(folder)

    monkeypatch.setattr(folder_syncs.confined, "sync_folder", counting)
    return seen


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY)


def _ident(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_deferred_folders_wait_and_each_is_synced_once(tmp_path: Path, synced: list) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    before = _open_fds()
    syncs = FolderSyncs(deferred=True)
    for folder in (a, b, a, a):
        syncs.after_rename(_open(folder))
    assert synced == [] and _open_fds() == before + 2  # one open descriptor per folder, the rest closed
    syncs.sync_pending()
    assert sorted(synced) == sorted([_ident(a), _ident(b)]) and syncs.syncs == 2
    assert _open_fds() == before
    syncs.sync_pending()
    assert syncs.syncs == 2


def test_a_folder_waits_at_most_max_age(tmp_path: Path, synced: list) -> None:
    now = [100.0]
    syncs = FolderSyncs(deferred=True, max_age=1.0, clock=lambda: now[0])
    syncs.after_rename(_open(tmp_path))
    now[0] += 0.5
    syncs.after_rename(_open(tmp_path))
    assert synced == []
    now[0] += 0.5  # the first rename is a second old: this one syncs both
    syncs.after_rename(_open(tmp_path))
    assert synced == [_ident(tmp_path)]
    syncs.after_rename(_open(tmp_path))  # a new wait starts
    assert synced == [_ident(tmp_path)]
    syncs.sync_pending()
    assert len(synced) == 2


def test_not_deferred_syncs_once_per_folder_in_the_renames_hop(tmp_path: Path, synced: list) -> None:
    syncs = FolderSyncs(deferred=False)
    before = _open_fds()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(batched.run_sync, lambda: syncs.after_rename(_open(tmp_path)))

    trio.run(main)
    assert synced == [_ident(tmp_path)] and _open_fds() == before
    syncs.after_rename(_open(tmp_path))  # outside a hop: at once
    assert len(synced) == 2 and _open_fds() == before


def test_a_rename_made_while_the_state_fsyncs_waits_for_the_next_one(tmp_path: Path, synced: list) -> None:
    """The state's fsync may cover a DONE written meanwhile: that result's folder must not count as synced."""
    syncs = FolderSyncs(deferred=True)
    syncs.after_rename(_open(tmp_path))
    late = threading.Thread(target=syncs.after_rename, args=(_open(tmp_path),))
    with syncs.held():
        assert synced == [_ident(tmp_path)]  # pending folders first
        late.start()
        late.join(timeout=0.05)
        assert late.is_alive()  # held off while the state's fsync runs (the lock is ours)
    late.join()
    assert synced == [_ident(tmp_path)]
    syncs.sync_pending()  # the late rename's folder: synced by the next one
    assert synced == [_ident(tmp_path)] * 2
