"""What a run is told (options) and what it tells (events, the summary)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lipbatch.errors import EXIT_INTERRUPTED, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.limits import Backoff


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves; times are seconds at ``time_scale`` 1."""

    retry_failed: bool = False
    resubmit_unknown: bool = False
    regenerate_missing: bool = False  # pay for a new take of a done job whose output and provider copy are gone
    force: bool = False  # replace files at output paths that lipbatch did not write
    #: output path -> sha256 of a take a reviewer rejected: a job whose current take it is makes a new one
    rejected: Mapping[str, str] = field(default_factory=dict)
    fail_fast: bool = False
    max_jobs: int | None = None  # jobs in flight across all accounts
    sandbox: bool = False  # missing credential variables get dummy values
    time_scale: float = 1.0
    poll_min: float = 3.0
    poll_max: float = 30.0
    job_timeout: float = 3 * 3600.0
    transient_retries: int = 6
    backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=60.0))
    busy_backoff: Backoff = field(default_factory=lambda: Backoff(base=5.0, cap=30.0))
    request_rate: float | None = 10.0  # requests/s per account at time_scale 1; None = unpaced
    request_burst: float | None = None
    result_attempts: int = 5  # downloads per job per run (expired URL or corrupt transfer)
    http_timeout: float = 60.0


@dataclass(frozen=True)
class Event:
    """One thing that happened, for progress sinks. Never carries secrets."""

    type: str
    job: str | None = None  # job key
    account: str | None = None
    output: str | None = None
    message: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, {})}


Sink = Callable[[Event], None]


@dataclass
class RunSummary:
    """What a run achieved; ``exit_code`` follows lipbatch.errors."""

    total: int = 0
    done: int = 0  # finished in this run
    skipped: int = 0  # already done before (possibly copied to a new output path)
    failed: int = 0
    unknown: int = 0
    not_run: int = 0  # left for a rerun: stopped account, fail-fast, interrupted, download pending
    lost: int = 0  # done before, but its output and the provider's copy are gone (--regenerate-missing)
    blocked: int = 0  # an output path holds a file lipbatch did not write (--force replaces it)
    interrupted: bool = False
    credits: dict[str, float] = field(default_factory=dict)  # per account, reported this run
    failures: dict[str, str] = field(default_factory=dict)  # first output -> reason

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.failed or self.unknown or self.not_run or self.lost or self.blocked:
            return EXIT_JOBS_FAILED
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "exit_code": self.exit_code}
