"""OS errors as sentences: what failed, on which file, and what to do about it."""

from __future__ import annotations

import errno
from pathlib import Path

_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space, then run again",
    errno.EDQUOT: "the disk quota is used up: free some space, then run again",
    errno.EACCES: "permission denied: make it (and its folder) writable by this user, then run again",
    errno.EPERM: "not permitted: make it (and its folder) writable by this user, then run again",
    errno.EROFS: "the file system is read-only: put the outputs and state on a writable disk",
    errno.ENOENT: "it (or its folder) vanished while lipbatch was using it: check the folder, then run again",
    errno.EISDIR: "a folder is in the way: move it away, then run again",
    errno.ENOTDIR: "a file is where a folder should be: move it away, then run again",
}


def describe_os_error(error: OSError, path: Path | str | None = None) -> str:
    """``<path>: <what to do>`` for ``error``; the path is the one the OS named, else ``path``."""
    where = error.filename if error.filename is not None else path
    advice = _ADVICE.get(error.errno or 0, f"{error.strerror or error}: check the file and the disk, then run again")
    return f"{where}: {advice}" if where is not None else advice
