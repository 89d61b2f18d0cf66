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
    #: account -> budget in its credits for this run, replacing the manifest's (``lipbatch.budget``)
    max_credits: Mapping[str, float] = field(default_factory=dict)
    #: the same permanent refusal of one value (a voice id, ...) this many times stops its jobs
    breaker_threshold: int = 3
    #: an account whose host refused or failed to resolve every connection for this long is stopped
    unreachable_after: float = 8.0
    connect_retry: tuple[float, ...] = (0.5, 1.0, 2.0)  # waits between connection attempts, the last repeats
    #: where results are decoded (``lipbatch.verifier``): auto (a child process from 32 jobs), thread, process
    verifier: str = "auto"
    rerun: str | None = None  # the command that continues this run (for the summary); default from the manifest


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
class Pending:
    """A job this run did not finish: why, and the flags of ``lipbatch run`` that continue it."""

    output: str
    key: str
    account: str
    outcome: str  # an outcome of ``engine.control.OUTCOMES`` but done/skipped, or "in_flight"
    reason: str
    flags: tuple[str, ...] | None = ()  # e.g. ("--retry-failed",); (): the same command; None: nothing does
    needs: float | None = None  # over_budget: what the job reserves, in its account's credits
    cause: str | None = None  # error_blocked: the refused value and where it is set; over_budget: the budget


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
    over_budget: int = 0  # not submitted: its reservation does not fit what a budget has left
    error_blocked: int = 0  # not submitted: the provider refused the same value for other jobs (the breaker)
    in_flight: int = 0  # of ``not_run``: paid, at the provider; the next run collects them
    interrupted: bool = False
    credits: dict[str, float] = field(default_factory=dict)  # per account, reported this run
    failures: dict[str, str] = field(default_factory=dict)  # first output -> reason
    pending: list[Pending] = field(default_factory=list)  # every job not done, in order
    spend: dict[str, dict[str, Any]] = field(default_factory=dict)  # per account and budget: ``report.spend``
    elapsed: float = 0.0  # seconds
    output_dir: str = ""
    log_file: str = ""
    rerun: str = ""  # the command that continues this run

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if (self.failed or self.unknown or self.not_run or self.lost or self.blocked or self.over_budget
                or self.error_blocked):
            return EXIT_JOBS_FAILED
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "exit_code": self.exit_code}
