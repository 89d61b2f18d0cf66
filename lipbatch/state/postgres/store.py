"""The shared backend's records: ``State``'s logic with its journal replaced by PostgreSQL rows.

``PostgresState`` inherits everything that decides *what* changes (field checks,
scrubbing of credentials, "nothing changed, nothing written", ``updated_at``) from
the local ``State`` and replaces only where a change goes: ``_append`` writes the
whole new record in one committed transaction before the call returns, so the
durability rule is the local one (a task id is stored before anything else happens
for its job). Records are read into memory at open; a job's record is re-read when a
worker claims it (``Leases.claim``), which is the only moment another worker can have
changed it.

A change that records the intent to create (status ``submitting``) is fenced: it
commits only while this worker's claim on the job is unexpired, and renews it; a
worker whose claim lapsed gets ``LeaseLostError`` and pays for nothing. With
``fence_every_write`` (``lipbatch.state.edit``: redo, prune) every job change is
fenced so, since a write replaces the whole record, a command can never
overwrite what a worker wrote after taking the job over.

With ``group_commit`` set (the runner sets it, as for the local files), a job change
that is not about money (not an intent or a task id: a result URL, DONE) and a
superseded take commit without waiting for the server's WAL flush
(``synchronous_commit = off``): other workers see them at once, and a database crash
could lose the last of them, which costs a free re-poll or re-download, never money.
The money changes, uploads and every lease wait for the flush. ``flush`` has nothing
left to do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg

from lipbatch.errors import LipbatchError
from lipbatch.redact import Redactor
from lipbatch.state.local import _MONEY_STATUSES as MONEY_STATUSES  # intent and task id: never relaxed
from lipbatch.state.local import State
from lipbatch.state.postgres.leases import Leases, lease_seconds
from lipbatch.state.postgres.schema import ensure_schema
from lipbatch.state.postgres.session import Session
from lipbatch.state.records import (
    JobRecord,
    JobStatus,
    TakeRecord,
    UploadRecord,
    job_dict,
    job_from_dict,
    take_dict,
    take_from_dict,
    upload_dict,
    upload_from_dict,
    upload_key,
)
from lipbatch.state.replay import Loaded

_RELAXED = "SET LOCAL synchronous_commit = off"
_LEARNED = "learned:"  # ``meta`` rows of ``learned``/``learn``
_JOB_UPSERT = """
    INSERT INTO jobs (key, account, status, error_kind, record) VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (key) DO UPDATE SET account = excluded.account, status = excluded.status,
        error_kind = excluded.error_kind, record = excluded.record"""


def job_row(record: JobRecord) -> tuple[str, str, str, str | None, str]:
    return (record.key, record.account, str(record.status), record.error_kind,
            json.dumps(job_dict(record), separators=(",", ":"), allow_nan=False))


def upload_row(upload: UploadRecord) -> tuple[str, str, str]:
    endpoint, sha = upload_key(upload.endpoint, upload.account, upload.sha256)
    return endpoint, sha, json.dumps(upload_dict(upload), separators=(",", ":"), allow_nan=False)


def take_row(take_id: str, take: TakeRecord) -> tuple[str, str]:
    return take_id, json.dumps(take_dict(take), separators=(",", ":"), allow_nan=False)


def load_records(cursor: psycopg.Cursor, where: str) -> Loaded:
    loaded = Loaded()
    cursor.execute("SELECT key, record FROM jobs")
    for key, text in cursor.fetchall():
        loaded.jobs[key] = job_from_dict(json.loads(text), f"{where}, job {key}")
    cursor.execute("SELECT record FROM uploads")
    for (text,) in cursor.fetchall():
        loaded.add_upload(upload_from_dict(json.loads(text), f"{where}, upload"))
    cursor.execute("SELECT record FROM takes ORDER BY ord")
    for (text,) in cursor.fetchall():
        loaded.takes.append(take_from_dict(json.loads(text), f"{where}, take"))
    return loaded


def check_manifest(cursor: psycopg.Cursor, manifest: str, session: Session) -> None:
    """A campaign belongs to one manifest (by file name): a second one is refused, not mixed in."""
    cursor.execute("INSERT INTO meta (name, value) VALUES ('manifest', %s) ON CONFLICT (name) DO NOTHING",
                   (manifest,))
    cursor.execute("SELECT value FROM meta WHERE name = 'manifest'")
    owner = cursor.fetchone()[0]
    if owner != manifest:
        raise LipbatchError(f"campaign '{session.campaign}' in {session.target.shown} belongs to manifest {owner}, "
                            f"not {manifest}; "
                            "name another campaign with ?campaign=NAME in the state URL")


class PostgresState(State):
    """One campaign's records in PostgreSQL; with ``leases`` when opened by a worker."""

    def __init__(self, session: Session, loaded: Loaded, *, redact: Redactor) -> None:
        super().__init__(Path(session.schema), loaded, {}, compact_every=0, redact=redact)
        self.session = session
        self.target = session.target
        self.campaign = session.campaign
        self.leases: Leases | None = None
        self.fence_every_write = False  # a command changing records it claimed: each write checks the claim
        self._closed = False

    @classmethod
    def open(cls, url: str, campaign: str, *, manifest: str, redact: Iterable[str] = (),  # type: ignore[override]
             worker: bool = False) -> PostgresState:
        """Connect, create or migrate the campaign's schema, load its records; ``worker``: also
        register this process as a worker and take leases from now on."""
        lease = lease_seconds()
        session = Session.open(url, campaign, patience=lease / 2)
        where = f"shared state {session.where}"

        def load(cursor: psycopg.Cursor) -> Loaded:
            ensure_schema(cursor, session.schema)
            check_manifest(cursor, manifest, session)
            return load_records(cursor, where)

        loaded = session.run(load)
        self = cls(session, loaded, redact=Redactor(redact))
        if worker:
            try:
                self.leases = Leases(self, lease=lease)
            except BaseException:
                session.close()
                raise
        return self

    @property
    def where(self) -> str:
        return self.session.where

    def adopt(self, records: dict[str, JobRecord]) -> None:
        """Fresh records of jobs this worker just claimed (another worker may have moved them on)."""
        self.jobs.update(records)

    # -- State's journal, replaced

    def _append(self, event: dict[str, Any]) -> None:
        if self._closed:
            raise LipbatchError(f"shared state {self.where} is closed")
        op = event["op"]
        if op == "job":
            key, changes = event["key"], event["set"]
            before = self.jobs.get(key)
            record = job_from_dict({**(job_dict(before) if before else {"key": key}), **changes}, f"job {key}")
            fence = self.leases is not None and (self.fence_every_write or changes.get("status") == JobStatus.SUBMITTING)
            relaxed = self.group_commit and not ("task_id" in changes or changes.get("status") in MONEY_STATUSES)

            def write(cursor: psycopg.Cursor) -> None:
                if relaxed:
                    cursor.execute(_RELAXED)
                if fence:
                    self.leases.fence(cursor, key)
                cursor.execute(_JOB_UPSERT, job_row(record))
        elif op == "upload":
            upload = upload_from_dict(event, "upload")

            def write(cursor: psycopg.Cursor) -> None:
                endpoint, sha, text = upload_row(upload)
                if upload.handle:
                    cursor.execute("INSERT INTO uploads (endpoint, sha256, record) VALUES (%s, %s, %s) "
                                   "ON CONFLICT (endpoint, sha256) DO UPDATE SET record = excluded.record",
                                   (endpoint, sha, text))
                else:
                    cursor.execute("DELETE FROM uploads WHERE endpoint = %s AND sha256 = %s", (endpoint, sha))
                if self.leases is not None:  # the upload is recorded: nobody waits for this worker's any more
                    self.leases.drop_upload_claim(cursor, endpoint, sha)
        else:
            take = take_from_dict(event, "take")
            take_id = uuid.uuid4().hex  # drawn once: repeating the insert after a lost answer adds nothing

            def write(cursor: psycopg.Cursor) -> None:
                if self.group_commit:
                    cursor.execute(_RELAXED)
                cursor.execute("INSERT INTO takes (id, record) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                               take_row(take_id, take))
        self.session.run(write)

    async def flush(self) -> None:
        """Nothing waits: every money change was committed (and flushed) before ``update`` returned."""

    def write_pending(self) -> None:
        """Nothing pending: every change was sent to the server before ``update`` returned."""

    def learned(self, name: str) -> Any:
        """The value in ``meta`` (every worker's runs), or None when there is none or it is not JSON."""
        def read(cursor: psycopg.Cursor) -> str | None:
            cursor.execute("SELECT value FROM meta WHERE name = %s", (_LEARNED + name,))
            row = cursor.fetchone()
            return row[0] if row else None

        return _json_or_none(self.session.run(read))

    def learn(self, name: str, merge: Callable[[Any], Any]) -> None:
        """``merge`` the stored value under its row's lock: workers saving at once each add theirs."""
        def write(cursor: psycopg.Cursor) -> None:
            cursor.execute("INSERT INTO meta (name, value) VALUES (%s, 'null') ON CONFLICT (name) DO NOTHING",
                           (_LEARNED + name,))
            cursor.execute("SELECT value FROM meta WHERE name = %s FOR UPDATE", (_LEARNED + name,))
            merged = json.dumps(merge(_json_or_none(cursor.fetchone()[0])))
            cursor.execute("UPDATE meta SET value = %s WHERE name = %s", (merged, _LEARNED + name))

        self.session.run(write)

    def on_fsync(self, guard: Callable[[], AbstractContextManager[object]]) -> None:
        """None: no later moment to wait for (a change is the server's once ``update`` returns)."""

    def _maybe_compact(self) -> None:
        """Nothing to fold: every change is already a row."""

    def compact(self) -> None:
        """Nothing to fold: every change is already a row."""

    def close(self) -> None:
        """Give back this worker's leases (best effort: unrenewed, they expire anyway); safe twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.leases is not None:
                self.leases.close()
        finally:
            self.session.close()


def _json_or_none(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
