"""Rebuilding a damaged state from every copy of it: the snapshot, its backup and the journal.

What any file still holds is used; nothing is invented. The records start
from the newest snapshot copy that parses; the journal lines after it are
applied in order, and gaps, undecodable lines and events cut off the end are
reported. A job whose first record was lost but whose later events survive is
rebuilt from the manifest's description of it (``Known``): status as last
recorded, or ``in_flight`` with a surviving task id, else ``unknown`` (never
resubmitted without ``--resubmit-unknown``). Every output sha256 any copy ever
recorded for a job is kept as evidence, so the caller can adopt a file on disk
that a lost record described and nothing is paid again for it.

The damaged files stay beside the state as ``<name>.damaged-<time>`` (hard
links or copies made before anything is replaced), and the new files are
written snapshot and backup first, journal last: a crash during a repair
leaves either the damaged state or the repaired one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipbatch.errors import LipbatchError
from lipbatch.state.durable import replace_all, write_temp
from lipbatch.state.local import State, snapshot_bytes, write_snapshot
from lipbatch.state.lock import acquire_lock, release_lock
from lipbatch.state.records import (
    REQUIRED_ON_CREATE,
    JobStatus,
    job_from_dict,
    mark_format1_rehearsal,
    take_from_dict,
    upload_from_dict,
)
from lipbatch.state.replay import (
    Loaded,
    apply_job,
    backup_path,
    head_line,
    journal_path,
    load,
    read_bytes,
    read_snapshot,
)

#: job key -> (account, kind, outputs), from the manifest: what a job whose first record was lost looked like
Known = Mapping[str, tuple[str, str, Sequence[str]]]


@dataclass
class Rebuilt:
    loaded: Loaded
    notes: list[str] = field(default_factory=list)  # what was used and what could not be recovered
    evidence: dict[str, dict[str, int | None]] = field(default_factory=dict)  # key -> sha256 -> size, any copy
    kept: list[Path] = field(default_factory=list)  # the damaged files, set aside

    def remember(self, key: str, sha256: Any, size: Any) -> None:
        if isinstance(sha256, str) and sha256:
            self.evidence.setdefault(key, {})[sha256] = size if isinstance(size, int) else None


def rebuild(path: Path, known: Known) -> Rebuilt:
    """The most complete records the files at ``path`` still hold (nothing is written)."""
    bases: list[tuple[int, Path, Loaded]] = []
    rebuilt = Rebuilt(Loaded())
    for copy in (path, backup_path(path)):
        loaded = Loaded()
        try:
            read_snapshot(copy, loaded)
        except LipbatchError as exc:
            rebuilt.notes.append(f"{copy.name} could not be used: {exc}")
            continue
        if loaded.snapshot:
            bases.append((loaded.seq, copy, loaded))
            for record in loaded.jobs.values():
                rebuilt.remember(record.key, record.output_sha256, record.output_size)
    if bases:
        seq, copy, rebuilt.loaded = max(bases, key=lambda base: base[0])  # the state file wins a tie
        rebuilt.notes.append(f"records from {copy.name} (event {seq})")
    else:
        rebuilt.notes.append("no snapshot copy survived: records come from the journal alone")
    _apply_journal(journal_path(path), rebuilt, known)
    if rebuilt.loaded.format == 1:
        mark_format1_rehearsal(rebuilt.loaded.jobs, rebuilt.loaded.uploads)
    return rebuilt


def _apply_journal(journal: Path, rebuilt: Rebuilt, known: Known) -> None:
    raw = read_bytes(journal, "state journal")
    loaded = rebuilt.loaded
    if raw is None:
        rebuilt.notes.append(f"{journal.name} is missing: events after {loaded.seq} (if any) are lost")
        return
    top, applied, unreadable, gaps = loaded.seq, 0, 0, []
    orphans: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(raw.split(b"\n")[:-1], start=1):
        try:
            event = json.loads(line)
            op = event.get("op")
            seq = event.get("acked" if op == "head" else "seq")
            if not isinstance(seq, int):
                raise ValueError("no sequence number")
        except (ValueError, AttributeError):
            unreadable += 1
            continue
        top = max(top, seq)
        if op == "head":
            continue
        if op == "job" and isinstance(event.get("set"), dict):
            rebuilt.remember(event.get("key"), event["set"].get("output_sha256"), event["set"].get("output_size"))
        if seq <= loaded.seq:
            continue  # the snapshot copy holds it
        if seq > loaded.seq + 1:
            gaps.append(f"{loaded.seq + 1}..{seq - 1}")
        try:
            _apply(event, loaded, orphans, f"{journal.name}, line {number}")
        except LipbatchError:
            unreadable += 1
            continue
        loaded.seq, applied = seq, applied + 1
    rebuilt.notes.append(f"{applied} journal event(s) applied from {journal.name}")
    if unreadable:
        rebuilt.notes.append(f"{unreadable} journal line(s) could not be read and were left out")
    if top > loaded.seq:
        gaps.append(f"{loaded.seq + 1}..{top}")
    if gaps:
        rebuilt.notes.append(f"events {', '.join(gaps)} are lost (the journal was cut or a file replaced)")
    _complete_orphans(orphans, rebuilt, known)
    loaded.seq = top  # the new journal continues after every number ever used


def _apply(event: dict[str, Any], loaded: Loaded, orphans: dict[str, dict[str, Any]], where: str) -> None:
    op = event.get("op")
    if op == "upload":
        loaded.add_upload(upload_from_dict(event, where))
    elif op == "take":
        loaded.takes.append(take_from_dict(event, where))
    elif op != "job":
        raise LipbatchError(f"{where}: unknown event {op!r}")
    else:
        key, changes = event.get("key"), event.get("set")
        if isinstance(key, str) and isinstance(changes, dict) and key not in loaded.jobs and (
                key in orphans or any(name not in changes for name in REQUIRED_ON_CREATE)):
            orphans.setdefault(key, {}).update(changes)  # its first record is lost
        else:
            apply_job(loaded.jobs, key, changes, where)


def _complete_orphans(orphans: dict[str, dict[str, Any]], rebuilt: Rebuilt, known: Known) -> None:
    made = dropped = 0
    for key, changes in orphans.items():
        if key not in known:
            dropped += 1
            continue
        account, kind, outputs = known[key]
        fields = {"account": account, "kind": kind, "outputs": list(outputs), **changes}
        if "status" not in fields:
            fields["status"] = JobStatus.IN_FLIGHT if fields.get("task_id") else JobStatus.UNKNOWN
        if fields["status"] == JobStatus.UNKNOWN:
            fields.setdefault("error", "rebuilt by `lipbatch state repair`: whether it was submitted is unknown")
            fields.setdefault("error_kind", "unknown")
        try:
            rebuilt.loaded.jobs[key] = job_from_dict({**fields, "key": key, "status": str(fields["status"])},
                                                     f"journal events of job {key}")
        except LipbatchError:
            dropped += 1
            continue
        made += 1
    if made:
        rebuilt.notes.append(f"{made} job record(s) rebuilt from their surviving events and the manifest")
    if dropped:
        rebuilt.notes.append(f"events of {dropped} job(s) the manifest does not describe were left out")


def _keep_aside(path: Path) -> list[Path]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = []
    for name in (path, backup_path(path), journal_path(path)):
        if not name.exists():
            continue
        target = name.with_name(f"{name.name}.damaged-{stamp}")
        try:
            os.link(name, target)
        except FileExistsError:
            continue  # a repair within the same second already kept it
        except OSError:
            shutil.copy2(name, target)
        kept.append(target)
    return kept


def repair(path: Path, known: Known) -> tuple[State, Rebuilt]:
    """Rebuild the state at ``path`` under its lock; returns it open (for adopting outputs) and the report."""
    lock = acquire_lock(path)
    try:
        rebuilt = rebuild(path, known)
        loaded = rebuilt.loaded
        try:
            rebuilt.kept = _keep_aside(path)
            write_snapshot(path, snapshot_bytes(loaded.seq, loaded.jobs.values(), loaded.uploads.values(),
                                                loaded.takes))
            journal = journal_path(path)
            replace_all([(write_temp(journal, head_line(loaded.seq, loaded.seq)), journal)])
        except OSError as exc:
            raise LipbatchError(f"cannot write the repaired state beside {path}: {exc.strerror or exc}") from exc
        return State.start(path, load(path, read_only=False), lock), rebuilt
    except BaseException:
        release_lock(path, lock)
        raise
