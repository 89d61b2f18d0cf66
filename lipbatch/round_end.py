"""Work done once per scheduling round, as trio's run loop finishes it: writes many tasks share.

Trio runs the tasks that are ready in rounds; between two rounds it calls its instruments'
``before_io_wait`` and looks for I/O. A write registered here (the state journal's lines,
the run log's) happens there, once for everything the round's tasks produced, instead of
once per line; a task that yields, or starts a worker thread (which starts in a later
round), finds the lines of its earlier rounds written; a ``batched`` hop, which starts within
a round, first does the round's writes (``run_now``). A kill -9 loses at most the lines of
the round it interrupted.

A callback handles its own errors; one that raises anyway is called no more (its owner's
lines then go out with its next explicit write: the journal's flush, the log's close).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

_ROUND_END: trio.lowlevel.RunVar[_RoundEnd | None] = trio.lowlevel.RunVar("lipbatch_round_end", default=None)


class _RoundEnd(trio.abc.Instrument):
    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def before_io_wait(self, timeout: float) -> None:
        for callback in list(self.callbacks):
            try:
                callback()
            except Exception:  # a bug in one: it is dropped (trio would drop every one), the rest go on
                self.callbacks.remove(callback)


def run_now() -> None:
    """Do this round's writes at once: a worker thread is about to start within the round."""
    instrument = _ROUND_END.get()
    if instrument is not None:
        instrument.before_io_wait(0.0)


def call_each_round(callback: Callable[[], None]) -> Callable[[], None] | None:
    """Call ``callback`` at the end of every scheduling round of this trio run, until the returned
    function is called; None (and nothing registered) outside a trio run."""
    try:
        instrument = _ROUND_END.get()
        if instrument is None:
            instrument = _RoundEnd()
            trio.lowlevel.add_instrument(instrument)
            _ROUND_END.set(instrument)
    except RuntimeError:
        return None
    instrument.callbacks.append(callback)

    def cancel() -> None:
        if callback in instrument.callbacks:
            instrument.callbacks.remove(callback)

    return cancel
