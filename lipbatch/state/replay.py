"""Reading a state: the snapshot, then the journal lines after it, refusing to guess at damage."""

from __future__ import annotations

import json
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



class _NeedsRetry(LipbatchError):
    """Snapshot and journal do not fit together: maybe a compaction ran while we read."""


@dataclass
class Loaded:
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    uploads: dict[tuple[str, str], UploadRecord] = field(default_factory=dict)
    seq: int = 0  # last event applied
    valid_length: int = 0  # bytes of the journal that hold complete, applied-or-skipped lines
    journal_length: int = 0
    journal_events: int = 0  # lines applied from the journal
    skipped: int = 0  # lines already contained in the snapshot
    takes: list[TakeRecord] = field(default_factory=list)
    format: int = STATE_FORMAT  # the oldest format read (1: records without endpoints)

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


def _read_snapshot(path: Path, loaded: Loaded) -> None:
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
    _check_format(data["format"], f"state file {path}", loaded)
    seq, jobs, uploads, takes = data.get("seq"), data.get("jobs"), data.get("uploads", []), data.get("takes", [])
    if not isinstance(seq, int) or not all(isinstance(x, list) for x in (jobs, uploads, takes)):
        raise LipbatchError(f"state file {path} is malformed (seq/jobs/uploads/takes)")
    loaded.seq = seq
    for index, item in enumerate(jobs):
        record = job_from_dict(item, f"state file {path}, job #{index + 1}")
        loaded.jobs[record.key] = record
    for index, item in enumerate(uploads):
        loaded.add_upload(upload_from_dict(item, f"state file {path}, upload #{index + 1}"))
    for index, item in enumerate(takes):
        loaded.takes.append(take_from_dict(item, f"state file {path}, take #{index + 1}"))


def _apply_job(jobs: dict[str, JobRecord], key: Any, changes: Any, where: str) -> None:
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


def _replay_journal(path: Path, loaded: Loaded, *, read_only: bool) -> None:
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
            message = f"{where}: event {seq} follows event {expected - 1}; events are missing (snapshot deleted or replaced?)"
            raise (_NeedsRetry if read_only else LipbatchError)(message)
        else:
            if op == "job":
                _apply_job(loaded.jobs, event.get("key"), event.get("set"), where)
            elif op == "upload":
                loaded.add_upload(upload_from_dict(event, where))
            else:
                loaded.takes.append(take_from_dict(event, where))
            loaded.seq = seq
            expected = seq + 1
            loaded.journal_events += 1
        offset += len(line) + 1
    loaded.valid_length = offset


def load(path: Path, *, read_only: bool) -> Loaded:
    for _ in range(20 if read_only else 1):
        loaded = Loaded()
        _read_snapshot(path, loaded)
        try:
            _replay_journal(journal_path(path), loaded, read_only=read_only)
        except _NeedsRetry as exc:
            last = exc
            time.sleep(0.01)
            continue
        if loaded.format == 1:
            mark_format1_rehearsal(loaded.jobs, loaded.uploads)
        return loaded
    raise LipbatchError(str(last))


def read_state(path: Path) -> Loaded:
    """Replay the state without taking the lock (``plan``/``status`` while a run goes on); empty if none."""
    return load(Path(path), read_only=True)


def read_jobs(path: Path) -> dict[str, JobRecord]:
    return read_state(path).jobs
