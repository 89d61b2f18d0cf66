"""Worker-thread calls that share one hop: what runnable tasks ask for in the same round goes together.

A ``trio.to_thread.run_sync`` costs ~80 us of CPU (a thread handed the call, a wake-up
back to the event loop), about what a result's small file steps cost themselves (create
the temp file, write, fsync, rename). With ten downloads finishing at once the hops, and
the GIL handoffs they bring, were a large part of the runner's own time
(``benchmarks/overhead.py``). ``run_sync`` queues the call; the first caller of a round
lets the other runnable tasks add theirs (one checkpoint), then runs them all, in order,
in one worker-thread hop. Each caller gets its own result or exception.

The hop is trio's thread cache driven directly (``start_thread_soon``, then one wait to be
rescheduled): one task step where ``to_thread.run_sync`` takes two, without its thread
limiter (there is at most one hop per scheduling round).

A call can ask for a follow-up that the whole round needs once (``once_per_round``): the
renames of many results into one folder share that folder's fsync.

Like ``trio.to_thread.run_sync``, a call cannot be cancelled once queued: it runs, and its
caller waits for it (a temp file created for a task must be known to that task, which
removes it). Calls of one batch run one after another, so they must be short; a big
write or a transfer goes through ``trio.to_thread.run_sync`` on its own.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import outcome
import trio

from lipbatch import round_end

T = TypeVar("T")

_BATCH: trio.lowlevel.RunVar[_Batch | None] = trio.lowlevel.RunVar("lipbatch_batch", default=None)
_ROUND = threading.local()  # in the hop's thread: the follow-ups asked for so far, and who asked


class _Batch:
    def __init__(self) -> None:
        self.calls: list[Callable[[], Any]] = []
        self.results: list[outcome.Outcome[Any]] = []
        self.waiting: list[trio.lowlevel.Task] = []  # the callers after the first, until the hop is back


def _not_cancellable(_raise_cancel: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED  # a queued call runs: its caller waits for it (cancelled at its next checkpoint)


def once_per_round(key: Hashable, follow_up: Callable[[], object]) -> bool:
    """Run ``follow_up`` once, after every call of this hop, for all calls that ask with ``key``.

    True when ``follow_up`` was taken (the first ask for ``key``, or outside a hop: it ran at
    once); False when an earlier call's follow-up covers this one (``follow_up`` never runs).
    Its exception is raised to every call that asked for it.
    """
    pending: dict[Hashable, tuple[Callable[[], object], list[int]]] | None = getattr(_ROUND, "pending", None)
    if pending is None:
        follow_up()
        return True
    taken = key not in pending
    if taken:
        pending[key] = (follow_up, [])
    pending[key][1].append(_ROUND.index)
    return taken


def hop_token() -> trio.lowlevel.TrioToken | None:
    """In a call of a hop: the run's token (``trio.from_thread`` needs it here); else None."""
    return getattr(_ROUND, "token", None)


def _run_all(calls: list[Callable[[], Any]], token: trio.lowlevel.TrioToken) -> list[outcome.Outcome[Any]]:
    pending: dict[Hashable, tuple[Callable[[], object], list[int]]] = {}
    _ROUND.pending, _ROUND.token, results = pending, token, []
    try:
        for index, call in enumerate(calls):
            _ROUND.index = index
            results.append(outcome.capture(call))
    finally:
        del _ROUND.pending, _ROUND.token
    for follow_up, askers in pending.values():
        failed = outcome.capture(follow_up)
        if isinstance(failed, outcome.Error):
            for index in askers:
                if isinstance(results[index], outcome.Value):
                    results[index] = outcome.Error(failed.error)
    return results


async def _hop(calls: list[Callable[[], Any]]) -> list[outcome.Outcome[Any]]:
    """``_run_all(calls)`` in a worker thread from trio's cache; the caller sleeps until it reports back."""
    task, token, context = trio.lowlevel.current_task(), trio.lowlevel.current_trio_token(), contextvars.copy_context()

    def report(result: outcome.Outcome[list[outcome.Outcome[Any]]]) -> None:
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    round_end.run_now()  # a call queued this round may follow a change of this round: it is written first
    # unnamed: a named job renames the OS thread twice per hop (pthread_setname_np through ctypes)
    trio.lowlevel.start_thread_soon(lambda: context.run(_run_all, calls, token), report)
    return await trio.lowlevel.wait_task_rescheduled(_not_cancellable)  # type: ignore[no-any-return]


async def run_sync(call: Callable[[], T]) -> T:
    """``call()`` in a worker thread, in one hop with the calls other tasks make in this round."""
    batch = _BATCH.get()
    if batch is None:  # the first caller of the round runs the hop
        batch = _Batch()
        _BATCH.set(batch)
        batch.calls.append(call)
        await trio.lowlevel.cancel_shielded_checkpoint()  # the others join; never cancelled half-queued
        _BATCH.set(None)
        try:
            batch.results = await _hop(batch.calls)
        finally:
            for waiting in batch.waiting:
                trio.lowlevel.reschedule(waiting)
        return batch.results[0].unwrap()  # type: ignore[no-any-return]
    index = len(batch.calls)
    batch.calls.append(call)
    batch.waiting.append(trio.lowlevel.current_task())
    await trio.lowlevel.wait_task_rescheduled(_not_cancellable)  # queued: it runs whether or not we are cancelled
    if index >= len(batch.results):  # the hop itself failed (no thread could start): the first caller saw why
        raise RuntimeError("a worker thread could not run this call")
    return batch.results[index].unwrap()  # type: ignore[no-any-return]
