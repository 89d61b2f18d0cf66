"""The output folder as lipbatch's own: which files it wrote, where superseded takes are kept.

Rules (the campaign-lifecycle issue):

- A file at an output path is lipbatch's when its sha256 is one the state
  recorded for that path (a job's current take, or a superseded take). Any other
  file there is the user's: it is never overwritten, and a job that would write
  it is not submitted (``blocked``) unless ``--force``.
- A new take (redo, a changed request, another endpoint, a lost output made
  again) never destroys the old one: just before the new result is written, the
  old file moves to ``takes/<path>.take<N><suffix>`` (``paths.take_path``), and
  the state keeps that take's task id, cost and sha256 (``TakeRecord``).
- Take numbers count per output path: a re-recorded line's job continues the
  numbering of the job it replaces.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets as _secrets
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from lipbatch import batched, confined
from lipbatch.hashing import HashCache
from lipbatch.model import Job
from lipbatch.paths import take_path
from lipbatch.state import JobRecord, JobStatus, State, TakeRecord

_T = TypeVar("_T")
_NOTHING_THERE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # as ``Path.exists`` reads a failed stat


class Outputs:
    """Ownership checks and take keeping for one run's output folder."""

    def __init__(self, output_dir: Path, state: State, hashes: HashCache) -> None:
        self.dir = output_dir
        self.state = state
        self.hashes = hashes
        self._paths: dict[str, Path] = {}

    def path(self, output: str) -> Path:
        path = self._paths.get(output)
        if path is None:
            path = self._paths[output] = self.dir / output
        return path

    # -- ownership

    def owners(self, output: str) -> list[JobRecord]:
        return [record for record in self.state.jobs.values() if output in record.outputs]

    def known_shas(self, output: str) -> set[str]:
        shas = {r.output_sha256 for r in self.owners(output) if r.output_sha256}
        shas.update(t.sha256 for t in self.state.takes_of(output) if t.sha256)
        return shas

    def sha(self, path: Path) -> str | None:
        """The sha256 of the file at ``path``; None when nothing is there, "" when it is not a readable file."""
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return None if exc.errno in _NOTHING_THERE else ""
        if not stat.S_ISREG(mode):
            return ""
        try:
            return self.hashes.sha256(path)[0]
        except OSError:
            return ""

    def foreign(self, output: str) -> bool:
        """A file is at ``output`` whose bytes lipbatch never recorded there."""
        sha = self.sha(self.path(output))
        return sha is not None and sha not in self.known_shas(output)

    def holds(self, output: str, record: JobRecord) -> bool:
        """The file holds the record's take (re-read only when its size or mtime changed)."""
        path = self.path(output)
        try:
            st = path.stat()
            if record.output_size is not None and st.st_size != record.output_size:
                return False
            return self.hashes.sha256(path, st)[0] == record.output_sha256
        except OSError:
            return False

    # -- takes

    def next_take(self, job: Job) -> int:
        """One past every take made so far for any of the job's outputs."""
        numbers = [r.take for out in job.outputs for r in self.owners(out)]
        numbers += [t.take for out in job.outputs for t in self.state.takes_of(out)]
        return max(numbers, default=0) + 1

    def archive(self, record: JobRecord, reason: str, outputs: list[str] | None = None) -> None:
        """Record ``record``'s current take as superseded (idempotent across a crash and rerun)."""
        for output in outputs if outputs is not None else record.outputs:
            if any(t.key == record.key and t.take == record.take for t in self.state.takes_of(output)):
                continue
            done = record.status is JobStatus.DONE and record.output_sha256 and not record.lost
            self.state.record_take(TakeRecord(
                output=output, take=record.take, key=record.key, endpoint=record.endpoint, task_id=record.task_id,
                credits=record.credits, sha256=record.output_sha256 if done else None,
                size=record.output_size if done else None, kept=take_path(output, record.take) if done else None,
                reason=reason, at=time.time()))

    def make_room(self, output: str, key: str, *, force: bool) -> bool:
        """Before a new take is written at ``output``: move lipbatch's old take aside.

        Returns False when a file lipbatch did not write is there (and not ``force``). Called in a
        worker thread (it reads and moves files); what it records goes through the trio thread,
        which owns the state.
        """
        path = self.path(output)
        sha = self.sha(path)
        if sha is None:
            return True
        def claim() -> tuple[str, Path | None]:
            verdict = self._claim(output, key, sha, force)
            self.state.write_pending()  # on record before this thread moves the file (it goes on at once)
            return verdict

        verdict, kept = _on_loop(claim)
        if verdict == "take":
            assert kept is not None
            if not kept.exists():
                confined.move(self.dir, path, kept)  # never through a symlinked folder below the output folder
                self.hashes.remember(kept, sha)
            else:
                confined.remove(self.dir, path)
        return verdict != "foreign"

    def _claim(self, output: str, key: str, sha: str, force: bool) -> tuple[str, Path | None]:
        """What the file at ``output`` (bytes ``sha``) is, recording a superseded take: "take" (move it to
        the returned path), "ours" (overwrite it) or "foreign"."""
        for record in self.owners(output):
            if record.key != key and record.output_sha256 == sha:
                self.archive(record, "changed", [output])
                self.state.update(record.key, outputs=[o for o in record.outputs if o != output])
        for take in self.state.takes_of(output):
            if take.sha256 == sha and take.kept:
                return "take", self.path(take.kept)
        current = self.state.job(key)
        ours = force or (current is not None and current.output_sha256 == sha)
        return ("ours" if ours else "foreign"), None


def _on_loop(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` on the trio thread: directly when called there, else through ``trio.from_thread``."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:  # a worker thread of trio.to_thread, or of a batched hop
        return trio.from_thread.run_sync(fn, trio_token=batched.hop_token())
    return fn()


def remove_partial_files(folder: Path) -> None:
    """Delete temp files (``.<name>.<random>.part``) a killed run left; the state lock makes them ours."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and name.endswith(".part"):
                Path(root, name).unlink(missing_ok=True)


def copy_file(source: Path, dest: Path, *, root: Path | None = None) -> None:
    """Copy atomically (temp file + fsync + rename), so a crash never leaves a half output.

    ``root``: the output folder; no folder between it and ``dest`` may be a symlink (default: ``dest``'s
    folder). Raises ``OutputWriteError`` naming the path when the copy cannot be written.
    """
    folder = confined.open_folder(root if root is not None else dest.parent, dest)
    tmp = f".{dest.name}.{_secrets.token_hex(6)}.part"
    try:
        with confined.writing(dest):
            try:
                with open(source, "rb") as src, os.fdopen(confined.create_file(folder, tmp), "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest.name, src_dir_fd=folder, dst_dir_fd=folder)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=folder)
    finally:
        os.close(folder)
