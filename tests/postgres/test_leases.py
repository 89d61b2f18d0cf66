"""Leases between workers: claims on jobs, account slots (with orphans), uploads in progress, expiry,
fencing, and a connection that survives the database going away and coming back."""

from __future__ import annotations

import pytest
from pgserver import PASSWORD, PASSWORD_ROLE, connect

from lipbatch.state import JobStatus
from lipbatch.state.backend import LeaseLostError, StateUnavailableError
from lipbatch.state.postgres import PostgresState

LEASE = "LIPBATCH_STATE_LEASE"


@pytest.fixture
def workers(pg_url, monkeypatch):
    """Open ``n`` workers on one campaign (closed at the end)."""
    opened: list[PostgresState] = []

    def open_workers(n: int, lease: float = 60.0) -> list[PostgresState]:
        monkeypatch.setenv(LEASE, str(lease))
        for _ in range(n):
            opened.append(PostgresState.open(pg_url, "c", manifest="c.yaml", worker=True))
        return opened[-n:]

    yield open_workers
    for state in opened:
        state.close()


def expire(url: str, worker: str) -> None:
    """What a kill -9 does to a worker's leases once its lease has run out."""
    with connect(url) as conn:
        for table in ("claims", "slots", "upload_claims"):
            conn.execute(f"UPDATE {table} SET expires_at = now() - interval '1 second' WHERE worker = %s", (worker,))


def test_each_job_is_claimed_by_exactly_one_worker(workers):
    a, b, c = workers(3)
    keys = [f"k{i}" for i in range(10)]
    a.leases.enlist(keys)
    got = [a.leases.claim(keys, 4), b.leases.claim(keys, 4), c.leases.claim(keys, 4)]
    assert [len(g) for g in got] == [4, 4, 2]
    assert sorted(sum(got, [])) == sorted(keys)
    assert got[0] == keys[:4]  # in the order offered
    assert a.leases.claim(keys[4:], 10) == []  # held by the others
    assert b.leases.claim(keys, 10) == got[1]  # asking again for what it holds is harmless
    a.leases.release("k0")
    assert c.leases.claim(keys[:4], 10) == ["k0"]


def test_a_silent_workers_claims_expire_and_a_claim_brings_the_fresh_record(pg_url, workers):
    a, b = workers(2)
    a.leases.enlist(["k"])
    assert a.leases.claim(["k"], 1) == ["k"]
    a.update("k", account="acct", kind="magichour-lipsync", outputs=["o"], status=JobStatus.SUBMITTING, attempts=1)
    a.update("k", status=JobStatus.IN_FLIGHT, task_id="t1")
    assert b.job("k") is None and b.leases.claim(["k"], 1) == []
    expire(pg_url, a.leases.worker)
    assert b.leases.claim(["k"], 1) == ["k"]
    assert b.job("k").task_id == "t1"  # re-read on claim: polled, never resubmitted
    with pytest.raises(LeaseLostError):  # the old holder may not pay for it any more
        a.update("k", status=JobStatus.SUBMITTING, task_id=None, attempts=2)
    assert b.job("k").attempts == 1


def test_heartbeat_renews_every_lease_of_its_worker_only(pg_url, workers):
    a, b = workers(2)
    a.leases.enlist(["k1", "k2"])
    a.leases.claim(["k1"], 1)
    b.leases.claim(["k2"], 1)
    a.leases.prepare_slots("acct", 2)
    a.leases.take_slot("acct", 2, "k1")
    a.leases.claim_upload("e", "acct", "sha")
    for worker in (a.leases.worker, b.leases.worker):
        expire(pg_url, worker)
    a.leases.heartbeat()
    with connect(pg_url) as conn:
        for table in ("claims", "slots", "upload_claims"):
            rows = conn.execute(f"SELECT worker, expires_at > now() + interval '50 seconds' FROM {table} "
                                "WHERE worker IS NOT NULL ORDER BY worker = %s", (a.leases.worker,)).fetchall()
            assert rows[-1] == (a.leases.worker, True), table
    assert b.leases.claim(["k1"], 1) == []
    assert a.leases.claim(["k2"], 1) == ["k2"]  # b did not beat: its claim lapsed


def test_slots_cap_an_account_across_workers(workers):
    a, b, c = workers(3)
    a.leases.prepare_slots("acct", 2)
    assert a.leases.take_slot("acct", 2, "k1")
    assert b.leases.take_slot("acct", 2, "k2")
    assert not c.leases.take_slot("acct", 2, "k3")
    b.leases.give_slot("acct", "k2", live=False)
    assert c.leases.take_slot("acct", 2, "k3")
    assert a.leases.take_slot("acct", 2, "k1")  # the slot it has
    assert not a.leases.take_slot("acct", 2, "k4")


