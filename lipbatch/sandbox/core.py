"""What every provider emulator shares: the ``Sandbox`` façade over the sandbox's parts.

The signatures of ``Sandbox`` (and the helpers re-exported here) are the
contract between the sandbox core and the emulators (``sandbox/useapi.py``,
``magichour.py``, ``aimlapi_pixverse.py``, ``creatify.py``); emulators know the
providers' contracts and nothing of lipbatch's runner. Each part keeps its own
semantics in its module:

- ``config.py``: ``SandboxConfig`` and its validation; ``emulator.py``: the
  ``Emulator`` protocol.
- ``clock.py``: virtual time; ``background.py``: timers and callbacks.
- ``schedule.py``: task lifecycles, capacity and ``max_active_tasks``.
- ``faults.py``: injected faults; ``credits.py``: credits per account.
- ``stats.py``: what ``GET /_sandbox/stats`` counts.
- ``results.py``: published result files and signed URLs (their bytes:
  ``files.py``); ``inputs.py``: input URLs and probing; ``render_cache.py``:
  rendering results once per content.
- ``records.py`` and ``request_helpers.py``: helpers for the emulators'
  records (account labels, forgetting) and requests.

Shared here:

- Ids: the n-th ``new_id`` hashes (seed, reset generation, n), so runs are
  reproducible under a seed and a reloaded world continues the sequence.
- Forgetting (``Sandbox.forget``, ``POST /_sandbox/forget``): each emulator
  drops uploaded inputs, task records and/or result files and then answers as
  its provider documents for unknown ones (see each module). A forgotten task
  still holds its scheduled slot until its scheduled end (schedules are fixed
  at creation) and still counts in ``max_active_tasks``. Forgetting results
  touches only finished tasks; a task whose result is forgotten is purged
  (polls answer not-found) except at Magic Hour, whose docs show a deleted
  project as ``enabled: false`` with no downloads.
- Persistence (``sandbox/world.py``): ``snapshot``/``volatile``/``restore``
  (``persistence.py``) and ``snapshot``/``restore`` on each emulator turn the
  world into JSON values and back.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from starlette.requests import Request

from lipbatch.sandbox import background
from lipbatch.sandbox.clock import VirtualClock
from lipbatch.sandbox.config import SandboxConfig, apply_config
from lipbatch.sandbox.credits import Credits
from lipbatch.sandbox.emulator import Emulator
from lipbatch.sandbox.faults import Faults
from lipbatch.sandbox.files import FileStore, PublishedFile
from lipbatch.sandbox.inputs import Inputs, probe_input
from lipbatch.sandbox.persistence import Persistence
from lipbatch.sandbox.records import account_label, forget_tasks, record_json
from lipbatch.sandbox.render_cache import RenderCache
from lipbatch.sandbox.request_helpers import accepts, bearer_token, is_loopback_host, json_body
from lipbatch.sandbox.results import FILES_PREFIX, ResultFiles
from lipbatch.sandbox.schedule import Lifecycle, Schedule
from lipbatch.sandbox.stats import Stats, TaskTimings

__all__ = [
    "CONTROL_PREFIX", "FILES_PREFIX", "TASK_TIMINGS_LIMIT",
    "Emulator", "Lifecycle", "Sandbox", "SandboxConfig", "accepts", "account_label", "apply_config",
    "bearer_token", "forget_tasks", "is_loopback_host", "json_body", "probe_input",
    "record_json",
]

CONTROL_PREFIX = "/_sandbox"
TASK_TIMINGS_LIMIT = 10_000  # tasks whose timings stats keep (``extra["task_timings"]``)



def uuid4_text(digest: bytes) -> str:
    """``str(uuid.UUID(bytes=digest[:16], version=4))``, without building the UUID (one per request)."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

