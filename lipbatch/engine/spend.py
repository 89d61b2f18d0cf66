"""Budget gate of the submit phase: reserve a job's estimated cost, or wait for room, or stop.

The check and the SUBMITTING intent (which carries the reservation) run with no
await between them, so two jobs can never both take the last of a budget. A job
whose reservation does not fit waits while something this run is working on may
still free part of the budget (a refused create, a refund, a settlement below
its estimate); when nothing can, it ends ``over_budget`` without any request.
"""

from __future__ import annotations

import trio

from lipbatch.budget import Short
from lipbatch.engine.accounts import AccountRun
from lipbatch.engine.control import JobEnded
from lipbatch.model import Job
from lipbatch.state import JobStatus


class NoRoom(Exception):
    """The job's reservation does not fit ``short.pool`` now."""

    def __init__(self, short: Short) -> None:
        super().__init__(short.pool.name)
        self.short = short


class SpendPhase:
    """Mixin of ``Runner``: reservations in the state, through ``self.ledger``."""

    def _reserve(self, job: Job, acct: AccountRun) -> int:
        """Set the job's estimate aside and record the create intent in one durable write; the attempt number."""
        reserve = self.reserves.get(job.key)
        short = self.ledger.shortfall(job, reserve)
        if short is not None:
            raise NoRoom(short)
        self.ledger.track(job.key)
        if reserve is None:
            self._unpriced_run[job.account] = self._unpriced_run.get(job.account, 0) + 1
        else:
            self._reserved_run[job.account] = self._reserved_run.get(job.account, 0.0) + reserve
        record = self.state.job(job.key)
        attempts = (record.attempts if record else 0) + 1
        self.state.update(job.key, account=job.account, kind=job.kind, outputs=list(job.outputs),
                          status=JobStatus.SUBMITTING, attempts=attempts, task_id=None, error=None,
                          error_kind=None, result_url=None, result_expires_at=None,
                          endpoint=acct.endpoint, take=job.take, reserved=reserve)
        return attempts

    async def _wait_for_budget(self, job: Job, short: Short) -> None:
        """Until the reservation fits; ``over_budget`` once nothing in this run can free room."""
        reserve = self.reserves.get(job.key)
        said = False
        while short is not None:
            pool = short.pool
            if not self.ledger.may_free(pool):
                raise JobEnded("over_budget", f"not submitted: needs {pool.show(short.need)}; the {pool.name} "
                                              f"budget ({pool.show(pool.limit, unit=False)}) has "
                                              f"{pool.show(short.left, unit=False)} left")
            if not said:
                said = True
                self.emit("job_waiting_budget", job, message=f"waiting for room in the {pool.name} budget "
                                                             f"(needs {pool.show(short.need)})")
            await self._budget_event.wait()
            short = self.ledger.shortfall(job, reserve)

    def _budget_moved(self) -> None:
        """Wake jobs waiting for budget: a reservation was released or settled."""
        self._budget_event.set()
        self._budget_event = trio.Event()
