"""Where a downloaded result is decoded: a worker thread for small runs, a child process for big ones.

``media.verify_playable`` costs ~1.5 ms of CPU per result, but in a worker thread it shares the
GIL with the event loop: it releases and retakes the GIL around every packet it reads, and with
ten downloads at once those handoffs (and the event loop's own syscalls waiting to get the GIL
back) cost more than the decoding. ``benchmarks/overhead.py`` measured 4 ms of worker-thread CPU
per job with verification and 1.6 ms without. A run with many results therefore verifies in one
child process (``lipbatch.verifier_child``), which runs on the other core and also keeps a
result that crashes or hangs FFmpeg from taking the run down with it: the child is restarted,
and a file that was being checked when a child died twice, or that the child worked on for
longer than ``timeout`` (it is then killed), counts as not playable (``MediaError``: the runner
re-downloads a bounded number of times). A child that cannot start, or exits twice in a row
before it says it is ready, is an environment problem, not a file's: the run then decodes in a
worker thread. A small run verifies in a worker thread from the start, because starting the
child (~0.1 s of CPU to import PyAV) would cost more than it saves; there a file not checked within
``timeout`` counts as not playable too (its thread is abandoned, not killed).

The child says ``{"ready": true}`` once it can work, then reads one JSON line per file
(``{"path": ...}``) on stdin and answers one line per file, in order, on stdout:
``{"ok": true, "info": {...}}`` or ``{"ok": false, "error": "..."}``. It runs with ``-P`` (no
module of the working folder is imported), in its own session, ignoring
SIGINT (Ctrl-C stops the parent, which closes the pipe), with no credential from the parent's
environment, and exits when stdin closes or its parent is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import trio

import lipbatch
from lipbatch.media import MediaError, MediaInfo, verify_playable
from lipbatch.verifier_child import READY

Verify = Callable[[Path], Awaitable[MediaInfo]]

#: a run with at least this many jobs verifies in a child process
PROCESS_MIN_RESULTS = 32
#: seconds the child may work on one file (decoding a long result takes a second or two)
TIMEOUT = 120.0
#: environment variables the child keeps (it needs no credential)
_CHILD_ENV = ("PATH", "PYTHONHOME", "LD_LIBRARY_PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR",
              "SYSTEMROOT")


#: worker threads decoding at once (a decoder that hangs holds one until the process ends)
_THREAD_DECODES: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("lipbatch_thread_decodes")


async def verify_in_thread(path: Path, timeout: float = TIMEOUT) -> MediaInfo:
    """``verify_playable`` in a worker thread (small runs), bounded like the child: a file not
    checked within ``timeout`` counts as not playable and its thread is left to finish alone.

    Such threads draw from their own few slots, so decoders that hang can only slow verification
    (whose waits the timeout covers too), never the run's other worker-thread work.
    """
    try:
        limiter = _THREAD_DECODES.get()
    except LookupError:
        limiter = trio.CapacityLimiter(4)
        _THREAD_DECODES.set(limiter)
    with trio.move_on_after(timeout):
        return await trio.to_thread.run_sync(verify_playable, path, abandon_on_cancel=True, limiter=limiter)
    raise MediaError(f"{path}: not checked within {timeout:g} s (the decoder did not finish)")


class _ChildGone(Exception):
    """The child exited (or was killed) before it answered; ``late``: killed for taking too long on it;
    ``ready``: it had started (else it never got as far as reading a request)."""

    def __init__(self, late: bool = False, ready: bool = True):
        super().__init__()
        self.late = late
        self.ready = ready


@dataclasses.dataclass(eq=False)
class _Reply:
    done: trio.Event = dataclasses.field(default_factory=trio.Event)
    answer: dict[str, object] | None = None
    late: bool = False


class _Child:
    """One ``lipbatch.verifier_child`` process: requests pipelined, answers matched in order.

    Its first line says it is ready (PyAV imported); every later line answers the oldest request.
    """

    def __init__(self, process: trio.Process):
        self.process = process
        self.waiting: deque[_Reply] = deque()
        self.gone = False
        self.ready = False
        self.head_since = 0.0  # when the child started on the oldest waiting request
        self._outbox = bytearray()  # request lines not yet written to the child (``write_requests``)
        self._has_mail = trio.Event()
        self._work = trio.Event()  # set when a request arrives at an idle child
        self._watching = trio.CancelScope()  # the watchdog's, cancelled when the child goes

    async def ask(self, path: Path) -> dict[str, object]:
        if self.gone:
            raise _ChildGone(ready=self.ready)
        reply = _Reply()
        if not self.waiting:
            self.head_since = trio.current_time()
            self._work.set()
        self.waiting.append(reply)  # in the order its line is written: the child answers in that order
        self._outbox += json.dumps({"path": str(path)}).encode() + b"\n"
        self._has_mail.set()
        await reply.done.wait()
        if reply.answer is None:
            raise _ChildGone(reply.late, self.ready)
        return reply.answer

    async def write_requests(self) -> None:
        """Write queued request lines, each round's together (one writer: lines are never interleaved)."""
        assert self.process.stdin is not None
        while not self.gone:
            if not self._outbox:
                self._has_mail = trio.Event()
                await self._has_mail.wait()
                continue
            lines, self._outbox = bytes(self._outbox), bytearray()
            with trio.CancelScope(shield=True):  # a line cut in half would misalign every later answer
                try:
                    await self.process.stdin.send_all(lines)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.stop()

    async def watch(self, timeout: float) -> None:
        """Stop the child when it works on one file for longer than ``timeout`` (time queued behind
        other files does not count: the clock starts when the file before it was answered)."""
        with self._watching:
            while not self.gone:
                if not self.waiting:
                    self._work = trio.Event()
                    await self._work.wait()
                    continue
                head = self.waiting[0]
                await trio.sleep_until(self.head_since + timeout)
                if self.waiting and self.waiting[0] is head:
                    head.late = True
                    self.stop()

    async def read_answers(self) -> None:
        """Hand each answer line to the oldest waiting request; when the pipe ends, fail the rest."""
        assert self.process.stdout is not None
        pending = b""
        try:
            async for chunk in self.process.stdout:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not self.ready:  # the child's first line: it can read requests now
                        self.ready = line.strip() == READY
                        if not self.ready:
                            return
                        self.head_since = trio.current_time()
                        continue
                    if not self.waiting:
                        continue
                    reply = self.waiting.popleft()
                    self.head_since = trio.current_time()
                    try:
                        reply.answer = json.loads(line)
                    except ValueError:
                        reply.answer = {"ok": False, "error": "the verifier answered something unreadable"}
                    reply.done.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.stop()
            with trio.CancelScope(shield=True):  # reap it: a restarted child leaves no zombie
                await self.process.wait()

    def stop(self) -> None:
        """Kill the child (if it still runs) and fail every request that waits for it."""
        self.gone = True
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        while self.waiting:
            self.waiting.popleft().done.set()
        self._has_mail.set()  # the writer sees the child gone
        self._watching.cancel()

    async def close(self) -> None:
        """Close stdin (the child exits at end of input), then wait a little before killing it."""
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.process.stdin.aclose()
            with trio.move_on_after(5):
                await self.process.wait()
            self.stop()
            await self.process.wait()


