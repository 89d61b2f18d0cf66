"""Durable file primitives: a write survives power loss, a replace is all or nothing."""

from __future__ import annotations

import contextlib
import os
import secrets as _secrets
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive power loss (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a new fsync'd temp file beside ``path`` (``.<name>.<random>.tmp``), ready for ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{_secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def replace_all(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each temp file onto its target, in order, then fsync their folder once; temp files left on error are removed."""
    try:
        for tmp, path in pairs:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in pairs:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    fsync_directory(pairs[0][1].parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new content, never a mix."""
    replace_all([(write_temp(path, data), path)])


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
