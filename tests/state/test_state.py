"""State: durable updates, replay, compaction, corruption handling, uploads, secrets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from statekit import crash, journal_events, new_job

from lipbatch.errors import LipbatchError
from lipbatch.state import (
    REDACTED,
    STATE_FORMAT,
    JobRecord,
    JobStatus,
    State,
    StateDamagedError,
    backup_path,
    journal_path,
    lock_path,
    read_jobs,
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".lipbatch" / "state.json"


def test_updates_replay_after_reopen(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k1", attempts=1)
        new_job(state, "k2", outputs=("a.mp4", "b.mp4"))
        record = state.update("k1", status="in_flight", task_id="task-1", credits=12.5)
        assert record is state.job("k1")
        assert record.status is JobStatus.IN_FLIGHT
        expected = {key: JobRecord(**vars(rec)) for key, rec in state.jobs.items()}
    assert read_jobs(path) == expected
    with State.open(path) as again:
        assert again.jobs == expected
        assert again.jobs["k2"].outputs == ["a.mp4", "b.mp4"]


def test_update_is_on_disk_before_it_returns(path: Path) -> None:
    state = State.open(path)
    try:
        new_job(state, "k1")
        state.update("k1", task_id="t-9", status=JobStatus.IN_FLIGHT)
        # no close: what a kill -9 right now would leave behind
        seen = read_jobs(path)
        assert seen["k1"].task_id == "t-9"
        assert seen["k1"].status is JobStatus.IN_FLIGHT
        assert [line["seq"] for line in journal_events(path)] == [1, 2]
        assert all(line["format"] == STATE_FORMAT for line in journal_events(path))
    finally:
        state.close()


def test_first_update_needs_identity_fields_and_unknown_fields_are_refused(path: Path) -> None:
    with State.open(path) as state:
        with pytest.raises(ValueError, match="account"):
            state.update("k1", status="submitting", kind="x", outputs=["o"])
        with pytest.raises(TypeError, match="colour"):
            new_job(state, "k1", colour="red")
        with pytest.raises(ValueError):
            new_job(state, "k1", status="exploded")
        assert state.jobs == {}
        assert journal_events(path) == []


def test_unchanged_update_writes_nothing(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k1", task_id="t")
        size = journal_path(path).stat().st_size
        before = state.job("k1").updated_at
        state.update("k1", task_id="t", status="submitting")
        assert journal_path(path).stat().st_size == size
        assert state.job("k1").updated_at == before


def test_close_compacts_into_snapshot_and_empties_journal(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k1")
        state.update("k1", status="done", output_sha256="ab" * 32, output_size=10)
    snapshot = json.loads(path.read_text())
    assert snapshot["format"] == STATE_FORMAT
    assert snapshot["seq"] == 2
    assert journal_events(path) == []
    assert not lock_path(path).exists()
    assert read_jobs(path)["k1"].output_sha256 == "ab" * 32


def test_journal_is_compacted_every_n_events(path: Path) -> None:
    with State.open(path, compact_every=5) as state:
        for i in range(23):
            new_job(state, f"k{i % 3}", attempts=i)
            assert len(journal_events(path)) < 5
        expected = {key: JobRecord(**vars(rec)) for key, rec in state.jobs.items()}
        assert read_jobs(path) == expected
        assert json.loads(path.read_text())["seq"] == 20


def test_crash_between_snapshot_and_journal_truncation_replays_once(path: Path) -> None:
    state = State.open(path)
    new_job(state, "k1", attempts=1)
    state.update("k1", attempts=2)
    journal_before = journal_path(path).read_bytes()
    state.compact()
    state.close()
    journal_path(path).write_bytes(journal_before)  # the truncation never happened
    assert read_jobs(path)["k1"].attempts == 2
    with State.open(path) as again:
        assert again.job("k1").attempts == 2
        assert journal_events(path) == []  # the stale lines were folded away at once
        again.update("k1", attempts=3)
    assert read_jobs(path)["k1"].attempts == 3


def test_torn_last_line_is_ignored_and_trimmed_before_appending(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k1")
        state.compact()
        state.update("k1", task_id="t1")
        state.update("k1", status="in_flight")
        journal = journal_path(path).read_bytes()
        journal_path(path).write_bytes(journal[:-7])  # the status line is torn
        assert read_jobs(path)["k1"].status is JobStatus.SUBMITTING
        assert read_jobs(path)["k1"].task_id == "t1"
        crash(state)
    with State.open(path) as again:
        assert again.job("k1").status is JobStatus.SUBMITTING
        again.update("k1", status="failed", error="boom")
        assert read_jobs(path)["k1"].error == "boom"
    assert read_jobs(path)["k1"].status is JobStatus.FAILED


def test_undecodable_last_complete_line_is_ignored(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k1", attempts=1)
        with journal_path(path).open("ab") as handle:
            handle.write(b"\x00\x00\x00\x00\n")  # what some file systems leave after a crash
        assert read_jobs(path)["k1"].attempts == 1


def _three_line_journal(path: Path) -> list[bytes]:
    """The journal's head and three event lines, the holder gone as after a kill -9."""
    state = State.open(path)
    new_job(state, "k1")
    state.update("k1", attempts=1)
    state.update("k1", attempts=2)
    lines = journal_path(path).read_bytes().splitlines(keepends=True)
    crash(state)
    return lines


