"""The engine's core: one trio nursery, one task per job that still needs work.

Per job, by recorded status (``state.JobStatus``), made by *this* endpoint:

- none / refused submission: upload, take a slot, record intent, create, record the task id
  (``submit.py``); poll until terminal (``wait.py``); download and record DONE (``fetch.py``).
- DONE: skipped when an output holds the recorded sha256 (no HTTP at all); outputs missing
  beside a verified one are copied; none verified -> restored from the provider (fresh URL),
  or marked ``output lost`` when the provider no longer has it (never FAILED).
- DONE with ``redo`` set (``lipbatch redo``), a record another endpoint made, or a lost output
  with ``--regenerate-missing``: a new take; the old one is kept (``outputs.py``).
- SUBMITTING after a crash: ``find_task`` by the job's reference where the provider can be
  searched; otherwise UNKNOWN, resubmitted only with ``resubmit_unknown``.
- FAILED: resubmitted only with ``retry_failed``, never for moderation. A job that failed by
  timeout or transient errors *while polling* still has a live, paid task: any rerun polls it.
- An output path holding a file lipbatch did not write blocks its job before anything is paid.

Readings where the issues left room:

- Out of credits stops new submissions on that account; its unsubmitted jobs count as
  ``not_run`` (a rerun after a top-up picks them up, no flag needed).
- ``--fail-fast`` stops new submissions everywhere after the first failure and lets tasks
  already paid for finish and download. ``max_jobs`` caps jobs in flight across accounts.
- HTTP 401 (credentials rejected) fails the job and stops the account.
- What a provider says in seconds (Retry-After, ETAs, URL expiry) is real time and honoured as
  given; ``time_scale`` scales only the runner's own constants.
- Spend (``lipbatch.budget``): every create reserves the job's estimate first (``spend.py``); a
  job that cannot fit ends ``over_budget``, one whose value the provider keeps refusing ends
  ``error_blocked`` (``breaker.py``). Every run appends its events and closing summary to
  ``<state>.log`` (``lipbatch.report``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import trio

from lipbatch.budget import Ledger
from lipbatch.engine.accounts import AccountRun, Slots, resolve_secrets
from lipbatch.engine.breaker import Breaker
from lipbatch.engine.claims import SharedRun
from lipbatch.engine.control import JobEnded
from lipbatch.engine.fetch import FetchPhase
from lipbatch.engine.network import NetworkPhase
from lipbatch.engine.options import Event, Pending, RunOptions, RunSummary, Sink
from lipbatch.engine.outputs import Outputs
from lipbatch.engine.prepass import Plan, PrepassPhase
from lipbatch.engine.spend import SpendPhase
from lipbatch.engine.submit import SubmitPhase
from lipbatch.engine.wait import AwaitPhase
from lipbatch.errors import ProviderError, TransientError
from lipbatch.folder_syncs import FolderSyncs
from lipbatch.hashing import HashCache
from lipbatch.loop_while_fast import LoopWhileFast
from lipbatch.model import Job, Project
from lipbatch.polling import load_completion_times, save_completion_times
from lipbatch.report import QUIET, RunLog, log_path, spend_report, summary_lines
from lipbatch.state import REFUSED, JobRecord, JobStatus, State
from lipbatch.verifier import Verify, open_verifier, verify_in_thread

_REPOLL_KINDS = ("timeout", "transient")
_UNSETTLED = (JobStatus.SUBMITTING, JobStatus.UNKNOWN, JobStatus.IN_FLIGHT, JobStatus.SUCCEEDED)
# outcome -> the flags of `lipbatch run` that continue such a job (None: nothing does; see _pending)
_FLAGS: dict[str, tuple[str, ...] | None] = {
    "failed": ("--retry-failed",), "unknown": ("--resubmit-unknown",), "lost": ("--regenerate-missing",),
    "blocked": ("--force",), "not_run": (), "in_flight": (), "over_budget": (), "error_blocked": ()}


class Runner(Slots, PrepassPhase, SubmitPhase, SpendPhase, NetworkPhase, AwaitPhase, FetchPhase, SharedRun):
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
        self.accounts: dict[str, AccountRun] = {}
        self.global_slots = trio.CapacityLimiter(options.max_jobs) if options.max_jobs else None
        self._uploading: dict[tuple[str, str], trio.Event] = {}
        self._credits_seen: dict[str, float] = {}  # job key -> credits counted in this run
        self._upload_errors: dict[tuple[str, str], ProviderError] = {}
        self._clients: list[httpx.AsyncClient] = []
        self.download_http: httpx.AsyncClient | None = None  # result URLs: shared pool, unpaced
        self.verify: Verify = verify_in_thread  # decodes each result; a child process in big runs (_run_work)
        self.hashes = HashCache.for_state(project.state_path)  # outputs, shared with validate's input cache
        self.folder_syncs = FolderSyncs(deferred=False)  # results' folders: fsync'd before DONE is durable
        self.known_folders: set[Path] = set()  # output folders written into: later results open late
        self.renames = LoopWhileFast()  # results' renames into place: on the loop while they are fast
        self.outputs = Outputs(project.output_dir, state, self.hashes)
        self.ledger = Ledger(state.jobs, state.takes, project, options.max_credits)
        self.breaker = Breaker(project.manifest_path, {n: a.kind for n, a in project.accounts.items()},
                               options.breaker_threshold)
        self.reserves: dict[str, float | None] = {}  # job key -> what its create reserves (None: unknown)
        self._reserved_run: dict[str, float] = {}  # account -> reserved by this run's creates
        self._unpriced_run: dict[str, int] = {}  # account -> creates this run could not price
        self._budget_event = trio.Event()
        self._unreachable: dict[str, tuple[float, int]] = {}  # account -> (first failed connect, failures)
        self._counted: set[str] = set()
        self.log: RunLog | None = None
        self.summary.output_dir = str(project.output_dir)
        self.summary.rerun = options.rerun or f"lipbatch run {project.manifest_path}"
        self.completion = load_completion_times(state)  # learned by earlier runs (every worker's) too

    # -- events

    def emit(self, type: str, job: Job | None = None, *, account: str | None = None, message: str | None = None,
             **data: Any) -> None:
        if self.sink is None and (self.log is None or type in QUIET):
            return  # nobody reads it
        scrub = self.state.scrub  # provider messages may echo a credential: events reach logs and --json
        data = self.state.scrub_obj(data)
        event = Event(type, job=job.key if job else None, account=account or (job.account if job else None),
                      output=job.output if job else None, message=message and scrub(message), data=data)
        if self.log is not None:
            self.log.event(event)
        if self.sink is None:
            return
        try:
            self.sink(event)
        except OSError:  # the reader went away (a closed pipe): the run goes on, unobserved
            self.sink = None

    def emit_account(self, acct: AccountRun) -> None:
        if self.sink is None:  # the log leaves account events out: nothing to compute
            return
        name = acct.account.name
        spent = self.ledger.account(name)
        this_run = spent - self.ledger.start.get(name, spent)
        self.emit("account", account=name, kind=acct.account.kind, limit=acct.limiter.limit,
                  cap=acct.limiter.cap, in_use=acct.limiter.in_use, in_flight=acct.in_flight, done=acct.done,
                  failed=acct.failed, credits=acct.credits, charged=this_run.charged, held=spent.held,
                  unknown=max(0, this_run.unknown), stopped=acct.stopped)

    async def run(self) -> RunSummary:
        started = time.monotonic()
        path = log_path(self.project.state_path)
        self.log = RunLog(path)
        self.summary.log_file = str(path)
        try:
            self.log.write(f"run of {self.project.manifest_path} ({len(self.project.jobs)} jobs); "
                           f"outputs in {self.project.output_dir}")
            await self._run(started)
            for line in summary_lines(self.summary):
                self.log.write(line)
        finally:
            self.log.close()
            self.log = None
        return self.summary

    async def _run(self, started: float) -> None:
        plans = await trio.to_thread.run_sync(self._prepass)
        work = [plans[job.key] for job in self.project.jobs if plans[job.key].action in self._to_work]
        for job in self.project.jobs:
            plan = plans[job.key]
            if plan.action not in self._to_work:
                self._settled_before(job, plan)
        self.emit("run_started", jobs=len(self.project.jobs), to_do=len(work), skipped=self.summary.skipped)
        if work:
            needed = {plan.job.account for plan in work}
            self.secrets = resolve_secrets({name: self.project.accounts[name] for name in sorted(needed)},
                                           sandbox=self.options.sandbox, environ=self.environ)
            await self._run_work(work)
        await trio.to_thread.run_sync(self.hashes.save)
        await trio.to_thread.run_sync(save_completion_times, self.state, self.completion)
        self.summary.elapsed = round(time.monotonic() - started, 3)
        self.summary.spend = spend_report(self.ledger, self._reserved_run, self._unpriced_run, self.summary.pending)
        self.emit("run_finished", state_file=str(self.project.state_path), **self.summary.to_json())

    async def _run_work(self, work: list[Plan]) -> None:
        stop_deferring = self.state.on_fsync(self.folder_syncs.held)
        self.folder_syncs.deferred = stop_deferring is not None
        try:
            self._open_accounts([plan.job for plan in work])
            async with open_verifier(len(work), self.options.verifier) as self.verify, \
                    trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, nursery.cancel_scope)
                if self.leases is not None:  # a shared state: jobs are claimed one by one (engine/claims.py)
                    await self._run_shared(work)
                else:
                    async with trio.open_nursery() as jobs:
                        ordered = {plan.job.key: plan for plan in work}
                        for job in self._resumed_first([plan.job for plan in work]):
                            jobs.start_soon(self._job_task, ordered[job.key], name=f"job {job.output}")
                nursery.cancel_scope.cancel()
        finally:
            self.verify = verify_in_thread  # the run's child verifier is closed with its nursery
            for client in self._clients:
                await client.aclose()
            if stop_deferring is not None:
                stop_deferring()
            self.folder_syncs.deferred = False
            self.folder_syncs.sync_pending()  # before the state's closing fsync (a few folders at most)
        for plan in work:  # cut short (Ctrl-C): in flight at the provider, or never submitted
            if plan.job.key not in self._counted:
                self._count(plan.job, None, JobEnded("not_run", "interrupted before it finished"))
        if self.stop.is_set():
            self.summary.interrupted = True

    async def _watch_stop(self, scope: trio.CancelScope) -> None:
        await self.stop.wait()
        self.halted = "interrupted"
        self.emit("interrupted", message="stopping: no new submissions; state is recorded")
        scope.cancel()

    async def _job_task(self, plan: Plan) -> None:
        job = plan.job
        acct = self.accounts[job.account]
        try:
            await self._drive(plan, acct)
            raise JobEnded("done")
        except JobEnded as ended:
            self._count(job, acct, ended)
        except TransientError as exc:  # e.g. an upload or reconcile that kept failing: a rerun retries
            self._count(job, acct, JobEnded("not_run", str(exc)))
        except ProviderError as exc:  # e.g. an upload the provider refused: ends only this job
            self._stop_if_refused(acct, exc)
            self._count(job, acct, JobEnded("failed", str(exc)))
        finally:
            self._give_slot(job, acct)

    def _count(self, job: Job, acct: AccountRun | None, ended: JobEnded) -> None:
        outcome = ended.outcome
        if job.key in self._counted:
            return
        self._counted.add(job.key)
        self.ledger.untrack(job.key)
        self._budget_moved()
        setattr(self.summary, outcome, getattr(self.summary, outcome) + 1)
        if outcome == "done" and acct is not None:
            acct.done += 1
        elif outcome in ("failed", "unknown", "lost", "blocked"):
            if outcome == "failed" and acct is not None:
                acct.failed += 1
            self.summary.failures[job.output] = self.state.scrub(ended.reason or outcome)
            self.emit(f"job_{outcome}", job, message=ended.reason)
            if self.options.fail_fast and self.halted is None:
                self.halted = "fail-fast"
                self.emit("halted", message=f"--fail-fast: no new submissions after {job.output} failed")
        elif outcome in ("not_run", "over_budget", "error_blocked"):
            self.emit(f"job_{outcome}", job, message=ended.reason)
        if outcome not in ("done", "skipped"):
            self._pending(job, outcome, ended.reason or outcome)
        if acct is not None:
            self.emit_account(acct)

    def _pending(self, job: Job, outcome: str, reason: str) -> None:
        """A job not done: why, and what continues it."""
        record = self.state.job(job.key)
        flags = _FLAGS[outcome]
        cause = needs = None
        if outcome == "not_run" and record is not None and record.task_id and record.status in _UNSETTLED:
            outcome, reason = "in_flight", f"{reason}; paid, task {record.task_id} is collected on rerun"
            self.summary.in_flight += 1
        elif outcome == "failed" and record is not None:
            if record.error_kind == "moderation":
                flags = None
            elif record.task_id and record.error_kind in _REPOLL_KINDS:
                flags = ()  # a live, paid task: any rerun polls it again
        elif outcome == "over_budget":
            needs = self.reserves.get(job.key)
            short = self.ledger.shortfall(job, needs)
            cause = short.pool.name if short is not None else None
        elif outcome == "error_blocked":
            trip = self.breaker.trip_for(job)
            cause = self.state.scrub(trip.describe()) if trip is not None else None  # quotes the provider
        self.summary.pending.append(Pending(job.output, job.key, job.account, outcome, self.state.scrub(reason),
                                           flags, needs, cause))

    def _start_new_take(self, job: Job, acct: AccountRun, record: JobRecord, reason: str) -> None:
        """Keep the current take in the state's history; the record starts over as "nothing created"."""
        self.ledger.track(job.key)
        self.outputs.archive(record, reason)
        self.ledger.keep_take(record.account, record.credits)
        self.state.update(job.key, status=JobStatus.SUBMITTING, error_kind=REFUSED, error=f"new take ({reason})",
                          task_id=None, output_sha256=None, output_size=None, credits=None, result_url=None,
                          result_expires_at=None, take=job.take, endpoint=acct.endpoint, redo=None, attempts=0,
                          reserved=None)
        self.emit("job_new_take", job, take=job.take, reason=reason)

    # -- one job

    async def _drive(self, plan: Plan, acct: AccountRun) -> None:
        job = plan.job
        record = self.state.job(job.key)
        if plan.new_take is not None and record is not None:
            self._start_new_take(job, acct, record, plan.new_take)
            record = self.state.job(job.key)
        elif plan.action == "restore" and record is not None and record.task_id:
            await self._fetch(job, acct, record.task_id, record.result_url, record.result_expires_at, restoring=True)
            return
        status = record.status if record else None
        task_id = record.task_id if record else None
        if record is not None and (status in _UNSETTLED or (status is JobStatus.FAILED and task_id)):
            self.ledger.track(job.key)  # its cost may settle in this run

        if status is JobStatus.FAILED:
            assert record is not None
            if not (task_id and record.error_kind in _REPOLL_KINDS):  # a live, paid task is just polled again
                if not self.options.retry_failed:
                    raise JobEnded("failed", f"{record.error} (failed in an earlier run; --retry-failed retries)")
                if record.error_kind == "moderation":
                    raise JobEnded("failed", f"{record.error} (moderation failures are never retried)")
                task_id = None
        elif status is JobStatus.UNKNOWN and not self.options.resubmit_unknown:
            raise JobEnded("unknown", "earlier create request's outcome is unknown; --resubmit-unknown resubmits")
        elif status is JobStatus.SUBMITTING:
            assert record is not None
            if not record.no_task_exists:
                task_id = await self._reconcile(job, acct)
        elif status in (JobStatus.SUCCEEDED, JobStatus.DONE) and task_id:
            await self._fetch(job, acct, task_id, record.result_url, record.result_expires_at)
            return

        accepted = None
        if task_id is None:
            task_id, first = await self._submit(job, acct)
            accepted = trio.current_time()
        else:
            first = None
            if not acct.limiter.holds(job.key):
                await self._take_slot(job, acct)
            self.state.update(job.key, status=JobStatus.IN_FLIGHT, error=None, error_kind=None)
        final = await self._await_result(job, acct, task_id, first, accepted)
        await self._fetch(job, acct, task_id, final.result_url, final.result_expires_at)
