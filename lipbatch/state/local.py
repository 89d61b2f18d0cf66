"""The local state backend: a snapshot file plus an fsync'd journal beside the manifest.

Not thread-safe: one ``State`` is used from one thread (the trio loop).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lipbatch.errors import LipbatchError
from lipbatch.redact import REDACTED as REDACTED  # re-exported: what stored secrets become
from lipbatch.redact import Redactor
from lipbatch.state.durable import fsync_directory, pwrite_all, replace_all, write_temp
from lipbatch.state.group_commit import GroupCommit
from lipbatch.state.learned import LearnedFiles
from lipbatch.state.lock import acquire_lock, release_lock
from lipbatch.state.records import (
    REQUIRED_ON_CREATE,
    SETTABLE,
    STATE_FORMAT,
    JobRecord,
    JobStatus,
    TakeRecord,
    UploadRecord,
    expired,
    job_dict,
    take_dict,
    upload_dict,
    upload_key,
)
from lipbatch.state.replay import HEAD_WIDTH, Loaded, backup_path, head_line, journal_path, load


def snapshot_bytes(seq: int, jobs: Iterable[JobRecord], uploads: Iterable[UploadRecord],
                   takes: Iterable[TakeRecord]) -> bytes:
    """The snapshot file's content (one record per line; expired uploads dropped)."""
    now = time.time()
    lines = {
        "uploads": [json.dumps(upload_dict(u), separators=(",", ":")) for u in uploads if not expired(u, now, margin=0.0)],
        "takes": [json.dumps(take_dict(take), separators=(",", ":")) for take in takes],
        "jobs": [json.dumps(job_dict(record), separators=(",", ":")) for record in jobs],
    }
    text = f'{{"format": {STATE_FORMAT}, "seq": {seq}, "journal_head": true,\n' + ",\n".join(
        f'"{name}": [\n' + ",\n".join(items) + "\n]" for name, items in lines.items()) + "}\n"
    return text.encode()


def write_snapshot(path: Path, data: bytes) -> None:
    """The snapshot, then its backup (a crash never leaves a backup ahead of the snapshot)."""
    replace_all([(write_temp(path, data), path), (write_temp(backup_path(path), data), backup_path(path))])


_LINE = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # one journal line (built once: ~5 per job)
_MONEY_STATUSES = (JobStatus.SUBMITTING, JobStatus.IN_FLIGHT)


