"""Fetch phase: the result into the output folder, verified, and the job recorded DONE.

Downloads stream to a temp file beside the output and are renamed into place
(``lipbatch.download``); an expired URL is replaced by a fresh one from a poll.
Before the new take lands, lipbatch's old take at that path moves to ``takes/``
(``Outputs.make_room``); a file lipbatch did not write blocks the job instead,
and the paid result waits at the provider for the next run.

A result that cannot be written here (disk full, permissions, a folder that
vanished, a symlink below the output folder: ``lipbatch.confined``) fails that
job only; the record keeps the paid task, so a rerun downloads it.

Restoring a done job whose output went missing: when the provider no longer
knows the task, or its result is gone, the job stays DONE and is marked
``output_lost`` (never FAILED); only ``--regenerate-missing`` or ``redo`` pays
for it again.
"""

from __future__ import annotations

import time

import httpx
import trio

from lipbatch import download as dl
from lipbatch.confined import OutputWriteError
from lipbatch.engine.accounts import AccountRun
from lipbatch.engine.control import JobEnded
from lipbatch.engine.outputs import copy_file
from lipbatch.errors import PermanentError, ProviderError, TransientError
from lipbatch.model import Job
from lipbatch.providers.base import Phase
from lipbatch.state import OUTPUT_LOST, JobStatus

_URL_MARGIN = 30.0  # seconds before a result URL's expiry at which it is no longer used


class FetchPhase:
    """Mixin of ``Runner``: from a finished task to verified files at every output path."""

    async def _fetch(self, job: Job, acct: AccountRun, task_id: str, url: str | None,
                     expires_at: float | None, *, restoring: bool = False) -> None:
        """Download into the first output, copy to the others, record DONE."""
        await self.state.flush()  # a task that finished at once: its id is on disk before the download

        def make_room() -> None:  # in the download's first worker-thread hop
            for output in job.outputs:
                if not self.outputs.make_room(output, job.key, force=self.options.force):
                    raise JobEnded("blocked", f"{output} holds a file lipbatch did not write; the paid result "
                                              "waits at the provider: move that file away and rerun, or --force "
                                              "replaces it")

        dest = self.outputs.path(job.output)
        last: Exception | None = None
        for _attempt in range(self.options.result_attempts):
            if url is None or (expires_at is not None and expires_at - _URL_MARGIN * self.scale <= time.time()):
                url, expires_at = await self._fresh_url(job, acct, task_id, restoring=restoring)
            assert self.download_http is not None
            try:
                got = await dl.download(
                    self.download_http, url, dest, root=self.outputs.dir, verify=self.verify,
                    retry_delay=max(0.001, 0.5 * self.scale), prepare=make_room, folder_syncs=self.folder_syncs,
                    known_folders=self.known_folders, renames=self.renames,
                    before_publish=lambda sha, size: self.state.update(job.key, output_sha256=sha, output_size=size))
            except OutputWriteError as exc:  # local: retrying cannot help; the paid result waits
                raise JobEnded("failed", f"{exc} (the result is paid for and waits at the provider: "
                                         "a rerun downloads it)") from exc
            except dl.ResultExpiredError as exc:
                last, url = exc, None
                self.emit("job_url_expired", job, message=str(exc))
                continue
            except TransientError as exc:  # CorruptDownloadError included
                host = httpx.URL(url).host or "?"
                last, url = exc, None
                self.emit("job_retry", job, message=f"download: {exc}", host=host, delay=0.0,
                          next_attempt=round(time.time(), 3))  # at once, from a freshly polled URL
                continue
            except PermanentError as exc:
                last, url = exc, None
                continue
            self.hashes.remember(dest, got.sha256, got.stat)
            written, failure = [job.output], None
            for other in job.outputs[1:]:
                try:
                    await trio.to_thread.run_sync(
                        lambda other=other: copy_file(dest, self.outputs.path(other), root=self.outputs.dir))
                except OutputWriteError as exc:
                    failure = exc
                    continue
                self.hashes.remember(self.outputs.path(other), got.sha256)
                written.append(other)
            record = self.state.job(job.key)
            outputs = sorted({*(record.outputs if record else []), *written})
            self.state.update(job.key, status=JobStatus.DONE, output_sha256=got.sha256, output_size=got.size,
                              outputs=outputs, error=None, error_kind=None)
            if failure is not None:  # done where it could be written; a rerun copies the rest
                raise JobEnded("failed", str(failure))
            self.emit("job_done", job, sha256=got.sha256, size=got.size, outputs=list(job.outputs), take=job.take)
            return
        raise JobEnded("not_run", f"result not downloaded ({last}); a rerun downloads it")

    async def _fresh_url(self, job: Job, acct: AccountRun, task_id: str, *,
                         restoring: bool = False) -> tuple[str, float | None]:
        if restoring:
            try:
                state = await self._call(acct, lambda: acct.client.poll(task_id))
            except PermanentError as exc:
                self._lost(job, f"the provider no longer has task {task_id} ({exc})", exc)
        else:
            state = await self._poll(job, acct, task_id)
        if state.phase is not Phase.SUCCEEDED or not state.result_url:
            if restoring:
                self._lost(job, f"task {task_id} has no result to download any more ({state.raw_status})")
            raise JobEnded("not_run", f"task {task_id} has no result to download now ({state.raw_status})")
        self.state.update(job.key, result_url=state.result_url, result_expires_at=state.result_expires_at)
        return state.result_url, state.result_expires_at

    def _lost(self, job: Job, reason: str, cause: ProviderError | None = None) -> None:
        """The output file and the provider's copy are both gone: DONE stays DONE, marked lost."""
        self.state.update(job.key, error=f"output lost: {reason}", error_kind=OUTPUT_LOST)
        raise JobEnded("lost", f"output lost: {reason}; `lipbatch run --regenerate-missing` or "
                               f"`lipbatch redo` pays for a new take") from cause
