"""The PostgreSQL backend's records: the protocol, durability across reopen, schema versions, secrets."""

from __future__ import annotations

import os

import pytest
from pgserver import PASSWORD, PASSWORD_ROLE, connect

from lipbatch.errors import LipbatchError
from lipbatch.state import REDACTED, JobStatus, State, TakeRecord, UploadRecord
from lipbatch.state.backend import StateBackend, StateUnavailableError, campaign_name, state_url
from lipbatch.state.postgres import PostgresState, parse_url, schema_name
from lipbatch.state.postgres.schema import SCHEMA_VERSION

SECRET = "sk-test-secret-value"


def open_state(url: str, campaign: str = "spring", **kw) -> PostgresState:
    return PostgresState.open(url, campaign, manifest="spring.yaml", **kw)


def fill(state) -> None:
    state.update("k1", account="a", kind="magichour-lipsync", outputs=["x.mp4"], status=JobStatus.SUBMITTING,
                 attempts=1, endpoint="e")
    state.update("k1", status=JobStatus.IN_FLIGHT, task_id="t1", credits=2.5)
    state.update("k2", account="a", kind="magichour-lipsync", outputs=["y.mp4"], status=JobStatus.FAILED,
                 error=f"provider said {SECRET}", error_kind="permanent")
    state.record_upload("e", "a", "sha1", "handle-1", expires_at=4102444800.0)
    state.record_upload("e", "a", "sha2", "handle-2")
    state.forget_upload(state.upload("e", "a", "sha2"))
    state.record_take(TakeRecord(output="x.mp4", take=1, key="k0", endpoint="e", task_id="t0", credits=1.0,
                                 sha256="ab", size=3, kept="takes/x.take1.mp4", reason="requested", at=1.5))


def test_both_backends_satisfy_the_protocol(tmp_path, pg_url):
    with State.open(tmp_path / "s.json") as local, open_state(pg_url) as shared:
        assert isinstance(local, StateBackend)
        assert isinstance(shared, StateBackend)


def test_records_survive_reopening_and_equal_the_local_backends(tmp_path, pg_url):
    with open_state(pg_url, redact=[SECRET]) as shared, State.open(tmp_path / "s.json", redact=[SECRET]) as local:
        fill(shared)
        fill(local)
        local_jobs = {k: (r.status, r.task_id, r.credits, r.error) for k, r in local.jobs.items()}
    with open_state(pg_url) as again:
        assert {k: (r.status, r.task_id, r.credits, r.error) for k, r in again.jobs.items()} == local_jobs
        assert again.job("k2").error == f"provider said {REDACTED}"
        assert set(again.uploads) == {("e", "sha1")}
        assert again.upload("e", "a", "sha1") == UploadRecord("a", "sha1", "handle-1", 4102444800.0, "e")
        assert [t.task_id for t in again.takes_of("x.mp4")] == ["t0"]
    with connect(pg_url) as conn:
        stored = " ".join(str(row) for row in conn.execute("SELECT * FROM jobs"))
    assert SECRET not in stored


def test_an_unchanged_update_writes_nothing(pg_url):
    with open_state(pg_url) as state, connect(pg_url) as conn:
        fill(state)
        version = "SELECT xmin::text FROM jobs WHERE key = 'k1'"  # a new row version on every write
        before = conn.execute(version).fetchone()
        state.update("k1", status=JobStatus.IN_FLIGHT, task_id="t1")
        assert conn.execute(version).fetchone() == before
        state.update("k1", credits=3.0)
        assert conn.execute(version).fetchone() != before


def test_schema_is_created_once_with_its_version_and_a_newer_one_is_refused(pg_url):
    open_state(pg_url).close()
    open_state(pg_url).close()
    with connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("INSERT INTO schema_version VALUES (99)")
    with pytest.raises(LipbatchError, match="newer than this lipbatch knows"):
        open_state(pg_url)


def test_campaigns_are_separate_schemas_and_a_second_manifest_is_refused(pg, pg_database):
    database = pg.url(pg_database)
    spring = f"spring{os.getpid()}"
    with PostgresState.open(database, spring, manifest="spring.yaml") as a:
        a.update("k", account="a", kind="k", outputs=["o"], status=JobStatus.DONE)
    with PostgresState.open(database + f"?campaign=autumn{os.getpid()}", spring, manifest="autumn.yaml") as b:
        assert b.jobs == {}
        assert b.campaign == f"autumn{os.getpid()}"
    with pytest.raises(LipbatchError, match="belongs to manifest spring.yaml, not other.yaml"):
        PostgresState.open(database, spring, manifest="other.yaml")


def test_a_password_in_the_url_is_refused_without_being_echoed():
    for url in ("postgresql://me:hunter2-secret@db.example/lipbatch",
                "postgresql://me@db.example/lipbatch?password=hunter2-secret"):
        with pytest.raises(LipbatchError) as caught:
            parse_url(url)
        assert "hunter2" not in str(caught.value)
        assert "PGPASSWORD" in str(caught.value)


def test_the_password_comes_from_pgpassword(pg, monkeypatch):
    url = pg.url(pg.new_database(), user=PASSWORD_ROLE)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    with pytest.raises(StateUnavailableError) as caught:
        open_state(url)
    assert "password" in str(caught.value) and PASSWORD not in str(caught.value)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with open_state(url) as state:
        state.update("k", account="a", kind="k", outputs=["o"], status=JobStatus.DONE)


def test_state_url_choice_and_campaign_names(tmp_path):
    env = {"LIPBATCH_STATE_URL": "postgresql://h/db"}
    assert state_url(None, {}) is None
    assert state_url(None, env) == "postgresql://h/db"
    assert state_url("postgres://other/db", env) == "postgres://other/db"
    with pytest.raises(LipbatchError, match="--state takes a postgresql://"):
        state_url("state.json", {})
    assert campaign_name(tmp_path / "spring.lipbatch-state.json") == "spring"
    assert campaign_name(tmp_path / "Spring 2025.lipbatch-state.sandbox.json") == "spring_2025_sandbox"
    assert len(schema_name("x" * 100)) == 63 and schema_name("x" * 100) != schema_name("x" * 99)
