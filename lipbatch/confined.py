"""Writing files that stay inside the output folder: no symlink below it is ever followed.

An output path is relative to the output folder; a symlinked subfolder there
(made by hand or by a sync tool) would send a paid result anywhere, maybe over
another file. So each folder between the output folder and the file is opened
with ``O_NOFOLLOW`` relative to the one before (``dir_fd``, no window between a
check and its use), created when missing, and the temp file is created
(``O_EXCL | O_NOFOLLOW``) and renamed relative to the last one. The output
folder itself may be a symlink: where it lives is the user's choice.

Every OS error while writing becomes an ``OutputWriteError`` naming the path
and what to do; callers fail that job, not the run.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from lipbatch.errors import LipbatchError
from lipbatch.oserrors import describe_os_error

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class OutputWriteError(LipbatchError):
    """An output could not be written (disk full, permissions, a symlink in its path, ...)."""


@contextlib.contextmanager
def writing(dest: Path) -> Iterator[None]:
    """Turn OS errors into ``OutputWriteError`` naming ``dest`` (or the file the OS named)."""
    try:
        yield
    except OSError as exc:
        raise OutputWriteError(f"cannot write {dest}: {describe_os_error(exc, dest)}") from exc


def open_folder(root: Path, dest: Path) -> int:
    """An fd of ``dest``'s folder, reached from ``root`` one component at a time (created as needed).

    Raises ``OutputWriteError`` when ``dest`` is outside ``root`` or a component is a symlink or a file.
    """
    try:
        parts = dest.parent.relative_to(root).parts
    except ValueError:
        raise OutputWriteError(f"{dest} is outside the output folder {root}") from None
    with writing(dest):
        try:
            fd = os.open(root, _DIR_FLAGS)
        except FileNotFoundError:  # made on first use (opened first: one system call when it exists)
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root, _DIR_FLAGS)
    current = root
    try:
        for part in parts:
            current = current / part
            child = _step(fd, part, current, root, dest)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _step(fd: int, name: str, path: Path, root: Path, dest: Path) -> int:
    with writing(dest):
        for _ in range(3):
            try:
                return os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
            except OSError as exc:
                if os.path.islink(path):
                    raise OutputWriteError(
                        f"cannot write {dest}: {path} is a symbolic link; lipbatch never writes through a link "
                        f"inside the output folder {root} (it may point anywhere): replace it with a real folder"
                    ) from exc
                if exc.errno == errno.ENOTDIR:
                    raise OutputWriteError(f"cannot write {dest}: {path} is a file, not a folder; "
                                           "move it away, then run again") from exc
                raise
        raise OutputWriteError(f"cannot write {dest}: its folder {path} keeps vanishing")


def create_file(folder: int, name: str) -> int:
    """A new file ``name`` in ``folder`` for writing; never follows or reuses an existing entry."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644,
                   dir_fd=folder)


def publish(folder: int, temp: str, name: str) -> None:
    """Rename ``temp`` onto ``name`` in ``folder`` (``sync_folder`` makes it durable)."""
    os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)


def sync_folder(folder: int) -> None:
    """fsync the open ``folder``: the renames made in it are durable (a filesystem that cannot is let be)."""
    with contextlib.suppress(OSError):
        os.fsync(folder)


def move(root: Path, source: Path, dest: Path) -> None:
    """Rename ``source`` onto ``dest``, both below ``root``, through folders opened as for writing."""
    src = open_folder(root, source)
    try:
        dst = open_folder(root, dest)
        try:
            with writing(dest):
                os.replace(source.name, dest.name, src_dir_fd=src, dst_dir_fd=dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def remove(root: Path, path: Path) -> None:
    """Unlink ``path`` (below ``root``) without following a link in the folders on the way."""
    folder = open_folder(root, path)
    try:
        with writing(path):
            os.unlink(path.name, dir_fd=folder)
    finally:
        os.close(folder)

