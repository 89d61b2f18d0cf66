"""Content hashes and media probes of local inputs, cached by (path, size, mtime_ns).

Job keys hash input *bytes*, so every validate/plan needs the sha256 of every
local input, and validation needs their durations. Rereading gigabytes of
media on each call would make ``lipbatch validate`` unusable on a large
campaign, so both results are kept in a small JSON file beside the state file
(``<state>.hashes.json``) and reused while a file's size and mtime_ns are
unchanged. ``hash_reads`` and ``probe_calls`` count the real reads, which is
what tests assert on.

A file that changes between ``stat`` and the end of hashing is hashed but not
cached, so a concurrent edit never leaves a stale digest behind. The cache is
an optimisation only: a missing, unreadable or corrupt cache file is ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs

from lipbatch.media import MediaError, MediaInfo, probe
from lipbatch.state import atomic_write_bytes

CACHE_FORMAT = 1
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The user's cache folder for lipbatch (``LIPBATCH_CACHE_DIR`` wins)."""
    override = os.environ.get("LIPBATCH_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("lipbatch", appauthor=False))


def cache_path_for(state_path: Path) -> Path:
    """Where the cache of a project whose state lives at ``state_path`` goes (named by that path's hash)."""
    digest = hashlib.sha256(str(Path(state_path).resolve()).encode()).hexdigest()[:24]
    return cache_dir() / "hashes" / f"{digest}.json"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (memory flat whatever the size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """sha256 and probe results of local files, persisted between runs.

    ``reader`` and ``prober`` are injectable so tests can count or fake the
    expensive calls; the counters count them either way.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        reader: Callable[[Path], str] = file_sha256,
        prober: Callable[[Path], MediaInfo] = probe,
    ):
        self.path = path
        self.hash_reads = 0
        self.probe_calls = 0
        self._reader = reader
        self._prober = prober
        self._stored: dict[str, dict[str, Any]] = self._load() if path else {}
        self._used: dict[str, dict[str, Any]] = {}
        self._dirty = False

    @classmethod
    def for_state(cls, state_path: Path) -> HashCache:
        return cls(cache_path_for(state_path))

    def _load(self) -> dict[str, dict[str, Any]]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return {}
        entries = data.get("files")
        return entries if isinstance(entries, dict) else {}

    def _entry(self, path: Path, st: os.stat_result | None = None) -> tuple[dict[str, Any], os.stat_result]:
        """The cache entry for ``path``'s current (size, mtime_ns); a fresh one if it changed.

        ``st``: the caller's fresh ``stat`` of ``path`` (one system call less per file).
        """
        key = str(path)
        st = st if st is not None else path.stat()
        entry = self._used.get(key) or self._stored.get(key)
        if not (
            isinstance(entry, dict)
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
        ):
            entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            self._dirty = True
        if key not in self._used:
            self._used[key] = entry
            if key not in self._stored:
                self._dirty = True
        return entry, st

    def _unchanged_since(self, path: Path, st: os.stat_result) -> bool:
        now = path.stat()
        return (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    def sha256(self, path: Path, st: os.stat_result | None = None) -> tuple[str, int]:
        """(hex digest, size in bytes) of ``path``; reads the file only when it changed."""
        entry, st = self._entry(path, st)
        digest = entry.get("sha256")
        if not isinstance(digest, str):
            digest = self._reader(path)
            self.hash_reads += 1
            if self._unchanged_since(path, st):
                entry["sha256"] = digest
                self._dirty = True
        return digest, st.st_size

    def probe(self, path: Path) -> MediaInfo:
        """``media.probe`` of ``path``, cached like the hash (failures too)."""
        entry, st = self._entry(path)
        if "probe_error" in entry:
            raise MediaError(entry["probe_error"])
        cached = entry.get("probe")
        if isinstance(cached, dict):
            try:
                return MediaInfo(**cached)
            except TypeError:
                pass
        self.probe_calls += 1
        try:
            info = self._prober(path)
        except MediaError as exc:
            if self._unchanged_since(path, st):
                entry["probe_error"] = str(exc)
                self._dirty = True
            raise
        if self._unchanged_since(path, st):
            entry["probe"] = dataclasses.asdict(info)
            self._dirty = True
        return info

    def remember(self, path: Path, digest: str, st: os.stat_result | None = None) -> None:
        """Record a digest the caller just computed (a download hashed while streaming), so the
        next check of this file reads nothing. ``st``: the file's stat, when the caller has it."""
        entry, _st = self._entry(path, st)
        entry["sha256"] = digest
        self._dirty = True

    def save(self) -> None:
        """Write the entries (atomically); errors are ignored, it is only a cache.

        Several commands share one cache file (validate hashes inputs, run hashes outputs), so entries
        this process did not use are kept while their file still exists.
        """
        if self.path is None:
            return
        kept = {key: entry for key, entry in self._stored.items() if key not in self._used and os.path.exists(key)}
        if not self._dirty and len(kept) + len(self._used) == len(self._stored):
            return
        payload = json.dumps({"format": CACHE_FORMAT, "files": kept | self._used}, sort_keys=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, payload.encode("utf-8"))
        except OSError:
            return
        self._stored = kept | self._used
        self._dirty = False
