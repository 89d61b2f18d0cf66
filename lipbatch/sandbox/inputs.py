"""The inputs emulators are given: the bytes behind input URLs, and their probed media info."""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import unquote, unquote_to_bytes, urlsplit

import trio

from lipbatch.media import MediaInfo
from lipbatch.sandbox.render import probe_bytes
from lipbatch.sandbox.request_helpers import is_loopback_host
from lipbatch.sandbox.results import FILES_PREFIX


class Inputs:
    """Resolves input URLs: data URIs, this sandbox's own files and URLs emulators know."""

    def __init__(self, file_bytes: Callable[[str | None], bytes | None]) -> None:
        self.file_bytes = file_bytes  # ``Sandbox.file_bytes``: the sandbox's published files
        self.resolvers: list[Callable[[str], bytes | None]] = []
        self.clear()

    def clear(self) -> None:
        """Forget the hosts seen (resolvers stay: emulators add theirs once)."""
        self.hosts: set[str] = set()

    def note_host(self, host: str | None) -> None:
        """Remember a Host header this sandbox was reached by (its own URLs, for fetch_input)."""
        if host:
            self.hosts.add(host.lower())

    def fetch(self, url: str) -> bytes | None:
        """Bytes behind an input URL the emulator was given: data URIs, this sandbox's own
        files, or None (a remote URL the sandbox cannot reach: the emulator then renders a
        synthetic stand-in)."""
        if url.startswith("data:"):
            header, sep, payload = url[5:].partition(",")
            if not sep:
                return None
            try:
                if header.endswith(";base64"):
                    return base64.b64decode(unquote(payload), validate=False)
                return unquote_to_bytes(payload)
            except ValueError:
                return None
        parts = urlsplit(url)
        if not (is_loopback_host(parts.hostname) or (parts.netloc.lower() in self.hosts)):
            return None
        segments = parts.path.split("/")
        if parts.path.startswith(FILES_PREFIX + "/") and len(segments) >= 4:
            data = self.file_bytes(segments[3])
            if data is not None:
                return data
        for resolver in self.resolvers:
            data = resolver(url)
            if data is not None:
                return data
        return None


_PROBED: OrderedDict[tuple[str, str], MediaInfo | None] = OrderedDict()
_PROBED_KEEP = 256
_DIGESTS: OrderedDict[int, tuple[bytes, str]] = OrderedDict()  # id -> (the object, its sha256)
_DIGESTS_KEEP = 4


async def probe_input(data: bytes | None, suffix: str = ".mp4") -> MediaInfo | None:
    """Probe input bytes off the event loop (None for undecodable bytes).

    Remembered by content: a campaign sends one shared clip with every create, and probing it
    again on every create took a fifth of the worker-thread time in benchmarks/overhead.py.
    """
    if not data:
        return None
    known = _DIGESTS.get(id(data))
    if known is None or known[0] is not data:  # the same object again (a shared clip): not hashed again
        known = (data, hashlib.sha256(data).hexdigest())
        _DIGESTS[id(data)] = known
        while len(_DIGESTS) > _DIGESTS_KEEP:
            _DIGESTS.popitem(last=False)
    key = (known[1], suffix)
    if key in _PROBED:
        _PROBED.move_to_end(key)
        return _PROBED[key]
    info = await trio.to_thread.run_sync(probe_bytes, data, suffix)
    _PROBED[key] = info
    while len(_PROBED) > _PROBED_KEEP:
        _PROBED.popitem(last=False)
    return info
