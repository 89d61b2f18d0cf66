"""Await phase: poll a task until it is terminal, guided by the provider's ETA or progress.

The slot is released the moment the task is terminal. A timeout or exhausted
transient retries while polling fail the job for this run (error_kind
"timeout"/"transient") but keep its task id for re-polling.
"""

from __future__ import annotations

from typing import Any

import trio

from lipbatch.engine.accounts import AccountRun
from lipbatch.engine.control import JobEnded
from lipbatch.errors import NotFoundError, OutOfCreditsError, PermanentError, TransientError
from lipbatch.model import Job
from lipbatch.polling import PollSchedule
from lipbatch.providers.base import Phase, TaskState
from lipbatch.state import JobStatus


class AwaitPhase:
    """Mixin of ``Runner``: from a recorded task id to a terminal ``TaskState``."""

    async def _await_result(self, job: Job, acct: AccountRun, task_id: str, first: TaskState | None,
                            accepted: float | None = None) -> TaskState:
        """Poll until the task is terminal; the slot is released as soon as it is.

        ``accepted``: when this run's create was answered; the learned completion times
        (``lipbatch.polling``) then poll sparsely until near the predicted finish and densely
        around it. A task resumed from an earlier run is polled on the provider's guidance.
        """
        deadline = trio.current_time() + self.options.job_timeout * self.scale
        name = acct.account.name
        # staggered grids teach the next wave; with no job waiting for a slot there is none to teach
        phase = self.completion.phase(name, job.kind) if acct.limiter.waiting else 0.0
        schedule = PollSchedule(job.kind, self.completion.predict(name, job.kind, job.expected_seconds),
                                accepted_at=accepted, time_scale=self.scale, poll_min=self.options.poll_min,
                                poll_max=self.options.poll_max, phase=phase)
        task = first
        if task is None or task.phase not in (Phase.SUCCEEDED, Phase.FAILED):
            wait = schedule.next_wait(trio.current_time(), task) if task else 0.0
            while True:
                if wait:
                    await trio.sleep(min(wait, max(0.0, deadline - trio.current_time())))
                if trio.current_time() >= deadline:
                    self._give_slot(job, acct)
                    self.state.update(job.key, status=JobStatus.FAILED, error_kind="timeout",
                                      error=f"no result within {self.options.job_timeout:g} s")
                    raise JobEnded("failed", "timed out waiting for the provider (task kept; "
                                              "--retry-failed polls it again)")
                task = await self._poll(job, acct, task_id)
                if task.phase in (Phase.SUCCEEDED, Phase.FAILED):
                    break
                self.emit("job_progress", job, phase=str(task.phase), progress=task.progress,
                          raw_status=task.raw_status)
                wait = schedule.next_wait(trio.current_time(), task)
        if task.phase is Phase.SUCCEEDED and (seen := schedule.finished(trio.current_time())) is not None:
            self.completion.record(acct.account.name, job.kind, *seen, job.expected_seconds)
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

    async def _poll(self, job: Job, acct: AccountRun, task_id: str) -> TaskState:
        await self.state.flush()  # the task id is on disk before anything else happens for this job
        try:
            return await self._call(acct, lambda: acct.client.poll(task_id))
        except TransientError as exc:
            self._give_slot(job, acct)
            self.state.update(job.key, status=JobStatus.FAILED, error_kind="transient", error=str(exc))
            raise JobEnded("failed", f"polling failed repeatedly ({exc}); task kept, --retry-failed "
                                      "polls it again") from exc
        except NotFoundError as exc:
            self._give_slot(job, acct)
            self._fail(job, NotFoundError(f"task {task_id} is unknown to the provider: {exc.message}",
                                          status=exc.status))
        except PermanentError as exc:
            self._give_slot(job, acct)
            self._fail(job, exc)
        raise AssertionError("unreachable")

    def _note_credits(self, job: Job, acct: AccountRun, credits: float | None, **fields: Any) -> None:
        """Record the provider's reported credits (with ``fields``, in one durable write)."""
        if credits is None:
            if fields:
                self.state.update(job.key, **fields)
            return
        self.state.update(job.key, credits=credits, **fields)
        acct.credits += credits - self._credits_seen.get(job.key, 0.0)
        self._credits_seen[job.key] = credits
        self.summary.credits[acct.account.name] = acct.credits