class State(GroupCommit, LearnedFiles):
    """Opened by the runner: holds the lock for its lifetime."""

    def __init__(self, path: Path, loaded: Loaded, lock: dict[str, Any], *, compact_every: int, redact: Redactor):
        self.path = path
        self.jobs: dict[str, JobRecord] = loaded.jobs
        self.uploads: dict[tuple[str, str], UploadRecord] = loaded.uploads
        self.takes: list[TakeRecord] = loaded.takes
        self._seq = loaded.seq
        self._journal_events = loaded.journal_events
        self._lock = lock
        self._compact_every = compact_every
        self._redact = redact
        self._journal = journal_path(path)
        self._fd: int | None = None
        self._journal_size = loaded.valid_length
        self._skipped = loaded.skipped
        self._base = loaded.head.base if loaded.head is not None else loaded.seq  # the journal's head
        self._has_head = loaded.head is not None
        self._init_group_commit()  # off until the runner sets ``group_commit``
        self.syncs = 0  # journal fsyncs (tests and benchmarks count them)
        self._written = self._synced = 0  # appends written / covered by an fsync
        self._critical = 0  # the last append a flush must cover (money: an intent or a task id)

    @classmethod
    def open(cls, path: Path, *, compact_every: int = 1000, redact: Iterable[str] = ()) -> State:
        """Lock and load the state at ``path`` (created on first update).

        Raises ``StateLockedError`` naming the holder's pid while another live
        process has it open; a lock left by a dead process is taken over.
        ``StateDamagedError`` when files are missing or cut (``lipbatch state repair``).
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LipbatchError(f"cannot create the state folder {path.parent}: {exc.strerror or exc}; make its "
                                "parent writable or set state_file: in the manifest to a writable place") from exc
        lock = acquire_lock(path)
        try:
            return cls.start(path, load(path, read_only=False), lock, compact_every=compact_every, redact=redact)
        except BaseException:
            release_lock(path, lock)
            raise

    @classmethod
    def start(cls, path: Path, loaded: Loaded, lock: dict[str, Any], *, compact_every: int = 1000,
              redact: Iterable[str] = ()) -> State:
        """A writer for ``loaded`` under a lock already taken (``open``; ``repair`` with rebuilt records)."""
        self = cls(path, loaded, lock, compact_every=compact_every, redact=Redactor(redact))
        try:
            self._open_journal(loaded)
        except OSError as exc:
            if self._fd is not None:
                os.close(self._fd)
            raise LipbatchError(f"cannot write the state journal {self._journal}: {exc.strerror or exc}; make it "
                                f"and its folder {path.parent} writable by this user") from exc
        if self._skipped or not self._has_head or not loaded.snapshot:
            # fold lines the snapshot already holds; give an older lipbatch's journal its head; a new state
            # gets its snapshot (and backup) before any event, so a journal cut to nothing is seen
            self.compact()
        return self

    def _open_journal(self, loaded: Loaded) -> None:
        for target in (self.path, backup_path(self.path), self._journal):  # writes a crash cut short
            for leftover in self.path.parent.glob(f".{glob.escape(target.name)}.{'?' * 12}.tmp"):
                leftover.unlink(missing_ok=True)
        if not loaded.journal:
            self._fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            pwrite_all(self._fd, head_line(self._base, self._seq), 0)
            os.fsync(self._fd)
            fsync_directory(self.path.parent)
            self._journal_size, self._has_head = HEAD_WIDTH, True
            return
        self._fd = os.open(self._journal, os.O_WRONLY)
        if loaded.journal_length != loaded.valid_length:
            os.ftruncate(self._fd, loaded.valid_length)  # drop the torn tail so appends start on a fresh line
            os.fsync(self._fd)

    # -- reading

    def job(self, key: str) -> JobRecord | None:
        return self.jobs.get(key)

    def upload(self, endpoint: str, account: str, sha256: str) -> UploadRecord | None:
        """A reusable upload of this content at this endpoint, or None (also when (nearly) expired).

        A format-1 record (no endpoint) of the same account is reused unless it came from a rehearsal.
        """
        for key in (upload_key(endpoint, account, sha256), upload_key(None, account, sha256)):
            record = self.uploads.get(key)
            if record is not None and not expired(record, time.time()):
                return record
        return None

    def takes_of(self, output: str) -> list[TakeRecord]:
        return [take for take in self.takes if take.output == output]

    # -- writing

    def update(self, key: str, **fields: Any) -> JobRecord:
        """Change a job (creating it on first call); durable on disk before this returns."""
        if not isinstance(key, str):
            raise TypeError(f"job key must be a string, not {type(key).__name__}")
        unknown = fields.keys() - SETTABLE
        if unknown:
            raise TypeError(f"unknown JobRecord field(s): {sorted(unknown)}")
        changes = {name: self._clean(name, value) for name, value in fields.items()}
        record = self.jobs.get(key)
        if record is None:
            missing = [name for name in REQUIRED_ON_CREATE if name not in changes]
            if missing:
                raise ValueError(f"first update of job {key} needs {missing}")
        else:
            changes = {name: value for name, value in changes.items() if getattr(record, name) != value}
            if not changes:
                return record
        if "updated_at" not in fields:
            changes["updated_at"] = time.time()
        self._append({"op": "job", "key": key, "set": changes})
        if "task_id" in changes or changes.get("status") in _MONEY_STATUSES:
            self._critical = self._written  # an intent or a task id: ``flush`` waits for it
        if record is None:
            record = JobRecord(key=key, **changes)
            self.jobs[key] = record
        else:
            for name, value in changes.items():
                setattr(record, name, value)
        self._maybe_compact()
        return record

    def record_upload(self, endpoint: str, account: str, sha256: str, handle: str,
                      expires_at: float | None = None) -> None:
        """Remember an uploaded input so later jobs (and reruns) reuse it instead of uploading again."""
        upload = UploadRecord(account, sha256, self._clean("handle", handle), expires_at, endpoint)
        key = upload_key(endpoint, account, sha256)
        if self.uploads.get(key) == upload:
            return
        self._append({"op": "upload", **upload_dict(upload)})
        self.uploads[key] = upload
        self._maybe_compact()

    def forget_upload(self, upload: UploadRecord) -> None:
        """The provider no longer knows this handle (purged, deleted): the next use uploads again."""
        key = upload_key(upload.endpoint, upload.account, upload.sha256)
        if self.uploads.get(key) is None:
            return
        self._append({"op": "upload", **upload_dict(upload), "handle": ""})
        del self.uploads[key]
        self._maybe_compact()

    def record_take(self, take: TakeRecord) -> None:
        """Keep a superseded take's task id, cost, sha256 and where its file is kept."""
        self._append({"op": "take", **take_dict(take)})
        self.takes.append(take)
        self._maybe_compact()

    def _clean(self, name: str, value: Any) -> Any:
        if name == "status":
            return JobStatus(value)
        if name == "outputs":
            return [self.scrub(str(item)) for item in value]
        return self.scrub(value) if isinstance(value, str) else value

    def scrub(self, text: str) -> str:
        """``text`` with the ``redact`` values replaced: a provider may echo a credential in an error."""
        return self._redact.scrub(text)

    def scrub_obj(self, value: Any) -> Any:
        """``value`` (nested dicts, lists, strings) with every form of the credentials redacted."""
        return self._redact.scrub_obj(value)

    def _append(self, event: dict[str, Any]) -> None:
        """One line, then the head's acknowledged mark, under one fsync: a journal cut later is detected.

        With ``group_commit``, the line goes with its round's and ``flush`` writes the mark and
        fsyncs once for every line since (``lipbatch.state.group_commit``).
        """
        if self._fd is None:
            raise LipbatchError(f"state {self.path} is closed")
        seq = self._seq + 1
        data = _LINE.encode({"format": STATE_FORMAT, "seq": seq, **event}).encode() + b"\n"
        self._write_line(data)
        if not self.group_commit:  # else ``flush`` writes the head, just before the fsync it describes
            try:
                pwrite_all(self._fd, head_line(self._base, seq), 0)
                self._sync_journal(self._fd)
            except OSError as exc:
                self._journal_size -= len(data)
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._journal_size)  # the line never counted: no half-done append
                raise self.journal_error(exc) from exc
            self.syncs += 1
        self._journal_events += 1
        self._seq = seq
        self._written += 1
        if not self.group_commit:
            self._synced = self._written

    def _maybe_compact(self) -> None:
        if self._journal_events >= max(self._compact_every, len(self.jobs) + len(self.uploads) + len(self.takes)):
            self.compact()

    def compact(self) -> None:
        """Fold the journal into the snapshot (atomically), then empty the journal."""
        if self._fd is None:
            raise LipbatchError(f"state {self.path} is closed")
        data = snapshot_bytes(self._seq, self.jobs.values(), self.uploads.values(), self.takes)
        try:
            with self._guarded():
                write_snapshot(self.path, data)
            self._drop_pending()  # the snapshot holds them; the journal is emptied next
            self._reset_journal()
            self._synced = self._written
        except OSError as exc:
            raise LipbatchError(f"cannot write state file {self.path}: {exc.strerror or exc}") from exc
        self._journal_events = 0
        self._skipped = 0

    def _reset_journal(self) -> None:
        """Empty the journal down to a head continuing the snapshot just written.

        The head is rewritten before the truncation: a crash between them leaves old lines that the
        snapshot already holds (skipped on replay). A journal without a head is replaced atomically.
        """
        assert self._fd is not None
        head = head_line(self._seq, self._seq)
        if self._has_head:
            pwrite_all(self._fd, head, 0)
            os.ftruncate(self._fd, HEAD_WIDTH)
            os.fsync(self._fd)
        else:
            replace_all([(write_temp(self._journal, head), self._journal)])
            fd = os.open(self._journal, os.O_WRONLY)
            os.close(self._fd)
            self._fd, self._has_head = fd, True
        self._base = self._seq
        self._journal_size = HEAD_WIDTH

    def close(self) -> None:
        """Compact (when the journal holds anything) and release the lock; safe to call twice."""
        if self._fd is None:
            return
        try:
            self.group_commit = False  # what this round changed is written first
            if self._journal_events or self._journal_size > HEAD_WIDTH:
                self.compact()
        finally:
            os.close(self._fd)
            self._fd = None
            release_lock(self.path, self._lock)

    def __enter__(self) -> State:
        return self

    def __exit__(self, exc_type: object, error: BaseException | None, traceback: object) -> None:
        if error is None:
            self.close()
            return
        with contextlib.suppress(LipbatchError):  # e.g. a full disk: the error already raised says so
            self.close()

