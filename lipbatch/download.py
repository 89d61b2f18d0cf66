"""Verified, resumable downloads of results: the last step before a job counts as done.

A result is paid for, so a flaky CDN must never cost a re-generation nor leave
a half file that looks finished. ``download`` streams to ``.<name>.<random>.part``
beside ``dest`` (memory stays at one chunk), hashing as it writes; a transfer
that is cut short or reset resumes with ``Range: bytes=N-`` when the server
answers 206 from exactly byte N, otherwise it starts over. The finished file is
fsync'd, checked against Content-Length / Content-Range, decoded end to end
(``media.verify_playable``, in a worker thread or a child process: ``lipbatch.verifier``)
and only then renamed onto ``dest`` atomically.

Decisions where the docs left room:

* Result URLs are plain GETs (every provider's docs): credential-looking
  headers the shared client carries (Authorization, Cookie, X-API-KEY, ...)
  and the client's ``auth`` are stripped, and URLs appear in errors without
  their query string (signed URLs carry signatures there).
* 401/403/404/410, and a 400 whose body says "expired" (some object stores),
  raise ``ResultExpiredError``: only a fresh URL from polling can help. Other
  4xx are ``PermanentError``; 408/425/429/5xx and network errors are retried.
* ``max_attempts`` bounds consecutive attempts that make no progress; a
  transfer that keeps advancing may go on, up to ``4 * max_attempts`` requests.
* ``If-Range`` (strong ETag, else Last-Modified) guards resumes against a
  result that changed between attempts; a 206 from another offset or of another
  total restarts from zero.
* We ask for ``Accept-Encoding: identity``; a server that compresses anyway is
  accepted (httpx decodes) but is never resumed and its length is not checked
  against Content-Length (which counts compressed bytes).
* A complete transfer that is not a playable video raises
  ``CorruptDownloadError`` (a ``TransientError``): the runner retries it
  a bounded number of times, which also refetches the URL when needed.
* The temp file and the rename never go through a symlink below the output
  folder (``lipbatch.confined``); a local write failure (disk full,
  permissions, a vanished folder) is an ``OutputWriteError`` naming the path:
  retrying the transfer cannot fix it, so it is not retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from lipbatch import batched, confined
from lipbatch.errors import PermanentError, ProviderError, TransientError
from lipbatch.folder_syncs import FolderSyncs
from lipbatch.loop_while_fast import LoopWhileFast
from lipbatch.media import MediaError
from lipbatch.providers.base import error_message, parse_retry_after
from lipbatch.verifier import Verify, verify_in_thread

_EXPIRED = frozenset({401, 403, 404, 410})
_RETRYABLE = frozenset({408, 425, 429})
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_CREDENTIAL_HINTS = ("api-key", "api_key", "apikey", "api-id", "token", "secret")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_MAX_RETRY_AFTER = 60.0
_NAMES = random.Random()  # temp names need only be unlikely to collide (created O_EXCL), as in ``tempfile``;
# ``secrets`` read the OS's randomness each time, letting go of the event loop's GIL


@dataclass(frozen=True)
class Downloaded:
    sha256: str
    size: int
    path: Path
    stat: os.stat_result | None = field(default=None, compare=False)  # as written (a rename keeps size, mtime)


class ResultExpiredError(ProviderError):
    """The result URL has expired or is gone: poll the task again for a fresh URL."""


class CorruptDownloadError(TransientError):
    """The transfer completed but the bytes are not a playable video (removed, never renamed)."""


def _safe_url(url: httpx.URL | str) -> str:
    """The URL without query or fragment: signed URLs carry their signature there."""
    return str(httpx.URL(str(url)).copy_with(query=None, fragment=None))


def _strip_credentials(headers: httpx.Headers) -> None:
    for name in list(headers.keys()):
        lowered = name.lower()
        if lowered in _CREDENTIAL_HEADERS or any(hint in lowered for hint in _CREDENTIAL_HINTS):
            del headers[name]


class _Retry(Exception):
    """This attempt failed in a way another attempt may fix."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Part:
    """The temp file being filled and the running sha256 of exactly the bytes it holds.

    Created, and later renamed onto ``dest``, relative to a folder opened without following
    symlinks from the output folder (``lipbatch.confined``); OS errors are ``OutputWriteError``.
    """

    def __init__(self, root: Path, dest: Path, buffer: int = 1 << 20, prepare: Callable[[], None] | None = None):
        self.root = root
        self.prepare = prepare  # run in the hop that creates the temp file, just before it
        self.buffer = buffer  # bytes held in memory before a worker-thread write
        self.dest = dest
        self.name = f".{dest.name}.{_NAMES.getrandbits(48):012x}.part"
        self.path = dest.with_name(self.name)
        self.size = 0
        self.hash = hashlib.sha256()
        self._folder: int | None = None
        self._fd: int | None = None  # the temp file, written with os.write (no file object: one fstat less)
        self._pending = bytearray()  # received, counted in ``size``, not yet on disk
        self.stat: os.stat_result | None = None  # once finished

    def open(self) -> None:
        """``prepare()``, then create the temp file in the output folder, refusing symlinks (``lipbatch.confined``)."""
        if self.prepare is not None:
            with confined.writing(self.dest):  # e.g. the folder vanished: this job's write error, not the run's
                self.prepare()
        self._folder = confined.open_folder(self.root, self.dest)
        with confined.writing(self.dest):
            try:
                self._fd = confined.create_file(self._folder, self.name)
            except BaseException:
                os.close(self._folder)
                self._folder = None
                raise

    def _write(self, chunk: bytes | bytearray) -> None:
        if self._folder is None:  # opened late: in the hop of its first write
            self.open()
        assert self._fd is not None
        view = memoryview(chunk)
        with confined.writing(self.dest):
            while view:
                view = view[os.write(self._fd, view) :]
        self.hash.update(chunk)

    async def write(self, chunk: bytes | bytearray) -> None:
        """Take ``chunk``; to disk once ``buffer`` bytes are pending (a small result: in ``finish``'s hop)."""
        self._pending += chunk
        self.size += len(chunk)
        if len(self._pending) >= self.buffer:
            data, self._pending = self._pending, bytearray()
            await trio.to_thread.run_sync(self._write, data)

    async def restart(self) -> None:
        def truncate() -> None:
            if self._fd is None:
                return
            with confined.writing(self.dest):
                os.lseek(self._fd, 0, os.SEEK_SET)
                os.ftruncate(self._fd, 0)

        self._pending = bytearray()
        await trio.to_thread.run_sync(truncate)
        self.size = 0
        self.hash = hashlib.sha256()

    async def finish(self) -> None:
        """Write what is pending, fsync and close the temp file, in one worker-thread hop."""
        data, self._pending = self._pending, bytearray()

        def sync_close() -> None:
            if data or self._folder is None:
                self._write(data)
            with confined.writing(self.dest):
                os.fsync(self._fd)
                self.stat = os.fstat(self._fd)
                fd, self._fd = self._fd, None
                os.close(fd)

        await batched.run_sync(sync_close)

    async def publish(self, folder_syncs: FolderSyncs, renames: LoopWhileFast | None = None) -> None:
        """Rename into place (on the loop while ``renames`` are fast, else in a worker-thread hop);
        the folder's fsync is ``folder_syncs``' (shared with other results)."""
        def rename() -> None:
            assert self._folder is not None
            with confined.writing(self.dest):
                confined.publish(self._folder, self.name, self.dest.name)
            folder, self._folder = self._folder, None  # placed: nothing left for ``discard``
            with confined.writing(self.dest):
                folder_syncs.after_rename(folder)

        if renames is None:
            await batched.run_sync(rename)
        else:
            await renames.run(rename)

    def discard(self) -> None:
        """Close and remove the temp file, unless it was published."""
        if self._folder is None:
            return
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self.name, dir_fd=self._folder)
        os.close(self._folder)


