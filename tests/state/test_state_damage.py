"""State damage is detected, never guessed; a kill -9 at any instant is never called damage."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import pytest
from statekit import crash, journal_events, new_job

from lipbatch.state import State, StateDamagedError, backup_path, journal_path, lock_path, read_state
from lipbatch.state import replay as replay_module
from lipbatch.state.replay import HEAD_WIDTH


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


def _killed_after(path: Path, events: int, *, compact_first: int = 0) -> State:
    """A state whose holder died (no compaction) after ``events`` events past ``compact_first`` compacted ones."""
    state = State.open(path)
    for i in range(compact_first):
        new_job(state, f"c{i}", attempts=1)
    if compact_first:
        state.compact()
    for i in range(events):
        new_job(state, f"k{i}", attempts=i)
    crash(state)
    return state


def _line_ends(path: Path) -> list[int]:
    raw = journal_path(path).read_bytes()
    return [i + 1 for i, byte in enumerate(raw) if byte == ord("\n") and i >= HEAD_WIDTH]


def _cut(path: Path, size: int) -> None:
    os.truncate(journal_path(path), size)


def _assert_refused(path: Path, *names: str) -> StateDamagedError:
    with pytest.raises(StateDamagedError) as caught:
        read_state(path)
    for name in names:
        assert name in caught.value.problem
    assert "lipbatch state repair" in str(caught.value)
    with pytest.raises(StateDamagedError):
        State.open(path)
    assert not lock_path(path).exists()  # a refused open leaves no lock behind
    return caught.value


@pytest.mark.parametrize("where", ["at a line boundary", "mid-line"])
def test_a_journal_cut_in_the_middle_is_damage(path: Path, where: str) -> None:
    _killed_after(path, 10, compact_first=3)
    ends = _line_ends(path)
    _cut(path, ends[4] if where == "at a line boundary" else ends[4] + 7)
    error = _assert_refused(path, str(journal_path(path)), "events up to 13", "cut")
    assert "5 events lost" in error.problem


def test_a_crash_tears_at_most_the_last_line_and_that_is_not_damage(path: Path) -> None:
    _killed_after(path, 4)
    ends = _line_ends(path)
    whole = journal_path(path).read_bytes()
    for size in range(ends[-2], ends[-1] + 1):  # the last line missing, torn anywhere, or whole
        journal_path(path).write_bytes(whole[:size])
        loaded = read_state(path)
        assert set(loaded.jobs) == {"k0", "k1", "k2", "k3"} if size == ends[-1] else {"k0", "k1", "k2"}
    journal_path(path).write_bytes(whole[: ends[-3]])  # two lines gone: no crash does that
    _assert_refused(path, "cut")


def test_resuming_after_a_torn_last_line_keeps_the_mark_consistent(path: Path) -> None:
    _killed_after(path, 3)
    _cut(path, _line_ends(path)[-1] - 5)
    with State.open(path) as state:  # the torn line is dropped; the mark says 3, the journal ends at 2
        assert set(state.jobs) == {"k0", "k1"}
        new_job(state, "k9")
        assert read_state(path).jobs["k9"].status == "submitting"
    assert set(read_state(path).jobs) == {"k0", "k1", "k9"}


def test_a_snapshot_deleted_after_a_clean_finish_is_damage_and_names_the_backup(path: Path) -> None:
    with State.open(path) as state:
        for i in range(5):
            new_job(state, f"k{i}", status="done", output_sha256="ab" * 32)
    assert journal_events(path) == []
    path.unlink()
    _assert_refused(path, f"state file {path} is missing", str(backup_path(path)))


def test_snapshot_and_backup_deleted_is_damage_while_the_journal_says_events_were_recorded(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k0")
    path.unlink()
    backup_path(path).unlink()
    _assert_refused(path, "continues from event 1")


def test_a_snapshot_deleted_mid_run_is_damage(path: Path) -> None:
    _killed_after(path, 4, compact_first=2)
    path.unlink()
    _assert_refused(path, "is missing")
    backup_path(path).unlink()
    _assert_refused(path, "is missing", "continues from event 2")


def test_a_snapshot_replaced_by_an_older_copy_is_damage(path: Path) -> None:
    state = State.open(path)
    new_job(state, "k0")
    state.compact()
    older = path.read_bytes()
    new_job(state, "k1")
    state.compact()
    crash(state)
    path.write_bytes(older)
    _assert_refused(path, "older")


def test_a_deleted_journal_is_damage(path: Path) -> None:
    _killed_after(path, 3)
    journal_path(path).unlink()
    _assert_refused(path, f"journal {journal_path(path)} is missing")
    journal_path(path).write_bytes(b"")  # emptied (e.g. `> state.json.journal`)
    _assert_refused(path, "lost its first line")


def test_a_fresh_state_killed_at_any_point_of_its_first_open_is_not_damage(path: Path, monkeypatch) -> None:
    """The journal (with its head) is created before the first snapshot; both orders of death are fine."""
    class Killed(BaseException):
        pass

    real_replace = os.replace
    calls = {"n": 0, "limit": 0}

    def dying_replace(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["limit"]:
            raise Killed
        return real_replace(*args, **kwargs)

    monkeypatch.setattr(os, "replace", dying_replace)
    for limit in (1, 2):  # die before the snapshot, then between snapshot and backup
        shutil.rmtree(path.parent / "s", ignore_errors=True)
        target = path.parent / "s" / "state.json"
        calls.update(n=0, limit=limit)
        with pytest.raises(Killed):
            State.open(target)
        lock_path(target).unlink(missing_ok=True)  # a kill leaves it; here open released it
        assert read_state(target).jobs == {}
        with State.open(target) as state:
            new_job(state, "k0")
        assert set(read_state(target).jobs) == {"k0"}


@pytest.mark.parametrize("step", range(16))  # a compaction makes 16 file operations
def test_a_kill_at_any_step_of_a_compaction_is_not_damage(path: Path, monkeypatch, step: int) -> None:
    """Every file operation of a compaction in turn is where the process dies."""
    class Killed(BaseException):
        pass

    state = State.open(path)
    for i in range(3):
        new_job(state, f"k{i}", attempts=i)
    state.compact()
    new_job(state, "k3")
    state.update("k0", status="in_flight", task_id="t0")
    expected = {key: (r.status, r.task_id) for key, r in state.jobs.items()}
    seen = []

    def dying(name):
        real = getattr(os, name)

        def call(*args, **kwargs):
            seen.append(name)
            if len(seen) == step + 1:
                raise Killed(name)
            return real(*args, **kwargs)
        return call

    for name in ("open", "write", "pwrite", "fsync", "replace", "ftruncate", "close"):
        monkeypatch.setattr(os, name, dying(name))
    with contextlib.suppress(Killed):
        state.compact()
    monkeypatch.undo()
    assert len(seen) > step, f"a compaction now makes {len(seen)} file operations"
    if state._fd is not None:
        crash(state)
    else:
        lock_path(path).unlink()
    loaded = read_state(path)
    assert {key: (r.status, r.task_id) for key, r in loaded.jobs.items()} == expected
    with State.open(path) as again:
        new_job(again, "k4")
    assert set(read_state(path).jobs) == {*expected, "k4"}


def test_a_reader_racing_a_compaction_reads_again_instead_of_crying_damage(path: Path, monkeypatch) -> None:
    writer = State.open(path)
    for i in range(3):
        new_job(writer, f"k{i}")
    real = replay_module.read_snapshot
    calls = []

    def read_then_compact(*args):
        real(*args)
        calls.append(1)
        if len(calls) == 1:  # the reader holds the old snapshot; the writer folds the journal now
            new_job(writer, "k3")
            writer.compact()

    monkeypatch.setattr(replay_module, "read_snapshot", read_then_compact)
    try:
        assert set(read_state(path).jobs) == {"k0", "k1", "k2", "k3"}
        assert len(calls) == 2
    finally:
        writer.close()


def test_files_of_an_older_lipbatch_load_and_get_a_head(path: Path) -> None:
    """Format 2 without head or backup: a snapshot, and a journal of plain event lines."""
    with State.open(path) as state:
        new_job(state, "k0", attempts=1)
    snapshot = json.loads(path.read_text())
    del snapshot["journal_head"]
    path.write_text(json.dumps(snapshot))
    backup_path(path).unlink()
    event = {"format": 2, "seq": snapshot["seq"] + 1, "op": "job", "key": "k0", "set": {"attempts": 2}}
    journal_path(path).write_text(json.dumps(event) + "\n")
    assert read_state(path).jobs["k0"].attempts == 2
    with State.open(path) as state:
        assert journal_events(path) == []  # compacted at once: the journal now starts with a head
        state.update("k0", attempts=3)
    assert read_state(path).jobs["k0"].attempts == 3
    assert backup_path(path).exists()


def test_an_update_costs_one_fsync_and_the_backup_rides_on_compaction(path: Path, monkeypatch) -> None:
    state = State.open(path)
    new_job(state, "k0")
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    for i in range(10):
        state.update("k0", attempts=i + 1)
    assert len(calls) == 10
    calls.clear()
    state.compact()
    assert len(calls) == 4  # snapshot, backup, their folder, the journal
    state.close()
    assert backup_path(path).read_bytes() == path.read_bytes()
