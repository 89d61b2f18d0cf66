"""Per-account pacing: adaptive in-flight slots, a request-rate bucket, and the backoff policy.

Why adaptive: useapi.net's real concurrency is dynamic ("at least one job,
often two, rarely three") below the configured ``maxJobs``, and is discovered
only by a busy-429. The limiter starts low, grows while work is queued and
creates succeed, and shrinks to what the provider actually accepted when it
says busy. After a busy answer it probes upward again only once ``limit``
creates in a row have succeeded, so a provider pinned at its cap costs about
one refused request per ``limit`` jobs instead of one per job.

Backoff: a server's Retry-After wins (capped, so a bad header cannot stall a
run); otherwise exponential backoff with full jitter. stamina/tenacity were
considered: the runner's waits differ per error class (busy and 429 wait
without limit, 5xx/network are bounded, Retry-After overrides), which is less
code as one function than as decorator policies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio


class AdaptiveLimiter:
    """In-flight slots for one account: ``1 <= limit <= cap``, starting at ``min(2, cap)``."""

    def __init__(self, cap: int, *, start: int = 2) -> None:
        if cap < 1:
            raise ValueError("cap must be >= 1")
        self.cap = cap
        self._slots = trio.CapacityLimiter(max(1, min(start, cap)))
        self._holders: set[object] = set()
        self._busy_seen = False
        self._successes = 0

    @property
    def limit(self) -> int:
        return int(self._slots.total_tokens)

    @property
    def in_use(self) -> int:
        return self._slots.borrowed_tokens

    @property
    def waiting(self) -> int:
        return self._slots.statistics().tasks_waiting

    def holds(self, owner: object) -> bool:
        return owner in self._holders

    async def acquire(self, owner: object) -> None:
        """Wait for a slot; ``owner`` (a job key) identifies the holder."""
        await self._slots.acquire_on_behalf_of(owner)
        self._holders.add(owner)

    def try_acquire(self, owner: object) -> bool:
        """Take a slot now if one is free (tasks resumed from an earlier run)."""
        try:
            self._slots.acquire_on_behalf_of_nowait(owner)
        except trio.WouldBlock:
            return False
        self._holders.add(owner)
        return True

    def release(self, owner: object) -> None:
        self._holders.discard(owner)
        self._slots.release_on_behalf_of(owner)

    def on_success(self) -> None:
        """A create was accepted: grow by one while jobs wait for a slot."""
        self._successes += 1
        if self.waiting == 0 or self.limit >= self.cap:
            return
        if self._busy_seen and self._successes < self.limit:
            return
        self._successes = 0
        self._slots.total_tokens = self.limit + 1

    def on_busy(self) -> None:
        """The provider refused a create as busy: the slots it accepted are the real cap.

        Called while the refused job still holds its slot, so the others number ``in_use - 1``.
        """
        self._busy_seen = True
        self._successes = 0
        self._slots.total_tokens = max(1, min(self.limit, self.in_use - 1))


class TokenBucket:
    """Request pacing for one account: ``rate`` requests/s on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 2 * rate)
        self._tokens = self.burst
        self._stamp = trio.current_time()
        self._lock = trio.Lock()

    async def take(self) -> None:
        """Wait until a request may be sent (FIFO among waiters)."""
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await trio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1

    def _refill(self) -> None:
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


@dataclass(frozen=True)
class Backoff:
    """Wait times in seconds: ``base * 2**attempt`` with full jitter, capped; Retry-After wins."""

    base: float = 1.0
    cap: float = 60.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        return random.uniform(0.0, min(self.cap, self.base * 2 ** min(attempt, 30)))

    def scaled(self, factor: float) -> Backoff:
        """The same policy in scaled time (the sandbox's ``time_scale``)."""
        return Backoff(self.base * factor, self.cap * factor, self.max_retry_after * factor)
