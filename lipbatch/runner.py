"""The engine: every job of a ``Project`` to a verified output file, crash-safe and paying once.

One trio nursery runs one task per job that still needs work. Per account an
``AdaptiveLimiter`` holds "slots" (a slot is held from just before the create
POST until the provider reports the task finished) and an optional
``TokenBucket`` paces requests. All durable progress goes through
``lipbatch.state`` *before* the next step, so a kill -9 at any instant resumes
without paying twice.

Per job, by recorded status (``state.JobStatus``):

- none / refused submission: upload inputs (once per account and content hash,
  shared between jobs and reused from state), take a slot, record intent
  (SUBMITTING), POST, record the task id at once (IN_FLIGHT).
- IN_FLIGHT: poll (guided by the provider's ETA/progress, else backoff) until
  terminal; SUCCEEDED is recorded with its result URL, then downloaded
  (``lipbatch.download``) into the output folder, copied to every output of a
  merged job, and recorded DONE with the sha256. An expired URL is re-polled.
- DONE: skipped when an output holds the recorded sha256 (no HTTP at all);
  outputs missing beside a verified one are copied; none verified -> re-poll
  for a fresh URL and download again.
- SUBMITTING after a crash: ``find_task`` (the job key travels as replyRef /
  name) when the client can reconcile; "not found" there means the POST never
  created a task, so it is sent again. Otherwise the job becomes UNKNOWN and is
  resubmitted only with ``resubmit_unknown``.
- FAILED: resubmitted only with ``retry_failed``, and never for moderation.
  A job that failed by timeout or transient errors *while polling* still has a
  live, paid task: any rerun polls it again (no flag needed), never resubmits.

Readings where the issue left room:

- A create answered with a definite refusal (429, busy, 5xx with a response,
  out of credits) created nothing: the record stays SUBMITTING with
  ``error_kind = "refused"`` (or ``"out_of_credits"``), which a rerun treats as
  "no task exists" rather than as an unknown outcome. A connection lost after
  the request was sent is ambiguous: reconciled via ``find_task``, else UNKNOWN.
- Out of credits stops new submissions on that account; its unsubmitted jobs
  count as ``not_run`` (a rerun after a top-up picks them up, no flag needed).
- ``--fail-fast`` stops new submissions everywhere after the first failure and
  lets tasks already paid for finish and download.
- ``max_jobs`` (``--jobs N``) caps jobs in flight across all accounts.
- A timeout or exhausted transient retries while polling fail the job for this
  run (error_kind "timeout"/"transient") but keep its task id for re-polling.
- HTTP 401 (credentials rejected) fails the job and stops the account: every
  other job there would fail the same way.
- What a provider says in seconds (Retry-After, ETAs, URL expiry) is real
  time and honoured as given (the sandbox scales its own answers);
  ``time_scale`` scales only the runner's own constants (poll intervals,
  backoff, the per-job timeout), so tests run on the sandbox's scaled clock.
"""

from __future__ import annotations

import dataclasses
import os
import secrets as _secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from lipbatch import download as dl
from lipbatch.errors import (
    EXIT_INTERRUPTED,
    EXIT_JOBS_FAILED,
    EXIT_OK,
    BusyError,
    MissingCredentialError,
    ModerationError,
    NotFoundError,
    OutOfCreditsError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from lipbatch.hashing import HashCache
from lipbatch.limits import AdaptiveLimiter, Backoff, TokenBucket
from lipbatch.model import Account, InputRef, Job, Project
from lipbatch.providers import SANDBOX_PREFIXES, client_class
from lipbatch.providers.base import Phase, Provider, Submission, TaskState, Upload
from lipbatch.state import REFUSED, JobRecord, JobStatus, State

_REPOLL_KINDS = ("timeout", "transient")
_URL_MARGIN = 30.0  # seconds before a result URL's expiry at which it is no longer used

# httpx exceptions raised before a request left the machine: the provider saw nothing.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves; times are seconds at ``time_scale`` 1."""

    retry_failed: bool = False
    resubmit_unknown: bool = False
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
    interrupted: bool = False
    credits: dict[str, float] = field(default_factory=dict)  # per account, reported this run
    failures: dict[str, str] = field(default_factory=dict)  # first output -> reason

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.failed or self.unknown or self.not_run:
            return EXIT_JOBS_FAILED
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "exit_code": self.exit_code}


# -- configuration helpers ---------------------------------------------------------------------