@dataclass
class _Progress:
    """What earlier attempts learned about the resource."""

    total: int | None = None  # the full size, when the server said
    validator: str | None = None  # for If-Range


async def download(
    http: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    root: Path | None = None,
    verify: Verify | None = verify_in_thread,
    chunk_size: int = 1 << 20,
    max_attempts: int = 5,
    retry_delay: float = 0.5,
    before_publish: Callable[[str, int], None] | None = None,
    prepare: Callable[[], None] | None = None,
    folder_syncs: FolderSyncs | None = None,
    known_folders: set[Path] | None = None,
    renames: LoopWhileFast | None = None,
) -> Downloaded:
    """Fetch ``url`` into ``dest``: complete, verified and atomically in place, or not at all.

    Raises ``ResultExpiredError`` (re-poll for a fresh URL), ``TransientError``
    after ``max_attempts`` failed attempts, ``CorruptDownloadError`` when the
    bytes are not a playable video, ``PermanentError`` for other 4xx answers.
    ``retry_delay`` is the base of the jittered backoff between attempts. ``root`` is the output
    folder: no folder between it and ``dest`` may be a symlink (default: ``dest``'s own folder).
    Raises ``OutputWriteError`` when the file cannot be written (disk full, permissions, a symlink).
    ``verify`` decodes the finished file (``lipbatch.verifier``; None: bytes only, no decoding).
    ``before_publish(sha256, size)`` runs after verification and before the rename: the runner
    records the bytes it is about to place, so a crash right after the rename leaves a file the
    state knows, never one it would take for a stranger's. ``prepare()`` runs in the worker thread
    that creates the temp file, just before it (the runner moves an earlier take out of the way).
    ``folder_syncs`` makes the rename durable (``lipbatch.folder_syncs``; default: in the rename's hop).
    ``known_folders``: output folders this run has already written into (a download adds its own). The
    first result for a folder creates its temp file before fetching, so a folder that cannot take it
    is refused before a byte is fetched; the others create it (and ``prepare()``) in the hop of the first
    write, usually the one that also fsyncs: one worker-thread hop less per result. ``renames``: where
    the rename into place runs (``lipbatch.loop_while_fast``; default: a worker-thread hop).
    """
    dest = Path(dest)
    part = _Part(Path(root) if root is not None else dest.parent, dest, buffer=chunk_size, prepare=prepare)

    if known_folders is None or dest.parent not in known_folders:
        await batched.run_sync(part.open)  # a folder that cannot take the result: refused before fetching
        if known_folders is not None:
            known_folders.add(dest.parent)
    try:
        await _transfer(http, url, part, max_attempts=max_attempts, retry_delay=retry_delay)
        await part.finish()
        try:
            if verify is not None:
                await verify(part.path)
        except MediaError as exc:
            raise CorruptDownloadError(
                f"{_safe_url(url)}: downloaded {part.size} bytes that are not a playable video ({exc})"
            ) from exc
        if before_publish is not None:
            before_publish(part.hash.hexdigest(), part.size)
        await part.publish(folder_syncs if folder_syncs is not None else FolderSyncs(deferred=False), renames)
        return Downloaded(sha256=part.hash.hexdigest(), size=part.size, path=dest, stat=part.stat)
    finally:
        part.discard()


