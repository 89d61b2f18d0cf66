"""Submit phase: uploads (once per endpoint and content hash), the create request, and the
durable record of its answer, with every ambiguity resolved without paying twice.

A create answered with a definite refusal (429, busy, 5xx with a response, out
of credits) created nothing: the record stays SUBMITTING with ``error_kind =
"refused"`` (or ``"out_of_credits"``), which a rerun treats as "no task exists".
A connection lost after the request was sent is ambiguous: reconciled via
``find_task`` where the provider can be searched, else UNKNOWN. A create
refused because the provider forgot an uploaded input (``gone_uploads``) drops
those handles, uploads again once and creates again: nothing was paid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import trio

from lipbatch.engine.accounts import AccountRun
from lipbatch.engine.control import JobEnded
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

    def _gate(self, acct: AccountRun) -> None:
        """No new submission once halted or once the account is out of credits."""
        if self.halted:
            raise JobEnded("not_run", f"not submitted ({self.halted})")
        if acct.stopped:
            raise JobEnded("not_run", f"not submitted: account {acct.account.name} stopped ({acct.stopped})")

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

    def _gate(self, acct: AccountRun) -> None:
        """No new submission once halted or once the account is out of credits."""
        if self.halted:
            raise JobEnded("not_run", f"not submitted ({self.halted})")
        if acct.stopped:
            raise JobEnded("not_run", f"not submitted: account {acct.account.name} stopped ({acct.stopped})")

    def _take_slot_now(self, job: Job, acct: AccountRun) -> None:
        if self.global_slots is not None:
            try:
                self.global_slots.acquire_on_behalf_of_nowait(job.key)
            except trio.WouldBlock:
                return
        if acct.limiter.try_acquire(job.key):
            acct.in_flight += 1
        elif self.global_slots is not None:
            self.global_slots.release_on_behalf_of(job.key)

    async def _take_slot(self, job: Job, acct: AccountRun) -> None:
        await acct.limiter.acquire(job.key)
        if self.global_slots is not None:
            try:
                await self.global_slots.acquire_on_behalf_of(job.key)
            except BaseException:
                acct.limiter.release(job.key)
                raise
        acct.in_flight += 1
        self.emit_account(acct)

    def _give_slot(self, job: Job, acct: AccountRun) -> None:
        if acct.limiter.holds(job.key):
            acct.limiter.release(job.key)
            if self.global_slots is not None:
                self.global_slots.release_on_behalf_of(job.key)
            acct.in_flight -= 1
            self.emit_account(acct)

    async def _submit(self, job: Job, acct: AccountRun) -> tuple[str, TaskState | None]:
        self._gate(acct)
        uploads = await self._uploads(job, acct)
        limited = transient = 0
        uploaded_again = False
        body: Any = None
        while True:
            self._gate(acct)
            if not acct.limiter.holds(job.key):  # a resumed record of another endpoint already took one
                await self._take_slot(job, acct)
            try:
                self._gate(acct)
                if body is None:  # built whole before the intent is recorded: the unknown window is the POST
                    body = await self._prepare(job, acct, uploads)
            except JobEnded:
                self._give_slot(job, acct)
                raise
            record = self.state.job(job.key)
            attempts = (record.attempts if record else 0) + 1
            self.state.update(job.key, account=job.account, kind=job.kind, outputs=list(job.outputs),
                              status=JobStatus.SUBMITTING, attempts=attempts, task_id=None, error=None,
                              error_kind=None, result_url=None, result_expires_at=None,
                              endpoint=acct.endpoint, take=job.take)
            try:
                with trio.CancelScope(shield=True):
                    await self.state.flush()  # the intent is on disk before the request that may cost money
                    submission = await self._post(job, acct, body)
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
                    raise JobEnded("not_run", f"create failed {transient} times: {exc}") from exc
                delay = self.backoff.delay(transient, exc.retry_after)
                self._refused(job, acct, exc, "job_retry", delay)
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

    def _refused(self, job: Job, acct: AccountRun, exc: ProviderError, event: str, delay: float) -> None:
        self.state.update(job.key, error=str(exc), error_kind=REFUSED)
        self._give_slot(job, acct)
        self.emit(event, job, message=str(exc), delay=round(delay, 3), limit=acct.limiter.limit)

    def _stop_if_refused(self, acct: AccountRun, error: ProviderError) -> None:
        """Rejected credentials fail every job alike: stop submitting on that account."""
        if error.status == 401:
            self._stop_account(acct, f"credentials rejected: {error}")

    def _stop_account(self, acct: AccountRun, reason: str) -> None:
        """No new submissions on this account (other accounts go on); the first reason sticks."""
        if not acct.stopped:
            acct.stopped = reason
            self.emit("account_stopped", account=acct.account.name, message=reason)

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

    # -- calls other than create: rate limits wait, transient errors retry a bounded number of times

    async def _call(self, acct: AccountRun, fn: Callable[[], Any]) -> Any:
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
