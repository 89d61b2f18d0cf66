"""Reading a state: the snapshot, then the journal lines after it, refusing to guess at damage."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipbatch.errors import LipbatchError
from lipbatch.state.records import (
    LINE_KEYS,
    READABLE_FORMATS,
    REQUIRED_ON_CREATE,
    SETTABLE,
    STATE_FORMAT,
    JobRecord,
    JobStatus,
    TakeRecord,
    UploadRecord,
    job_from_dict,
    mark_format1_rehearsal,
    take_from_dict,
    upload_from_dict,
    upload_key,
)


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


#: bytes of the journal's first line (newline included); rewritten in place, so its width never changes
HEAD_WIDTH = 80
HEAD_KEYS = frozenset({"format", "op", "base", "acked"})
_BACKUP_SEQ = re.compile(rb'"seq":\s*(\d+)')


def head_line(base: int, acked: int) -> bytes:
    """The journal's first line: it continues snapshot event ``base``; events up to ``acked`` were fsync'd."""
    text = f'{{"format":{STATE_FORMAT},"op":"head","base":{base},"acked":{acked}'
    return (text.ljust(HEAD_WIDTH - 2) + "}\n").encode()


class StateDamagedError(LipbatchError):
    """Records are missing from the state: a run could pay again for work already paid for.

    ``problem`` says which file and what is wrong; ``path`` is the state file.
    """

    def __init__(self, problem: str, path: Path):
        super().__init__(
            f"state damaged: {problem}.\nlipbatch refuses to guess: with records missing, a run could pay again "
            f"for jobs already paid for. `lipbatch state repair MANIFEST` (add --sandbox for a rehearsal) rebuilds "
            f"the state from {backup_path(path).name} and the journal, keeps the damaged files aside and adopts "
            f"every output on disk whose sha256 a record holds"
        )
        self.problem = problem
        self.path = path


@dataclass(frozen=True)
class Head:
    base: int  # the snapshot event this journal continues
    acked: int  # the last event whose update returned (fsync'd)


@dataclass
class Loaded:
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    uploads: dict[tuple[str, str], UploadRecord] = field(default_factory=dict)
    seq: int = 0  # last event applied
    valid_length: int = 0  # bytes of the journal that hold its head and complete, applied-or-skipped lines
    journal_length: int = 0
    journal_events: int = 0  # lines applied from the journal
    skipped: int = 0  # lines already contained in the snapshot
    takes: list[TakeRecord] = field(default_factory=list)
    format: int = STATE_FORMAT  # the oldest format read (1: records without endpoints)
    snapshot: bool = False  # the snapshot file exists
    expects_head: bool = False  # the snapshot was written with a journal that starts with a head line
    journal: bool = False  # the journal file exists
    head: Head | None = None  # None: no journal, or one an older lipbatch wrote

    def add_upload(self, upload: UploadRecord) -> None:
        key = upload_key(upload.endpoint, upload.account, upload.sha256)
        if upload.handle:
            self.uploads[key] = upload
        else:  # a forgotten upload: the provider no longer knows the handle
            self.uploads.pop(key, None)


def _check_format(value: Any, where: str, loaded: Loaded) -> None:
    if value in READABLE_FORMATS:
        loaded.format = min(loaded.format, value)
        return
    if isinstance(value, int) and value > STATE_FORMAT:
        raise LipbatchError(
            f"{where} was written by a newer lipbatch (state format {value}; this version reads formats {', '.join(map(str, READABLE_FORMATS))}); upgrade lipbatch"
        )
    raise LipbatchError(f"{where}: not a lipbatch state (format {value!r})")


def read_bytes(path: Path, what: str) -> bytes | None:
    """The file's bytes, None when it does not exist; any other OS error is a message naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LipbatchError(f"cannot read {what} {path}: {exc.strerror or exc}; lipbatch needs to read "
                            "(and, to run, write) the state file and the files beside it") from exc


