"""The state backend interface, and the choice between the local files and PostgreSQL.

What the run engine and the commands need from a campaign's state is ``StateBackend``:
records read from memory, every change durable before the call returns. Today's
local ``State`` (snapshot + journal beside the manifest, one run at a time)
satisfies it unchanged. ``lipbatch.state.postgres.PostgresState`` keeps the same
records in one PostgreSQL schema per campaign, so any number of workers on any
number of machines can share it; it also offers ``leases``, a ``Coordinator``:
claims on jobs, on account slots and on uploads in progress, each held by one
worker and expiring unless its heartbeat renews it.

Which backend: ``--state URL`` (every command that reads or changes the state), else
``LIPBATCH_STATE_URL``, else the manifest's ``state:``, else the local files. A URL
carrying a password is refused without being echoed: the password comes only from
``PGPASSWORD`` or a ``.pgpass`` file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lipbatch.errors import LipbatchError, TransientError
from lipbatch.model import Project
from lipbatch.state.local import State
from lipbatch.state.records import JobRecord, JobStatus, TakeRecord, UploadRecord
from lipbatch.state.replay import Loaded, read_state

STATE_URL_VARIABLE = "LIPBATCH_STATE_URL"
STATE_OPTION_HELP = ("a shared state in PostgreSQL (postgresql://[user@]host[:port]/database[?campaign=NAME]; "
                     f"password from PGPASSWORD or ~/.pgpass); default ${STATE_URL_VARIABLE}, else the local state file")
POSTGRES_SCHEMES = ("postgresql", "postgres")


class StateUnavailableError(LipbatchError):
    """The shared state's database cannot be reached (and reconnecting did not help in time)."""


class LeaseLostError(TransientError):
    """This worker's claim on a job expired and may be another's now: it must not pay for it.

    A ``TransientError`` so the engine ends just that job as "left for a rerun".
    """


@runtime_checkable
class StateBackend(Protocol):
    """A campaign's records; read them freely, change them only through the methods."""

    jobs: dict[str, JobRecord]
    uploads: dict[tuple[str, str], UploadRecord]
    takes: list[TakeRecord]

    def job(self, key: str) -> JobRecord | None: ...

    def upload(self, endpoint: str, account: str, sha256: str) -> UploadRecord | None: ...

    def takes_of(self, output: str) -> list[TakeRecord]: ...

    def update(self, key: str, **fields: Any) -> JobRecord: ...

    def record_upload(self, endpoint: str, account: str, sha256: str, handle: str,
                      expires_at: float | None = None) -> None: ...

    def forget_upload(self, upload: UploadRecord) -> None: ...

    def record_take(self, take: TakeRecord) -> None: ...

    def scrub(self, text: str) -> str: ...

    def write_pending(self) -> None:
        """Changes held for the current round are written now (a kill -9 keeps them)."""

    def on_fsync(self, guard: Callable[[], AbstractContextManager[object]]) -> Callable[[], None] | None:
        """Hold ``guard()`` around each later fsync of this state, until the returned remover is called;
        None when every change is durable as it is made (nothing later to wait for)."""

    def learned(self, name: str) -> Any:
        """What runs learned under ``name`` (JSON: job durations, ``lipbatch.polling``), or None."""

    def learn(self, name: str, merge: Callable[[Any], Any]) -> None:
        """Store ``merge(what is stored now)`` under ``name``, atomically against other writers."""

    def close(self) -> None: ...


class Coordinator(Protocol):
    """How workers sharing one state divide the work; every claim expires ``lease`` seconds after
    its last renewal (``heartbeat``), so a worker that dies frees what it held.

    Slots: one row per account slot. A slot given back while its job's task may still run at
    the provider (``live``) stays reserved for that job until a worker claims the job again
    (``orphans``), so a dead worker's tasks keep counting against the account's cap.
    """

    worker: str
    lease: float
    heartbeat_every: float
    where: str

    def enlist(self, keys: Sequence[str]) -> None: ...

    def claim(self, keys: Sequence[str], limit: int) -> list[str]: ...

    def peek_done(self, keys: Sequence[str]) -> list[str]: ...

    def release(self, key: str) -> None: ...

    def orphans(self, accounts: Iterable[str]) -> list[str]: ...

    def prepare_slots(self, account: str, cap: int) -> None: ...

    def take_slot(self, account: str, cap: int, key: str) -> bool: ...

    def give_slot(self, account: str, key: str, *, live: bool) -> None: ...

    def stored_upload(self, endpoint: str, account: str, sha256: str) -> UploadRecord | None: ...

    def claim_upload(self, endpoint: str, account: str, sha256: str) -> bool: ...

    def release_upload(self, endpoint: str, account: str, sha256: str) -> None: ...

    def heartbeat(self) -> None: ...


def live(record: JobRecord | None) -> bool:
    """A task may be running at the provider for this record (its slot must stay taken)."""
    if record is None:
        return False
    return record.status is JobStatus.IN_FLIGHT or (record.status is JobStatus.SUBMITTING
                                                    and not record.no_task_exists)


# -- which backend

def state_url(option: str | None, environ: Mapping[str, str], manifest: str | None = None) -> str | None:
    """``--state`` wins over ``LIPBATCH_STATE_URL``, which wins over the manifest's ``state:``;
    None means the local files."""
    url = option or environ.get(STATE_URL_VARIABLE) or manifest or None
    if url is not None and not is_postgres_url(url):
        where = "--state" if option else STATE_URL_VARIABLE
        raise LipbatchError(f"{where} takes a postgresql://host/database URL (the local state needs none)")
    return url


def is_postgres_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in POSTGRES_SCHEMES and "://" in url


def campaign_name(state_path: Path) -> str:
    """The campaign a state file stands for: ``spring.lipbatch-state.json`` -> ``spring``,
    its rehearsal ``spring.lipbatch-state.sandbox.json`` -> ``spring_sandbox``."""
    name = state_path.name.removesuffix(".json").replace(".lipbatch-state", "")
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "campaign"


def open_backend(project: Project, url: str | None, *, redact: Iterable[str] = ()) -> StateBackend:
    """The run's state: the local files (locked), or the shared PostgreSQL campaign with this worker's leases."""
    if url is None:
        return State.open(project.state_path, redact=redact)
    from lipbatch.state.postgres import PostgresState

    return PostgresState.open(url, campaign_name(project.state_path), manifest=project.manifest_path.name,
                              redact=redact, worker=True)


@dataclass
class StateView:
    """A read-only look at a campaign's state (status, plan), with who holds what when shared."""

    loaded: Loaded
    where: str
    holders: dict[str, str] = field(default_factory=dict)  # job key -> worker holding it now
    workers: list[dict[str, Any]] = field(default_factory=list)  # workers seen within their lease


def read_backend(project: Project, url: str | None) -> StateView:
    """Read without locking or claiming anything (``plan``/``status`` while runs go on)."""
    if url is None:
        return StateView(read_state(project.state_path), str(project.state_path))
    from lipbatch.state.postgres import read_campaign

    return read_campaign(url, campaign_name(project.state_path))
