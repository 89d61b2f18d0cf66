"""The sandbox's virtual clock, which every schedule, expiry and timer reads.

``now()`` = real monotonic seconds elapsed / ``time_scale``; changing
``time_scale`` at run time keeps the virtual clock continuous. ``epoch(v)``
converts a virtual instant to the Unix time at which it happens (used for
``createdAt``/``expires_at`` stamps and ``Retry-After``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import trio

from lipbatch.sandbox.config import SandboxConfig


class VirtualClock:
    """Virtual seconds paced by ``config.time_scale``, which tests may jump forward."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._r0 = time.monotonic()
        self._v0 = 0.0
        self._scale = config.time_scale
        self._moved = trio.Event()  # set (and replaced) whenever the clock jumps or changes pace
        self._iso_second, self._iso_prefix = -1, ""

    def now(self) -> float:
        """Virtual seconds since the sandbox started (real elapsed / time_scale)."""
        real = time.monotonic()
        scale = self.config.time_scale
        if scale != self._scale:
            self._v0 += (real - self._r0) / self._scale
            self._r0, self._scale = real, scale
        return self._v0 + (real - self._r0) / scale

    def set(self, now: float) -> None:
        """Continue from virtual instant ``now`` (a reloaded world)."""
        self._r0, self._v0, self._scale = time.monotonic(), float(now), self.config.time_scale

    def advance(self, seconds: float) -> None:
        """Jump the virtual clock forward (tests: expire URLs, finish jobs, without waiting)."""
        self.now()
        self._v0 += max(0.0, seconds)
        self.wake_sleepers()

    def wake_sleepers(self) -> None:
        """Let every ``sleep_until`` re-check the time (after a jump or a change of pace)."""
        self._moved.set()
        self._moved = trio.Event()

    def epoch(self, virtual: float | None = None) -> float:
        """Unix time at which virtual instant ``virtual`` (default: now) happens at the current scale."""
        now = self.now()
        return time.time() + ((now if virtual is None else virtual) - now) * self.config.time_scale

    def iso(self, virtual: float | None = None) -> str:
        """ISO-8601 UTC with milliseconds and ``Z``, as the providers print timestamps."""
        millis = int(self.epoch(virtual) * 1000)
        second, milli = divmod(millis, 1000)
        if second != self._iso_second:  # every view prints a few stamps of the same second
            self._iso_second = second
            self._iso_prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._iso_prefix}{milli:03d}Z"

    async def sleep_until(self, when: float) -> None:
        """Sleep until virtual time ``when`` (re-checking, so time_scale changes apply)."""
        while (remaining := when - self.now()) > 0:
            with trio.move_on_after(min(remaining * self.config.time_scale, 0.5)):
                await self._moved.wait()
