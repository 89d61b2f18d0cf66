"""Output folders whose renames wait for the state's next fsync: one folder fsync for many results.

A result's rename is made durable by an fsync of its folder. What that must come before is
the state durably counting the result (DONE): a power cut must never leave a journal that
says "done" for a file the disk lost. With a local state under group commit, DONE becomes
durable only with the journal's next fsync, so the folder's fsync can wait for it: the state
holds ``held()`` around each of its fsyncs (``State.on_fsync``): the pending folders are synced
first, and a rename made while the journal's fsync runs is recorded only after it (that fsync may
cover lines written meanwhile, among them the DONE of a job renamed after the folders were synced).
The run syncs what is left at its end. Results finishing between two journal fsyncs (about one in five in
``benchmarks/overhead.py``) then share one folder fsync instead of one per scheduling round.
A folder never waits longer than ``max_age`` seconds: the next rename past it syncs them all.

A state that makes every change durable when it is made (PostgreSQL) has no later fsync to
wait for: there the folders are synced in the rename's own worker-thread hop, once per round
(``batched.once_per_round``), as before.

A kill -9 loses nothing either way (the kernel keeps the renames); only a power cut can, and
then only renames whose DONE was not durable yet (a rerun downloads those again, free).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator

from lipbatch import batched, confined


class FolderSyncs:
    """Open folders (by device and inode) with renames not yet fsync'd; safe from any thread."""

    def __init__(self, *, deferred: bool, max_age: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.deferred = deferred
        self.max_age = max_age
        self.syncs = 0  # folder fsyncs (tests and benchmarks count them)
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, int], int] = {}
        self._since: float | None = None  # when the oldest pending rename was made

    def after_rename(self, folder: int) -> None:
        """Take ownership of the open ``folder`` a result was just renamed in; it is synced later.

        Called in a worker thread. Not deferred: synced after every call of this hop, once per folder.
        """
        try:
            same = os.fstat(folder)
        except BaseException:
            os.close(folder)
            raise
        key = (same.st_dev, same.st_ino)
        if not self.deferred:
            if not batched.once_per_round(("folder", *key), lambda: self._locked_sync_close(folder)):
                os.close(folder)  # an earlier rename's follow-up syncs this folder
            return
        with self._lock:
            if key in self._pending:
                os.close(folder)
            else:
                self._pending[key] = folder
            if self._since is None:
                self._since = self._clock()
            if self._clock() - self._since >= self.max_age:
                self._sync_close(self._take())

    def _locked_sync_close(self, folder: int) -> None:
        with self._lock:
            self._sync_close([folder])

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """fsync every pending folder, then hold off new renames' records until the block ends.

        The state enters it around its own fsync (``State.on_fsync``): that fsync also covers
        lines written while it runs, so a rename recorded meanwhile must wait for the next one.
        """
        with self._lock:
            self._sync_close(self._take())
            yield

    def sync_pending(self) -> None:
        """fsync and close every pending folder (a filesystem that cannot fsync a folder is let be)."""
        with self.held():
            pass

    def _take(self) -> list[int]:
        """Every pending folder, no longer pending (the caller holds the lock)."""
        folders, self._pending, self._since = list(self._pending.values()), {}, None
        return folders

    def _sync_close(self, folders: list[int]) -> None:
        for folder in folders:
            try:
                confined.sync_folder(folder)
            finally:
                os.close(folder)
            self.syncs += 1  # under the lock (every caller holds it)