def read_snapshot(path: Path, loaded: Loaded) -> None:
    raw = read_bytes(path, "state file")
    if raw is None:
        return
    loaded.snapshot = True
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateDamagedError(f"the state file {path} is corrupt ({exc}); it is only ever replaced atomically",
                                path) from exc
    if not isinstance(data, dict) or "format" not in data:
        raise LipbatchError(f"{path} is not a lipbatch state file")
    _check_format(data["format"], f"state file {path}", loaded)
    seq, jobs, uploads, takes = data.get("seq"), data.get("jobs"), data.get("uploads", []), data.get("takes", [])
    if not isinstance(seq, int) or not all(isinstance(x, list) for x in (jobs, uploads, takes)):
        raise LipbatchError(f"state file {path} is malformed (seq/jobs/uploads/takes)")
    loaded.seq = seq
    loaded.expects_head = data.get("journal_head") is True
    for index, item in enumerate(jobs):
        record = job_from_dict(item, f"state file {path}, job #{index + 1}")
        loaded.jobs[record.key] = record
    for index, item in enumerate(uploads):
        loaded.add_upload(upload_from_dict(item, f"state file {path}, upload #{index + 1}"))
    for index, item in enumerate(takes):
        loaded.takes.append(take_from_dict(item, f"state file {path}, take #{index + 1}"))


def read_head(raw: bytes, path: Path, loaded: Loaded) -> Head | None:
    """The journal's head line, or None for a journal an older lipbatch wrote (its first line is an event)."""
    end = raw.find(b"\n")
    if end < 0 or b'"op":"head"' not in raw[:end]:
        return None
    where = f"state journal {path}, line 1"
    if end != HEAD_WIDTH - 1:
        raise StateDamagedError(f"{where} (its head) is corrupt", path)
    try:
        head = json.loads(raw[:end])
    except ValueError as exc:
        raise StateDamagedError(f"{where} (its head) is corrupt ({exc})", path) from exc
    if not isinstance(head, dict) or head.get("op") != "head":
        raise StateDamagedError(f"{where} (its head) is corrupt", path)
    _check_format(head.get("format"), where, loaded)
    if head.keys() - HEAD_KEYS:
        raise LipbatchError(f"{where}: unknown field(s) {sorted(head.keys() - HEAD_KEYS)} (written by a newer lipbatch?)")
    base, acked = head.get("base"), head.get("acked")
    if not isinstance(base, int) or not isinstance(acked, int) or acked < base:
        raise StateDamagedError(f"{where} (its head) is corrupt", path)
    return Head(base, acked)


def backup_seq(path: Path) -> int | None:
    """The event a snapshot file holds, read from its first line only (None: missing or unreadable)."""
    try:
        with open(path, "rb") as handle:
            match = _BACKUP_SEQ.search(handle.read(64))
    except OSError:
        return None
    return int(match[1]) if match else None


def _check_files(path: Path, loaded: Loaded) -> None:
    """Refuse a set of files no crash can leave: a file deleted, cut or replaced by an older copy."""
    journal, backup, head = journal_path(path), backup_path(path), loaded.head
    if not loaded.snapshot:
        if backup.exists():
            raise StateDamagedError(f"the state file {path} is missing, but its backup {backup} exists "
                                    "(the state file was deleted or moved)", path)
        if head is not None and head.acked > 0:  # the state file is written before any event is
            raise StateDamagedError(f"the state file {path} is missing, but the journal {journal} continues "
                                    f"from event {head.base}, which only the state file held", path)
        return
    if loaded.expects_head and not loaded.journal:
        raise StateDamagedError(f"the journal {journal} is missing; events recorded after event {loaded.seq} "
                                "of the state file may be lost", path)
    if loaded.expects_head and head is None:
        raise StateDamagedError(f"the journal {journal} lost its first line (cut or replaced)", path)
    if head is not None and head.base > loaded.seq:
        raise StateDamagedError(f"the state file {path} holds events up to {loaded.seq}, but the journal {journal} "
                                f"continues from event {head.base} (the state file was replaced by an older copy)", path)
    kept = backup_seq(backup)
    if kept is not None and kept > loaded.seq:
        raise StateDamagedError(f"the state file {path} (event {loaded.seq}) is older than its backup {backup} "
                                f"(event {kept}): it was replaced by an older copy", path)


def apply_job(jobs: dict[str, JobRecord], key: Any, changes: Any, where: str) -> None:
    if not isinstance(key, str) or not isinstance(changes, dict):
        raise LipbatchError(f"{where}: malformed job event")
    unknown = changes.keys() - SETTABLE
    if unknown:
        raise LipbatchError(f"{where}: unknown job field(s) {sorted(unknown)} (written by a newer lipbatch?)")
    record = jobs.get(key)
    if record is None:
        missing = [name for name in REQUIRED_ON_CREATE if name not in changes]
        if missing:
            raise LipbatchError(f"{where}: first event of job {key} lacks {missing}")
        jobs[key] = job_from_dict({"key": key, **changes}, where)
        return
    if "status" in changes:
        try:
            changes = {**changes, "status": JobStatus(changes["status"])}
        except ValueError as exc:
            raise LipbatchError(f"{where}: {exc} (written by a newer lipbatch?)") from exc
    for name, value in changes.items():
        setattr(record, name, value)