def test_the_slot_of_a_task_that_may_still_run_stays_taken_until_its_job_is_claimed_again(pg_url, workers):
    a, b = workers(2)
    a.leases.prepare_slots("acct", 1)
    a.leases.enlist(["k1", "k2"])
    a.leases.claim(["k1"], 1)
    assert a.leases.take_slot("acct", 1, "k1")
    a.update("k1", account="acct", kind="k", outputs=["o"], status=JobStatus.SUBMITTING, attempts=1)
    a.update("k1", status=JobStatus.IN_FLIGHT, task_id="t1")
    expire(pg_url, a.leases.worker)  # a dies with its task running
    assert not b.leases.take_slot("acct", 1, "k2")  # the dead worker's task still counts
    assert b.leases.orphans(["acct"]) == ["k1"]
    assert b.leases.claim(["k1"], 1) == ["k1"]
    assert b.leases.take_slot("acct", 1, "k1")  # adopted, not a second slot
    b.update("k1", status=JobStatus.SUCCEEDED)
    b.leases.give_slot("acct", "k1", live=True)  # given back before the record said so: freed by the record
    assert b.leases.orphans(["acct"]) == []
    assert b.leases.take_slot("acct", 1, "k2")


def test_one_upload_per_file_across_workers(workers):
    a, b = workers(2)
    assert a.leases.stored_upload("e", "acct", "sha") is None
    assert a.leases.claim_upload("e", "acct", "sha")
    assert not b.leases.claim_upload("e", "acct", "sha")  # b waits for a's handle
    a.record_upload("e", "acct", "sha", "handle-1")
    assert b.leases.stored_upload("e", "acct", "sha").handle == "handle-1"
    assert b.leases.claim_upload("e", "acct", "sha2")
    b.leases.release_upload("e", "acct", "sha2")  # its upload failed: another may try
    assert a.leases.claim_upload("e", "acct", "sha2")


def test_closing_gives_everything_back_and_keeps_live_slots_reserved(workers):
    a, b = workers(2)
    a.leases.prepare_slots("acct", 2)
    a.leases.enlist(["k1", "k2"])
    a.leases.claim(["k1", "k2"], 2)
    for key, status in (("k1", JobStatus.IN_FLIGHT), ("k2", JobStatus.DONE)):
        a.leases.take_slot("acct", 2, key)
        a.update(key, account="acct", kind="k", outputs=[key], status=status)
    a.close()
    assert b.leases.claim(["k1", "k2"], 2) == ["k1", "k2"]
    assert b.leases.orphans(["acct"]) == ["k1"]
    assert b.leases.take_slot("acct", 2, "k3") and not b.leases.take_slot("acct", 2, "k4")


def test_a_restarted_database_is_reconnected_transparently(pg, pg_url, workers):
    (a,) = workers(1)
    a.update("k", account="acct", kind="k", outputs=["o"], status=JobStatus.DONE)
    with connect(pg_url) as conn:  # the server drops every connection of the worker
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'lipbatch%'")
    a.update("k", credits=2.0)
    with connect(pg_url) as conn:
        assert '"credits":2.0' in conn.execute("SELECT record FROM jobs WHERE key = 'k'").fetchone()[0]


def test_a_database_that_stays_away_stops_with_a_clear_message(pg, pg_database, monkeypatch):
    monkeypatch.setenv(LEASE, "1")  # patience: half a lease
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    url = pg.url(pg_database, user=PASSWORD_ROLE) + "?campaign=gone"
    state = PostgresState.open(url, "c", manifest="c.yaml")
    try:
        state.update("k", account="acct", kind="k", outputs=["o"], status=JobStatus.SUBMITTING, attempts=1)
        pg.sql(f"ALTER ROLE {PASSWORD_ROLE} NOLOGIN")  # from now on the worker cannot get back in
        pg.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{PASSWORD_ROLE}'")
        with pytest.raises(StateUnavailableError) as caught:
            state.update("k", status=JobStatus.IN_FLIGHT, task_id="t1")
        assert "is unreachable" in str(caught.value) and "resumes" in str(caught.value)
        assert PASSWORD not in str(caught.value)
        assert state.job("k").status is JobStatus.SUBMITTING  # memory follows what was committed
    finally:
        pg.sql(f"ALTER ROLE {PASSWORD_ROLE} LOGIN")
        state.close()
