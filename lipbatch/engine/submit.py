"""Submit phase: uploads (once per endpoint and content hash), the create request, and the
durable record of its answer, with every ambiguity resolved without paying twice.

A create answered with a definite refusal (429, busy, 5xx with a response, out
of credits) created nothing: the record stays SUBMITTING with ``error_kind =
"refused"`` (or ``"out_of_credits"``), which a rerun treats as "no task exists".
A connection lost after the request was sent is ambiguous: reconciled via
``find_task`` where the provider can be searched, else UNKNOWN. A create
refused because the provider forgot an uploaded input (``gone_uploads``) drops
those handles, uploads again once and creates again: nothing was paid.

Right before the intent is recorded, the job's estimated cost is reserved
against every budget it falls under (``spend.py``), in the same durable write;
values the provider has not accepted yet go through ``breaker.py`` one create
at a time, and a value refused again and again stops the jobs that carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import trio

from lipbatch.engine.accounts import AccountRun
from lipbatch.engine.control import JobEnded
from lipbatch.engine.spend import NoRoom
from lipbatch.errors import (
    BusyError,
    ModerationError,
    OutOfCreditsError,
    PermanentError,
    ProviderError,
    RateLimitedError,
    TransientError,
)
from lipbatch.model import InputRef, Job
from lipbatch.providers.base import Submission, TaskState, Upload
from lipbatch.state import REFUSED, JobStatus

# httpx exceptions raised before a request left the machine: the provider saw nothing.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class SubmitPhase:
    """Mixin of ``Runner``: from "nothing at the provider" to a recorded task id."""

    def _gate(self, acct: AccountRun, job: Job | None = None) -> None:
        """No new submission once halted, once the account stopped, or for a value the provider keeps refusing."""
        if self.halted:
            raise JobEnded("not_run", f"not submitted ({self.halted})")
        if acct.stopped:
            raise JobEnded("not_run", f"not submitted: account {acct.account.name} stopped ({acct.stopped})")
        trip = self.breaker.trip_for(job) if job is not None else None
        if trip is not None:
            raise JobEnded("error_blocked", f"not submitted: {trip.describe()}")

    async def _reconcile(self, job: Job, acct: AccountRun) -> str | None:
        """A crash left intent without a task id: find the task, or decide it never existed."""
        if acct.client.can_reconcile:
            found = await self._call(acct, lambda: acct.client.find_task(job.reference))
            if found:
                self._adopt(job, found)
            return found
        if self.options.resubmit_unknown:
            return None
        self.state.update(job.key, status=JobStatus.UNKNOWN, error_kind="unknown",
                          error="interrupted during its create request; the provider cannot be searched")
        raise JobEnded("unknown", "interrupted during its create request and the provider cannot be searched "
                                   "for it; --resubmit-unknown resubmits (may pay twice)")

    def _adopt(self, job: Job, task_id: str) -> None:
        """The task ``find_task`` found for this job's reference is the one we paid for: follow it."""
        self.state.update(job.key, status=JobStatus.IN_FLIGHT, task_id=task_id)
        self.emit("job_reconciled", job, task_id=task_id)

    # -- submission

    async def _submit(self, job: Job, acct: AccountRun) -> tuple[str, TaskState | None]:
        self._gate(acct, job)
        uploads = await self._uploads(job, acct)
        limited = transient = 0
        uploaded_again = False
        body: Any = None
        while True:
            self._gate(acct, job)
            if not acct.limiter.holds(job.key):  # a resumed record of another endpoint already took one
                await self._take_slot(job, acct)
            try:
                self._gate(acct, job)
                if body is None:  # built whole before the intent is recorded: the unknown window is the POST
                    body = await self._prepare(job, acct, uploads)
                async with self.breaker.probe(job):  # unproven values (a voice id) are tried one at a time
                    self._gate(acct, job)
                    attempts = self._reserve(job, acct)
                    with trio.CancelScope(shield=True):
                        await self.state.flush()  # intent and reservation on disk before the request that may cost
                        submission = await self._post(job, acct, body)
            except NoRoom as room:
                self._give_slot(job, acct)
                await self._wait_for_budget(job, room.short)
                continue
            except JobEnded:
                self._give_slot(job, acct)
                raise
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
                self._refused(job, acct, exc, None, 0)
                connect_wait = self._connect_failure(acct, exc)
                if connect_wait is None:
                    transient += 1
                    if transient > self.options.transient_retries:
                        raise JobEnded("not_run", f"create failed {transient} times: {exc}") from exc
                delay = connect_wait if connect_wait is not None else self.backoff.delay(transient, exc.retry_after)
                self._retry_event(acct, exc, delay, job=job, event="job_retry")
            except OutOfCreditsError as exc:
                self.state.update(job.key, error=exc.message, error_kind="out_of_credits")
                self._give_slot(job, acct)
                self._stop_account(acct, f"out of credits: {exc.message}")
                raise JobEnded("not_run", acct.stopped) from exc
            except PermanentError as exc:
                self._give_slot(job, acct)
                gone = acct.client.gone_uploads(exc, uploads) if uploads and not uploaded_again else set()
                if gone:
                    uploaded_again = True  # the provider forgot an input (purged, deleted): upload it again
                    self.state.update(job.key, error=str(exc), error_kind=REFUSED)
                    forget = {role: uploads[role] for role in gone}
                    uploads, body = await self._uploads(job, acct, forget=forget), None
                    self.emit("job_reupload", job, message=f"the provider no longer has an input ({exc}); uploaded again")
                    continue
                self._stop_if_refused(acct, exc)
                self._trip_if_repeated(job, exc)
                self._fail(job, exc)
            else:
                self._reached(acct)
                if submission is None:  # ambiguous outcome, reconciled as "not created": send again
                    transient += 1
                    delay = self.backoff.delay(transient)
                    self._give_slot(job, acct)
                    self._retry_event(acct, None, delay, job=job, event="job_retry",
                                      message="create outcome lost; no task found")
                else:
                    acct.limiter.on_success()
                    self.breaker.accepted(job)
                    self._note_credits(job, acct, submission.credits)
                    self.emit("job_submitted", job, task_id=submission.task_id, attempt=attempts)
                    self.emit_account(acct)
                    return submission.task_id, submission.state
            await trio.sleep(delay)

    async def _prepare(self, job: Job, acct: AccountRun, uploads: Mapping[str, Upload]) -> Any:
        """The create body; an input that cannot be read or sent fails the job before any money moves."""
        try:
            return await acct.client.prepare(job, uploads)
        except OSError as exc:
            self.state.update(job.key, account=job.account, kind=job.kind, outputs=list(job.outputs),
                              status=JobStatus.FAILED, error=f"cannot read an input: {exc}", error_kind="permanent",
                              endpoint=acct.endpoint, take=job.take)
            raise JobEnded("failed", f"cannot read an input: {exc}") from exc

    async def _post(self, job: Job, acct: AccountRun, body: Any) -> Submission | None:
        """The create POST and the durable record of its answer, never split by cancellation.

        Returns None when the request was lost in a way that created no task.
        """
        try:
            submission = await acct.client.create(body)
        except TransientError as exc:
            if exc.status is not None or isinstance(exc.__cause__, _NOT_SENT):
                raise  # the provider answered (or never saw it): nothing was created
            return await self._ambiguous(job, acct, exc)
        self.state.update(job.key, status=JobStatus.IN_FLIGHT, task_id=submission.task_id,
                          credits=submission.credits)
        return submission

    async def _ambiguous(self, job: Job, acct: AccountRun, exc: TransientError) -> Submission | None:
        """The create request went out but its answer was lost."""
        if acct.client.can_reconcile:
            try:
                found = await self._call(acct, lambda: acct.client.find_task(job.reference))
            except ProviderError as lookup:  # still unknown: the record stays SUBMITTING for a rerun
                self._give_slot(job, acct)
                raise JobEnded("not_run", f"create answer lost ({exc}) and the task list is unreadable "
                                           f"({lookup}); a rerun looks again") from lookup
            if found:
                self._adopt(job, found)
                return Submission(task_id=found)
            self.state.update(job.key, error=f"no task after a lost answer: {exc}", error_kind=REFUSED)
            return None
        # Never re-sent blindly, even with --resubmit-unknown (which only covers earlier runs' unknowns):
        # the provider cannot be searched, so another create may pay twice.
        self.state.update(job.key, status=JobStatus.UNKNOWN, error=f"create answer lost: {exc}", error_kind="unknown")
        self._give_slot(job, acct)
        raise JobEnded("unknown", f"create answer lost ({exc}); the provider cannot be searched for the task; "
                                   "--resubmit-unknown resubmits (may pay twice)")

    def _refused(self, job: Job, acct: AccountRun, exc: ProviderError, event: str | None, delay: float) -> None:
        """A create that created nothing: its reservation is released, the job waits and tries again."""
        self.state.update(job.key, error=str(exc), error_kind=REFUSED)
        self._give_slot(job, acct)
        self._budget_moved()
        if event is not None:
            self._reached(acct)
            self._retry_event(acct, exc, delay, job=job, event=event, limit=acct.limiter.limit)

    def _stop_if_refused(self, acct: AccountRun, error: ProviderError) -> None:
        """Rejected credentials fail every job alike: stop submitting on that account."""
        if error.status == 401:
            self._stop_account(acct, f"credentials rejected: {error}")

    def _stop_account(self, acct: AccountRun, reason: str) -> None:
        """No new submissions on this account (other accounts go on); the first reason sticks."""
        if not acct.stopped:
            acct.stopped = reason
            self.emit("account_stopped", account=acct.account.name, message=reason)

    def _trip_if_repeated(self, job: Job, error: ProviderError) -> None:
        trip = self.breaker.refused(job, error)
        if trip is not None:
            self.emit("breaker", account=job.account, message=trip.describe(), param=trip.cause.param,
                      value=trip.cause.value, where=trip.where, refusals=self.breaker.threshold)

    def _fail(self, job: Job, error: ProviderError, kind: str | None = None) -> None:
        kind = kind or ("moderation" if isinstance(error, ModerationError) else "permanent")
        self.state.update(job.key, status=JobStatus.FAILED, error=str(error), error_kind=kind)
        raise JobEnded("failed", str(error))

    # -- uploads

    async def _uploads(self, job: Job, acct: AccountRun, *,
                       forget: Mapping[str, Upload] | None = None) -> dict[str, Upload]:
        """Handles of the job's local inputs; ``forget`` drops handles the provider no longer knows first."""
        prepared: dict[str, Upload] = {}
        for role, ref in job.inputs.items():
            if acct.client.needs_upload(ref):
                sha = ref.sha256 or str(ref.path)
                stored = self.state.upload(acct.endpoint, acct.account.name, sha)
                if forget and role in forget and stored is not None and stored.handle == forget[role].handle:
                    self.state.forget_upload(stored)
                    self._upload_errors.pop((acct.endpoint, sha), None)
                prepared[role] = await self._upload(acct, ref)
        return prepared

    async def _upload(self, acct: AccountRun, ref: InputRef) -> Upload:
        """Once per (endpoint, content hash), shared by every job and reused across runs."""
        sha = ref.sha256 or str(ref.path)
        key = (acct.endpoint, sha)
        while True:
            stored = self.state.upload(acct.endpoint, acct.account.name, sha)
            if stored is not None:
                return Upload(stored.handle, stored.expires_at)
            if key in self._upload_errors:
                raise self._upload_errors[key]
            pending = self._uploading.get(key)
            if pending is None:
                break
            await pending.wait()
        self._gate(acct)  # the upload we waited for may have stopped the account (unreachable, 401)
        done = self._uploading[key] = trio.Event()
        try:
            async with acct.uploads:
                self.emit("upload", account=acct.account.name, role=ref.role, sha256=ref.sha256)
                upload = await self._call(acct, lambda: acct.client.upload(ref))
            self.state.record_upload(acct.endpoint, acct.account.name, sha, upload.handle, upload.expires_at)
            return upload
        except ProviderError as exc:
            self._upload_errors[key] = exc
            raise
        finally:
            del self._uploading[key]
            done.set()