class ProcessVerifier:
    """Verifies in a child process, started with the run, restarted after a crash or a hang.

    A child that cannot be started, or exits twice in a row before it is ready (an environment
    problem, not a file's), leaves the rest of the run to ``verify_in_thread``: never a paid
    result refused because the checker could not run.
    """

    def __init__(self, nursery: trio.Nursery, *, timeout: float = TIMEOUT):
        self._nursery = nursery
        self._timeout = timeout
        self._child: _Child | None = None
        self._starting = trio.Lock()
        self._failed_starts = 0  # in a row
        self.in_thread = False  # children cannot run here: decoding in a worker thread instead
        self._closed = False
        self.started = 0  # children started (tests count them)

    async def __call__(self, path: Path) -> MediaInfo:
        crashes = 0
        while (child := await self._running()) is not None:
            try:
                answer = await child.ask(path)
            except _ChildGone as gone:
                if gone.late:
                    raise MediaError(f"{path}: not checked within {self._timeout:g} s "
                                     "(the verifier was stopped)") from None
                crashes += gone.ready  # a child that never started is not this file's doing
                if crashes == 2:
                    raise MediaError(f"{path}: the verifier process exited twice while checking it") from None
                continue
            if answer.get("ok"):
                return MediaInfo(**answer["info"])  # type: ignore[arg-type]
            raise MediaError(str(answer.get("error") or f"{path}: not playable"))
        return await verify_in_thread(path)

    async def _running(self) -> _Child | None:
        """The child, (re)started when needed; None once children cannot run here."""
        if self._child is not None and not self._child.gone:
            return self._child
        async with self._starting:
            if self._closed:
                return None
            gone = self._child if self._child is not None and self._child.gone else None
            if gone is not None:  # counted once per child, however many requests waited for it
                self._failed_starts = 0 if gone.ready else self._failed_starts + 1
                self._child = None
            self.in_thread = self.in_thread or self._failed_starts >= 2
            if self.in_thread:
                return None
            if self._child is None:
                try:
                    self._child = _Child(await _spawn())
                except OSError:  # no process can be started here (limits, permissions)
                    self.in_thread = True
                    return None
                self.started += 1
                self._nursery.start_soon(self._child.read_answers, name="verifier answers")
                self._nursery.start_soon(self._child.write_requests, name="verifier requests")
                self._nursery.start_soon(self._child.watch, self._timeout, name="verifier watchdog")
            return self._child

    async def start(self) -> None:
        """Start the child now (it takes ~0.1 s), so the first result does not wait for it."""
        with contextlib.suppress(Exception):  # whatever stops it is met again, per result, by ``__call__``
            await self._running()

    async def aclose(self) -> None:
        async with self._starting:  # a start under way ends first; none begins after this
            self._closed = True
            child = self._child
        if child is not None:
            await child.close()


async def _spawn() -> trio.Process:
    package_parent = str(Path(lipbatch.__file__).resolve().parents[1])
    env = {name: os.environ[name] for name in _CHILD_ENV if name in os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return await trio.lowlevel.open_process(
        [sys.executable, "-P", "-m", "lipbatch.verifier_child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env=env, start_new_session=True)


@contextlib.asynccontextmanager
async def open_verifier(results: int, mode: str = "auto") -> AsyncIterator[Verify]:
    """The verifier for a run expecting ``results`` downloads: ``mode`` is auto, thread or process."""
    if mode == "thread" or (mode == "auto" and results < PROCESS_MIN_RESULTS):
        yield verify_in_thread
        return
    async with trio.open_nursery() as nursery:
        verifier = ProcessVerifier(nursery)
        nursery.start_soon(verifier.start, name="verifier start")  # ready by the first result
        try:
            yield verifier
        finally:
            await verifier.aclose()
