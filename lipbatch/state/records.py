"""What the state holds: one record per job, per upload and per superseded take, and their JSON forms."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from lipbatch.errors import LipbatchError

STATE_FORMAT = 2
READABLE_FORMATS = (1, 2)
UPLOAD_EXPIRY_MARGIN = 60.0
#: endpoint given to format-1 records that a rehearsal made (their result URLs are on loopback)
LEGACY_SANDBOX = "legacy sandbox (format 1)"


class JobStatus(StrEnum):
    SUBMITTING = "submitting"  # intent recorded, POST under way / unknown outcome after a crash
    UNKNOWN = "unknown"  # after a crash: intent but no task id, and reconcile failed
    IN_FLIGHT = "in_flight"  # task id recorded, not terminal
    SUCCEEDED = "succeeded"  # provider finished; result not (yet) downloaded/verified
    DONE = "done"  # output(s) written and verified; output_sha256 set
    FAILED = "failed"  # terminal failure (error, error_kind set)


REFUSED = "refused"  # error_kind of a SUBMITTING record whose last POST created nothing
NOT_CREATED = (REFUSED, "out_of_credits")
OUTPUT_LOST = "output_lost"  # error_kind of a DONE record whose file and provider copy are both gone


@dataclass
class JobRecord:
    """One job's durable progress (its current take). Read it freely; change it only through ``State.update``."""

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
    # | "output_lost"
    error_kind: str | None = None
    updated_at: float = 0.0
    endpoint: str | None = None  # ``Account.endpoint`` that issued task_id (None: format 1, adopted)
    take: int = 1  # the take of its outputs this record makes or made
    redo: str | None = None  # why a new take is wanted: "requested" | "lost" | "rejected"
    #: credits set aside for the current take's create (``lipbatch.budget``), written with its SUBMITTING
    #: intent; None: no documented price. Settled by ``credits``, released when nothing was created.
    reserved: float | None = None

    @property
    def no_task_exists(self) -> bool:
        """A SUBMITTING record whose last create was definitely refused: nothing was created, so
        resubmitting cannot pay twice."""
        return self.status is JobStatus.SUBMITTING and self.error_kind in NOT_CREATED

    @property
    def lost(self) -> bool:
        return self.status is JobStatus.DONE and self.error_kind == OUTPUT_LOST

    def made_by(self, endpoint: str) -> bool:
        """True when this record's task ids belong to ``endpoint`` (a format-1 record is adopted)."""
        return self.endpoint is None or self.endpoint == endpoint


@dataclass
class UploadRecord:
    account: str
    sha256: str
    handle: str
    expires_at: float | None = None
    endpoint: str | None = None  # None: format 1 (valid for its account at any endpoint but a rehearsal's)


@dataclass
class TakeRecord:
    """A take that a newer one superseded: what was paid and where its file is kept."""

    output: str  # the output path it was made for
    take: int
    key: str
    endpoint: str | None
    task_id: str | None
    credits: float | None
    sha256: str | None
    size: int | None
    kept: str | None  # where its file is kept (relative to the output folder); None if it was gone
    reason: str  # why it was superseded: "requested" | "rejected" | "lost" | "changed" | "endpoint"
    at: float


JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
SETTABLE = frozenset(JOB_FIELDS) - {"key"}
REQUIRED_ON_CREATE = ("account", "kind", "outputs", "status")
_JOB_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(JobRecord) if f.name not in (*REQUIRED_ON_CREATE, "key")
}
UPLOAD_FIELDS = frozenset(f.name for f in fields(UploadRecord))
TAKE_FIELDS = frozenset(f.name for f in fields(TakeRecord))
LINE_KEYS = {
    "job": frozenset({"format", "seq", "op", "key", "set"}),
    "upload": frozenset({"format", "seq", "op"}) | UPLOAD_FIELDS,
    "take": frozenset({"format", "seq", "op"}) | TAKE_FIELDS,
}


def upload_key(endpoint: str | None, account: str, sha256: str) -> tuple[str, str]:
    return (endpoint if endpoint is not None else f"format-1 account {account}", sha256)


def job_from_dict(data: Any, where: str) -> JobRecord:
    if not isinstance(data, dict):
        raise LipbatchError(f"{where}: job record is not an object")
    unknown = data.keys() - JOB_FIELDS
    if unknown:
        raise LipbatchError(f"{where}: unknown job field(s) {sorted(unknown)} (written by a newer lipbatch?)")
    try:
        record = JobRecord(**data)
        record.status = JobStatus(record.status)
    except (TypeError, ValueError) as exc:
        raise LipbatchError(f"{where}: invalid job record ({exc})") from exc
    return record


def _from_line(cls: type, names: frozenset[str], what: str, data: Any, where: str) -> Any:
    """A record of ``cls`` from a snapshot item or a journal line (whose envelope keys are dropped)."""
    if not isinstance(data, dict) or data.keys() - {"op", "seq", "format"} - names:
        raise LipbatchError(f"{where}: invalid {what} record")
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise LipbatchError(f"{where}: invalid {what} record ({exc})") from exc


def upload_from_dict(data: Any, where: str) -> UploadRecord:
    return _from_line(UploadRecord, UPLOAD_FIELDS, "upload", data, where)


def take_from_dict(data: Any, where: str) -> TakeRecord:
    return _from_line(TakeRecord, TAKE_FIELDS, "take", data, where)


def job_dict(record: JobRecord) -> dict[str, Any]:
    data = {name: getattr(record, name) for name in JOB_FIELDS}
    for name, default in _JOB_DEFAULTS.items():
        if data[name] == default:
            del data[name]
    data["status"] = str(record.status)
    return data


def upload_dict(upload: UploadRecord) -> dict[str, Any]:
    data = {"account": upload.account, "sha256": upload.sha256, "handle": upload.handle}
    if upload.expires_at is not None:
        data["expires_at"] = upload.expires_at
    if upload.endpoint is not None:
        data["endpoint"] = upload.endpoint
    return data


def take_dict(take: TakeRecord) -> dict[str, Any]:
    return {name: getattr(take, name) for name in sorted(TAKE_FIELDS)}


def expired(record: UploadRecord, now: float, *, margin: float = UPLOAD_EXPIRY_MARGIN) -> bool:
    return record.expires_at is not None and record.expires_at <= now + margin


def _on_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def mark_format1_rehearsal(jobs: dict[str, JobRecord], uploads: dict[tuple[str, str], UploadRecord]) -> None:
    """Format-1 records carry no endpoint. When any of them fetched its result from a loopback
    host, the file is a rehearsal (the quick start before this version): none of its records
    may count for a real provider. Otherwise they are adopted by the endpoint that runs them next."""
    legacy = [record for record in jobs.values() if record.endpoint is None]
    if not any(_on_loopback(record.result_url) for record in legacy):
        return
    for record in legacy:
        record.endpoint = LEGACY_SANDBOX
    for key, upload in list(uploads.items()):
        if upload.endpoint is None:
            del uploads[key]
            upload.endpoint = LEGACY_SANDBOX
            uploads[upload_key(LEGACY_SANDBOX, upload.account, upload.sha256)] = upload
