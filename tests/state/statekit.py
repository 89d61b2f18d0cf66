"""Helpers shared by the state tests: a job's first update, a kill -9, the journal's events."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from lipbatch.state import JobRecord, JobStatus, State, journal_path, lock_path


def new_job(state: State, key: str, **fields) -> JobRecord:
    base = {"account": "acct", "kind": "runway-lipsync", "outputs": [f"out/{key}.mp4"], "status": JobStatus.SUBMITTING}
    return state.update(key, **{**base, **fields})


def crash(state: State) -> None:
    """Stop using ``state`` the way kill -9 would: no compaction; the dead holder's lock removed."""
    os.close(state._fd)
    state._fd = None
    lock_path(state.path).unlink()


def journal_events(path: Path) -> list[dict]:
    """The journal's events (after its head line)."""
    head, *events = journal_path(path).read_bytes().splitlines()
    assert json.loads(head)["op"] == "head"
    return [json.loads(line) for line in events]


@contextlib.contextmanager
def killed_at_close(monkeypatch) -> Iterator[None]:
    """Runs inside end the way a kill -9 after their last update would: journal never compacted."""
    def die(state: State) -> None:
        if state._fd is not None:
            crash(state)

    with monkeypatch.context() as patch:
        patch.setattr(State, "close", die)
        yield
