"""Shared campaigns: a run that divides its jobs with the other workers of the same state.

With a shared state (a backend with ``leases``, ``lipbatch.state.postgres``), ``Runner``
does not start every job at once: ``_run_shared`` claims jobs as it has room for them
(per account, up to the account's concurrency) and works on each only while it holds
the job's claim.

- Jobs whose task may be running at the provider come first and need no room: those
  the pre-pass saw in flight, and those whose slot a silent worker left behind
  (``Coordinator.orphans``). They are taken over and polled, never resubmitted.
- A job another worker finished is seen without a claim when its outputs are here
  (as the pre-pass would); a claimed job whose record another worker changed since the
  pre-pass is decided again from the fresh record (an output missing from this
  worker's folder is downloaded again, never paid again).
- A job a live worker holds is asked for again every ``_claim_poll`` seconds, so each
  worker keeps watch until every job is settled, and the jobs of one that died are
  finished by the others once its lease runs out.
- A heartbeat renews this worker's leases every quarter lease, from a thread. When the
  database stays away longer than the state's patience, the run stops: nothing new is
  submitted, what was recorded stays recorded, and ``StateUnavailableError`` says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from lipbatch.state.backend import StateUnavailableError, live

if TYPE_CHECKING:
    from lipbatch.engine.prepass import Plan
    from lipbatch.state import JobRecord

_WINDOW = 256  # job keys offered per claim query


class ClaimQueue:
    """This worker's jobs not claimed yet (per account, in order) and when to ask again for held ones."""

    def __init__(self, plans: Iterable[Plan], urgent: Iterable[str]) -> None:
        self.plans = {plan.job.key: plan for plan in plans}
        self.pending: dict[str, dict[str, None]] = {}
        for key, plan in self.plans.items():
            self.pending.setdefault(plan.job.account, {})[key] = None
        self.urgent = set(urgent) & self.plans.keys()
        self._again_at: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self.plans)

    def _ready(self, key: str, now: float) -> bool:
        return self._again_at.get(key, now) <= now

    def takeovers(self, orphans: Iterable[str], now: float) -> list[str]:
        """Jobs that may have a running task: claimed without waiting for room."""
        self.urgent |= set(orphans) & self.plans.keys()
        return [key for key in self.urgent if self._ready(key, now)]

    def window(self, account: str, now: float) -> list[str]:
        keys: list[str] = []
        for key in self.pending.get(account, ()):
            if self._ready(key, now):
                keys.append(key)
                if len(keys) == _WINDOW:
                    break
        return keys

    def claimed(self, offered: list[str], got: list[str], again_at: float) -> list[Plan]:
        """Take the claimed jobs out; offered ones before the last claimed (or all, when fewer than
        asked came back) are held by someone else: ask again later."""
        taken = set(got)
        last = max((offered.index(key) for key in got), default=len(offered) - 1)
        for key in offered[: last + 1]:
            if key not in taken:
                self._again_at[key] = again_at
        plans = []
        for key in got:
            plan = self.plans.pop(key)
            del self.pending[plan.job.account][key]
            self.urgent.discard(key)
            self._again_at.pop(key, None)
            plans.append(plan)
        return plans

    def settle(self, key: str) -> None:
        """Done without a claim (another worker made it and its outputs are here)."""
        self.claimed([key], [key], 0.0)

    def accounts(self) -> list[str]:
        return sorted(self.pending)


