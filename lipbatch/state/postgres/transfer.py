"""Copying a campaign's records between the local files and PostgreSQL (``lipbatch state push/pull``).

Both directions copy jobs, uploads and superseded takes exactly (the same JSON the
local snapshot holds), in one transaction on the database side. A target that
already holds records is left alone unless they are the very same records (then
the copy is a no-op): a push never mixes two campaigns' histories, and a pull
never overwrites a local state that went its own way.
"""

from __future__ import annotations

import uuid

import psycopg

from lipbatch.errors import LipbatchError
from lipbatch.state.postgres.schema import ensure_schema
from lipbatch.state.postgres.session import Session
from lipbatch.state.postgres.store import check_manifest, job_row, load_records, take_row, upload_row
from lipbatch.state.postgres.view import read_campaign
from lipbatch.state.replay import Loaded


def same_records(a: Loaded, b: Loaded) -> bool:
    return a.jobs == b.jobs and a.uploads == b.uploads and a.takes == b.takes


def counts(loaded: Loaded) -> str:
    return f"{len(loaded.jobs)} job(s), {len(loaded.uploads)} upload(s), {len(loaded.takes)} earlier take(s)"


def push(loaded: Loaded, url: str, campaign: str, *, manifest: str) -> tuple[str, bool]:
    """Copy ``loaded`` into the campaign's schema; (where, copied: False when it was already there)."""
    session = Session.open(url, campaign)
    where = session.where

    def unit(cursor: psycopg.Cursor) -> bool:
        ensure_schema(cursor, session.schema)
        check_manifest(cursor, manifest, session)
        cursor.execute("LOCK TABLE jobs, uploads, takes IN EXCLUSIVE MODE")
        there = load_records(cursor, f"shared state {where}")
        if there.jobs or there.uploads or there.takes:
            if same_records(there, loaded):
                return False
            raise LipbatchError(f"{where} already holds a different state ({counts(there)}); nothing was "
                                "copied. Pull it, or push to another campaign (?campaign=NAME in the URL)")
        with cursor.copy("COPY jobs (key, account, status, error_kind, record) FROM STDIN") as copy:
            for record in loaded.jobs.values():
                copy.write_row(job_row(record))
        with cursor.copy("COPY uploads (endpoint, sha256, record) FROM STDIN") as copy:
            for upload in loaded.uploads.values():
                copy.write_row(upload_row(upload))
        with cursor.copy("COPY takes (id, record) FROM STDIN") as copy:
            for take in loaded.takes:
                copy.write_row(take_row(uuid.uuid4().hex, take))
        return True

    try:
        return where, session.run(unit)
    finally:
        session.close()


def pull(url: str, campaign: str) -> tuple[str, Loaded]:
    """The campaign's records, read in one consistent snapshot; an unknown campaign is an error."""
    view = read_campaign(url, campaign, must_exist=True)
    return view.where, view.loaded
