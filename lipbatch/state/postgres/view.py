"""Reading a shared campaign without taking part in it: ``status`` and ``plan`` from any machine.

One read-only, repeatable-read transaction, so the records, the claims and the
workers shown belong to one instant even while workers write. A campaign that has
no schema yet reads as empty (as a missing local state file does), unless
``must_exist`` (a pull); nothing is created.
"""

from __future__ import annotations

import psycopg

from lipbatch.errors import LipbatchError
from lipbatch.state.backend import StateView
from lipbatch.state.postgres.schema import check_version, schema_exists
from lipbatch.state.postgres.session import Session
from lipbatch.state.postgres.store import load_records
from lipbatch.state.replay import Loaded

_WORKERS = """
    SELECT id, host, pid, started_at, seen_at FROM workers
    WHERE stopped_at IS NULL AND seen_at + make_interval(secs => lease) > now() ORDER BY started_at"""


def read_campaign(url: str, campaign: str, *, must_exist: bool = False) -> StateView:
    session = Session.open(url, campaign)

    def unit(cursor: psycopg.Cursor) -> StateView:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if not schema_exists(cursor, session.schema):
            if must_exist:
                raise LipbatchError(f"{session.where} does not exist")
            return StateView(Loaded(), session.where)
        check_version(cursor)
        loaded = load_records(cursor, f"shared state {session.where}")
        cursor.execute("SELECT key, worker FROM claims WHERE worker IS NOT NULL AND expires_at > now()")
        holders = dict(cursor.fetchall())
        cursor.execute(_WORKERS)
        workers = [{"id": id_, "host": host, "pid": pid, "started": started.isoformat(), "seen": seen.isoformat()}
                   for id_, host, pid, started, seen in cursor.fetchall()]
        return StateView(loaded, session.where, holders, workers)

    try:
        return session.run(unit)
    finally:
        session.close()
