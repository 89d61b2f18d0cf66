"""`lipbatch state push/pull`: a local state into PostgreSQL and back, exactly; different targets refused."""

from __future__ import annotations

import random
import shutil

import pytest
from kinds import write_manifest

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_INVALID, EXIT_OK
from lipbatch.state import JobRecord, JobStatus, State, TakeRecord, read_state
from lipbatch.state.backend import read_backend
from lipbatch.state.postgres import same_records

KIND = "magichour-lipsync"


def make_state(path, jobs: int, seed: int = 0) -> None:
    """A local state of ``jobs`` records in every status, with uploads and a superseded take. The first 20
    go through ``update``; the rest straight into memory, compacted once (10,000 fsyncs would only be slow)."""
    rng = random.Random(seed)
    statuses = list(JobStatus)
    with State.open(path) as state:
        for i in range(jobs):
            status = statuses[i % len(statuses)]
            fields = {"account": f"acct{i % 3}", "kind": KIND, "outputs": [f"o/{i}.mp4", f"p/{i}.mp4"][: 1 + i % 2],
                      "status": status, "attempts": i % 4, "take": 1 + i % 3, "endpoint": f"e{i % 2}",
                      "credits": rng.random() * 100 if i % 5 else None, "updated_at": 1.7e9 + rng.random(),
                      "task_id": None if status is JobStatus.SUBMITTING else f"task-{i}",
                      "error": "provider said ünïcode" if status is JobStatus.FAILED else None,
                      "error_kind": "permanent" if status is JobStatus.FAILED else None}
            key = f"{seed:02d}{i:062x}"
            if i < 20:
                state.update(key, **fields)
            else:
                state.jobs[key] = JobRecord(key=key, **fields)
        for i in range(50):
            state.record_upload(f"e{i % 2}", f"acct{i % 3}", f"{i:064x}", f"handle-{i}", expires_at=4.1e9 + i)
        state.record_take(TakeRecord(output="o/0.mp4", take=1, key="k", endpoint="e0", task_id="t", credits=1.5,
                                     sha256="ab" * 32, size=10, kept="takes/o/0.take1.mp4", reason="requested", at=1.0))
        state.compact()


@pytest.fixture
def campaign(tmp_path, media):
    case = write_manifest(KIND, tmp_path / "a", media, jobs=1)
    return load_campaign(case.manifest)


def copy_of(project, tmp_path):
    """The same manifest in another folder (another machine), without any state."""
    other = tmp_path / "b"
    shutil.copytree(project.manifest_path.parent, other, ignore=shutil.ignore_patterns("*.lipbatch-state*"))
    return load_campaign(other / project.manifest_path.name)


def test_push_then_pull_round_trips_exactly(campaign, tmp_path, pg_url, run_cli):
    make_state(campaign.state_path, 200)
    pushed = run_cli("state", "push", str(campaign.manifest_path), "--to", pg_url)
    assert pushed.code == EXIT_OK, pushed.err
    assert "pushed 200 job(s), 50 upload(s), 1 earlier take(s)" in pushed.out
    assert same_records(read_backend(campaign, pg_url).loaded, read_state(campaign.state_path))

    again = run_cli("state", "push", str(campaign.manifest_path), "--to", pg_url)
    assert again.code == EXIT_OK and "nothing copied" in again.out

    there = copy_of(campaign, tmp_path)
    pulled = run_cli("state", "pull", str(there.manifest_path), "--from", pg_url)
    assert pulled.code == EXIT_OK, pulled.err
    assert same_records(read_state(there.state_path), read_state(campaign.state_path))
    assert run_cli("state", "pull", str(there.manifest_path), "--from", pg_url).code == EXIT_OK


def test_a_target_holding_a_different_state_is_refused(campaign, tmp_path, pg_url, run_cli):
    make_state(campaign.state_path, 5)
    assert run_cli("state", "push", str(campaign.manifest_path), "--to", pg_url).code == EXIT_OK
    there = copy_of(campaign, tmp_path)
    make_state(there.state_path, 6, seed=1)

    refused = run_cli("state", "push", str(there.manifest_path), "--to", pg_url)
    assert refused.code == EXIT_INVALID and "already holds a different state (5 job(s)" in refused.err
    assert len(read_backend(campaign, pg_url).loaded.jobs) == 5

    refused = run_cli("state", "pull", str(there.manifest_path), "--from", pg_url)
    assert refused.code == EXIT_INVALID and "already holds a different state" in refused.err
    assert len(read_state(there.state_path).jobs) == 6


def test_another_manifests_campaign_and_a_missing_one_are_refused(campaign, tmp_path, media, pg_url, run_cli):
    make_state(campaign.state_path, 3)
    assert run_cli("state", "push", str(campaign.manifest_path), "--to", pg_url).code == EXIT_OK
    other = load_campaign(write_manifest("creatify-lipsync", tmp_path / "c", media, jobs=1).manifest)
    make_state(other.state_path, 3)
    refused = run_cli("state", "push", str(other.manifest_path), "--to", pg_url)
    assert refused.code == EXIT_INVALID and f"belongs to manifest {campaign.manifest_path.name}" in refused.err

    missing = run_cli("state", "pull", str(other.manifest_path), "--from", pg_url.replace("campaign=", "campaign=x"))
    assert missing.code == EXIT_INVALID and "does not exist" in missing.err
    nothing = run_cli("state", "push", str(copy_of(campaign, tmp_path).manifest_path), "--to", pg_url)
    assert nothing.code == EXIT_INVALID and "nothing to push" in nothing.err


@pytest.mark.slow
def test_ten_thousand_jobs_round_trip(campaign, tmp_path, pg_url, run_cli):
    make_state(campaign.state_path, 10_000)
    assert run_cli("state", "push", str(campaign.manifest_path), "--to", pg_url).code == EXIT_OK
    there = copy_of(campaign, tmp_path)
    assert run_cli("state", "pull", str(there.manifest_path), "--from", pg_url).code == EXIT_OK
    local, back = read_state(campaign.state_path), read_state(there.state_path)
    assert len(back.jobs) == 10_000 and same_records(local, back)