class Sandbox(Persistence):
    """Shared services handed to every emulator, one instance per app; each part is its own object."""

    config: SandboxConfig

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.emulators: dict[str, Emulator] = {}
        #: tests may route callbacks through another transport (e.g. an ASGI app)
        self.callback_transport: httpx.AsyncBaseTransport | None = None
        self._clock = VirtualClock(self.config)
        self._generation = 0
        self._renders = RenderCache()
        self._results = ResultFiles(self.config, self._clock, self.new_id, self.rng)
        self._inputs = Inputs(self._results.file_bytes)
        self._clear()

    def _clear(self) -> None:
        self._schedule = Schedule(self)
        self._credits = Credits(self.config)
        self._timings = TaskTimings()  # ``extra["task_timings"]``
        self._results.clear()
        self._stats = Stats()
        self._faults = Faults(self.config, self.rng)
        self._inputs.clear()
        self._id_count = 0
        self.callbacks_log: list[dict[str, Any]] = []

    @property
    def files(self) -> FileStore:
        return self._results.files

    @property
    def generation(self) -> int:
        """Resets so far: timers and callbacks of an earlier generation are void."""
        return self._generation

    @property
    def _timed(self) -> OrderedDict[int, Lifecycle]:  # tests look at what task timings keep
        return self._timings.tasks

    @property
    def _render_cache(self) -> OrderedDict[str, bytes]:  # tests look at what renders are kept
        return self._renders.results

    # -- registry, reset, stats ---------------------------------------------------------------

    def register(self, emulator: Emulator) -> None:
        self.emulators[emulator.name] = emulator

    def reset(self) -> None:
        """Forget every task, file, credit, stat and pending callback; emulators reset too."""
        self._generation += 1
        self._clear()
        for emulator in self.emulators.values():
            emulator.reset()

    def configure(self, changes: Mapping[str, Any]) -> SandboxConfig:
        apply_config(self.config, changes)
        self._clock.now()  # rebase the clock at once if time_scale changed
        self._clock.wake_sleepers()
        return self.config

    def stats(self) -> dict[str, Any]:
        data = self._stats.to_json()
        data["credits_used"] = {f"{p}/{a}": used for (p, a), used in self._credits.used_by.items()}
        data["max_active_tasks"] = {f"{p}/{a}": n for (p, a), n in self._schedule.max_active.items()}
        if self.config.extra.get("task_timings"):
            data["tasks"] = self._timings.to_json()
        return data

    def record_request(self, provider: str | None, route: str | None = None) -> None:
        self._stats.record_request(provider, route)

    def record_route(self, route: str) -> None:
        self._stats.record_route(route)

    def note_poll(self, lifecycle: Lifecycle, now: float) -> None:
        self._timings.note_poll(lifecycle, now)

    def record_fault(self, kind: str) -> None:
        self._stats.record_fault(kind)

    def record_download(self, *, expired: bool = False) -> None:
        self._stats.record_download(expired=expired)

    def record_callback(self, outcome: str) -> None:
        self._stats.record_callback(outcome)

    def record_create(self, kind: str, body: Mapping[str, Any]) -> None:
        self._stats.record_create(kind, body)

    def forget(self, *, uploads: bool = False, tasks: bool = False, results: bool = False,
               provider: str | None = None) -> dict[str, Any]:
        """Make the emulators (all, or ``provider``'s) forget uploaded inputs, tasks and/or result
        files, as a provider that lost or expired them would; counts of what went, in total and
        ``by_provider``. Each emulator's docstring says how it answers for forgotten things."""
        if provider is not None and provider not in self.emulators:
            raise ValueError(f"unknown provider {provider!r} (one of {', '.join(self.emulators)})")
        by_provider = {name: emulator.forget(uploads=uploads, tasks=tasks, results=results)
                       for name, emulator in self.emulators.items() if provider in (None, name)}
        totals = {what: sum(counts.get(what, 0) for counts in by_provider.values())
                  for what in ("uploads", "tasks", "results")}
        return {**totals, "by_provider": by_provider}

    # -- ids, randomness and faults (faults.py) -----------------------------------------------

    def new_id(self) -> str:
        """A uuid4-shaped id, reproducible under the seed (and distinct across resets).

        The n-th id is a hash of (seed, generation, n), so a reloaded world continues the sequence.
        """
        self._id_count += 1
        key = f"ids|{self.config.seed}|{self._generation}|{self._id_count}"
        return uuid4_text(hashlib.sha256(key.encode()).digest())

    def rng(self, *key: object) -> random.Random:
        """A generator reproducible from the seed and ``key`` (for emulator-side randomness)."""
        return random.Random("|".join([str(self.config.seed), *map(str, key)]))

    def draw_fault(self, method: str, path: str, *, download: bool = False) -> str | None:
        return self._faults.draw(method, path, download=download)

    def retry_after(self) -> int:
        return self._faults.retry_after()

    # -- virtual time (clock.py) --------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def advance(self, seconds: float) -> None:
        self._clock.advance(seconds)

    def epoch(self, virtual: float | None = None) -> float:
        return self._clock.epoch(virtual)

    def iso(self, virtual: float | None = None) -> str:
        return self._clock.iso(virtual)

    async def sleep_until(self, when: float) -> None:
        await self._clock.sleep_until(when)

    # -- lifecycles and capacity (schedule.py) ------------------------------------------------

    def lifecycle(self, provider: str, account: str, *, capacity: int | None = None,
                  seconds: float | None = None, delay: float = 0.0) -> Lifecycle:
        lc = self._schedule.start(provider, account, capacity=capacity, seconds=seconds, delay=delay)
        if self.config.extra.get("task_timings"):
            self._timings.add(lc, keep=TASK_TIMINGS_LIMIT)
        return lc

    def lifecycle_from_json(self, provider: str, account: str, data: list[float]) -> Lifecycle:
        return self._schedule.from_json(provider, account, data)

    def active_tasks(self, provider: str, account: str) -> int:
        return self._schedule.active_tasks(provider, account)

    def running_tasks(self, provider: str, account: str) -> int:
        return self._schedule.running_tasks(provider, account)

    # -- credits (credits.py) and moderation --------------------------------------------------

    def charge(self, provider: str, account: str, credits: float) -> bool:
        return self._credits.charge(provider, account, credits)

    def refund(self, provider: str, account: str, credits: float) -> None:
        self._credits.refund(provider, account, credits)

    def credits_used(self, provider: str, account: str) -> float:
        return self._credits.used(provider, account)

    def credits_left(self, provider: str, account: str) -> float | None:
        return self._credits.left(provider, account)

    def is_moderated(self, text: str | None) -> bool:
        """True when ``text`` contains a moderated word (case-insensitive, whole words)."""
        if not text:
            return False
        return any(
            re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE)
            for word in self.config.moderate if word
        )

    # -- media, published files and inputs (render_cache.py, results.py, inputs.py) -----------

    async def render(self, *, video: bytes | None = None, image: bytes | None = None,
                     audio: bytes | None = None, tts_text: str | None = None,
                     seconds: float | None = None, start: float = 0.0) -> bytes:
        return await self._renders.render(video=video, image=image, audio=audio, tts_text=tts_text,
                                          seconds=seconds, start=start)

    def publish(self, data: bytes, *, filename: str = "output.mp4", provider: str | None = None,
                media_type: str = "video/mp4") -> str:
        return self._results.publish(data, filename=filename, provider=provider, media_type=media_type)

    def publish_synthetic(self, size: int, *, filename: str = "large.bin", provider: str | None = None,
                          media_type: str = "application/octet-stream") -> str:
        return self._results.publish_synthetic(size, filename=filename, provider=provider,
                                               media_type=media_type)

    def file(self, token: str) -> PublishedFile | None:
        return self.files.get(token)

    def file_bytes(self, token: str | None) -> bytes | None:
        return self._results.file_bytes(token)

    def drop_file(self, token: str | None) -> bool:
        """Forget a published file: its URLs answer 404 from now on. False when unknown."""
        return self.files.drop(token)

    def sign(self, text: str) -> str:
        return self._results.sign(text)

    def result_url(self, request: Request | str, token: str, *, ttl: float | None | str = "config"
                   ) -> tuple[str, float | None]:
        return self._results.result_url(request, token, ttl=ttl)

    def check_file_url(self, token: str, query: Mapping[str, str]) -> str:
        return self._results.check_file_url(token, query)

    def note_host(self, host: str | None) -> None:
        self._inputs.note_host(host)

    def add_input_resolver(self, resolver: Callable[[str], bytes | None]) -> None:
        """Let an emulator resolve its own URLs (e.g. upload targets) for ``fetch_input``."""
        self._inputs.resolvers.append(resolver)

    def fetch_input(self, url: str) -> bytes | None:
        return self._inputs.fetch(url)

    # -- background work: timers and callbacks (background.py) --------------------------------

    def call_at(self, when: float, fn: Callable[[], Awaitable[None] | None]) -> None:
        background.call_at(self, when, fn)

    def callback(self, url: str, payload: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> None:
        background.send_callback(self, url, payload, headers=headers)
