"""Task lifecycles in virtual time: when each emulated task is queued, runs and finishes.

Lifecycles are scheduled once, at creation, in virtual time: FIFO per
(provider, account); a task may start after ``delay`` (the provider's pickup
latency) and only when fewer than ``capacity`` earlier tasks of the account
are running. Nothing runs in the background to advance them. A task is
*active* from its creation until its scheduled end (``[created_at,
finished_at)``); ``max_active_tasks`` is updated at each creation, the only
instants at which the active count rises, so it is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox


class Lifecycle:
    """Virtual-time lifecycle of one emulated task: queued -> running -> finished.

    The schedule (``Schedule.lifecycle``) is the emulator's per-account capacity
    gate: a task starts running only when fewer than ``capacity`` earlier tasks
    of the same account are running; otherwise it stays queued (the provider's pending state).
    The schedule is fixed at creation: ``created_at <= ready_at <= started_at
    <= finished_at`` (virtual seconds, as ``Sandbox.now()``).
    """

    def __init__(self, sandbox: Sandbox, provider: str, account: str, *, created_at: float,
                 ready_at: float, started_at: float, finished_at: float, id: int = 0) -> None:
        self.sandbox = sandbox
        self.id = id
        self.provider = provider
        self.account = account
        self.created_at = created_at
        self.ready_at = ready_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.polls: list[float] = []  # with ``extra["task_timings"]``: when requests read its state
        self._polled_by: object | None = None

    def phase(self) -> str:
        """'queued' | 'running' | 'finished' at the sandbox's current virtual time."""
        now = self.sandbox.now()
        self.sandbox.note_poll(self, now)
        if now >= self.finished_at:
            return "finished"
        return "running" if now >= self.started_at else "queued"

    def waiting_for_capacity(self) -> bool:
        """Queued past its pickup delay: held back only by the account's capacity (THROTTLED)."""
        return self.phase() == "queued" and self.sandbox.now() >= self.ready_at

    def progress(self) -> float:
        """0..1 through the running phase."""
        span = self.finished_at - self.started_at
        if span <= 0:
            return 1.0 if self.phase() == "finished" else 0.0
        return min(1.0, max(0.0, (self.sandbox.now() - self.started_at) / span))

    def eta(self) -> float:
        """Virtual seconds until it starts (queued) or finishes (running)."""
        now = self.sandbox.now()
        target = self.started_at if now < self.started_at else self.finished_at
        return max(0.0, target - now)

    def to_json(self) -> list[float]:
        """``[id, created_at, ready_at, started_at, finished_at]`` (``Sandbox.lifecycle_from_json``)."""
        return [self.id, self.created_at, self.ready_at, self.started_at, self.finished_at]


class Schedule:
    """Every account's lifecycles in creation order, and the most of them active at once."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.lifecycles: dict[tuple[str, str], list[Lifecycle]] = {}
        self.max_active: dict[tuple[str, str], int] = {}
        self.restored: dict[int, Lifecycle] = {}
        self.count = 0  # lifecycles created so far (their ids)

    def start(self, provider: str, account: str, *, capacity: int | None = None,
              seconds: float | None = None, delay: float = 0.0) -> Lifecycle:
        """Start a task's lifecycle now on ``account`` (capacity None = unlimited).

        ``delay``: virtual seconds before the provider picks the task up at all.
        """
        now = self.sandbox.now()
        duration = self.sandbox.config.job_seconds if seconds is None else max(0.0, seconds)
        tasks = [lc for lc in self.lifecycles.get((provider, account), []) if lc.finished_at > now]
        ready = now + max(0.0, delay)
        start = max([ready, *(lc.started_at for lc in tasks)])
        if capacity is not None:
            capacity = max(1, capacity)
            while True:
                running = [lc for lc in tasks if lc.started_at <= start < lc.finished_at]
                if len(running) < capacity:
                    break
                start = min(lc.finished_at for lc in running)
        self.count += 1
        lc = Lifecycle(self.sandbox, provider, account, created_at=now, ready_at=ready,
                       started_at=start, finished_at=start + duration, id=self.count)
        tasks.append(lc)
        self.lifecycles[(provider, account)] = tasks
        # the active count only rises at creations, so its maximum is reached at one of them
        active = sum(1 for other in tasks if other.finished_at > now)
        key = (provider, account)
        self.max_active[key] = max(self.max_active.get(key, 0), active)
        return lc

    def from_json(self, provider: str, account: str, data: list[float]) -> Lifecycle:
        """A lifecycle saved with ``Lifecycle.to_json`` (the same object as the restored schedule's)."""
        ident, created, ready, started, finished = data
        known = self.restored.get(int(ident))
        if known is not None:
            return known
        return Lifecycle(self.sandbox, provider, account, created_at=float(created), ready_at=float(ready),
                         started_at=float(started), finished_at=float(finished), id=int(ident))

    def active_tasks(self, provider: str, account: str) -> int:
        """Tasks of this account not yet finished (queued or running)."""
        now = self.sandbox.now()
        return sum(1 for lc in self.lifecycles.get((provider, account), []) if lc.finished_at > now)

    def running_tasks(self, provider: str, account: str) -> int:
        """Tasks of this account in their running phase now."""
        now = self.sandbox.now()
        return sum(1 for lc in self.lifecycles.get((provider, account), [])
                   if lc.started_at <= now < lc.finished_at)

    def pending_json(self, now: float) -> list[list[object]]:
        """``[provider, account, *Lifecycle.to_json()]`` of the tasks not finished at ``now`` (a snapshot)."""
        return [[p, a, *lc.to_json()] for (p, a), lcs in self.lifecycles.items()
                for lc in lcs if lc.finished_at > now]

    def restore(self, pending: list[list[object]]) -> None:
        """Load ``pending_json`` output; emulators then find these lifecycles with ``from_json``."""
        for provider, account, *times in pending:
            lc = self.from_json(provider, account, times)
            self.restored[lc.id] = lc
            self.lifecycles.setdefault((provider, account), []).append(lc)
