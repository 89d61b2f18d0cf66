"""The state's lock: one writer per state file, a dead holder's lock taken over safely.

Created with ``O_CREAT|O_EXCL``. Checking a lock and taking over a stale one
happen under an ``flock`` of the state's folder, so two processes finding the
same stale lock cannot both win. A holder is stale when its pid no longer
exists (or is a zombie) on this host; a lock from another host is never taken
over. An unreadable lock older than ``_LOCK_WRITE_GRACE`` seconds is stale (its
writer died before writing it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lipbatch.errors import LipbatchError, StateLockedError
from lipbatch.state.durable import fsync_directory, write_all

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

_LOCK_WRITE_GRACE = 5.0


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def _directory_mutex(directory: Path) -> Iterator[None]:
    """Serialise lock checks/takeovers between processes; the kernel drops it if we die."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The lock's holder, or None when the file is empty or garbled (FileNotFoundError passes)."""
    raw = path.read_bytes()
    try:
        holder = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    return holder


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    try:  # a killed but unreaped child is a zombie: it will never run again
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split(" ", 1)[0] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return True


def _lock_message(state: Path, lock: Path, holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    host = holder.get("host") or "?"
    started = holder.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    return (
        f"state file {state} is in use by lipbatch pid {pid} on host {host} (since {since}); "
        f"wait for it to finish or stop it. If that process is gone, delete {lock}"
    )


def acquire_lock(state: Path) -> dict[str, Any]:
    lock = lock_path(state)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    with _directory_mutex(lock.parent):
        for _ in range(5):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pass
            except OSError as exc:
                raise LipbatchError(
                    f"cannot create the lock {lock}: {exc.strerror or exc}; lipbatch writes its state beside "
                    f"{state.name}: make the folder {lock.parent} writable by this user, or set state_file: in "
                    "the manifest to a writable place") from exc
            else:
                try:
                    write_all(fd, json.dumps(me).encode())
                    os.fsync(fd)
                except OSError as exc:
                    lock.unlink(missing_ok=True)
                    raise LipbatchError(f"cannot write the lock {lock}: {exc.strerror or exc}") from exc
                finally:
                    os.close(fd)
                fsync_directory(lock.parent)
                return me
            try:
                holder = _read_lock(lock)
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            except OSError as exc:
                raise LipbatchError(f"cannot read the lock {lock}: {exc.strerror or exc}") from exc
            if holder is None:
                if age < _LOCK_WRITE_GRACE:
                    raise StateLockedError(f"state file {state} is in use by another lipbatch process (lock {lock} is being written)")
            elif holder.get("host") != me["host"] or holder["pid"] == me["pid"] or _pid_alive(holder["pid"]):
                raise StateLockedError(_lock_message(state, lock, holder))
            try:
                lock.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise LipbatchError(f"cannot take over the stale lock {lock}: {exc.strerror or exc}") from exc
    raise StateLockedError(f"state file {state}: could not take the lock {lock}")


def release_lock(state: Path, me: dict[str, Any]) -> None:
    """Remove our lock; if that fails it is left for the next run to take over (its pid is gone by then)."""
    lock = lock_path(state)
    try:
        holder = _read_lock(lock)
        if holder is not None and holder.get("pid") == me["pid"] and holder.get("started") == me["started"]:
            lock.unlink(missing_ok=True)
            fsync_directory(lock.parent)
    except OSError:
        return
