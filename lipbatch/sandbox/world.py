"""A persistent sandbox world: a folder from which a new process continues where the last one stopped.

Layout of the folder:

- ``world.json``: everything the emulators and the sandbox remember (accounts, assets, uploads,
  tasks with their scheduled lifecycles, credits, the virtual clock, id counters, URL secret,
  stats and the digests ``duplicate_creates`` compares), with no file bytes and no credentials
  (bearer keys are kept as ``account_label`` digests). Rewritten whole after every request that
  may have changed the world, before its response goes out, atomically: temp file, fsync,
  ``os.replace``, fsync of the folder. A ``kill -9`` at any instant leaves the last complete save,
  so whatever a client saw acknowledged is there after a restart.
- ``files/<token>``: the bytes of each published file (results, uploads), written once (fsynced
  before the ``world.json`` that names them) and read from there afterwards. Files no save names
  any more (forgotten, or written just before a crash) are deleted.
- ``lock``: held (``flock``) by the one process serving the world; a second one is refused.

Concurrent requests share saves (group commit): a request waits only for a save that began
after its changes. Changes made outside requests (timers: refunds, settlements, callbacks) are
saved with the next request or on shutdown. The virtual clock continues across a restart as if
the provider had kept running: ``now`` on load = saved ``now`` + wall-clock seconds since the
save / ``time_scale`` (the loading process's), so tasks in flight progress while no process
runs. Timers and callbacks pending at the save are dropped: refunds and settlements happen at
the next poll of the task instead, and a Creatify webhook is sent at that poll; useapi
``replyUrl`` posts pending at the save are not sent. ``GET /_sandbox/callbacks`` starts empty.
The configuration is not part of the world: the loading process's applies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import trio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipbatch.errors import UsageError
from lipbatch.sandbox.core import CONTROL_PREFIX, Sandbox

FORMAT = "lipbatch-sandbox-world"
VERSION = 1
WORLD_FILE = "world.json"
FILES_DIR = "files"
LOCK_FILE = "lock"


def wall_clock() -> float:
    """Unix time (a seam for tests of the clock's continuation)."""
    return time.time()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (the caller fsyncs the folder)."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temp, path)


class World:
    """One sandbox's world folder: ``open`` (lock + load), ``save`` after changes, ``close``."""

    def __init__(self, folder: Path, sandbox: Sandbox) -> None:
        self.folder = Path(folder)
        self.sandbox = sandbox
        self.files_dir = self.folder / FILES_DIR
        self.path = self.folder / WORLD_FILE
        self.loaded = False  # open() found a world to continue
        self.saves = 0  # completed saves (tests count them)
        self.last_save_bytes = 0  # size of the last world.json written
        self._lock: IO[bytes] | None = None
        self._on_disk: set[str] = set()  # tokens whose bytes are in files/
        self._requested = 0  # save() calls so far
        self._written = 0  # save() calls covered by a completed save
        self._mutex = trio.Lock()

    # -- open / close -------------------------------------------------------------------------

    def open(self) -> bool:
        """Lock the folder (creating it) and load the world in it; False when there was none yet."""
        try:
            self.files_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"sandbox world {self.folder}: cannot create it ({exc.strerror})") from exc
        self.lock()
        self.loaded = self._load()
        self._remove_strays()
        return self.loaded

    def lock(self) -> None:
        """Take the folder's lock (idempotent); another live process holding it is a UsageError."""
        if self._lock is not None:
            return
        stream = open(self.folder / LOCK_FILE, "a+b")  # noqa: SIM115 (held open: closing unlocks)
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            stream.close()
            raise UsageError(f"sandbox world {self.folder} is in use by another sandbox process") from None
        self._lock = stream

    def release(self) -> None:
        """Give the folder's lock up (``lock`` takes it again)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def close(self) -> None:
        """Save (synchronously: call it once serving has stopped) and unlock."""
        payload, new_files, keep = self._prepare()
        self._write(payload, new_files, keep)
        self.sandbox.files.saved(self.files_dir, [token for token, _ in new_files])
        self._written = self._requested
        self.release()

    def _load(self) -> bool:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise UsageError(f"sandbox world {self.path} cannot be read ({exc.strerror})") from exc
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise UsageError(f"{self.path} is not a lipbatch sandbox world")
            if data.get("version") != VERSION:
                raise UsageError(f"sandbox world {self.path} was written by an incompatible lipbatch "
                                 f"(format version {data.get('version')!r}; this one reads {VERSION}): "
                                 "move it away or use another --world folder")
            elapsed = max(0.0, wall_clock() - float(data["saved_at"]))
            sandbox = data["sandbox"]
            now = float(sandbox["now"]) + elapsed / self.sandbox.config.time_scale
            self.sandbox.restore(sandbox, now=now, files=self.files_dir)
            for name, emulator in self.sandbox.emulators.items():
                emulator.restore(data["emulators"][name])
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise UsageError(f"sandbox world {self.path} is corrupt ({type(exc).__name__}: {exc}): "
                             "move it away or use another --world folder") from None
        return True

    def _remove_strays(self) -> None:
        """Delete files no save names (written just before a crash, or half-written temp files)."""
        self._on_disk = self.sandbox.files.stored_tokens()
        for path in self.files_dir.iterdir():
            if path.name not in self._on_disk:
                path.unlink(missing_ok=True)

    # -- saving -------------------------------------------------------------------------------

    async def save(self) -> None:
        """Make every change made before this call durable (sharing a save begun after it)."""
        self._requested += 1
        ticket = self._requested
        async with self._mutex:
            if self._written >= ticket:
                return
            covered = self._requested
            payload, new_files, keep = self._prepare()
            await trio.to_thread.run_sync(self._write, payload, new_files, keep)
            self.sandbox.files.saved(self.files_dir, [token for token, _ in new_files])
            self._written = covered

    def _prepare(self) -> tuple[bytes, list[tuple[str, bytes]], set[str]]:
        """The snapshot (taken on the event loop, so it is consistent) and the files to write."""
        document: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "saved_at": wall_clock(),
            "sandbox": self.sandbox.snapshot(),
            "emulators": {name: emulator.snapshot() for name, emulator in self.sandbox.emulators.items()},
        }
        payload = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        return payload, self.sandbox.files.unsaved(), self.sandbox.files.stored_tokens()

    def _write(self, payload: bytes, new_files: list[tuple[str, bytes]], keep: set[str]) -> None:
        for token, data in new_files:
            _write_durably(self.files_dir / token, data)
        if new_files:
            _fsync_dir(self.files_dir)
        _write_durably(self.path, payload)
        _fsync_dir(self.folder)
        for token in self._on_disk - keep:
            (self.files_dir / token).unlink(missing_ok=True)
        self._on_disk = keep
        self.saves += 1
        self.last_save_bytes = len(payload)


def _read_only(scope: Scope) -> bool:
    return scope["method"] in ("GET", "HEAD") and scope["path"].startswith(CONTROL_PREFIX)


class SaveAfterRequests:
    """ASGI middleware: once a request that may have changed the world has been handled, save the
    world before its response starts (so an acknowledged request is durable)."""

    def __init__(self, app: ASGIApp, world: World) -> None:
        self.app = app
        self.world = world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _read_only(scope):
            await self.app(scope, receive, send)
            return
        saved = False

        async def send_after_saving(message: Message) -> None:
            nonlocal saved
            if message["type"] == "http.response.start" and not saved:
                saved = True
                await self.world.save()
            await send(message)

        try:
            await self.app(scope, receive, send_after_saving)
        finally:
            if not saved:  # the request failed before answering: what it changed is kept anyway
                with trio.CancelScope(shield=True):
                    await self.world.save()


@contextlib.asynccontextmanager
async def serving(world: World) -> AsyncIterator[None]:
    """Starlette lifespan: hold the world's lock while served; save and release it at shutdown."""
    world.lock()
    try:
        yield
    finally:
        with trio.CancelScope(shield=True):
            await world.save()
        world.release()
