"""Stop repeating a failure: a value the provider keeps refusing (a voice id, an avatar id) stops its jobs.

A *cause* is one input value of one account: ``(account, "voice_id", "pNInz...")``.
Until a create carrying it has been accepted (the value is *proven*), at most
``threshold`` minus its refusals so far (at least one) creates carrying it are
out at once, so a bad value costs at most ``threshold`` refused creates however
many slots the account has, while a good one is slowed by nothing. When the
provider refuses ``threshold`` of them with the same permanent error, the cause
*trips*: every other job carrying it ends ``error_blocked`` before its create,
reported once, with the manifest line that set the value.

Which value a refusal is about: the ones its message names; when it names
none, every unproven value of the job (a value proven by an accepted create is
never blamed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from lipbatch.errors import ModerationError, PermanentError, ProviderError
from lipbatch.model import Job
from lipbatch.positions import describe, value_paths

# job param -> (what a producer calls it, where the manifest sets it)
_PARAMS = {"voice_id": "voice id", "speaker": "PixVerse speaker", "avatar_id": "avatar id"}


@dataclass(frozen=True, order=True)
class Cause:
    account: str
    param: str
    value: str


@dataclass(frozen=True)
class Trip:
    """A cause that tripped: the provider's error and where the manifest sets the value."""

    cause: Cause
    error: str
    where: str | None

    def describe(self) -> str:
        what = f"{_PARAMS[self.cause.param]} '{self.cause.value}'"
        at = f", set at {self.where}" if self.where else ""
        return f"{self.cause.account} refused {what} ({self.error}){at}"


class Breaker:
    """Per run: proven values, refusals counted per (cause, error), and the causes that tripped."""

    def __init__(self, manifest: Path, kinds: dict[str, str], threshold: int = 3) -> None:
        self.manifest = manifest
        self.kinds = kinds  # account -> kind, to find a voice's manifest key
        self.threshold = threshold
        self.proven: set[Cause] = set()
        self.tripped: dict[Cause, Trip] = {}
        self._trying: dict[Cause, int] = {}  # creates out now carrying the unproven cause
        self._refused: dict[Cause, int] = {}
        self._refusals: dict[tuple[Cause, str], int] = {}
        self._changed = trio.Event()

    def causes(self, job: Job) -> list[Cause]:
        return sorted(Cause(job.account, param, str(job.params[param])) for param in _PARAMS
                      if param in job.params)

    def trip_for(self, job: Job) -> Trip | None:
        return next((self.tripped[c] for c in self.causes(job) if c in self.tripped), None)

    def _room(self, cause: Cause) -> int:
        return max(1, self.threshold - self._refused.get(cause, 0))

    def _waits(self, cause: Cause) -> bool:
        return (cause not in self.proven and cause not in self.tripped
                and self._trying.get(cause, 0) >= self._room(cause))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @asynccontextmanager
    async def probe(self, job: Job) -> AsyncIterator[None]:
        """Around a create: hold it while as many creates carrying its unproven values are out as may fail."""
        entered: list[Cause] = []
        try:
            for cause in self.causes(job):
                while self._waits(cause):
                    await self._changed.wait()
                if cause not in self.proven:
                    self._trying[cause] = self._trying.get(cause, 0) + 1
                    entered.append(cause)
            yield
        finally:
            for cause in entered:
                self._trying[cause] -= 1
            self._notify()

    def accepted(self, job: Job) -> None:
        self.proven.update(self.causes(job))

    def refused(self, job: Job, error: ProviderError) -> Trip | None:
        """Count a create refusal; the ``Trip`` when this one trips a cause."""
        if not isinstance(error, PermanentError) or isinstance(error, ModerationError) or error.status == 401:
            return None
        unproven = [c for c in self.causes(job) if c not in self.proven]
        named = [c for c in unproven if c.value in error.message]
        for cause in named or unproven:
            key = (cause, error.message)
            self._refused[cause] = self._refused.get(cause, 0) + 1
            self._refusals[key] = self._refusals.get(key, 0) + 1
            if self._refusals[key] >= self.threshold and cause not in self.tripped:
                self.tripped[cause] = Trip(cause, str(error), self._where(cause, job))
                return self.tripped[cause]
        return None

    def _where(self, cause: Cause, job: Job) -> str | None:
        kind = self.kinds.get(cause.account, "")
        return describe(self.manifest, value_paths(job.voice, job.clip, cause.account, kind, cause.param))
