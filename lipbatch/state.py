"""Crash-safe, resumable run state: what was paid for, what is in flight, what is done.

Money is spent between "POST sent" and "task id recorded", so every change is
written to an append-only journal and fsync'd before ``update`` returns; a
kill -9 at any instant leaves a state that replays to the last acknowledged
change. Files, for a state path ``S``:

``S``
    The snapshot: ``{"format": 1, "seq": N, "uploads": [...], "jobs": [...]}``,
    one job per line. Written only atomically (temp file in the same folder,
    fsync, ``os.replace``, fsync of the folder).
``S.journal``
    JSON lines, one event each, carrying ``"format"`` and a sequence number:
    ``{"format":1,"seq":N,"op":"job","key":K,"set":{field: value}}`` or
    ``{"format":1,"seq":N,"op":"upload","account":A,"sha256":H,"handle":X,"expires_at":T}``.
``S.lock``
    ``{"pid", "host", "started"}`` of the process that has the state open.

Replay = snapshot + journal lines whose ``seq`` is above the snapshot's. The
sequence numbers make a crash between "snapshot replaced" and "journal
truncated" harmless (the old lines are skipped) and turn a deleted snapshot or
a lost line into a clear error instead of silently missing jobs.

Decisions where the contract left room:

* A line counts only when it ends with a newline: a last line without one is a
  write the crash interrupted, so it is ignored even if it happens to parse.
  The last complete line is also ignored when it does not decode (file systems
  may leave zeros after a crash); any other undecodable line, an unknown field,
  op or status, or a newer format is a ``LipbatchError`` naming file and line.
* ``update`` that changes nothing writes nothing (a rerun of a finished
  manifest leaves the files untouched); ``updated_at`` is stamped with the
  current time unless given.
* The journal is compacted on close and whenever it holds more than
  ``max(compact_every, number of records)`` events, so compaction costs stay
  proportional to the work done however large the state is.
* ``upload`` treats a record expiring within ``UPLOAD_EXPIRY_MARGIN`` seconds
  as expired: a handle about to vanish is not worth a failed submission.
  Expired uploads are dropped at compaction.
* Lock: created with ``O_CREAT|O_EXCL``. Checking a lock and taking over a
  stale one happen under an ``flock`` of the state's folder, so two processes
  finding the same stale lock cannot both win. A holder is stale when its pid
  no longer exists (or is a zombie) on this host; a lock from another host is
  never taken over. An unreadable lock older than ``_LOCK_WRITE_GRACE`` seconds
  is stale (its writer died before writing it).
* ``redact``: values given to ``State.open`` (credentials) are replaced by
  ``[redacted]`` in any string field before it is stored, in case a provider
  echoes a secret back in an error message.

Not thread-safe: one ``State`` is used from one thread (the trio loop).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets as _secrets
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from lipbatch.errors import LipbatchError, StateLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

STATE_FORMAT = 1
UPLOAD_EXPIRY_MARGIN = 60.0
REDACTED = "[redacted]"
_LOCK_WRITE_GRACE = 5.0
_MIN_SECRET_LEN = 4


class JobStatus(StrEnum):
    SUBMITTING = "submitting"  # intent recorded, POST under way / unknown outcome after a crash
    UNKNOWN = "unknown"  # after a crash: intent but no task id, and reconcile failed
    IN_FLIGHT = "in_flight"  # task id recorded, not terminal
    SUCCEEDED = "succeeded"  # provider finished; result not (yet) downloaded/verified
    DONE = "done"  # output(s) written and verified; output_sha256 set
    FAILED = "failed"  # terminal failure (error, error_kind set)


REFUSED = "refused"  # error_kind of a SUBMITTING record whose last POST created nothing
NOT_CREATED = (REFUSED, "out_of_credits")


@dataclass
class JobRecord:
    """One job's durable progress. Read it freely; change it only through ``State.update``."""

    key: str
    account: str
    kind: str
    status: JobStatus
    outputs: list[str]  # relative output paths this key was written to
    task_id: str | None = None
    attempts: int = 0  # create POSTs made
    credits: float | None = None  # credits charged, as the provider reported
    result_url: str | None = None
    result_expires_at: float | None = None
    output_sha256: str | None = None
    output_size: int | None = None
    error: str | None = None  # provider's reason (never secrets)
    # "moderation" | "permanent" | "out_of_credits" | "transient" | "timeout" | "unknown" | "refused"
    error_kind: str | None = None
    updated_at: float = 0.0

    @property
    def no_task_exists(self) -> bool:
        """A SUBMITTING record whose last create was definitely refused: nothing was created, so
        resubmitting cannot pay twice."""
        return self.status is JobStatus.SUBMITTING and self.error_kind in NOT_CREATED


