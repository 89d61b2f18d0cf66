"""Changing chosen jobs' records from a command (``redo``, ``prune``) while workers may be running.

Local files: ``State.open`` takes the state's lock, so no run is in progress and
every job can be changed (exactly what these commands always did).

A shared PostgreSQL state has no such lock, and a job write replaces the whole
record from the writer's view (last writer wins): a command writing a stale
record over a worker's fresh task id would lose the task and pay for it twice.
So the command does what a worker does. It opens the state as a short-lived
worker (``open_backend``: registered, with leases), claims the jobs it means to
change (``Leases.claim`` skips any job a live worker holds and re-reads the
records of the ones it gets, so every change starts from the stored record), and
changes only those. Each of its writes is fenced (``fence_every_write``): it
commits only while the claim is still this command's, so even a command frozen
past its lease cannot overwrite a worker that took the job over. A job a live
worker holds is left alone and reported (``Editing.refused``: who holds it); the
command says so and exits 1. ``close`` (always, on errors and Ctrl-C too) gives
every claim back and marks the worker stopped; claims it could not give back
(the database gone) expire after the lease.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lipbatch.model import Project
from lipbatch.state.backend import LeaseLostError, StateBackend, open_backend
from lipbatch.state.local import State
from lipbatch.state.records import JobRecord

#: when a job could not be claimed although no live worker holds it (it was being claimed at that instant)
BUSY = "another worker (it was claiming the job at that moment)"


@dataclass
class Editing:
    """The state, open for changing the jobs that were claimed; ``refused``: job key -> who holds it."""

    state: StateBackend
    refused: dict[str, str] = field(default_factory=dict)

    def update(self, key: str, **fields: Any) -> JobRecord | None:
        """``state.update``, or None (and the job refused) when its claim lapsed before the write."""
        try:
            return self.state.update(key, **fields)
        except LeaseLostError:
            self.refused[key] = "another worker, after this command's claim lapsed"
            return None


@contextmanager
def edit_jobs(project: Project, url: str | None, keys: Sequence[str]) -> Iterator[Editing]:
    """The campaign's state open for changing the jobs ``keys``: the local files under their lock, or the
    shared state with each of ``keys`` claimed (those a live worker holds are in ``refused``)."""
    if url is None:
        with State.open(project.state_path) as state:
            yield Editing(state)
        return
    from lipbatch.state.postgres import PostgresState

    state = open_backend(project, url)
    try:
        assert isinstance(state, PostgresState) and state.leases is not None
        leases = state.leases
        state.fence_every_write = True
        wanted = list(dict.fromkeys(keys))
        leases.enlist(wanted)
        claimed = set(leases.claim(wanted, len(wanted)))
        missed = [key for key in wanted if key not in claimed]
        holders = leases.holders(missed) if missed else {}
        yield Editing(state, {key: holders.get(key, BUSY) for key in missed})
    finally:
        state.close()
