"""A persistent sandbox world: a folder from which a new process continues where the last one stopped.

Layout of the folder:

- ``world.json``: the world's records (accounts, assets, uploads, tasks with their scheduled
  lifecycles, credits, id counters, URL secret, ``max_active_tasks``, the digests
  ``duplicate_creates`` compares) and, as of that save, its volatile part (virtual clock, request
  counters and other stats). No file bytes, no credentials (bearer keys are kept as
  ``account_label`` digests). Rewritten whole (temp file, fsync, ``os.replace``) whenever a request
  changed the records, before that request's response goes out.
- ``stats.json``: the volatile part alone, rewritten (temp file, ``os.replace``, no fsync) after
  requests that changed nothing else (a poll of an unchanged task: its request counters). It
  extends the ``world.json`` whose ``seq`` it names and is ignored otherwise, so a torn or stale
  one costs at most recent counter increments, never the world.
- ``files/<token>``: the bytes of each published file (results, uploads), written once and
  fsynced (with their folder) before the ``world.json`` that names them; read from there
  afterwards. Files no save names any more (forgotten, or written just before a crash) are deleted.
- ``lock``: held (``flock``) by the one process serving the world; a second one is refused.

Every replacement is atomic, so a ``kill -9`` at any instant leaves the last complete save: what
a client saw acknowledged is there after a restart. (``world.json``'s rename is not followed by
an fsync of the folder: after a power loss a world may come back a few saves old, but whole.)
Concurrent requests share saves (group commit): a request waits only for a save begun after its
changes. Changes made outside requests (timers: refunds, settlements, callbacks) are saved with
the next request or on shutdown.

The virtual clock continues across a restart as if the provider had kept running: ``now`` on
load = saved ``now`` + wall-clock seconds since the save / ``time_scale`` (the loading process's),
so tasks in flight progress while no process runs. Timers and callbacks pending at the save are
dropped: refunds and settlements happen at the next poll of the task instead, and a Creatify
webhook is sent at that poll; useapi ``replyUrl`` posts pending at the save are not sent.
``GET /_sandbox/callbacks`` starts empty. The configuration is not part of the world: the loading
process's applies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import trio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipbatch.errors import UsageError
from lipbatch.sandbox.core import CONTROL_PREFIX, Sandbox

FORMAT = "lipbatch-sandbox-world"
VERSION = 1
WORLD_FILE = "world.json"
STATS_FILE = "stats.json"
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


def _replace(path: Path, data: bytes, *, sync: bool) -> None:
    """Replace ``path`` whole or not at all (temp file, [fsync,] ``os.replace``)."""
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as stream:
        stream.write(data)
        if sync:
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
        self.stats_path = self.folder / STATS_FILE
        self.loaded = False  # open() found a world to continue
        self.saves = 0  # completed saves, and how many of them rewrote world.json (tests count them)
        self.durable_saves = 0
        self.last_save_bytes = 0  # size of the last world.json written
        self._lock: IO[bytes] | None = None
        self._seq = 0  # world.json's generation, named by stats.json
        self._records = b""  # the records of the last world.json (unchanged: stats.json will do)
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
        self._done(self._write(self._prepare()))
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
            self._seq = int(data["seq"])
            volatile = self._newer_volatile() or data["volatile"]
            elapsed = max(0.0, wall_clock() - float(volatile["saved_at"]))
            now = float(volatile["now"]) + elapsed / self.sandbox.config.time_scale
            records = data["records"]
            self.sandbox.restore(records["sandbox"], volatile, now=now, files=self.files_dir)
            for name, emulator in self.sandbox.emulators.items():
                emulator.restore(records["emulators"][name])
            self._records = self._encode_records()  # as loaded: no rewrite until something changes
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise UsageError(f"sandbox world {self.path} is corrupt ({type(exc).__name__}: {exc}): "
                             "move it away or use another --world folder") from None
        return True

    def _newer_volatile(self) -> dict[str, Any] | None:
        """stats.json's volatile part when it extends this world.json (anything else: ignored)."""
        try:
            data = json.loads(self.stats_path.read_bytes())
            if data["format"] == FORMAT and data["version"] == VERSION and data["seq"] == self._seq:
                return data["volatile"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

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
            save = self._prepare()
            if save.durable:  # fsyncs take milliseconds: off the event loop
                self._done(await trio.to_thread.run_sync(self._write, save))
            else:  # a small write to the page cache: cheaper than a thread hand-off
                self._done(self._write(save))
            self._written = covered

    def _prepare(self) -> _Save:
        """The snapshot (taken on the event loop, so it is consistent) and the files to write."""
        records = self._encode_records()
        volatile = json.dumps(self.sandbox.volatile() | {"saved_at": wall_clock()}, separators=(",", ":"))
        new_files = self.sandbox.files.unsaved()
        durable = bool(new_files) or records != self._records
        seq = self._seq + durable
        head = f'{{"format":"{FORMAT}","version":{VERSION},"seq":{seq},"volatile":{volatile}'.encode()
        payload = head + (b',"records":' + records if durable else b"") + b"}"
        return _Save(durable, seq, payload, records, new_files, self.sandbox.files.stored_tokens())

    def _encode_records(self) -> bytes:
        return json.dumps({
            "sandbox": self.sandbox.snapshot(),
            "emulators": {name: emulator.snapshot() for name, emulator in self.sandbox.emulators.items()},
        }, separators=(",", ":"), check_circular=False).encode()

    def _write(self, save: _Save) -> _Save:
        """Runs in a worker thread: files first, then world.json (or stats.json alone)."""
        if not save.durable:
            _replace(self.stats_path, save.payload, sync=False)
            return save
        for token, data in save.new_files:
            _replace(self.files_dir / token, data, sync=True)
        if save.new_files:
            _fsync_dir(self.files_dir)
        _replace(self.path, save.payload, sync=True)
        for token in self._on_disk - save.keep:
            (self.files_dir / token).unlink(missing_ok=True)
        self._on_disk = save.keep
        return save

    def _done(self, save: _Save) -> None:
        """Back on the event loop: the saved files are served from disk from now on."""
        self.sandbox.files.saved(self.files_dir, [token for token, _ in save.new_files])
        self.saves += 1
        if save.durable:
            self._seq, self._records = save.seq, save.records
            self.durable_saves += 1
            self.last_save_bytes = len(save.payload)


@dataclass
class _Save:
    durable: bool  # rewrite world.json (else stats.json only)
    seq: int
    payload: bytes
    records: bytes
    new_files: list[tuple[str, bytes]]
    keep: set[str]  # tokens whose bytes belong in files/


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
