"""Group commit for the local state: journal lines written once per scheduling round, fsyncs shared.

Without it every change is a line, the head's acknowledged mark and an fsync. A run sets
``group_commit``; then:

- **Writes**: inside a trio run, a change's line is kept in memory and written, with every
  other line of the same scheduling round, in one ``pwrite`` when the round ends
  (``lipbatch.round_end``).
  A worker thread of ``trio.to_thread`` starts in a later round than the change before it,
  and a ``batched`` hop does the round's writes before it starts, so a change is in the kernel
  before the file operation that follows it: the result's sha256 before its rename, a
  superseded take before its file moves (that one is recorded from a worker thread through the
  loop, which writes it at once: ``write_pending``).
  A kill -9 loses at most the current round's lines, none of which any request or file
  operation has yet depended on.
- **fsyncs**: ``flush`` (awaited before a create and before the next request for a job whose
  task id was recorded) writes what is pending, then the head, then one fsync for every
  caller waiting meanwhile.
- **Where the fsync runs**: on the event loop while it is fast, else in a worker thread
  (``lipbatch.loop_while_fast``). A flush holds a job's provider slot (the intent before its
  create, the task id before its poll), and a worker-thread hop comes back only a scheduling
  round later: ~7 ms in ``benchmarks/overhead.py``, for an fsync of ~0.15 ms alone (~1 ms on the
  loop with the result folders it syncs first).

Outside a trio run (tests, commands) lines are written at once and only the fsync waits.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import trio

from lipbatch import round_end
from lipbatch.errors import LipbatchError
from lipbatch.loop_while_fast import LoopWhileFast
from lipbatch.state.durable import pwrite_all
from lipbatch.state.replay import head_line

_GATHER_ROUNDS = 3  # scheduling rounds a flush waits for other jobs' changes before its fsync


class GroupCommit:
    """Mixin of ``State``: the journal's writes and fsyncs under group commit."""

    path: Path
    syncs: int
    _fd: int | None
    _journal: Path
    _journal_size: int
    _base: int
    _seq: int
    _written: int
    _synced: int
    _critical: int

    def _init_group_commit(self) -> None:
        self._group_commit = False
        self._stop_round_writes: Callable[[], None] | None = None
        self._unwritten = bytearray()  # lines of this round, not yet written
        self.write_error: LipbatchError | None = None
        self._syncing: trio.Event | None = None
        self._fsync_guards: list[Callable[[], AbstractContextManager[object]]] = []
        self.fsyncs_where = LoopWhileFast()  # the journal's fsync: on the loop while it is fast

    def on_fsync(self, guard: Callable[[], AbstractContextManager[object]]) -> Callable[[], None]:
        """Hold ``guard()`` (entered from any thread) around each fsync of this state; returns its remover.

        What a change records may need other files durable first (a result's rename:
        ``lipbatch.folder_syncs`` syncs its folders on entering, and holds off new renames
        until the fsync is done, since that fsync may cover lines written meanwhile).
        """
        self._fsync_guards.append(guard)
        return lambda: self._fsync_guards.remove(guard)

    def _guarded(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for guard in list(self._fsync_guards):
            stack.enter_context(guard())
        return stack

    def _sync_journal(self, fd: int) -> None:
        with self._guarded():
            os.fsync(fd)

    @property
    def group_commit(self) -> bool:
        return self._group_commit

    @group_commit.setter
    def group_commit(self, on: bool) -> None:
        if on == self._group_commit:
            return
        if on:
            self._stop_round_writes = round_end.call_each_round(self._write_round)  # None outside a run
            self._group_commit = True
            return
        try:
            self.write_pending()
        finally:
            if self._stop_round_writes is not None:
                self._stop_round_writes()
                self._stop_round_writes = None
            self._group_commit = False

    def _write_round(self) -> None:
        try:
            self.write_pending()
        except LipbatchError as exc:  # raised by the next change or flush (a round's end must not raise)
            self.write_error = exc

    def _write_line(self, data: bytes) -> None:
        """``data`` for the round's write; outside a run (or without group commit) written at once,
        and on failure not kept (the change it records is refused)."""
        if self.write_error is not None:
            raise self.write_error
        self._unwritten += data
        if self._stop_round_writes is None:
            try:
                self.write_pending()
            except LipbatchError:
                self._unwritten.clear()  # it held only this line: the others went out at once
                raise

    def journal_error(self, exc: OSError) -> LipbatchError:
        return LipbatchError(f"cannot write state journal {self._journal}: {exc.strerror or exc}")

    def write_pending(self) -> None:
        """Write the lines kept this round (from here on a kill -9 keeps them)."""
        if not self._unwritten or self._fd is None:
            return
        data = bytes(self._unwritten)
        try:
            pwrite_all(self._fd, data, self._journal_size)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._journal_size)  # never leave a half line for the next write
            raise self.journal_error(exc) from exc
        self._unwritten.clear()
        self._journal_size += len(data)
        self.write_error = None

    def _drop_pending(self) -> None:
        """The snapshot just written holds every pending line."""
        self._unwritten.clear()

    async def flush(self) -> None:
        """Group commit: make every change written so far durable, sharing one fsync among callers.

        The runner awaits it before a create is sent (the intent) and before the next request
        for a job whose task id it recorded (a poll or the download): before anything else
        happens for that job. One caller at a time runs the fsync (after letting runnable jobs
        write); whoever calls meanwhile waits for it and, if it did not cover their change, for
        the next one: many jobs' changes share one fsync. Only changes about money (an intent, a
        task id) make a flush wait; the others (a result URL, DONE, an upload handle) become
        durable with the next fsync or at close, and losing them to a power cut costs a free
        re-poll, re-download or re-upload, never money.
        """
        target = self._critical  # this caller's money changes, not those written after it asked
        while self._synced < target:
            if self._syncing is not None:  # an fsync is under way: wait for it, then look again
                await self._syncing.wait()
                continue
            done = trio.Event()
            self._syncing = done
            try:
                for _ in range(_GATHER_ROUNDS):  # let other runnable jobs write first: one fsync for all
                    await trio.lowlevel.checkpoint()
                fd = self._fd
                if fd is None:
                    raise LipbatchError(f"state {self.path} is closed")
                covered = self._written
                self.write_pending()  # a round's write that failed is tried again here, or raised
                try:
                    pwrite_all(fd, head_line(self._base, self._seq), 0)  # acknowledged: what this fsync covers
                    await self.fsyncs_where.run(functools.partial(self._sync_journal, fd))
                except OSError as exc:
                    raise self.journal_error(exc) from exc
                self.syncs += 1
                self._synced = max(self._synced, covered)
            finally:
                self._syncing = None
                done.set()