@dataclass
class UploadRecord:
    account: str
    sha256: str
    handle: str
    expires_at: float | None = None


_JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
_SETTABLE = frozenset(_JOB_FIELDS) - {"key"}
_REQUIRED_ON_CREATE = ("account", "kind", "outputs", "status")
_JOB_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(JobRecord) if f.name not in (*_REQUIRED_ON_CREATE, "key")
}
_UPLOAD_FIELDS = frozenset(f.name for f in fields(UploadRecord))
_LINE_KEYS = {
    "job": frozenset({"format", "seq", "op", "key", "set"}),
    "upload": frozenset({"format", "seq", "op"}) | _UPLOAD_FIELDS,
}


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


# -- durable file primitives -------------------------------------------------------------------


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive power loss (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{_secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- lock ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _directory_mutex(directory: Path) -> Iterator[None]:
    """Serialise lock checks/takeovers between processes; the kernel drops it if we die."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's holder, or None when the file is empty or garbled (FileNotFoundError passes)."""
    raw = path.read_bytes()
    try:
        holder = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    return holder


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    try:  # a killed but unreaped child is a zombie: it will never run again
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split(" ", 1)[0] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return True


def _lock_message(state: Path, lock: Path, holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    host = holder.get("host") or "?"
    started = holder.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    return (
        f"state file {state} is in use by lipbatch pid {pid} on host {host} (since {since}); "
        f"wait for it to finish or stop it. If that process is gone, delete {lock}"
    )


def _acquire_lock(state: Path) -> dict[str, Any]:
    lock = lock_path(state)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    with _directory_mutex(lock.parent):
        for _ in range(5):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            else:
                try:
                    _write_all(fd, json.dumps(me).encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                fsync_directory(lock.parent)
                return me
            try:
                holder = _read_lock(lock)
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if holder is None:
                if age < _LOCK_WRITE_GRACE:
                    raise StateLockedError(f"state file {state} is in use by another lipbatch process (lock {lock} is being written)")
            elif holder.get("host") != me["host"] or holder["pid"] == me["pid"] or _pid_alive(holder["pid"]):
                raise StateLockedError(_lock_message(state, lock, holder))
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
    raise StateLockedError(f"state file {state}: could not take the lock {lock}")


def _release_lock(state: Path, me: dict[str, Any]) -> None:
    lock = lock_path(state)
    try:
        holder = _read_lock(lock)
    except FileNotFoundError:
        return
    if holder is not None and holder.get("pid") == me["pid"] and holder.get("started") == me["started"]:
        lock.unlink(missing_ok=True)
        fsync_directory(lock.parent)


# -- replay ----------------------------------------------------------------------------------------


class _NeedsRetry(LipbatchError):
    """Snapshot and journal do not fit together: maybe a compaction ran while we read."""


@dataclass
class _Loaded:
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    uploads: dict[tuple[str, str], UploadRecord] = field(default_factory=dict)
    seq: int = 0  # last event applied
    valid_length: int = 0  # bytes of the journal that hold complete, applied-or-skipped lines
    journal_length: int = 0
    journal_events: int = 0  # lines applied from the journal
    skipped: int = 0  # lines already contained in the snapshot


def _check_format(value: Any, where: str) -> None:
    if value == STATE_FORMAT:
        return
    if isinstance(value, int) and value > STATE_FORMAT:
        raise LipbatchError(
            f"{where} was written by a newer lipbatch (state format {value}; this version reads format {STATE_FORMAT}); upgrade lipbatch"
        )
    raise LipbatchError(f"{where}: not a lipbatch state (format {value!r})")


def _job_from_dict(data: Any, where: str) -> JobRecord:
    if not isinstance(data, dict):
        raise LipbatchError(f"{where}: job record is not an object")
    unknown = data.keys() - _JOB_FIELDS
    if unknown:
        raise LipbatchError(f"{where}: unknown job field(s) {sorted(unknown)} (written by a newer lipbatch?)")
    try:
        record = JobRecord(**data)
        record.status = JobStatus(record.status)
    except (TypeError, ValueError) as exc:
        raise LipbatchError(f"{where}: invalid job record ({exc})") from exc
    return record


def _upload_from_dict(data: Any, where: str) -> UploadRecord:
    if not isinstance(data, dict) or data.keys() - {"op", "seq", "format"} - _UPLOAD_FIELDS:
        raise LipbatchError(f"{where}: invalid upload record")
    try:
        return UploadRecord(**{k: v for k, v in data.items() if k in _UPLOAD_FIELDS})
    except TypeError as exc:
        raise LipbatchError(f"{where}: invalid upload record ({exc})") from exc


def _read_snapshot(path: Path, loaded: _Loaded) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise LipbatchError(f"state file {path} is corrupt ({exc}); it is only ever replaced atomically") from exc
    if not isinstance(data, dict) or "format" not in data:
        raise LipbatchError(f"{path} is not a lipbatch state file")
    _check_format(data["format"], f"state file {path}")
    seq, jobs, uploads = data.get("seq"), data.get("jobs"), data.get("uploads", [])
    if not isinstance(seq, int) or not isinstance(jobs, list) or not isinstance(uploads, list):
        raise LipbatchError(f"state file {path} is malformed (seq/jobs/uploads)")
    loaded.seq = seq
    for index, item in enumerate(jobs):
        record = _job_from_dict(item, f"state file {path}, job #{index + 1}")
        loaded.jobs[record.key] = record
    for index, item in enumerate(uploads):
        upload = _upload_from_dict(item, f"state file {path}, upload #{index + 1}")
        loaded.uploads[(upload.account, upload.sha256)] = upload


def _apply_job(jobs: dict[str, JobRecord], key: Any, changes: Any, where: str) -> None:
    if not isinstance(key, str) or not isinstance(changes, dict):
        raise LipbatchError(f"{where}: malformed job event")
    unknown = changes.keys() - _SETTABLE
    if unknown:
        raise LipbatchError(f"{where}: unknown job field(s) {sorted(unknown)} (written by a newer lipbatch?)")
    record = jobs.get(key)
    if record is None:
        missing = [name for name in _REQUIRED_ON_CREATE if name not in changes]
        if missing:
            raise LipbatchError(f"{where}: first event of job {key} lacks {missing}")
        jobs[key] = _job_from_dict({"key": key, **changes}, where)
        return
    if "status" in changes:
        try:
            changes = {**changes, "status": JobStatus(changes["status"])}
        except ValueError as exc:
            raise LipbatchError(f"{where}: {exc} (written by a newer lipbatch?)") from exc
    for name, value in changes.items():
        setattr(record, name, value)


def _replay_journal(path: Path, loaded: _Loaded, *, read_only: bool) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    loaded.journal_length = len(raw)
    lines = raw.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is a torn write (or empty)
    offset = 0
    expected = loaded.seq + 1
    for number, line in enumerate(complete, start=1):
        where = f"state journal {path}, line {number}"
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if number == len(complete):
                break  # a last line the crash left undecodable
            raise LipbatchError(f"{where} is corrupt ({exc}); refusing to guess (later lines exist)") from exc
        if "format" not in event:
            raise LipbatchError(f"{where}: no format field; not a lipbatch journal")
        _check_format(event["format"], where)
        seq, op = event.get("seq"), event.get("op")
        if op not in _LINE_KEYS:
            raise LipbatchError(f"{where}: unknown event {op!r} (written by a newer lipbatch?)")
        if event.keys() - _LINE_KEYS[op]:
            raise LipbatchError(f"{where}: unknown field(s) {sorted(event.keys() - _LINE_KEYS[op])} (written by a newer lipbatch?)")
        if not isinstance(seq, int):
            raise LipbatchError(f"{where}: no sequence number")
        if seq < expected and loaded.journal_events == 0:
            loaded.skipped += 1  # already in the snapshot (crash between snapshot and truncation)
        elif seq != expected:
            message = f"{where}: event {seq} follows event {expected - 1}; events are missing (snapshot deleted or replaced?)"
            raise (_NeedsRetry if read_only else LipbatchError)(message)
        else:
            if op == "job":
                _apply_job(loaded.jobs, event.get("key"), event.get("set"), where)
            else:
                upload = _upload_from_dict(event, where)
                loaded.uploads[(upload.account, upload.sha256)] = upload
            loaded.seq = seq
            expected = seq + 1
            loaded.journal_events += 1
        offset += len(line) + 1
    loaded.valid_length = offset


def _load(path: Path, *, read_only: bool) -> _Loaded:
    for _ in range(20 if read_only else 1):
        loaded = _Loaded()
        _read_snapshot(path, loaded)
        try:
            _replay_journal(journal_path(path), loaded, read_only=read_only)
        except _NeedsRetry as exc:
            last = exc
            time.sleep(0.01)
            continue
        return loaded
    raise LipbatchError(str(last))


def read_jobs(path: Path) -> dict[str, JobRecord]:
    """Replay the state without taking the lock (``plan``/``status`` while a run goes on); {} if none."""
    return _load(Path(path), read_only=True).jobs


# -- the writer ------------------------------------------------------------------------------------


class State:
    """Opened by the runner: holds the lock for its lifetime."""

    def __init__(self, path: Path, loaded: _Loaded, lock: dict[str, Any], *, compact_every: int, redact: tuple[str, ...]):
        self.path = path
        self.jobs: dict[str, JobRecord] = loaded.jobs
        self.uploads: dict[tuple[str, str], UploadRecord] = loaded.uploads
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
        lock = _acquire_lock(path)
        try:
            loaded = _load(path, read_only=False)
            self = cls(path, loaded, lock, compact_every=compact_every, redact=tuple(s for s in redact if s and len(s) >= _MIN_SECRET_LEN))
            self._open_journal(loaded)
        except BaseException:
            _release_lock(path, lock)
            raise
        return self

    def _open_journal(self, loaded: _Loaded) -> None:
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

    def upload(self, account: str, sha256: str) -> UploadRecord | None:
        """A reusable upload of this content to this account, or None (also when (nearly) expired)."""
        record = self.uploads.get((account, sha256))
        if record is None or _expired(record, time.time()):
            return None
        return record

    # -- writing

    def update(self, key: str, **fields: Any) -> JobRecord:
        """Change a job (creating it on first call); durable on disk before this returns."""
        if not isinstance(key, str):
            raise TypeError(f"job key must be a string, not {type(key).__name__}")
        unknown = fields.keys() - _SETTABLE
        if unknown:
            raise TypeError(f"unknown JobRecord field(s): {sorted(unknown)}")
        changes = {name: self._clean(name, value) for name, value in fields.items()}
        record = self.jobs.get(key)
        if record is None:
            missing = [name for name in _REQUIRED_ON_CREATE if name not in changes]
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

    def record_upload(self, account: str, sha256: str, handle: str, expires_at: float | None = None) -> None:
        """Remember an uploaded input so later jobs (and reruns) reuse it instead of uploading again."""
        upload = UploadRecord(account, sha256, self._clean("handle", handle), expires_at)
        if self.uploads.get((account, sha256)) == upload:
            return
        self._append({"op": "upload", "account": account, "sha256": sha256, "handle": upload.handle, "expires_at": expires_at})
        self.uploads[(account, sha256)] = upload
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
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._journal_size)  # never leave a half line for the next append
            raise LipbatchError(f"cannot write state journal {self._journal}: {exc}") from exc
        self._journal_size += len(data)
        self._journal_events += 1
        self._seq += 1

    def _maybe_compact(self) -> None:
        if self._journal_events >= max(self._compact_every, len(self.jobs) + len(self.uploads)):
            self.compact()

    def compact(self) -> None:
        """Fold the journal into the snapshot (atomically), then empty the journal."""
        if self._fd is None:
            raise LipbatchError(f"state {self.path} is closed")
        now = time.time()
        uploads = [
            json.dumps(_upload_dict(u), separators=(",", ":")) for u in self.uploads.values() if not _expired(u, now, margin=0.0)
        ]
        jobs = [json.dumps(_job_dict(record), separators=(",", ":")) for record in self.jobs.values()]
        text = (
            f'{{"format": {STATE_FORMAT}, "seq": {self._seq},\n"uploads": [\n'
            + ",\n".join(uploads)
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
            _release_lock(self.path, self._lock)

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _expired(record: UploadRecord, now: float, *, margin: float = UPLOAD_EXPIRY_MARGIN) -> bool:
    return record.expires_at is not None and record.expires_at <= now + margin


def _job_dict(record: JobRecord) -> dict[str, Any]:
    data = {name: getattr(record, name) for name in _JOB_FIELDS}
    for name, default in _JOB_DEFAULTS.items():
        if data[name] == default:
            del data[name]
    data["status"] = str(record.status)
    return data


def _upload_dict(upload: UploadRecord) -> dict[str, Any]:
    data = {"account": upload.account, "sha256": upload.sha256, "handle": upload.handle}
    if upload.expires_at is not None:
        data["expires_at"] = upload.expires_at
    return data
