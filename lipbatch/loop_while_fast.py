"""Short blocking file calls on the event loop while they stay fast, in worker threads while they are slow.

A worker-thread hop (``lipbatch.batched``) hands its result back only at the end of a scheduling
round the loop spends on other jobs: ~7 ms in ``benchmarks/overhead.py``, for a rename or a small
journal's fsync that takes 0.01-1 ms on a local disk. So those run on the loop, timed. One that
takes ``limit`` or longer (a slow or network disk, one that turned slow, the GIL slow to come back)
sends the next 8 to worker threads, then 16, 32 ... up to 1,024 while it stays slow, with one on
the loop between to find out: the loop is held up by one slow call per such stretch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import trio

from lipbatch import batched, round_end

T = TypeVar("T")

FAST = 0.002  # seconds: a call faster than this costs the loop less than a worker-thread hop
_OFF_LOOP_FIRST, _OFF_LOOP_MOST = 8, 1024  # calls sent to worker threads after a slow one (doubling)


class LoopWhileFast:
    """Where one kind of call runs (the journal's fsync, a result's rename), judged by its own times."""

    def __init__(self, limit: float = FAST, *, clock: Callable[[], float] = time.perf_counter):
        self.limit = limit
        self.clock = clock
        self.on_loop = 0  # calls run on the event loop (tests count them)
        self._off_loop = 0  # the next calls that go to a worker thread
        self._slow_streak = 0  # calls on the loop in a row that were slow

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on the loop while that is fast, else in a worker-thread hop; like a hop, a call
        that has started finishes (cancellation is seen at the next checkpoint after it)."""
        if self._off_loop:
            self._off_loop -= 1
            return await batched.run_sync(call)
        round_end.run_now()  # as before a hop: what this round changed is written before the call
        start = self.clock()
        try:
            return call()
        finally:
            self.on_loop += 1
            self._judge(self.clock() - start)
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _judge(self, seconds: float) -> None:
        if seconds < self.limit:
            self._slow_streak = 0
            return
        self._off_loop = min(_OFF_LOOP_FIRST << self._slow_streak, _OFF_LOOP_MOST)
        self._slow_streak += 1
