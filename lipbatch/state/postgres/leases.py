"""One worker's leases on a shared campaign: claims on jobs, account slots, uploads in progress.

Every lease row names its worker and an expiry; ``heartbeat`` (from its own
connection, every ``lease / 4`` seconds) pushes the expiry of all of them forward. A
worker killed with kill -9 stops renewing: ``lease`` seconds later its rows are free.

- ``claims``: one row per job key; a worker does anything for a job only while it
  holds the job's row. Claiming is ``SELECT ... FOR UPDATE SKIP LOCKED`` then
  ``UPDATE``, so two workers never get the same job and never wait on each other.
- ``slots``: one row per slot of an account (``n < concurrency``). A worker takes a
  free row before a create and gives it back when the task is over. Given back while
  the job's task may still run (``live``, e.g. the worker was stopped, or died and
  its lease ran out), the row keeps the job's key: it stays taken until a worker
  claims that job again and adopts the row, or the record shows the task is over.
  So the cap holds across all workers, even for the tasks of one that died.
- ``upload_claims``: while a worker uploads a file for an endpoint, others wait for
  its handle instead of uploading the same bytes; the row goes when the handle is
  recorded (in the same transaction) or the upload fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import psycopg

from lipbatch.errors import LipbatchError
from lipbatch.state.backend import LeaseLostError
from lipbatch.state.postgres.session import Session
from lipbatch.state.records import (
    NOT_CREATED,
    JobRecord,
    JobStatus,
    UploadRecord,
    expired,
    job_from_dict,
    upload_from_dict,
    upload_key,
)

if TYPE_CHECKING:
    from lipbatch.state.postgres.store import PostgresState

LEASE_VARIABLE = "LIPBATCH_STATE_LEASE"
DEFAULT_LEASE = 60.0

_EXPIRY = "now() + make_interval(secs => %(lease)s)"
#: a job whose task may be running at the provider (``backend.live`` in SQL, over ``jobs j``)
LIVE = (f"(j.status = '{JobStatus.IN_FLIGHT}' OR (j.status = '{JobStatus.SUBMITTING}' AND "
        f"coalesce(j.error_kind, '') NOT IN ({', '.join(repr(kind) for kind in NOT_CREATED)})))")

_CLAIM = f"""
    WITH wanted AS (SELECT * FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS w(key, ord)),
    pick AS (
        SELECT c.key FROM claims c JOIN wanted w ON w.key = c.key
        WHERE c.worker IS NULL OR c.worker = %(me)s OR c.expires_at <= now()
        ORDER BY w.ord LIMIT %(limit)s FOR UPDATE OF c SKIP LOCKED)
    UPDATE claims c SET worker = %(me)s, expires_at = {_EXPIRY} FROM pick WHERE c.key = pick.key
    RETURNING c.key"""
_ADOPT_SLOT = f"""
    UPDATE slots SET worker = %(me)s, expires_at = {_EXPIRY}
    WHERE account = %(account)s AND job_key = %(key)s RETURNING n"""
_TAKE_SLOT = f"""
    WITH pick AS (
        SELECT s.n FROM slots s LEFT JOIN jobs j ON j.key = s.job_key
        WHERE s.account = %(account)s AND s.n < %(cap)s
          AND (s.job_key IS NULL OR (s.expires_at <= now() AND NOT coalesce({LIVE}, false)))
        ORDER BY s.n LIMIT 1 FOR UPDATE OF s SKIP LOCKED)
    UPDATE slots s SET job_key = %(key)s, worker = %(me)s, expires_at = {_EXPIRY}
    FROM pick WHERE s.account = %(account)s AND s.n = pick.n RETURNING s.n"""
_ORPHANS = f"""
    SELECT s.job_key FROM slots s JOIN jobs j ON j.key = s.job_key
    WHERE s.account = ANY(%(accounts)s) AND s.expires_at <= now() AND {LIVE} ORDER BY s.n"""
_GIVE_BACK_ALL = f"""
    UPDATE slots s SET worker = NULL, expires_at = now(),
        job_key = CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.key = s.job_key AND {LIVE}) THEN s.job_key END
    WHERE s.worker = %(me)s"""


def lease_seconds(environ: dict[str, str] | None = None) -> float:
    """``LIPBATCH_STATE_LEASE`` seconds (default 60): how long a silent worker's leases last."""
    raw = (os.environ if environ is None else environ).get(LEASE_VARIABLE)
    try:
        value = float(raw) if raw else DEFAULT_LEASE
    except ValueError:
        value = DEFAULT_LEASE
    return max(1.0, value)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Leases:
    """What this worker holds; every call is one short transaction on the store's connection,
    except ``heartbeat``, which has a connection of its own (it runs in a thread)."""

    def __init__(self, store: PostgresState, *, lease: float, worker: str | None = None) -> None:
        self.store = store
        self.session = store.session
        self.worker = worker or new_worker_id()
        self.lease = lease
        self.heartbeat_every = lease / 4
        self.where = store.where
        self._beat = Session(store.target, store.campaign, patience=self.heartbeat_every,
                             name=f"lipbatch {self.worker}")
        self._run("INSERT INTO workers (id, host, pid, started_at, seen_at, lease) "
                  "VALUES (%(me)s, %(host)s, %(pid)s, now(), now(), %(lease)s)",
                  host=socket.gethostname(), pid=os.getpid())

    def _run(self, statement: str, **params: object) -> list[tuple]:
        def unit(cursor: psycopg.Cursor) -> list[tuple]:
            cursor.execute(statement, {"me": self.worker, "lease": self.lease, **params})
            return cursor.fetchall() if cursor.description else []

        return self.session.run(unit)

    # -- jobs

    def enlist(self, keys: Sequence[str]) -> None:
        """Make sure every job this worker may claim has a claim row."""
        self._run("INSERT INTO claims (key) SELECT unnest(%(keys)s::text[]) ON CONFLICT (key) DO NOTHING",
                  keys=list(keys))

    def claim(self, keys: Sequence[str], limit: int) -> list[str]:
        """Up to ``limit`` of ``keys`` (in order) that no live worker holds; their records are re-read."""
        if not keys or limit < 1:
            return []

        def unit(cursor: psycopg.Cursor) -> tuple[list[str], dict[str, JobRecord]]:
            cursor.execute(_CLAIM, {"keys": list(keys), "me": self.worker, "lease": self.lease, "limit": limit})
            claimed = [key for (key,) in cursor.fetchall()]
            cursor.execute("SELECT key, record FROM jobs WHERE key = ANY(%s)", (claimed,))
            return claimed, {key: job_from_dict(json.loads(text), f"job {key}") for key, text in cursor.fetchall()}

        claimed, records = self.session.run(unit)
        self.store.adopt(records)
        return claimed

    def peek_done(self, keys: Sequence[str]) -> list[str]:
        """Which of ``keys`` are done (their fresh records are adopted): seen without claiming them."""
        rows = self._run(f"SELECT key, record FROM jobs WHERE key = ANY(%(keys)s) AND status = '{JobStatus.DONE}'",
                         keys=list(keys))
        self.store.adopt({key: job_from_dict(json.loads(text), f"job {key}") for key, text in rows})
        return [key for key, _ in rows]

    def holders(self, keys: Sequence[str]) -> dict[str, str]:
        """Which live worker holds each of ``keys`` now (``id (pid N on host)``); keys nobody holds are absent."""
        rows = self._run("SELECT c.key, c.worker, w.pid, w.host FROM claims c LEFT JOIN workers w ON w.id = c.worker "
                         "WHERE c.key = ANY(%(keys)s) AND c.worker IS NOT NULL AND c.worker <> %(me)s "
                         "AND c.expires_at > now()", keys=list(keys))
        return {key: f"{worker} (pid {pid} on {host})" if host else worker for key, worker, pid, host in rows}

    def release(self, key: str) -> None:
        self._run("UPDATE claims SET worker = NULL, expires_at = NULL WHERE key = %(key)s AND worker = %(me)s",
                  key=key)

    def fence(self, cursor: psycopg.Cursor, key: str) -> None:
        """Inside a write that precedes a payment: this worker must still hold the job (renewed)."""
        cursor.execute(f"UPDATE claims SET expires_at = {_EXPIRY} WHERE key = %(key)s AND worker = %(me)s "
                       "AND expires_at > now() RETURNING key", {"key": key, "me": self.worker, "lease": self.lease})
        if cursor.fetchone() is None:
            raise LeaseLostError(f"this worker's claim on job {key[:12]} lapsed (no heartbeat within "
                                 f"{self.lease:g} s); another worker may hold it, so nothing was sent")

    # -- slots

    def prepare_slots(self, account: str, cap: int) -> None:
        self._run("INSERT INTO slots (account, n) SELECT %(account)s, generate_series(0, %(cap)s - 1) "
                  "ON CONFLICT DO NOTHING", account=account, cap=cap)

    def take_slot(self, account: str, cap: int, key: str) -> bool:
        """The slot this job already has (one a dead worker left for it), else a free one, else False."""
        def unit(cursor: psycopg.Cursor) -> bool:
            params = {"account": account, "cap": cap, "key": key, "me": self.worker, "lease": self.lease}
            cursor.execute(_ADOPT_SLOT, params)
            if cursor.fetchone() is not None:
                return True
            cursor.execute(_TAKE_SLOT, params)
            return cursor.fetchone() is not None

        return self.session.run(unit)

    def give_slot(self, account: str, key: str, *, live: bool) -> None:
        """Free the job's slot, or, while its task may still run, leave it reserved for the job."""
        if live:
            self._run("UPDATE slots SET worker = NULL, expires_at = now() WHERE account = %(account)s "
                      "AND job_key = %(key)s AND worker = %(me)s", account=account, key=key)
        else:
            self._run("UPDATE slots SET job_key = NULL, worker = NULL, expires_at = NULL "
                      "WHERE account = %(account)s AND job_key = %(key)s AND worker = %(me)s", account=account, key=key)

    def orphans(self, accounts: Iterable[str]) -> list[str]:
        """Jobs whose task may still run but whose slot nobody renews: claim them first."""
        return [key for (key,) in self._run(_ORPHANS, accounts=list(accounts))]

    # -- uploads

    def stored_upload(self, endpoint: str, account: str, sha256: str) -> UploadRecord | None:
        """A usable upload another worker (or an earlier run) recorded, read fresh."""
        for where, sha in (upload_key(endpoint, account, sha256), upload_key(None, account, sha256)):
            rows = self._run("SELECT record FROM uploads WHERE endpoint = %(endpoint)s AND sha256 = %(sha)s",
                             endpoint=where, sha=sha)
            if rows:
                record = upload_from_dict(json.loads(rows[0][0]), "upload")
                if not expired(record, time.time()):
                    return record
        return None

    def claim_upload(self, endpoint: str, account: str, sha256: str) -> bool:
        where, sha = upload_key(endpoint, account, sha256)
        return bool(self._run(
            f"INSERT INTO upload_claims (endpoint, sha256, worker, expires_at) VALUES (%(endpoint)s, %(sha)s, "
            f"%(me)s, {_EXPIRY}) ON CONFLICT (endpoint, sha256) DO UPDATE SET worker = excluded.worker, "
            "expires_at = excluded.expires_at WHERE upload_claims.worker = excluded.worker "
            "OR upload_claims.expires_at <= now() RETURNING 1", endpoint=where, sha=sha))

    def release_upload(self, endpoint: str, account: str, sha256: str) -> None:
        where, sha = upload_key(endpoint, account, sha256)
        self.session.run(lambda cursor: self.drop_upload_claim(cursor, where, sha))

    def drop_upload_claim(self, cursor: psycopg.Cursor, endpoint: str, sha256: str) -> None:
        cursor.execute("DELETE FROM upload_claims WHERE endpoint = %s AND sha256 = %s AND worker = %s",
                       (endpoint, sha256, self.worker))

    # -- liveness

    def heartbeat(self) -> None:
        """Push every lease of this worker ``lease`` seconds ahead (thread-safe: its own connection)."""
        def unit(cursor: psycopg.Cursor) -> None:
            params = {"me": self.worker, "lease": self.lease}
            cursor.execute("UPDATE workers SET seen_at = now() WHERE id = %(me)s", params)
            for table in ("claims", "slots", "upload_claims"):
                cursor.execute(f"UPDATE {table} SET expires_at = {_EXPIRY} WHERE worker = %(me)s", params)

        self._beat.run(unit)

    def close(self) -> None:
        """Give everything back (slots of live tasks stay reserved for their jobs); best effort."""
        def unit(cursor: psycopg.Cursor) -> None:
            params = {"me": self.worker}
            cursor.execute("UPDATE claims SET worker = NULL, expires_at = NULL WHERE worker = %(me)s", params)
            cursor.execute(_GIVE_BACK_ALL, params)
            cursor.execute("DELETE FROM upload_claims WHERE worker = %(me)s", params)
            cursor.execute("UPDATE workers SET stopped_at = now(), seen_at = now() WHERE id = %(me)s", params)

        try:
            with contextlib.suppress(LipbatchError):  # the database is gone: the leases expire by themselves
                self.session.run(unit)
        finally:
            self._beat.close()

