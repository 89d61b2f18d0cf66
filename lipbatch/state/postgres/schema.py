"""The tables of one campaign's schema, created on first use and migrated in order.

``schema_version`` holds the version applied; ``MIGRATIONS[i]`` takes a schema from
version ``i`` to ``i + 1``. Workers starting together serialise on an advisory lock, so
exactly one creates or migrates. A schema newer than this lipbatch knows is refused.

Records are stored as the local state's JSON (``records.job_dict`` ...) in a text
column, so a push and a pull give back exactly what went in; the columns beside it
(status, account, error_kind) are what the shared queries need.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from lipbatch.errors import LipbatchError

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (name text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE jobs (
        key text PRIMARY KEY, account text NOT NULL, status text NOT NULL, error_kind text,
        record text NOT NULL);
    CREATE TABLE uploads (endpoint text NOT NULL, sha256 text NOT NULL, record text NOT NULL,
        PRIMARY KEY (endpoint, sha256));
    CREATE TABLE takes (id text PRIMARY KEY, ord bigserial, record text NOT NULL);
    CREATE TABLE workers (id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL,
        started_at timestamptz NOT NULL, seen_at timestamptz NOT NULL, stopped_at timestamptz,
        lease double precision NOT NULL);
    CREATE TABLE claims (key text PRIMARY KEY, worker text, expires_at timestamptz);
    CREATE INDEX claims_worker ON claims (worker) WHERE worker IS NOT NULL;
    CREATE TABLE slots (account text NOT NULL, n integer NOT NULL, job_key text, worker text,
        expires_at timestamptz, PRIMARY KEY (account, n));
    CREATE TABLE upload_claims (endpoint text NOT NULL, sha256 text NOT NULL, worker text NOT NULL,
        expires_at timestamptz NOT NULL, PRIMARY KEY (endpoint, sha256));
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def ensure_schema(cursor: psycopg.Cursor, schema: str) -> int:
    """Create or migrate ``schema`` to ``SCHEMA_VERSION``; returns the version found before."""
    ident = sql.Identifier(schema)
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (schema,))
    cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
    cursor.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.schema_version (version integer NOT NULL)").format(ident))
    cursor.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
    found = check_version(cursor)
    for version in range(found, SCHEMA_VERSION):
        cursor.execute(MIGRATIONS[version])
        cursor.execute("INSERT INTO schema_version (version) VALUES (%s)", (version + 1,))
    return found


def check_version(cursor: psycopg.Cursor) -> int:
    """The schema's version (search_path set to it); a newer one than this lipbatch knows is refused."""
    cursor.execute("SELECT coalesce(max(version), 0), current_schema() FROM schema_version")
    found, schema = cursor.fetchone()
    if found > SCHEMA_VERSION:
        raise LipbatchError(f"the shared state schema {schema} is at version {found}, newer than this lipbatch "
                            f"knows ({SCHEMA_VERSION}); upgrade lipbatch")
    return found


def schema_exists(cursor: psycopg.Cursor, schema: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".schema_version',))
    return bool(cursor.fetchone()[0])
