"""Worker-thread calls that share one hop: what runnable tasks ask for in the same round goes together.

A ``trio.to_thread.run_sync`` costs ~80 us of CPU (a thread handed the call, a wake-up
back to the event loop), about what a result's small file steps cost themselves (create
the temp file, write, fsync, rename). With ten downloads finishing at once the hops, and
the GIL handoffs they bring, were a large part of the runner's own time
(``benchmarks/overhead.py``). ``run_sync`` queues the call; the first caller of a round
lets the other runnable tasks add theirs (one checkpoint), then runs them all, in order,
in one worker-thread hop. Each caller gets its own result or exception.

Like ``trio.to_thread.run_sync``, a call cannot be cancelled once queued: it runs, and its
caller waits for it (a temp file created for a task must be known to that task, which
removes it). Calls of one batch run one after another, so they must be short; a big
write or a transfer goes through ``trio.to_thread.run_sync`` on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")

_BATCH: trio.lowlevel.RunVar[_Batch | None] = trio.lowlevel.RunVar("lipbatch_batch", default=None)


class _Batch:
    def __init__(self) -> None:
        self.calls: list[Callable[[], Any]] = []
        self.results: list[outcome.Outcome[Any]] = []
        self.done = trio.Event()


def _run_all(calls: list[Callable[[], Any]]) -> list[outcome.Outcome[Any]]:
    return [outcome.capture(call) for call in calls]


async def run_sync(call: Callable[[], T]) -> T:
    """``call()`` in a worker thread, in one hop with the calls other tasks make in this round."""
    batch = _BATCH.get()
    leader = batch is None
    if batch is None:
        batch = _Batch()
        _BATCH.set(batch)
    index = len(batch.calls)
    batch.calls.append(call)
    if leader:
        await trio.lowlevel.cancel_shielded_checkpoint()  # the others join; never cancelled half-queued
        _BATCH.set(None)
        try:
            with trio.CancelScope(shield=True):  # queued calls run; a cancellation arrives at the next checkpoint
                batch.results = await trio.to_thread.run_sync(_run_all, batch.calls)
        finally:
            batch.done.set()
    else:
        with trio.CancelScope(shield=True):  # queued: it runs whether or not this task is cancelled
            await batch.done.wait()
    if index >= len(batch.results):  # the hop itself failed (no thread could start): the leader saw why
        raise RuntimeError("a worker thread could not run this call")
    return batch.results[index].unwrap()  # type: ignore[no-any-return]
