"""Fixtures for the shared-state tests: one PostgreSQL server and database per session, one campaign per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "runner"))

from kinds import Media  # noqa: E402
from pgserver import PgServer, find_bindir  # noqa: E402


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


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("postgres-media"))
