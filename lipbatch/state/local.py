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
from lipbatch.state.durable import atomic_write_bytes, fsync_directory, write_all
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
from lipbatch.state.replay import Loaded, journal_path, load

REDACTED = "[redacted]"
_MIN_SECRET_LEN = 4


class State:
    """Opened by the runner: holds the lock for its lifetime."""

    def __init__(self, path: Path, loaded: Loaded, lock: dict[str, Any], *, compact_every: int, redact: tuple[str, ...]):
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

    @classmethod
    def open(cls, path: Path, *, compact_every: int = 1000, redact: Iterable[str] = ()) -> State:
        """Lock and load the state at ``path`` (created on first update).

        Raises ``StateLockedError`` naming the holder's pid while another live
        process has it open; a lock left by a dead process is taken over.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(path)
        try:
            loaded = load(path, read_only=False)
            self = cls(path, loaded, lock, compact_every=compact_every, redact=tuple(s for s in redact if s and len(s) >= _MIN_SECRET_LEN))
            self._open_journal(loaded)
        except BaseException:
            release_lock(path, lock)
            raise
        return self

    def _open_journal(self, loaded: Loaded) -> None:
        for leftover in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):  # compactions a crash cut short
            leftover.unlink(missing_ok=True)
        existed = self._journal.exists()
        self._fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not existed:
            fsync_directory(self.path.parent)
        if loaded.journal_length != loaded.valid_length:
            os.ftruncate(self._fd, loaded.valid_length)  # drop the torn tail so appends start on a fresh line
            os.fsync(self._fd)
        if self._skipped:
            self.compact()

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
        for secret in self._redact:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _append(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            raise LipbatchError(f"state {self.path} is closed")
        line = json.dumps({"format": STATE_FORMAT, "seq": self._seq + 1, **event}, separators=(",", ":"), allow_nan=False)
        data = line.encode() + b"\n"
        try:
            write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._journal_size)  # never leave a half line for the next append
            raise LipbatchError(f"cannot write state journal {self._journal}: {exc}") from exc
        self._journal_size += len(data)
        self._journal_events += 1
        self._seq += 1

    def _maybe_compact(self) -> None:
        if self._journal_events >= max(self._compact_every, len(self.jobs) + len(self.uploads) + len(self.takes)):
            self.compact()

    def compact(self) -> None:
        """Fold the journal into the snapshot (atomically), then empty the journal."""
        if self._fd is None:
            raise LipbatchError(f"state {self.path} is closed")
        now = time.time()
        uploads = [
            json.dumps(upload_dict(u), separators=(",", ":")) for u in self.uploads.values() if not expired(u, now, margin=0.0)
        ]
        jobs = [json.dumps(job_dict(record), separators=(",", ":")) for record in self.jobs.values()]
        takes = [json.dumps(take_dict(take), separators=(",", ":")) for take in self.takes]
        text = (
            f'{{"format": {STATE_FORMAT}, "seq": {self._seq},\n"uploads": [\n'
            + ",\n".join(uploads)
            + '\n],\n"takes": [\n'
            + ",\n".join(takes)
            + '\n],\n"jobs": [\n'
            + ",\n".join(jobs)
            + "\n]}\n"
        )
        try:
            atomic_write_bytes(self.path, text.encode())
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        except OSError as exc:
            raise LipbatchError(f"cannot write state file {self.path}: {exc}") from exc
        self._journal_size = 0
        self._journal_events = 0
        self._skipped = 0

    def close(self) -> None:
        """Compact (when the journal holds anything) and release the lock; safe to call twice."""
        if self._fd is None:
            return
        try:
            if self._journal_events or self._journal_size:
                self.compact()
        finally:
            os.close(self._fd)
            self._fd = None
            release_lock(self.path, self._lock)

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

