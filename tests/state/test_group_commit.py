"""Group commit of the local state: a round's lines in one write, before any later thread or request."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

import pytest
import trio
from statekit import crash, journal_events, new_job

from lipbatch import batched
from lipbatch.errors import LipbatchError
from lipbatch.state import JobStatus, State, read_jobs
from lipbatch.state import group_commit as commit_module


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".lipbatch" / "state.json"


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the journal writes group commit makes (lines, not the head)."""
    sizes: list[int] = []
    real = commit_module.pwrite_all

    def counting(fd: int, data: bytes, offset: int) -> None:
        if offset:  # the head is written at 0
            sizes.append(data.count(b"\n"))
        real(fd, data, offset)

    monkeypatch.setattr(commit_module, "pwrite_all", counting)
    return sizes


def _committing(path: Path) -> State:
    """The state at ``path`` under group commit, as a run opens it."""
    state = State.open(path)
    state.group_commit = True
    return state


def _keys(path: Path) -> list[str]:
    return [event["key"] for event in journal_events(path)]


def test_a_rounds_lines_are_written_together_when_it_ends(path: Path, writes: list[int]) -> None:
    async def main() -> None:
        state = _committing(path)
        for i in range(5):
            new_job(state, f"k{i}")
        assert _keys(path) == []  # kept until the round ends
        await trio.lowlevel.checkpoint()
        assert _keys(path) == [f"k{i}" for i in range(5)]
        assert writes == [5]
        new_job(state, "k5")
        await trio.lowlevel.checkpoint()
        assert writes == [5, 1]
        crash(state)  # kill -9: what was written stays

    trio.run(main)
    assert sorted(read_jobs(path)) == [f"k{i}" for i in range(6)]


def test_a_kill_in_the_middle_of_a_round_loses_only_that_rounds_lines(path: Path) -> None:
    async def main() -> None:
        state = _committing(path)
        new_job(state, "before")
        await trio.lowlevel.checkpoint()
        new_job(state, "during")
        crash(state)

    trio.run(main)
    assert sorted(read_jobs(path)) == ["before"]


def test_a_worker_thread_started_after_a_change_finds_it_written(path: Path) -> None:
    """A result's sha256 must be on record before the rename a worker thread makes."""
    async def main() -> None:
        state = _committing(path)
        new_job(state, "k1")
        assert await trio.to_thread.run_sync(lambda: _keys(path)) == ["k1"]
        new_job(state, "k2")
        assert await batched.run_sync(lambda: _keys(path)) == ["k1", "k2"]
        state.close()

    trio.run(main)


def test_a_hop_started_within_the_round_finds_the_rounds_lines_written(path: Path) -> None:
    """A call queued into a hop in the round of its own change (the hop starts within that round)."""
    async def main() -> None:
        state = _committing(path)
        new_job(state, "k1")
        (seen,) = await batched._hop([lambda: _keys(path)])  # no checkpoint between the change and the hop
        assert seen.unwrap() == ["k1"]
        state.close()

    trio.run(main)


def test_flush_writes_the_round_then_fsyncs_once_for_every_waiting_job(path: Path, writes: list[int]) -> None:
    async def main() -> None:
        state = _committing(path)
        synced: list[int] = []

        async def job(i: int) -> None:
            new_job(state, f"k{i}", status=JobStatus.SUBMITTING)  # an intent: flush waits for it
            await state.flush()
            synced.append(state._synced)

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(job, i)
        assert state.syncs == 1 and synced == [6] * 6
        assert sum(writes) == 6
        state.close()

    trio.run(main)


def test_a_failed_write_is_raised_by_the_next_change_and_flush(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        state = _committing(path)

        def full(fd: int, data: bytes, offset: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(commit_module, "pwrite_all", full)
            new_job(state, "k1", status=JobStatus.SUBMITTING)
            await trio.lowlevel.checkpoint()  # the round's write fails: no traceback from the run loop
            with pytest.raises(LipbatchError, match="No space left"):
                new_job(state, "k2")
            with pytest.raises(LipbatchError, match="No space left"):
                await state.flush()
        await trio.lowlevel.checkpoint()  # space again: the kept line is written, changes go on
        new_job(state, "k3")
        await state.flush()
        state.close()

    trio.run(main)
    assert sorted(read_jobs(path)) == ["k1", "k3"]


def test_outside_a_trio_run_lines_are_written_at_once(path: Path, writes: list[int]) -> None:
    state = _committing(path)
    new_job(state, "k1")
    assert _keys(path) == ["k1"] and state.syncs == 0  # written, the fsync left to flush
    crash(state)
    assert sorted(read_jobs(path)) == ["k1"]


def test_closing_in_the_middle_of_a_round_keeps_its_changes(path: Path) -> None:
    async def main() -> None:
        state = _committing(path)
        new_job(state, "k1")
        state.close()
        assert not state.group_commit
        await trio.lowlevel.checkpoint()  # the run loop's round end finds nothing left to write

    trio.run(main)
    assert sorted(read_jobs(path)) == ["k1"]


def test_fsync_guards_are_held_around_every_fsync_until_removed(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result's folder (lipbatch.folder_syncs) is synced before the journal that will say DONE."""
    order: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    @contextlib.contextmanager
    def guard():
        order.append("enter")
        yield
        order.append("leave")

    async def main() -> None:
        state = State.open(path)
        remove = state.on_fsync(guard)
        order.clear()  # opening a new state wrote its snapshot
        new_job(state, "outside")  # no group commit: the line's own fsync
        assert order == ["enter", "fsync", "leave"]
        state.group_commit = True
        order.clear()
        new_job(state, "k1")
        await state.flush()
        assert order == ["enter", "fsync", "leave"]
        order.clear()
        state.compact()  # the snapshot's fsyncs inside, the emptied journal's after
        assert order[0] == "enter" and order.count("enter") == 1 and "fsync" in order[1:order.index("leave")]
        remove()
        order.clear()
        new_job(state, "k2")
        await state.flush()
        assert order == ["fsync"]
        state.close()

    monkeypatch.setattr(os, "fsync", fsync)
    trio.run(main)


def test_the_journal_fsync_runs_on_the_loop_while_fast_and_off_it_after_a_slow_one(path: Path) -> None:
    """A slow fsync sends the next 8 to worker threads, then one on the loop looks again (16 more if
    still slow); a fast one brings them back. The times come from the state's clock, not the disk."""
    where: list[str] = []
    loop_thread = threading.get_ident()

    @contextlib.contextmanager
    def guard():
        where.append("loop" if threading.get_ident() == loop_thread else "thread")
        yield

    async def main() -> None:
        state = _committing(path)
        state.on_fsync(guard)
        durations = iter([])

        def clock_from(seconds: list[float]) -> None:
            nonlocal durations
            ticks: list[float] = []
            for spent in seconds:  # one start and one end reading per fsync on the loop
                ticks += [0.0, spent]
            durations = iter(ticks)

        state.fsyncs_where.clock = lambda: next(durations)

        async def flush_one(i: int) -> None:
            new_job(state, f"k{i}", status=JobStatus.SUBMITTING)
            await state.flush()

        clock_from([0.0001, 0.0001, 0.003, 0.003, 0.0001, 0.0001])
        for i in range(2 + 1 + 8 + 1 + 16 + 1 + 1):
            await flush_one(i)
        assert where == ["loop", "loop", "loop"] + ["thread"] * 8 + ["loop"] + ["thread"] * 16 + ["loop", "loop"]
        assert state.fsyncs_where.on_loop == 6 and state.syncs == 30
        state.close()

    trio.run(main)