def _replay_journal(path: Path, raw: bytes, loaded: Loaded, state: Path) -> None:
    loaded.journal_length = len(raw)
    start = HEAD_WIDTH if loaded.head is not None else 0
    lines = raw[start:].split(b"\n")
    complete = lines[:-1]  # the part after the last newline is a torn write (or empty)
    offset = start
    expected = loaded.seq + 1
    first = 2 if loaded.head is not None else 1
    for number, line in enumerate(complete, start=first):
        where = f"state journal {path}, line {number}"
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            if number == len(complete) + first - 1:
                break  # a last line the crash left undecodable
            raise StateDamagedError(f"{where} is corrupt ({exc}) and later lines exist", state) from exc
        if "format" not in event:
            raise LipbatchError(f"{where}: no format field; not a lipbatch journal")
        _check_format(event["format"], where, loaded)
        seq, op = event.get("seq"), event.get("op")
        if op not in LINE_KEYS:
            raise LipbatchError(f"{where}: unknown event {op!r} (written by a newer lipbatch?)")
        if event.keys() - LINE_KEYS[op]:
            raise LipbatchError(f"{where}: unknown field(s) {sorted(event.keys() - LINE_KEYS[op])} (written by a newer lipbatch?)")
        if not isinstance(seq, int):
            raise LipbatchError(f"{where}: no sequence number")
        if seq < expected and loaded.journal_events == 0:
            loaded.skipped += 1  # already in the snapshot (crash between snapshot and truncation)
        elif seq != expected:
            raise StateDamagedError(f"{where}: event {seq} follows event {expected - 1}; events are missing "
                                    "(state file deleted or replaced?)", state)
        else:
            if op == "job":
                apply_job(loaded.jobs, event.get("key"), event.get("set"), where)
            elif op == "upload":
                loaded.add_upload(upload_from_dict(event, where))
            else:
                loaded.takes.append(take_from_dict(event, where))
            loaded.seq = seq
            expected = seq + 1
            loaded.journal_events += 1
        offset += len(line) + 1
    loaded.valid_length = offset
    head = loaded.head
    if head is not None and head.acked > loaded.seq + 1:  # the last acknowledged line may be torn by power loss
        raise StateDamagedError(f"the journal {path} ends at event {loaded.seq}, but events up to {head.acked} "
                                f"were recorded: it was cut or replaced by an older copy "
                                f"({head.acked - loaded.seq} events lost)", state)


def _load_once(path: Path) -> Loaded:
    loaded = Loaded()
    read_snapshot(path, loaded)
    journal = journal_path(path)
    raw = read_bytes(journal, "state journal")
    loaded.journal = raw is not None
    if raw is not None:
        loaded.head = read_head(raw, journal, loaded)
    _check_files(path, loaded)
    if raw is not None:
        _replay_journal(journal, raw, loaded, path)
    if loaded.format == 1:
        mark_format1_rehearsal(loaded.jobs, loaded.uploads)
    return loaded


def _fingerprint(path: Path) -> list[tuple[int, int, int] | None]:
    marks: list[tuple[int, int, int] | None] = []
    for name in (path, journal_path(path), backup_path(path)):
        try:
            stat = os.stat(name)
        except OSError:
            marks.append(None)
        else:
            marks.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return marks


def load(path: Path, *, read_only: bool) -> Loaded:
    """Snapshot + journal; ``StateDamagedError`` when files are missing, cut or older than they should be.

    ``read_only`` (no lock held): damage seen while a writer changed the files (a compaction between
    reading the snapshot and the journal) is read again.
    """
    for _ in range(20 if read_only else 1):
        before = _fingerprint(path) if read_only else None
        try:
            return _load_once(path)
        except StateDamagedError as exc:
            if before is None or _fingerprint(path) == before:
                raise
            last = exc
            time.sleep(0.01)
    raise last


def read_state(path: Path) -> Loaded:
    """Replay the state without taking the lock (``plan``/``status`` while a run goes on); empty if none."""
    return load(Path(path), read_only=True)


def read_jobs(path: Path) -> dict[str, JobRecord]:
    return read_state(path).jobs