def test_corrupt_middle_line_is_an_error_naming_file_and_line(path: Path) -> None:
    lines = _three_line_journal(path)
    journal_path(path).write_bytes(lines[0] + lines[1] + b'{"format": 1, "seq": 2, "op"\n' + lines[3])
    with pytest.raises(StateDamagedError, match=r"state\.json\.journal, line 3"):
        read_jobs(path)
    with pytest.raises(LipbatchError, match="line 3"):
        State.open(path)
    assert not lock_path(path).exists()  # a failed open leaves no lock behind


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: {**e, "format": STATE_FORMAT + 1}, "newer lipbatch"),
        (lambda e: {**e, "set": {**e["set"], "colour": "red"}}, "unknown job field"),
        (lambda e: {**e, "op": "teleport"}, "unknown event"),
        (lambda e: {**e, "surprise": 1}, "unknown field"),
        (lambda e: {**e, "set": {"status": "vaporised"}}, "vaporised"),
        (lambda e: {k: v for k, v in e.items() if k != "format"}, "format"),
    ],
)
def test_journal_lines_a_newer_lipbatch_might_write_are_refused(path: Path, mutate, message: str) -> None:
    lines = _three_line_journal(path)
    event = mutate(json.loads(lines[2]))
    journal_path(path).write_bytes(lines[0] + lines[1] + json.dumps(event).encode() + b"\n" + lines[3])
    with pytest.raises(LipbatchError, match=message):
        read_jobs(path)


def test_even_a_last_line_from_a_newer_format_is_refused(path: Path) -> None:
    lines = _three_line_journal(path)
    event = {**json.loads(lines[3]), "format": STATE_FORMAT + 1}
    journal_path(path).write_bytes(b"".join(lines[:3]) + json.dumps(event).encode() + b"\n")
    with pytest.raises(LipbatchError, match="newer lipbatch"):
        read_jobs(path)


def test_newer_or_foreign_snapshot_is_refused(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k1")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": STATE_FORMAT + 1}))
    with pytest.raises(LipbatchError, match=rf"newer lipbatch \(state format {STATE_FORMAT + 1}"):
        read_jobs(path)
    path.write_text("jobs:\n  - not json\n")
    with pytest.raises(LipbatchError, match=str(path)):
        read_jobs(path)
    path.write_text(json.dumps({**data, "jobs": [{**data["jobs"][0], "colour": "red"}]}))
    with pytest.raises(LipbatchError, match="unknown job field"):
        read_jobs(path)


def test_missing_events_are_an_error_not_a_silent_gap(path: Path) -> None:
    with State.open(path) as state:
        new_job(state, "k1")
        state.compact()
        state.update("k1", attempts=1)
        path.unlink()  # the snapshot holding event 1 is gone; the journal starts at 2
        with pytest.raises(StateDamagedError, match="state file .* is missing"):
            read_jobs(path)
        backup_path(path).unlink()
        with pytest.raises(StateDamagedError, match="continues from event 1"):
            read_jobs(path)


def test_read_jobs_without_state_is_empty_and_needs_no_lock(path: Path) -> None:
    assert read_jobs(path) == {}
    assert not path.parent.exists()
    with State.open(path) as state:
        new_job(state, "k1")
        assert set(read_jobs(path)) == {"k1"}  # while the writer holds the lock


def test_closed_state_refuses_updates(path: Path) -> None:
    state = State.open(path)
    state.close()
    state.close()
    with pytest.raises(LipbatchError, match="closed"):
        new_job(state, "k1")


def test_uploads_are_reused_until_they_expire(path: Path) -> None:
    now = time.time()
    with State.open(path) as state:
        state.record_upload("E acct", "acct", "f" * 64, "asset-1")
        state.record_upload("E acct", "acct", "e" * 64, "asset-2", expires_at=now + 3600)
        state.record_upload("E acct", "acct", "d" * 64, "asset-3", expires_at=now - 1)
        state.record_upload("E acct", "acct", "c" * 64, "asset-4", expires_at=now + 5)  # about to vanish
        assert state.upload("E acct", "acct", "f" * 64).handle == "asset-1"
        assert state.upload("E other", "other", "f" * 64) is None
        assert state.upload("E acct", "acct", "e" * 64).expires_at == now + 3600
        assert state.upload("E acct", "acct", "d" * 64) is None
        assert state.upload("E acct", "acct", "c" * 64) is None
    with State.open(path) as again:
        assert again.upload("E acct", "acct", "f" * 64).handle == "asset-1"
        assert again.upload("E acct", "acct", "e" * 64).handle == "asset-2"
        assert ("E acct", "d" * 64) not in again.uploads  # dropped at compaction
        again.record_upload("E acct", "acct", "f" * 64, "asset-1b")
        assert again.upload("E acct", "acct", "f" * 64).handle == "asset-1b"
    with State.open(path) as third:
        assert third.upload("E acct", "acct", "f" * 64).handle == "asset-1b"


SECRET = "sk-live-7f3a9c1e5b"


def test_secrets_passed_by_mistake_never_reach_the_files(path: Path) -> None:
    with State.open(path, redact=[SECRET, "", "k1", "mp4"]) as state:
        new_job(state, "k1")
        state.update("k1", status="failed", error=f"401: invalid token Bearer {SECRET}", error_kind="permanent")
        state.update("k1", result_url=f"https://cdn/x.mp4?key={SECRET}")
        state.record_upload("E acct", "acct", "f" * 64, f"asset-{SECRET}")
        assert state.job("k1").error == f"401: invalid token Bearer {REDACTED}"
        assert state.upload("E acct", "acct", "f" * 64).handle == f"asset-{REDACTED}"
        journal = journal_path(path).read_bytes()
    files = path.read_bytes() + journal
    assert SECRET.encode() not in files
    assert b"Bearer " + REDACTED.encode() in files
    assert b"out/k1.mp4" in files  # values too short to be credentials are not redacted
