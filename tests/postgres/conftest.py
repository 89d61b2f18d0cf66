"""Fixtures for the shared-state tests: one PostgreSQL server per session, one database per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runner"))

from kinds import Media  # noqa: E402
from pgserver import PgServer, find_bindir  # noqa: E402

from lipbatch.state.postgres import parse_url, schema_name  # noqa: E402


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: `apt-get install postgresql` "
                    "or set PG_BINDIR")
    server = PgServer(bindir).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_database(pg: PgServer) -> str:
    return pg.new_database()


@pytest.fixture
def pg_url(pg: PgServer, pg_database: str) -> str:
    """A campaign of its own (``?campaign=``) in the session's database, as the trusted superuser."""
    return pg.url(pg_database) + f"?campaign=t_{uuid.uuid4().hex[:12]}"


def schema_of(url: str) -> str:
    return schema_name(parse_url(url).campaign or "")


def connect(url: str) -> psycopg.Connection:
    """A plain connection to the campaign's database, its schema first on the search path."""
    conn = psycopg.connect(parse_url(url).conninfo, autocommit=True)
    conn.execute(f"SET search_path TO {schema_of(url)}")
    return conn


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("postgres-media"))