class SharedRun:
    """Mixin of ``Runner``: the work of a run on a shared state, claimed job by job."""

    _lost_state: StateUnavailableError | None = None

    @property
    def _to_work(self) -> tuple[str, ...]:
        """Pre-pass decisions that become tasks. Shared: "blocked" too, decided again under the claim:
        the file may be another worker's output whose record this worker had not seen yet."""
        return ("work", "restore", "blocked") if self.leases is not None else ("work", "restore")

    @property
    def _claim_poll(self) -> float:
        """How often jobs other workers hold are asked for again (3 s at the default lease; quicker in
        a rehearsal on a fast sandbox clock)."""
        return max(self._lease_poll, min(self.leases.lease / 20, 5 * self._lease_poll))

    async def _run_shared(self, work: list[Plan]) -> None:
        leases = self.leases
        seen = {plan.job.key: _copy(self.state.job(plan.job.key)) for plan in work}
        queue = ClaimQueue(work, urgent=[key for key, record in seen.items() if live(record)])
        self.emit("worker", message=f"worker {leases.worker} on {leases.where} (lease {leases.lease:g} s)",
                  worker=leases.worker)
        self._claim_wake = trio.Event()
        try:
            leases.enlist(list(seen))
            async with trio.open_nursery() as beat:
                beat.start_soon(self._heartbeat)
                async with trio.open_nursery() as jobs:
                    self._jobs_scope = jobs.cancel_scope
                    await self._dispatch(queue, seen, jobs)
                beat.cancel_scope.cancel()
        except StateUnavailableError as exc:
            self._state_lost(exc)
        if self._lost_state is not None:
            raise self._lost_state

    async def _dispatch(self, queue: ClaimQueue, seen: dict[str, JobRecord | None], jobs: trio.Nursery) -> None:
        accounts = queue.accounts()
        room = {name: trio.Semaphore(max(1, self.project.accounts[name].concurrency)) for name in accounts}
        while queue:
            self._claim_wake = trio.Event()
            now = trio.current_time()
            try:
                offered = queue.takeovers(self.leases.orphans(accounts), now)
                for plan in queue.claimed(offered, self.leases.claim(offered, len(offered)), now + self._claim_poll):
                    jobs.start_soon(self._claimed_job, plan, seen, None, name=f"job {plan.job.output}")
                for name in accounts:
                    self._settle_done_elsewhere(queue, queue.window(name, now))
                    offered = queue.window(name, now)
                    if offered and room[name].value:
                        got = self.leases.claim(offered, room[name].value)
                        for plan in queue.claimed(offered, got, now + self._claim_poll):
                            room[name].acquire_nowait()
                            jobs.start_soon(self._claimed_job, plan, seen, room[name], name=f"job {plan.job.output}")
            except StateUnavailableError as exc:
                self._state_lost(exc)
                return
            if queue:
                with trio.move_on_after(self._claim_poll):
                    await self._claim_wake.wait()

    def _settle_done_elsewhere(self, queue: ClaimQueue, offered: list[str]) -> None:
        """Jobs another worker finished whose outputs are already here need no claim: as in the pre-pass."""
        for key in self.leases.peek_done(offered):
            plan = self._decide(queue.plans[key].job)
            if plan.action in ("skip", "copy"):
                queue.settle(key)
                self._settled_before(plan.job, plan)

    async def _claimed_job(self, plan: Plan, seen: dict[str, JobRecord | None], room: trio.Semaphore | None) -> None:
        job = plan.job
        try:
            if plan.action == "blocked" or self.state.job(job.key) != seen[job.key]:  # decided on stale records
                plan = self._decide(job)
            if plan.action in ("work", "restore"):
                await self._job_task(plan)
            else:
                self._settled_before(job, plan)
        except StateUnavailableError as exc:
            self._state_lost(exc)
        finally:
            try:
                self.leases.release(job.key)
            except StateUnavailableError as exc:
                self._state_lost(exc)
            if room is not None:
                room.release()
            self._claim_wake.set()

    async def _heartbeat(self) -> None:
        while True:
            await trio.sleep(self.leases.heartbeat_every)
            try:
                await trio.to_thread.run_sync(self.leases.heartbeat, abandon_on_cancel=True)
            except StateUnavailableError as exc:
                self.emit("state_unreachable", message=f"heartbeat failed: {exc}")

    def _state_lost(self, exc: StateUnavailableError) -> None:
        """Stop the run: no new submissions; every job's record stays as last committed."""
        if self._lost_state is None:
            self._lost_state = exc
            self.halted = "the state database is unreachable"
            self.emit("halted", message=f"stopping: {exc}")
        scope = getattr(self, "_jobs_scope", None)
        if scope is not None:
            scope.cancel()


def _copy(record: JobRecord | None) -> JobRecord | None:
    return None if record is None else dataclasses.replace(record, outputs=list(record.outputs))