def point_at_sandbox(project: Project, url: str) -> Project:
    """Every account's base URL moved onto a sandbox at ``url`` (``--sandbox``/``--sandbox-url``)."""
    base = url.rstrip("/")
    accounts = {
        name: dataclasses.replace(account, base_url=base + SANDBOX_PREFIXES[account.kind])
        for name, account in project.accounts.items()
    }
    return dataclasses.replace(project, accounts=accounts)


def credential_names(account: Account) -> Mapping[str, str]:
    """role -> env var name: the manifest's, else the kind's defaults."""
    return account.credentials or client_class(account.kind).credential_defaults


def resolve_secrets(
    accounts: Mapping[str, Account], *, sandbox: bool = False, environ: Mapping[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """account -> role -> value from the environment; every missing variable named in one error."""
    environ = os.environ if environ is None else environ
    resolved: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    for name, account in accounts.items():
        values: dict[str, str] = {}
        for role, variable in credential_names(account).items():
            value = environ.get(variable)
            if not value:
                if not sandbox:
                    missing.append(f"{variable} (the {role} of provider '{name}', kind {account.kind})")
                    continue
                value = f"sandbox-{role}"
            values[role] = value
        resolved[name] = values
    if missing:
        raise MissingCredentialError("environment variable(s) not set: " + "; ".join(missing))
    return resolved


class _SharedTransport(httpx.AsyncBaseTransport):
    """One connection pool for every client; optionally paced by an account's token bucket."""

    def __init__(self, inner: httpx.AsyncBaseTransport, bucket: TokenBucket | None = None) -> None:
        self.inner = inner
        self.bucket = bucket

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.bucket is not None:
            await self.bucket.take()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """The pool outlives each client; the runner closes it once."""


# -- per-job control flow ----------------------------------------------------------------------


class _JobEnded(Exception):
    """Unwinds a job's task with its outcome: done | skipped | failed | unknown | not_run."""

    def __init__(self, outcome: str, reason: str | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.reason = reason


@dataclass
class _AccountRun:
    account: Account
    client: Provider
    limiter: AdaptiveLimiter
    uploads: trio.CapacityLimiter
    stopped: str | None = None
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    credits: float = 0.0


@dataclass
class _Plan:
    """What the pre-pass found for one job."""

    action: str  # "skip" | "copy" | "work"
    source: Path | None = None
    targets: tuple[str, ...] = ()


class Runner:
    """One run of one project; use ``run_project``."""

    def __init__(self, project: Project, options: RunOptions, state: State, *, transport: httpx.AsyncBaseTransport,
                 environ: Mapping[str, str], sink: Sink | None, stop: trio.Event | None) -> None:
        self.project = project
        self.options = options
        self.state = state
        self.transport = transport
        self.environ = environ
        self.secrets: dict[str, dict[str, str]] = {}
        self.sink = sink
        self.stop = stop if stop is not None else trio.Event()
        self.summary = RunSummary(total=len(project.jobs))
        self.scale = options.time_scale
        self.backoff = options.backoff.scaled(self.scale)
        self.busy_backoff = options.busy_backoff.scaled(self.scale)
        self.halted: str | None = None
        self.accounts: dict[str, _AccountRun] = {}
        self.global_slots = trio.CapacityLimiter(options.max_jobs) if options.max_jobs else None
        self._uploading: dict[tuple[str, str], trio.Event] = {}
        self._credits_seen: dict[str, float] = {}  # job key -> credits counted in this run
        self._upload_errors: dict[tuple[str, str], ProviderError] = {}
        self._clients: list[httpx.AsyncClient] = []
        self.download_http: httpx.AsyncClient | None = None  # result URLs: shared pool, unpaced
        self.hashes = HashCache.for_state(project.state_path)  # outputs, shared with validate's input cache

    # -- events

    def emit(self, type: str, job: Job | None = None, *, account: str | None = None, message: str | None = None,
             **data: Any) -> None:
        if self.sink is None:
            return
        scrub = self.state.scrub  # provider messages may echo a credential: events reach logs and --json
        data = {name: scrub(value) if isinstance(value, str) else value for name, value in data.items()}
        try:
            self.sink(Event(type, job=job.key if job else None, account=account or (job.account if job else None),
                            output=job.output if job else None, message=message and scrub(message), data=data))
        except OSError:  # the reader went away (a closed pipe): the run goes on, unobserved
            self.sink = None

    def emit_account(self, acct: _AccountRun) -> None:
        self.emit("account", account=acct.account.name, kind=acct.account.kind, limit=acct.limiter.limit,
                  cap=acct.limiter.cap, in_use=acct.limiter.in_use, in_flight=acct.in_flight, done=acct.done,
                  failed=acct.failed, credits=acct.credits, stopped=acct.stopped)

    # -- the run

    async def run(self) -> RunSummary:
        plans = await trio.to_thread.run_sync(self._prepass)
        work = [job for job in self.project.jobs if plans[job.key].action == "work"]
        for job in self.project.jobs:
            plan = plans[job.key]
            if plan.action != "work":
                self._finish_copies(job, plan)
        self.emit("run_started", jobs=len(self.project.jobs), to_do=len(work), skipped=self.summary.skipped)
        if work:
            needed = {job.account for job in work}
            self.secrets = resolve_secrets({name: self.project.accounts[name] for name in sorted(needed)},
                                           sandbox=self.options.sandbox, environ=self.environ)
            await self._run_work(work)
        await trio.to_thread.run_sync(self.hashes.save)
        self.emit("run_finished", **self.summary.to_json())
        return self.summary

    async def _run_work(self, work: list[Job]) -> None:
        try:
            self._open_accounts(work)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, nursery.cancel_scope)
                async with trio.open_nursery() as jobs:
                    for job in self._resumed_first(work):
                        jobs.start_soon(self._job_task, job, name=f"job {job.output}")
                nursery.cancel_scope.cancel()
        finally:
            for client in self._clients:
                await client.aclose()
        cancelled = self.summary.total - (self.summary.done + self.summary.skipped + self.summary.failed
                                          + self.summary.unknown + self.summary.not_run)
        self.summary.not_run += cancelled
        if self.stop.is_set():
            self.summary.interrupted = True

    async def _watch_stop(self, scope: trio.CancelScope) -> None:
        await self.stop.wait()
        self.halted = "interrupted"
        self.emit("interrupted", message="stopping: no new submissions; state is recorded")
        scope.cancel()

    def _open_accounts(self, work: list[Job]) -> None:
        resumed: dict[str, int] = {}
        for job in work:
            record = self.state.job(job.key)
            if record is not None and record.status is JobStatus.IN_FLIGHT:
                resumed[job.account] = resumed.get(job.account, 0) + 1
        timeout = httpx.Timeout(self.options.http_timeout, connect=min(10.0, self.options.http_timeout))
        for name in sorted({job.account for job in work}):
            account = self.project.accounts[name]
            bucket = None
            if self.options.request_rate:
                bucket = TokenBucket(self.options.request_rate / self.scale, self.options.request_burst)
            http = httpx.AsyncClient(transport=_SharedTransport(self.transport, bucket), timeout=timeout)
            self._clients.append(http)
            client = client_class(account.kind)(account, http, self.secrets[name])
            cap = max(1, account.concurrency)
            limiter = AdaptiveLimiter(cap, start=max(2, resumed.get(name, 0)))
            self.accounts[name] = _AccountRun(account, client, limiter, trio.CapacityLimiter(max(2, min(cap, 4))))
        self.download_http = httpx.AsyncClient(transport=_SharedTransport(self.transport), timeout=timeout)
        self._clients.append(self.download_http)

    def _resumed_first(self, work: list[Job]) -> list[Job]:
        """In-flight tasks from an earlier run take their slots before any new submission."""
        def rank(job: Job) -> int:
            record = self.state.job(job.key)
            return 0 if record is not None and record.status is JobStatus.IN_FLIGHT else 1

        ordered = sorted(work, key=rank)
        for job in ordered:
            if rank(job):
                break
            self._take_slot_now(job, self.accounts[job.account])
        return ordered

    async def _job_task(self, job: Job) -> None:
        acct = self.accounts[job.account]
        try:
            await self._drive(job, acct)
            raise _JobEnded("done")
        except _JobEnded as ended:
            self._count(job, acct, ended)
        except TransientError as exc:  # e.g. an upload or reconcile that kept failing: a rerun retries
            self._count(job, acct, _JobEnded("not_run", str(exc)))
        except ProviderError as exc:  # e.g. an upload the provider refused: ends only this job
            self._stop_if_refused(acct, exc)
            self._count(job, acct, _JobEnded("failed", str(exc)))
        finally:
            self._give_slot(job, acct)

    def _count(self, job: Job, acct: _AccountRun, ended: _JobEnded) -> None:
        outcome = ended.outcome
        setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)
        if outcome == "done":
            acct.done += 1
        elif outcome in ("failed", "unknown"):
            if outcome == "failed":
                acct.failed += 1
            self.summary.failures[job.output] = self.state.scrub(ended.reason or outcome)
            self.emit(f"job_{outcome}", job, message=ended.reason)
            if self.options.fail_fast and self.halted is None:
                self.halted = "fail-fast"
                self.emit("halted", message=f"--fail-fast: no new submissions after {job.output} failed")
        elif outcome == "not_run":
            self.emit("job_not_run", job, message=ended.reason)
        self.emit_account(acct)

    # -- pre-pass: what is already done (no HTTP)

    def _prepass(self) -> dict[str, _Plan]:
        remove_partial_files(self.project.output_dir)
        plans: dict[str, _Plan] = {}
        for job in self.project.jobs:
            record = self.state.job(job.key)
            if record is None or record.status is not JobStatus.DONE or not record.output_sha256:
                plans[job.key] = _Plan("work")
                continue
            verified = [name for name in dict.fromkeys([*job.outputs, *record.outputs])
                        if self._holds(self.project.output_dir / name, record)]
            missing = tuple(name for name in job.outputs if name not in verified)
            if not verified:
                plans[job.key] = _Plan("work")
            elif missing:
                source = self.project.output_dir / verified[0]
                for name in missing:
                    copy_file(source, self.project.output_dir / name)
                plans[job.key] = _Plan("copy", source, missing)
            else:
                plans[job.key] = _Plan("skip")
        return plans

    def _holds(self, path: Path, record: JobRecord) -> bool:
        """The file holds the recorded output (re-read only when its size or mtime changed)."""
        try:
            if record.output_size is not None and path.stat().st_size != record.output_size:
                return False
            return self.hashes.sha256(path)[0] == record.output_sha256
        except OSError:
            return False

    def _finish_copies(self, job: Job, plan: _Plan) -> None:
        record = self.state.job(job.key)
        assert record is not None
        if plan.action == "copy":
            self.state.update(job.key, outputs=sorted({*record.outputs, *job.outputs}))
            self.emit("job_copied", job, source=str(plan.source), targets=list(plan.targets))
        else:
            self.emit("job_skipped", job)
        self.summary.skipped += 1

    # -- one job

    async def _drive(self, job: Job, acct: _AccountRun) -> None:
        record = self.state.job(job.key)
        status = record.status if record else None
        task_id = record.task_id if record else None

        if status is JobStatus.FAILED:
            assert record is not None
            if not (task_id and record.error_kind in _REPOLL_KINDS):  # a live, paid task is just polled again
                if not self.options.retry_failed:
                    raise _JobEnded("failed", f"{record.error} (failed in an earlier run; --retry-failed retries)")
                if record.error_kind == "moderation":
                    raise _JobEnded("failed", f"{record.error} (moderation failures are never retried)")
                task_id = None
        elif status is JobStatus.UNKNOWN and not self.options.resubmit_unknown:
            raise _JobEnded("unknown", "earlier create request's outcome is unknown; --resubmit-unknown resubmits")
        elif status is JobStatus.SUBMITTING:
            assert record is not None
            if not record.no_task_exists:
                task_id = await self._reconcile(job, acct)
        elif status in (JobStatus.SUCCEEDED, JobStatus.DONE) and task_id:
            await self._fetch(job, acct, task_id, record.result_url, record.result_expires_at)
            return

        if task_id is None:
            task_id, first = await self._submit(job, acct)
        else:
            first = None
            if not acct.limiter.holds(job.key):
                await self._take_slot(job, acct)
            self.state.update(job.key, status=JobStatus.IN_FLIGHT, error=None, error_kind=None)
        final = await self._await_result(job, acct, task_id, first)
        await self._fetch(job, acct, task_id, final.result_url, final.result_expires_at)

    async def _reconcile(self, job: Job, acct: _AccountRun) -> str | None:
        """A crash left intent without a task id: find the task, or decide it never existed."""
        if acct.client.can_reconcile:
            found = await self._call(acct, lambda: acct.client.find_task(job.key))
            if found:
                self._adopt(job, found)
            return found
        if self.options.resubmit_unknown:
            return None
        self.state.update(job.key, status=JobStatus.UNKNOWN, error_kind="unknown",
                          error="interrupted during its create request; the provider cannot be searched")
        raise _JobEnded("unknown", "interrupted during its create request and the provider cannot be searched "
                                   "for it; --resubmit-unknown resubmits (may pay twice)")

    def _adopt(self, job: Job, task_id: str) -> None:
        """The task ``find_task`` found for this job's reference is the one we paid for: follow it."""
        self.state.update(job.key, status=JobStatus.IN_FLIGHT, task_id=task_id)
        self.emit("job_reconciled", job, task_id=task_id)

    # -- submission

    def _gate(self, acct: _AccountRun) -> None:
        """No new submission once halted or once the account is out of credits."""
        if self.halted:
            raise _JobEnded("not_run", f"not submitted ({self.halted})")
        if acct.stopped:
            raise _JobEnded("not_run", f"not submitted: account {acct.account.name} stopped ({acct.stopped})")

    def _take_slot_now(self, job: Job, acct: _AccountRun) -> None:
        if self.global_slots is not None:
            try:
                self.global_slots.acquire_on_behalf_of_nowait(job.key)
            except trio.WouldBlock:
                return
        if acct.limiter.try_acquire(job.key):
            acct.in_flight += 1
        elif self.global_slots is not None:
            self.global_slots.release_on_behalf_of(job.key)

    async def _take_slot(self, job: Job, acct: _AccountRun) -> None:
        await acct.limiter.acquire(job.key)
        if self.global_slots is not None:
            try:
                await self.global_slots.acquire_on_behalf_of(job.key)
            except BaseException:
                acct.limiter.release(job.key)
                raise
        acct.in_flight += 1
        self.emit_account(acct)

    def _give_slot(self, job: Job, acct: _AccountRun) -> None:
        if acct.limiter.holds(job.key):
            acct.limiter.release(job.key)
            if self.global_slots is not None:
                self.global_slots.release_on_behalf_of(job.key)
            acct.in_flight -= 1
            self.emit_account(acct)

    async def _submit(self, job: Job, acct: _AccountRun) -> tuple[str, TaskState | None]:
        self._gate(acct)
        uploads = await self._uploads(job, acct)
        limited = transient = 0
        while True:
            self._gate(acct)
            await self._take_slot(job, acct)
            try:
                self._gate(acct)
            except _JobEnded:
                self._give_slot(job, acct)
                raise
            record = self.state.job(job.key)
            attempts = (record.attempts if record else 0) + 1
            self.state.update(job.key, account=job.account, kind=job.kind, outputs=list(job.outputs),
                              status=JobStatus.SUBMITTING, attempts=attempts, task_id=None, error=None,
                              error_kind=None, result_url=None, result_expires_at=None)
            try:
                with trio.CancelScope(shield=True):
                    submission = await self._post(job, acct, uploads)
            except BusyError as exc:
                acct.limiter.on_busy()
                limited += 1
                delay = self.busy_backoff.delay(limited, exc.retry_after)
                self._refused(job, acct, exc, "job_busy", delay)
            except RateLimitedError as exc:
                limited += 1
                delay = self.backoff.delay(limited, exc.retry_after)
                self._refused(job, acct, exc, "job_rate_limited", delay)
            except TransientError as exc:
                transient += 1
                if transient > self.options.transient_retries:
                    self._refused(job, acct, exc, "job_retry", 0)
                    raise _JobEnded("not_run", f"create failed {transient} times: {exc}") from exc
                delay = self.backoff.delay(transient, exc.retry_after)
                self._refused(job, acct, exc, "job_retry", delay)
            except OutOfCreditsError as exc:
                self.state.update(job.key, error=exc.message, error_kind="out_of_credits")
                self._give_slot(job, acct)
                self._stop_account(acct, f"out of credits: {exc.message}")
                raise _JobEnded("not_run", acct.stopped) from exc
            except PermanentError as exc:
                self._give_slot(job, acct)
                self._stop_if_refused(acct, exc)
                self._fail(job, exc)
            else:
                if submission is None:  # ambiguous outcome, reconciled as "not created": send again
                    transient += 1
                    delay = self.backoff.delay(transient)
                    self._give_slot(job, acct)
                    self.emit("job_retry", job, message="create outcome lost; no task found", delay=delay)
                else:
                    acct.limiter.on_success()
                    self._note_credits(job, acct, submission.credits)
                    self.emit("job_submitted", job, task_id=submission.task_id, attempt=attempts)
                    self.emit_account(acct)
                    return submission.task_id, submission.state
            await trio.sleep(delay)

    async def _post(self, job: Job, acct: _AccountRun, uploads: Mapping[str, Upload]) -> Submission | None:
        """The create POST and the durable record of its answer, never split by cancellation.

        Returns None when the request was lost in a way that created no task.
        """
        try:
            submission = await acct.client.submit(job, uploads)
        except TransientError as exc:
            if exc.status is not None or isinstance(exc.__cause__, _NOT_SENT):
                raise  # the provider answered (or never saw it): nothing was created
            return await self._ambiguous(job, acct, exc)
        self.state.update(job.key, status=JobStatus.IN_FLIGHT, task_id=submission.task_id,
                          credits=submission.credits)
        return submission

    async def _ambiguous(self, job: Job, acct: _AccountRun, exc: TransientError) -> Submission | None:
        """The create request went out but its answer was lost."""
        if acct.client.can_reconcile:
            try:
                found = await self._call(acct, lambda: acct.client.find_task(job.key))
            except ProviderError as lookup:  # still unknown: the record stays SUBMITTING for a rerun
                self._give_slot(job, acct)
                raise _JobEnded("not_run", f"create answer lost ({exc}) and the task list is unreadable "
                                           f"({lookup}); a rerun looks again") from lookup
            if found:
                self._adopt(job, found)
                return Submission(task_id=found)
            self.state.update(job.key, error=f"no task after a lost answer: {exc}", error_kind=REFUSED)
            return None
        if self.options.resubmit_unknown:
            self.state.update(job.key, error=f"answer lost ({exc}); resubmitting", error_kind=REFUSED)
            return None
        self.state.update(job.key, status=JobStatus.UNKNOWN, error=f"create answer lost: {exc}", error_kind="unknown")
        self._give_slot(job, acct)
        raise _JobEnded("unknown", f"create answer lost ({exc}); the provider cannot be searched for the task; "
                                   "--resubmit-unknown resubmits (may pay twice)")

    def _refused(self, job: Job, acct: _AccountRun, exc: ProviderError, event: str, delay: float) -> None:
        self.state.update(job.key, error=str(exc), error_kind=REFUSED)
        self._give_slot(job, acct)
        self.emit(event, job, message=str(exc), delay=round(delay, 3), limit=acct.limiter.limit)

    def _stop_if_refused(self, acct: _AccountRun, error: ProviderError) -> None:
        """Rejected credentials fail every job alike: stop submitting on that account."""
        if error.status == 401:
            self._stop_account(acct, f"credentials rejected: {error}")

    def _stop_account(self, acct: _AccountRun, reason: str) -> None:
        """No new submissions on this account (other accounts go on); the first reason sticks."""
        if not acct.stopped:
            acct.stopped = reason
            self.emit("account_stopped", account=acct.account.name, message=reason)

    def _fail(self, job: Job, error: ProviderError, kind: str | None = None) -> None:
        kind = kind or ("moderation" if isinstance(error, ModerationError) else "permanent")
        self.state.update(job.key, status=JobStatus.FAILED, error=str(error), error_kind=kind)
        raise _JobEnded("failed", str(error))

    # -- uploads

    async def _uploads(self, job: Job, acct: _AccountRun) -> dict[str, Upload]:
        prepared: dict[str, Upload] = {}
        for role, ref in job.inputs.items():
            if acct.client.needs_upload(ref):
                prepared[role] = await self._upload(acct, ref)
        return prepared

    async def _upload(self, acct: _AccountRun, ref: InputRef) -> Upload:
        """Once per (account, content hash), shared by every job and reused across runs."""
        key = (acct.account.name, ref.sha256 or str(ref.path))
        while True:
            stored = self.state.upload(*key)
            if stored is not None:
                return Upload(stored.handle, stored.expires_at)
            if key in self._upload_errors:
                raise self._upload_errors[key]
            pending = self._uploading.get(key)
            if pending is None:
                break
            await pending.wait()
        done = self._uploading[key] = trio.Event()
        try:
            async with acct.uploads:
                self.emit("upload", account=acct.account.name, role=ref.role, sha256=ref.sha256)
                upload = await self._call(acct, lambda: acct.client.upload(ref))
            self.state.record_upload(key[0], key[1], upload.handle, upload.expires_at)
            return upload
        except ProviderError as exc:
            self._upload_errors[key] = exc
            raise
        finally:
            del self._uploading[key]
            done.set()

    # -- calls other than create: rate limits wait, transient errors retry a bounded number of times

    async def _call(self, acct: _AccountRun, fn: Callable[[], Any]) -> Any:
        limited = transient = 0
        while True:
            try:
                return await fn()
            except RateLimitedError as exc:
                limited += 1
                await trio.sleep(self.backoff.delay(limited, exc.retry_after))
            except TransientError as exc:
                transient += 1
                if transient > self.options.transient_retries:
                    raise
                await trio.sleep(self.backoff.delay(transient, exc.retry_after))

    # -- polling

    async def _await_result(self, job: Job, acct: _AccountRun, task_id: str, first: TaskState | None) -> TaskState:
        """Poll until the task is terminal; the slot is released as soon as it is."""
        deadline = trio.current_time() + self.options.job_timeout * self.scale
        sampler = _ProgressSampler()
        interval = self.options.poll_min * self.scale
        task = first
        if task is None or task.phase not in (Phase.SUCCEEDED, Phase.FAILED):
            wait = self._next_wait(task, sampler, interval) if task else 0.0
            while True:
                if wait:
                    await trio.sleep(min(wait, max(0.0, deadline - trio.current_time())))
                if trio.current_time() >= deadline:
                    self._give_slot(job, acct)
                    self.state.update(job.key, status=JobStatus.FAILED, error_kind="timeout",
                                      error=f"no result within {self.options.job_timeout:g} s")
                    raise _JobEnded("failed", "timed out waiting for the provider (task kept; "
                                              "--retry-failed polls it again)")
                task = await self._poll(job, acct, task_id)
                if task.phase in (Phase.SUCCEEDED, Phase.FAILED):
                    break
                self.emit("job_progress", job, phase=str(task.phase), progress=task.progress,
                          raw_status=task.raw_status)
                interval = min(interval * 1.5, self.options.poll_max * self.scale)
                wait = self._next_wait(task, sampler, interval)
        self._give_slot(job, acct)
        if task.phase is Phase.FAILED:
            self._note_credits(job, acct, task.credits)
            error = task.error or PermanentError("the provider reported failure without a reason")
            if isinstance(error, OutOfCreditsError):
                self._stop_account(acct, f"out of credits: {error.message}")
                self._fail(job, error, "out_of_credits")
            self._fail(job, error)
        self._note_credits(job, acct, task.credits, status=JobStatus.SUCCEEDED, result_url=task.result_url,
                           result_expires_at=task.result_expires_at)
        self.emit("job_succeeded", job, task_id=task_id)
        return task

    async def _poll(self, job: Job, acct: _AccountRun, task_id: str) -> TaskState:
        try:
            return await self._call(acct, lambda: acct.client.poll(task_id))
        except TransientError as exc:
            self._give_slot(job, acct)
            self.state.update(job.key, status=JobStatus.FAILED, error_kind="transient", error=str(exc))
            raise _JobEnded("failed", f"polling failed repeatedly ({exc}); task kept, --retry-failed "
                                      "polls it again") from exc
        except NotFoundError as exc:
            self._give_slot(job, acct)
            self._fail(job, NotFoundError(f"task {task_id} is unknown to the provider: {exc.message}",
                                          status=exc.status))
        except PermanentError as exc:
            self._give_slot(job, acct)
            self._fail(job, exc)
        raise AssertionError("unreachable")

    def _next_wait(self, state: TaskState, sampler: _ProgressSampler, interval: float) -> float:
        """Follow the provider's ETA or progress rate when it gives one, else back off."""
        low, high = self.options.poll_min * self.scale, self.options.poll_max * self.scale
        guess: float | None = None
        if state.eta_seconds:
            guess = state.eta_seconds  # the provider's seconds are real ones (the sandbox scales its own)
        elif state.phase is Phase.RUNNING and state.progress is not None:
            guess = sampler.remaining(state.progress)
        if guess is None:
            guess = interval
        return min(high, max(low, guess))

    def _note_credits(self, job: Job, acct: _AccountRun, credits: float | None, **fields: Any) -> None:
        """Record the provider's reported credits (with ``fields``, in one durable write)."""
        if credits is None:
            if fields:
                self.state.update(job.key, **fields)
            return
        self.state.update(job.key, credits=credits, **fields)
        acct.credits += credits - self._credits_seen.get(job.key, 0.0)
        self._credits_seen[job.key] = credits
        self.summary.credits[acct.account.name] = acct.credits

    # -- results

    async def _fetch(self, job: Job, acct: _AccountRun, task_id: str, url: str | None,
                     expires_at: float | None) -> None:
        """Download into the first output, copy to the others, record DONE."""
        dest = self.project.output_dir / job.output
        last: Exception | None = None
        for _attempt in range(self.options.result_attempts):
            if url is None or (expires_at is not None and expires_at - _URL_MARGIN * self.scale <= time.time()):
                url, expires_at = await self._fresh_url(job, acct, task_id)
            assert self.download_http is not None
            try:
                got = await dl.download(self.download_http, url, dest, verify=True,
                                        retry_delay=max(0.001, 0.5 * self.scale))
            except dl.ResultExpiredError as exc:
                last, url = exc, None
                self.emit("job_url_expired", job, message=str(exc))
                continue
            except TransientError as exc:  # CorruptDownloadError included
                last, url = exc, None
                self.emit("job_retry", job, message=f"download: {exc}")
                continue
            except PermanentError as exc:
                last, url = exc, None
                continue
            self.hashes.remember(dest, got.sha256)
            for other in job.outputs[1:]:
                await trio.to_thread.run_sync(copy_file, dest, self.project.output_dir / other)
                self.hashes.remember(self.project.output_dir / other, got.sha256)
            record = self.state.job(job.key)
            outputs = sorted({*(record.outputs if record else []), *job.outputs})
            self.state.update(job.key, status=JobStatus.DONE, output_sha256=got.sha256, output_size=got.size,
                              outputs=outputs, error=None, error_kind=None)
            self.emit("job_done", job, sha256=got.sha256, size=got.size, outputs=list(job.outputs))
            return
        raise _JobEnded("not_run", f"result not downloaded ({last}); a rerun downloads it")

    async def _fresh_url(self, job: Job, acct: _AccountRun, task_id: str) -> tuple[str, float | None]:
        state = await self._poll(job, acct, task_id)
        if state.phase is not Phase.SUCCEEDED or not state.result_url:
            raise _JobEnded("not_run", f"task {task_id} has no result to download now ({state.raw_status})")
        self.state.update(job.key, result_url=state.result_url, result_expires_at=state.result_expires_at)
        return state.result_url, state.result_expires_at


class _ProgressSampler:
    """Estimates time left from how fast ``progress`` moves between polls."""

    def __init__(self) -> None:
        self.first: tuple[float, float] | None = None

    def remaining(self, progress: float) -> float | None:
        now = trio.current_time()
        if self.first is None or progress < self.first[1]:
            self.first = (now, progress)
            return None
        elapsed, gained = now - self.first[0], progress - self.first[1]
        if gained <= 0 or elapsed <= 0:
            return None
        return (1.0 - progress) * elapsed / gained


def remove_partial_files(folder: Path) -> None:
    """Delete temp files (``.<name>.<random>.part``) a killed run left; the state lock makes them ours."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith(".") and name.endswith(".part"):
                Path(root, name).unlink(missing_ok=True)


def copy_file(source: Path, dest: Path) -> None:
    """Copy atomically (temp file + fsync + rename), so a crash never leaves a half output."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{_secrets.token_hex(6)}.part")
    try:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


async def run_project(
    project: Project,
    options: RunOptions | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sink: Sink | None = None,
    stop: trio.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunSummary:
    """Run every job of ``project``; the library entry point behind ``lipbatch run``.

    ``transport`` replaces the network (tests: ``httpx.ASGITransport`` of the
    sandbox app). Setting ``stop`` ends the run gracefully (Ctrl-C): nothing
    new is submitted and the summary says ``interrupted``. Raises
    ``MissingCredentialError`` before any request and ``StateLockedError`` when
    another run holds the state.
    """
    options = options or RunOptions()
    environ = os.environ if environ is None else environ
    redact = [environ[variable] for account in project.accounts.values()
              for variable in credential_names(account).values() if environ.get(variable)]
    own_transport = transport is None
    base = transport or httpx.AsyncHTTPTransport(retries=0)
    try:
        with State.open(project.state_path, redact=redact) as state:
            runner = Runner(project, options, state, transport=base, environ=environ, sink=sink, stop=stop)
            return await runner.run()
    finally:
        if own_transport:
            await base.aclose()
