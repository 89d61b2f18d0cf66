"""The (path, size, mtime_ns) cache of hashes and probes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lipbatch.hashing import HashCache
from lipbatch.media import MediaError, MediaInfo


def touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_hashes_are_cached_until_the_file_changes(tmp_path: Path):
    data = tmp_path / "a.bin"
    data.write_bytes(b"x" * 3_000_000)
    cache_file = tmp_path / "c.json"
    cache = HashCache(cache_file)
    assert cache.sha256(data) == (hashlib.sha256(b"x" * 3_000_000).hexdigest(), 3_000_000)
    assert cache.sha256(data)[0] == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert cache.hash_reads == 1
    cache.save()

    again = HashCache(cache_file)
    again.sha256(data)
    assert again.hash_reads == 0

    data.write_bytes(b"y" * 3_000_000)
    touch_later(data)
    third = HashCache(cache_file)
    assert third.sha256(data)[0] == hashlib.sha256(b"y" * 3_000_000).hexdigest()
    assert third.hash_reads == 1


def test_probes_are_cached_including_failures(tmp_path: Path):
    calls = []

    def prober(path: Path) -> MediaInfo:
        calls.append(path.name)
        if path.suffix == ".txt":
            raise MediaError(f"{path}: not readable media (nope)")
        return MediaInfo(duration=2.5, has_video=True, has_audio=False, width=4, height=4, fps=25.0)

    good, bad = tmp_path / "a.mp4", tmp_path / "b.txt"
    good.write_bytes(b"1")
    bad.write_bytes(b"2")
    cache_file = tmp_path / "c.json"
    cache = HashCache(cache_file, prober=prober)
    assert cache.probe(good).duration == 2.5
    with pytest.raises(MediaError):
        cache.probe(bad)
    cache.save()
    again = HashCache(cache_file, prober=prober)
    assert again.probe(good) == MediaInfo(2.5, True, False, 4, 4, 25.0)
    with pytest.raises(MediaError, match="nope"):
        again.probe(bad)
    assert calls == ["a.mp4", "b.txt"] and again.probe_calls == 0


def test_a_corrupt_cache_file_is_ignored(tmp_path: Path):
    data = tmp_path / "a.bin"
    data.write_bytes(b"abc")
    cache_file = tmp_path / "c.json"
    cache_file.write_text("{not json")
    cache = HashCache(cache_file)
    assert cache.sha256(data)[0] == hashlib.sha256(b"abc").hexdigest()
    cache.save()
    assert HashCache(cache_file).sha256(data) and HashCache(cache_file).hash_reads == 0


def test_a_file_changing_while_hashed_is_not_cached(tmp_path: Path):
    data = tmp_path / "a.bin"
    data.write_bytes(b"abc")

    def racing_reader(path: Path) -> str:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        path.write_bytes(b"abcd")
        return digest

    cache = HashCache(tmp_path / "c.json", reader=racing_reader)
    cache.sha256(data)
    cache.sha256(data)
    assert cache.hash_reads == 2


def test_unused_entries_are_kept_while_their_file_exists(tmp_path: Path):
    """validate (inputs) and run (outputs) share one cache file: neither may evict the other's entries."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for i, path in enumerate((a, b, c)):
        path.write_bytes(bytes([i]))
    cache_file = tmp_path / "c.json"
    first = HashCache(cache_file)
    for path in (a, b, c):
        first.sha256(path)
    first.save()
    c.unlink()
    second = HashCache(cache_file)
    second.sha256(a)
    second.save()
    stored = json.loads(cache_file.read_text())["files"]
    assert sorted(stored) == [str(a), str(b)]  # b kept (unused, still there), c dropped (gone)
    third = HashCache(cache_file)
    third.sha256(b)
    assert third.hash_reads == 0