async def _transfer(
    http: httpx.AsyncClient, url: str, part: _Part, *, max_attempts: int, retry_delay: float
) -> None:
    progress = _Progress()
    failures = requests = 0
    while True:
        requests += 1
        start = part.size
        try:
            await _attempt(http, url, part, progress)
            return
        except (_Retry, httpx.TransportError) as exc:
            if progress.total is not None and part.size == progress.total:
                return  # every byte arrived; the connection failed only afterwards
            failures = 0 if part.size > start else failures + 1
            if failures >= max_attempts or requests >= 4 * max_attempts:
                raise TransientError(
                    f"download of {_safe_url(url)} failed after {requests} attempts: {str(exc) or type(exc).__name__}"
                ) from exc
            retry_after = exc.retry_after if isinstance(exc, _Retry) else None
            if retry_after is not None:
                delay = min(retry_after, _MAX_RETRY_AFTER)
            else:
                delay = retry_delay * 2 ** (failures - 1) * random.random() if failures else 0.0
            await trio.sleep(delay)


async def _attempt(http: httpx.AsyncClient, url: str, part: _Part, progress: _Progress) -> None:
    headers = {"Accept-Encoding": "identity"}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
        if progress.validator:
            headers["If-Range"] = progress.validator
    request = http.build_request("GET", url, headers=headers)
    _strip_credentials(request.headers)
    response = await http.send(request, stream=True, follow_redirects=True, auth=None)
    try:
        if response.status_code == 416:
            await _start_over(part, progress)
            raise _Retry("the server cannot resume from this offset; starting over")
        await _check_status(response, url)
        end = await _start_body(response, part, progress)
        # Every piece goes to the part as it arrives (it buffers), so bytes received before a reset are kept.
        async for piece in response.aiter_bytes():
            if end is not None and part.size + len(piece) > end:
                await _start_over(part, progress)
                raise _Retry("the server sent more bytes than it announced")
            await part.write(piece)
        if end is not None and part.size < end:
            raise _Retry(f"transfer ended at byte {part.size} of {end}")
    finally:
        await response.aclose()


async def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    await response.aread()
    if status in _EXPIRED or (status == 400 and "expired" in response.text.lower()):
        raise ResultExpiredError(
            f"result URL {_safe_url(url)} is expired or gone; poll the task for a fresh one", status=status
        )
    if status in _RETRYABLE or status >= 500:
        raise _Retry(f"HTTP {status}", parse_retry_after(response.headers.get("retry-after")))
    raise PermanentError(f"download of {_safe_url(url)}: {error_message(response)}", status=status)


async def _start_over(part: _Part, progress: _Progress) -> None:
    await part.restart()
    progress.total = progress.validator = None


async def _start_body(response: httpx.Response, part: _Part, progress: _Progress) -> int | None:
    """Line the temp file up with this response; returns the byte offset the body should end at."""
    encoded = response.headers.get("content-encoding", "identity").lower() not in ("identity", "")
    etag = response.headers.get("etag")
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        total = int(match[3]) if match and match[3] != "*" else None
        if (
            match is None
            or encoded
            or int(match[1]) != part.size
            or (progress.total is not None and total not in (None, progress.total))
            or bool(etag and progress.validator and progress.validator.startswith('"') and etag != progress.validator)
        ):
            await _start_over(part, progress)
            raise _Retry("the server resumed from another offset or another version; starting over")
        progress.total = total if total is not None else progress.total
        return int(match[2]) + 1
    if part.size:
        await _start_over(part, progress)  # the server ignored Range (or If-Range said the file changed)
    length = response.headers.get("content-length")
    progress.total = int(length) if length and length.isdigit() and not encoded else None
    if etag and not etag.startswith("W/"):
        progress.validator = etag
    else:
        progress.validator = response.headers.get("last-modified")
    return progress.total
