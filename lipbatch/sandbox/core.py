"""What every provider emulator shares: configuration, virtual time, faults, stats, results.

The signatures here are the contract between the sandbox core and the
emulators (``sandbox/useapi.py``, ``magichour.py``, ``aimlapi_pixverse.py``,
``creatify.py``); emulators know the providers' contracts and nothing of
lipbatch's runner.

Semantics the emulators and tests rely on:

- Virtual time: ``now()`` = real monotonic seconds elapsed / ``time_scale``;
  changing ``time_scale`` at run time keeps the virtual clock continuous.
  ``epoch(v)`` converts a virtual instant to the Unix time at which it happens
  (used for ``createdAt``/``expires_at`` stamps and ``Retry-After``).
- Lifecycles are scheduled once, at creation, in virtual time: FIFO per
  (provider, account); a task may start after ``delay`` (the provider's
  pickup latency) and only when fewer than ``capacity`` earlier tasks of the
  account are running. Nothing runs in the background to advance them. A task
  is *active* from its creation until its scheduled end (``[created_at,
  finished_at)``); ``max_active_tasks`` is updated at each creation, the only
  instants at which the active count rises, so it is exact.
- Faults are drawn from ``random.Random(f"{seed}|{kind}|{method}|{path}|{n}")``
  where ``n`` counts earlier requests with the same method and path: the
  k-th request to a URL gets the same fault under the same seed, whatever
  the interleaving of concurrent requests to other URLs.
- Result files live in memory (or, in a persistent world, in its ``files/``
  folder: ``sandbox/files.py``) and are served by ``sandbox/app.py`` under
  ``/cdn/<provider>/<token>/<filename>`` with signed, optionally expiring
  query strings; every ``result_url`` call returns a new URL.
- Ids: the n-th ``new_id`` hashes (seed, reset generation, n), so runs are
  reproducible under a seed and a reloaded world continues the sequence.
- Accounts named by a bearer key (Magic Hour, AI/ML API, useapi.net tokens)
  are kept under ``account_label(key)``, a digest: no key is ever written to
  a world folder or shown in stats. Creatify accounts are the ``X-API-ID``.
- Forgetting (``Sandbox.forget``, ``POST /_sandbox/forget``): each emulator
  drops uploaded inputs, task records and/or result files and then answers as
  its provider documents for unknown ones (see each module). A forgotten task
  still holds its scheduled slot until its scheduled end (schedules are fixed
  at creation) and still counts in ``max_active_tasks``. Forgetting results
  touches only finished tasks; a task whose result is forgotten is purged
  (polls answer not-found) except at Magic Hour, whose docs show a deleted
  project as ``enabled: false`` with no downloads.
- Persistence (``sandbox/world.py``): ``snapshot``/``volatile``/``restore``
  here and ``snapshot``/``restore`` on each emulator turn the world into JSON
  values and back; lifecycles keep their ids so emulators and the schedule
  share them again after a reload.
- Stats (``GET /_sandbox/stats``): ``requests`` (total), ``requests_by_provider``,
  ``requests_by_route`` (``"METHOD /route/template"``), ``creates`` (per kind),
  ``creates_total``, ``duplicate_creates`` (total; bodies are compared by the
  digest of their canonical JSON, kept in a world), ``duplicate_creates_by_kind``,
  ``faults`` (per fault type), ``downloads``, ``downloads_expired``,
  ``callbacks`` (sent/failed/refused), ``credits_used`` (``"provider/account"``),
  ``max_active_tasks`` (``"provider/account"`` -> the most tasks of the account
  active at any one virtual instant). With ``extra["task_timings"]`` true, also ``tasks``:
  per task created since (the last ``TASK_TIMINGS_LIMIT``, in creation order) its ``provider``,
  ``account``, virtual ``created``/``started``/``finished`` and ``polls``, the virtual instants
  of the provider requests whose answer read its state (``Lifecycle.phase()`` during a request,
  once per request; the emulators' own timers do not count; faulted requests never reach it).
  Not kept in a world.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import random
import re
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, unquote_to_bytes, urlencode, urlsplit

import httpx
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from lipbatch.media import MediaInfo
from lipbatch.sandbox.files import FileStore, PublishedFile
from lipbatch.sandbox.render import probe_bytes, render_mp4

log = logging.getLogger("lipbatch.sandbox")

FILES_PREFIX = "/cdn"
CONTROL_PREFIX = "/_sandbox"
SYNTHETIC_FETCH_LIMIT = 64 * 1024 * 1024  # fetch_input refuses to materialise bigger synthetic files
RENDER_CACHE_SIZE = 64
TASK_TIMINGS_LIMIT = 10_000  # tasks whose timings stats keep (``extra["task_timings"]``)

#: The provider request being answered (a fresh marker per request; None in timers and control
#: routes' tasks): ``Lifecycle.phase()`` reads during one request count as one poll of the task.
_REQUEST: contextvars.ContextVar[object | None] = contextvars.ContextVar("lipbatch_sandbox_request",
                                                                         default=None)


@dataclass
class SandboxConfig:
    """Every knob of the sandbox; also settable at run time via ``POST /_sandbox/config``."""

    job_seconds: float = 3.0  # virtual seconds a job spends processing (after any queueing)
    time_scale: float = 1.0  # real seconds per virtual second: 0.01 makes everything 100x faster
    max_jobs: int | None = None  # per-account concurrency cap; None = each provider's default
    rate_429: float = 0.0  # fraction of provider requests answered 429 with Retry-After
    rate_5xx: float = 0.0  # fraction answered 500/502/503
    rate_reset: float = 0.0  # fraction whose connection is dropped mid-response
    rate_truncate: float = 0.0  # fraction of result downloads cut short
    download_ttl: float | None = None  # virtual seconds a result URL stays valid; None = forever
    moderate: tuple[str, ...] = ()  # jobs whose text contains one of these words fail moderation
    credits: float | None = None  # credits per account; None = unlimited
    seed: int = 0
    pixverse_success_status: str = "succeeded"  # or "completed": the docs say both
    creatify_aurora_pricing: str = "per_block"  # "per_block" (20/15 s, 10/15 s) or "per_second" (1/s, 0.5/s)
    valid_tokens: tuple[str, ...] = ()  # credentials accepted; empty = any non-empty value
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["moderate"] = list(self.moderate)
        data["valid_tokens"] = list(self.valid_tokens)
        return data


_CHOICES = {
    "pixverse_success_status": ("succeeded", "completed"),
    "creatify_aurora_pricing": ("per_block", "per_second"),
}


def apply_config(config: SandboxConfig, changes: Mapping[str, Any]) -> None:
    """Validate and apply ``changes`` (JSON values) to ``config``; raises ValueError naming the field.

    All fields are checked before any is set, so a bad request changes nothing.
    """
    fields = {f.name: f for f in dataclasses.fields(SandboxConfig)}
    staged: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in fields:
            raise ValueError(f"unknown config field {name!r}")
        staged[name] = _coerce(name, value)
    for name, value in staged.items():
        setattr(config, name, value)


def _coerce(name: str, value: Any) -> Any:
    def number(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{name} must be a number")
        return float(v)

    if name in ("moderate", "valid_tokens"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings")
        return tuple(value)
    if name == "extra":
        if not isinstance(value, dict):
            raise ValueError("extra must be an object")
        return dict(value)
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(_CHOICES[name])}")
        return value
    if name in ("max_jobs", "seed"):
        if value is None and name == "max_jobs":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (name == "max_jobs" and value < 1):
            raise ValueError(f"{name} must be {'a positive' if name == 'max_jobs' else 'an'} integer")
        return value
    if name in ("download_ttl", "credits") and value is None:
        return None
    result = number(value)
    if name.startswith("rate_") and not 0.0 <= result <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    if name == "time_scale" and result <= 0:
        raise ValueError("time_scale must be positive")
    if result < 0:
        raise ValueError(f"{name} must not be negative")
    return result


class Emulator(Protocol):
    """One provider API (or one family sharing a host, like useapi.net).

    Optional extra: ``expired_response(self) -> Response`` answers a download
    of an expired result URL (default: S3/CloudFront-style 403 XML).
    """

    name: str  # "useapi" | "magichour" | "aimlapi" | "creatify"
    prefixes: tuple[str, ...]  # URL path prefixes it serves, for stats and fault attribution

    def routes(self) -> list[BaseRoute]: ...

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        """A response in this provider's documented error shape (used by auth and fault injection)."""
        ...

    def reset(self) -> None: ...

    def forget(self, *, uploads: bool, tasks: bool, results: bool) -> dict[str, int]:
        """Forget uploaded inputs / tasks / result files; counts of each (``Sandbox.forget``)."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Its records as JSON values: small (file bytes are the sandbox's), no credentials."""
        ...

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load ``snapshot()`` output (after ``Sandbox.restore``); KeyError/TypeError/ValueError if malformed."""
        ...


class Lifecycle:
    """Virtual-time lifecycle of one emulated task: queued -> running -> finished.

    ``slots`` is the emulator's per-account capacity gate: a task starts
    running only when fewer than ``capacity`` earlier tasks of the same account
    are running; otherwise it stays queued (the provider's pending state).
    The schedule is fixed at creation: ``created_at <= ready_at <= started_at
    <= finished_at`` (virtual seconds, as ``Sandbox.now()``).
    """

    def __init__(self, sandbox: Sandbox, provider: str, account: str, *, created_at: float,
                 ready_at: float, started_at: float, finished_at: float, id: int = 0) -> None:
        self.sandbox = sandbox
        self.id = id
        self.provider = provider
        self.account = account
        self.created_at = created_at
        self.ready_at = ready_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.polls: list[float] = []  # with ``extra["task_timings"]``: when requests read its state
        self._polled_by: object | None = None

    def phase(self) -> str:
        """'queued' | 'running' | 'finished' at the sandbox's current virtual time."""
        now = self.sandbox.now()
        self.sandbox.note_poll(self, now)
        if now >= self.finished_at:
            return "finished"
        return "running" if now >= self.started_at else "queued"

    def waiting_for_capacity(self) -> bool:
        """Queued past its pickup delay: held back only by the account's capacity (THROTTLED)."""
        return self.phase() == "queued" and self.sandbox.now() >= self.ready_at

    def progress(self) -> float:
        """0..1 through the running phase."""
        span = self.finished_at - self.started_at
        if span <= 0:
            return 1.0 if self.phase() == "finished" else 0.0
        return min(1.0, max(0.0, (self.sandbox.now() - self.started_at) / span))

    def eta(self) -> float:
        """Virtual seconds until it starts (queued) or finishes (running)."""
        now = self.sandbox.now()
        target = self.started_at if now < self.started_at else self.finished_at
        return max(0.0, target - now)

    def to_json(self) -> list[float]:
        """``[id, created_at, ready_at, started_at, finished_at]`` (``Sandbox.lifecycle_from_json``)."""
        return [self.id, self.created_at, self.ready_at, self.started_at, self.finished_at]


def canonical_json(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_json(obj: Any, **references: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict for a snapshot, with its non-JSON fields (references) replaced."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__} | references


def account_label(credential: str) -> str:
    """The account name under which an emulator keeps a bearer key's tasks and credits (and the
    ``provider/account`` of stats): a digest, so no key is ever written to a world or shown."""
    return "key-" + hashlib.sha256(credential.encode()).hexdigest()[:16]


def forget_tasks(sandbox: Sandbox, records: dict[str, Any], *, tasks: bool, results: bool) -> dict[str, int]:
    """Purge task records (objects with ``lifecycle`` and ``token``, the result file) from ``records``.

    ``tasks``: every record goes; the result files of finished ones stay reachable unless
    ``results`` too (a CDN object outlives the API's record of it). ``results``: finished
    records holding a result go with their file (a task whose media is gone cannot be polled
    into a working URL). Unfinished records keep their pending output unless purged.
    """
    counts = {"tasks": 0, "results": 0}
    for key, record in list(records.items()):
        has_result = record.token is not None and record.lifecycle.phase() == "finished"
        if not (tasks or (results and has_result)):
            continue
        del records[key]
        counts["tasks"] += 1
        if (results or not has_result) and sandbox.drop_file(record.token):
            counts["results"] += has_result
    return counts


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Sandbox:
    """Shared services handed to every emulator. One instance per app."""

    config: SandboxConfig

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.emulators: dict[str, Emulator] = {}
        #: tests may route callbacks through another transport (e.g. an ASGI app)
        self.callback_transport: httpx.AsyncBaseTransport | None = None
        self._secret = os.urandom(16)
        self._r0 = time.monotonic()
        self._v0 = 0.0
        self._scale = self.config.time_scale
        self._generation = 0
        self._clock_moved = trio.Event()  # set (and replaced) whenever the clock jumps or changes pace
        self._render_cache: OrderedDict[str, bytes] = OrderedDict()  # bounded: results are published anyway
        self._render_inflight: dict[str, trio.Event] = {}
        self._resolvers: list[Callable[[str], bytes | None]] = []
        self._clear()

    def _clear(self) -> None:
        self._lifecycles: dict[tuple[str, str], list[Lifecycle]] = {}
        self._credits_used: dict[tuple[str, str], float] = {}
        self._max_active: dict[tuple[str, str], int] = {}
        self._restored: dict[int, Lifecycle] = {}
        self._timed: OrderedDict[int, Lifecycle] = OrderedDict()  # ``extra["task_timings"]``
        self.files = FileStore()
        self._seen_bodies: dict[str, set[str]] = {}  # kind -> digests of canonical create bodies
        self._fault_counts: Counter[str] = Counter()
        self._hosts: set[str] = set()
        self._id_count = 0
        self._lifecycle_count = 0
        self._url_nonce = 0
        self.callbacks_log: list[dict[str, Any]] = []
        self._stats: dict[str, Any] = {
            "requests": 0,
            "requests_by_provider": Counter(),
            "requests_by_route": Counter(),
            "creates": Counter(),
            "creates_total": 0,
            "duplicate_creates": 0,
            "duplicate_creates_by_kind": Counter(),
            "faults": Counter(),
            "downloads": 0,
            "downloads_expired": 0,
            "callbacks": Counter(),
        }

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
        self.now()  # rebase the clock at once if time_scale changed
        self._wake_sleepers()
        return self.config

    def stats(self) -> dict[str, Any]:
        data = {k: dict(v) if isinstance(v, Counter) else v for k, v in self._stats.items()}
        data["credits_used"] = {f"{p}/{a}": used for (p, a), used in self._credits_used.items()}
        data["max_active_tasks"] = {f"{p}/{a}": n for (p, a), n in self._max_active.items()}
        if self.config.extra.get("task_timings"):
            data["tasks"] = [{"provider": lc.provider, "account": lc.account, "created": lc.created_at,
                              "started": lc.started_at, "finished": lc.finished_at, "polls": list(lc.polls)}
                             for lc in self._timed.values()]
        return data

    def record_request(self, provider: str | None, route: str) -> None:
        _REQUEST.set(object())  # the middleware's call: what the handler reads belongs to this request
        self._stats["requests"] += 1
        if provider:
            self._stats["requests_by_provider"][provider] += 1
        self._stats["requests_by_route"][route] += 1

    def note_poll(self, lifecycle: Lifecycle, now: float) -> None:
        """A read of ``lifecycle``'s phase at virtual ``now``: one poll per provider request (stats ``tasks``)."""
        request = _REQUEST.get()
        if request is None or request is lifecycle._polled_by or self._timed.get(lifecycle.id) is not lifecycle:
            return
        lifecycle._polled_by = request
        lifecycle.polls.append(now)

    def record_fault(self, kind: str) -> None:
        self._stats["faults"][kind] += 1

    def record_download(self, *, expired: bool = False) -> None:
        self._stats["downloads_expired" if expired else "downloads"] += 1

    def note_host(self, host: str | None) -> None:
        """Remember a Host header this sandbox was reached by (its own URLs, for fetch_input)."""
        if host:
            self._hosts.add(host.lower())

    def record_create(self, kind: str, body: Mapping[str, Any]) -> None:
        """Count a successful create; also counts ``duplicate_creates`` for repeated bodies."""
        self._stats["creates"][kind] += 1
        self._stats["creates_total"] += 1
        seen = self._seen_bodies.setdefault(kind, set())
        digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]
        if digest in seen:
            self._stats["duplicate_creates"] += 1
            self._stats["duplicate_creates_by_kind"][kind] += 1
        seen.add(digest)

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

    # -- persistence (the file I/O is sandbox/world.py's) ---------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """This sandbox's records as JSON values: what changes only with the world's content (file
        bytes excluded; emulators snapshot their own records)."""
        now = self.now()
        return {
            "secret": self._secret.hex(), "generation": self._generation, "lifecycles": self._lifecycle_count,
            "schedule": [[p, a, *lc.to_json()] for (p, a), lcs in self._lifecycles.items()
                         for lc in lcs if lc.finished_at > now],
            "max_active": [[p, a, n] for (p, a), n in self._max_active.items()],
            "credits_used": [[p, a, used] for (p, a), used in self._credits_used.items()],
            "files": self.files.snapshot(),
            "seen_bodies": {kind: list(seen) for kind, seen in self._seen_bodies.items()},
        }

    def volatile(self) -> dict[str, Any]:
        """What changes with nearly every request (clock, counters, stats), saved apart from ``snapshot``."""
        return {"now": self.now(), "ids": self._id_count, "url_nonce": self._url_nonce,
                "fault_counts": self._fault_counts, "hosts": list(self._hosts), "stats": self._stats}

    def restore(self, records: Mapping[str, Any], volatile: Mapping[str, Any], *, now: float, files: Path) -> None:
        """Load ``snapshot()`` and ``volatile()`` output, with the virtual clock set to ``now``; stored
        file bytes are in the folder ``files``. Call before the emulators restore (they look
        lifecycles up here). Raises KeyError/TypeError/ValueError on malformed data."""
        self._clear()
        self._secret = bytes.fromhex(records["secret"])
        self._generation = int(records["generation"])
        self._lifecycle_count = int(records["lifecycles"])
        self._r0, self._v0, self._scale = time.monotonic(), float(now), self.config.time_scale
        for provider, account, *times in records["schedule"]:
            lc = self.lifecycle_from_json(provider, account, times)
            self._restored[lc.id] = lc
            self._lifecycles.setdefault((provider, account), []).append(lc)
        self._max_active = {(p, a): int(n) for p, a, n in records["max_active"]}
        self._credits_used = {(p, a): float(used) for p, a, used in records["credits_used"]}
        self.files.restore(records["files"], files)
        self._seen_bodies = {kind: set(seen) for kind, seen in records["seen_bodies"].items()}
        self._id_count, self._url_nonce = int(volatile["ids"]), int(volatile["url_nonce"])
        self._fault_counts = Counter(volatile["fault_counts"])
        self._hosts = set(volatile["hosts"])
        for name, value in volatile["stats"].items():
            if name not in self._stats:
                raise ValueError(f"unknown stat {name!r}")
            self._stats[name] = Counter(value) if isinstance(self._stats[name], Counter) else int(value)

    # -- ids and randomness -------------------------------------------------------------------

    def new_id(self) -> str:
        """A uuid4-shaped id, reproducible under the seed (and distinct across resets).

        The n-th id is a hash of (seed, generation, n), so a reloaded world continues the sequence.
        """
        self._id_count += 1
        key = f"ids|{self.config.seed}|{self._generation}|{self._id_count}"
        return str(uuid.UUID(bytes=hashlib.sha256(key.encode()).digest()[:16], version=4))

    def rng(self, *key: object) -> random.Random:
        """A generator reproducible from the seed and ``key`` (for emulator-side randomness)."""
        return random.Random("|".join([str(self.config.seed), *map(str, key)]))

    def draw_fault(self, method: str, path: str, *, download: bool = False) -> str | None:
        """The fault for this request, if any: '429', '500'/'502'/'503', 'reset' or 'truncate'."""
        cfg = self.config
        kind = "download" if download else "api"
        counter_key = f"{kind}|{method}|{path}"
        n = self._fault_counts[counter_key]
        self._fault_counts[counter_key] += 1
        rates = (
            [("reset", cfg.rate_reset), ("truncate", cfg.rate_truncate)] if download
            else [("429", cfg.rate_429), ("5xx", cfg.rate_5xx), ("reset", cfg.rate_reset)]
        )
        if not any(rate for _, rate in rates):
            return None
        rng = self.rng(counter_key, n)
        draw = rng.random()
        for name, rate in rates:
            if draw < rate:
                return rng.choice(("500", "502", "503")) if name == "5xx" else name
            draw -= rate
        return None

    def retry_after(self) -> int:
        """Retry-After seconds for a faulted 429: ``extra["retry_after"]`` virtual s (default 5), scaled."""
        return max(0, round(float(self.config.extra.get("retry_after", 5.0)) * self.config.time_scale))

    # -- virtual time -------------------------------------------------------------------------

    def now(self) -> float:
        """Virtual seconds since the sandbox started (real elapsed / time_scale)."""
        real = time.monotonic()
        scale = self.config.time_scale
        if scale != self._scale:
            self._v0 += (real - self._r0) / self._scale
            self._r0, self._scale = real, scale
        return self._v0 + (real - self._r0) / scale

    def advance(self, seconds: float) -> None:
        """Jump the virtual clock forward (tests: expire URLs, finish jobs, without waiting)."""
        self.now()
        self._v0 += max(0.0, seconds)
        self._wake_sleepers()

    def _wake_sleepers(self) -> None:
        self._clock_moved.set()
        self._clock_moved = trio.Event()

    def epoch(self, virtual: float | None = None) -> float:
        """Unix time at which virtual instant ``virtual`` (default: now) happens at the current scale."""
        now = self.now()
        return time.time() + ((now if virtual is None else virtual) - now) * self.config.time_scale

    def iso(self, virtual: float | None = None) -> str:
        """ISO-8601 UTC with milliseconds and ``Z``, as the providers print timestamps."""
        stamp = datetime.fromtimestamp(self.epoch(virtual), UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"

    async def sleep_until(self, when: float) -> None:
        """Sleep until virtual time ``when`` (re-checking, so time_scale changes apply)."""
        while (remaining := when - self.now()) > 0:
            with trio.move_on_after(min(remaining * self.config.time_scale, 0.5)):
                await self._clock_moved.wait()

    # -- lifecycles and capacity --------------------------------------------------------------

    def lifecycle(self, provider: str, account: str, *, capacity: int | None = None,
                  seconds: float | None = None, delay: float = 0.0) -> Lifecycle:
        """Start a task's lifecycle now on ``account`` (capacity None = unlimited).

        ``delay``: virtual seconds before the provider picks the task up at all.
        """
        now = self.now()
        duration = self.config.job_seconds if seconds is None else max(0.0, seconds)
        tasks = [lc for lc in self._lifecycles.get((provider, account), []) if lc.finished_at > now]
        ready = now + max(0.0, delay)
        start = max([ready, *(lc.started_at for lc in tasks)])
        if capacity is not None:
            capacity = max(1, capacity)
            while True:
                running = [lc for lc in tasks if lc.started_at <= start < lc.finished_at]
                if len(running) < capacity:
                    break
                start = min(lc.finished_at for lc in running)
        self._lifecycle_count += 1
        lc = Lifecycle(self, provider, account, created_at=now, ready_at=ready,
                       started_at=start, finished_at=start + duration, id=self._lifecycle_count)
        tasks.append(lc)
        self._lifecycles[(provider, account)] = tasks
        if self.config.extra.get("task_timings"):
            self._timed[lc.id] = lc
            while len(self._timed) > TASK_TIMINGS_LIMIT:
                self._timed.popitem(last=False)
        # the active count only rises at creations, so its maximum is reached at one of them
        active = sum(1 for other in tasks if other.finished_at > now)
        key = (provider, account)
        self._max_active[key] = max(self._max_active.get(key, 0), active)
        return lc

    def lifecycle_from_json(self, provider: str, account: str, data: list[float]) -> Lifecycle:
        """A lifecycle saved with ``Lifecycle.to_json`` (the same object as the restored schedule's)."""
        ident, created, ready, started, finished = data
        known = self._restored.get(int(ident))
        if known is not None:
            return known
        return Lifecycle(self, provider, account, created_at=float(created), ready_at=float(ready),
                         started_at=float(started), finished_at=float(finished), id=int(ident))

    def active_tasks(self, provider: str, account: str) -> int:
        """Tasks of this account not yet finished (queued or running)."""
        now = self.now()
        return sum(1 for lc in self._lifecycles.get((provider, account), []) if lc.finished_at > now)

    def running_tasks(self, provider: str, account: str) -> int:
        """Tasks of this account in their running phase now."""
        now = self.now()
        return sum(1 for lc in self._lifecycles.get((provider, account), [])
                   if lc.started_at <= now < lc.finished_at)

    # -- credits and moderation ---------------------------------------------------------------

    def charge(self, provider: str, account: str, credits: float) -> bool:
        """Deduct credits; False (and nothing deducted) when the account cannot pay."""
        used = self._credits_used.get((provider, account), 0.0)
        if self.config.credits is not None and used + credits > self.config.credits + 1e-9:
            return False
        self._credits_used[(provider, account)] = used + credits
        return True

    def refund(self, provider: str, account: str, credits: float) -> None:
        used = self._credits_used.get((provider, account), 0.0)
        self._credits_used[(provider, account)] = max(0.0, used - credits)

    def credits_used(self, provider: str, account: str) -> float:
        return self._credits_used.get((provider, account), 0.0)

    def credits_left(self, provider: str, account: str) -> float | None:
        """Remaining credits, or None when unlimited."""
        if self.config.credits is None:
            return None
        return max(0.0, self.config.credits - self.credits_used(provider, account))

    def is_moderated(self, text: str | None) -> bool:
        """True when ``text`` contains a moderated word (case-insensitive, whole words)."""
        if not text:
            return False
        return any(
            re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE)
            for word in self.config.moderate if word
        )

    # -- media --------------------------------------------------------------------------------

    async def render(self, *, video: bytes | None = None, image: bytes | None = None,
                     audio: bytes | None = None, tts_text: str | None = None,
                     seconds: float | None = None, start: float = 0.0) -> bytes:
        """A playable MP4: the video (or the image held still, or a generated picture) with the
        audio (or a tone whose length follows ``tts_text``) muxed in, lasting as long as the audio.

        ``seconds``, when given, sets the duration outright and ``start`` where the input video
        starts (a trim window). Results are
        cached by content, and concurrent renders of the same inputs run once.
        """
        digest = hashlib.sha256()
        for part in (video, image, audio, repr(tts_text).encode(), repr((seconds, start)).encode()):
            digest.update(hashlib.sha256(part or b"").digest())
        key = digest.hexdigest()
        while key not in self._render_cache:
            if key in self._render_inflight:
                await self._render_inflight[key].wait()
                continue
            done = self._render_inflight[key] = trio.Event()
            try:
                result = await trio.to_thread.run_sync(
                    lambda: render_mp4(video=video, image=image, audio=audio,
                                       tts_text=tts_text, seconds=seconds, start=start))
                self._render_cache[key] = result
                while len(self._render_cache) > RENDER_CACHE_SIZE:
                    self._render_cache.popitem(last=False)
                return result
            finally:
                del self._render_inflight[key]
                done.set()
        self._render_cache.move_to_end(key)
        return self._render_cache[key]

    # -- published files ----------------------------------------------------------------------

    def publish(self, data: bytes, *, filename: str = "output.mp4", provider: str | None = None,
                media_type: str = "video/mp4") -> str:
        """Store a result; returns a token for ``result_url``."""
        return self.files.add(self.new_id().replace("-", ""), PublishedFile(
            provider, filename, media_type, data=bytes(data), size=len(data)))

    def publish_synthetic(self, size: int, *, filename: str = "large.bin", provider: str | None = None,
                          media_type: str = "application/octet-stream") -> str:
        """Publish ``size`` generated bytes without holding them (for large-download tests)."""
        token = self.new_id().replace("-", "")
        seed = self.rng("synthetic", token).getrandbits(32)
        return self.files.add(token, PublishedFile(provider, filename, media_type, size=max(0, size), seed=seed))

    def file(self, token: str) -> PublishedFile | None:
        return self.files.get(token)

    def file_bytes(self, token: str | None) -> bytes | None:
        """The full content of a published file (None when unknown or too big to materialise)."""
        entry = self.files.get(token) if token else None
        if entry is None or (entry.synthetic and entry.size > SYNTHETIC_FETCH_LIMIT):
            return None
        return entry.read()

    def drop_file(self, token: str | None) -> bool:
        """Forget a published file: its URLs answer 404 from now on. False when unknown."""
        return self.files.drop(token)

    def sign(self, text: str) -> str:
        """HMAC of ``text`` under this world's secret (kept across reloads, so URLs stay valid)."""
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def _sign(self, token: str, exp: str) -> str:
        return self.sign(f"{token}|{exp}")[:24]

    def result_url(self, request: Request | str, token: str, *, ttl: float | None | str = "config"
                   ) -> tuple[str, float | None]:
        """A fresh download URL for a published result and its expiry (virtual-time epoch) or None.

        The expiry is a ``now()`` value; ``epoch()``/``iso()`` turn it into wall-clock stamps.
        ``ttl`` defaults to ``config.download_ttl``; pass None for a URL that never expires.
        ``request`` may also be a base URL string (for callbacks sent outside any request).
        """
        entry = self.files.files[token]
        lifetime = self.config.download_ttl if ttl == "config" else ttl
        expires = None if lifetime is None else self.now() + float(lifetime)
        exp = "" if expires is None else f"{expires:.3f}"
        self._url_nonce += 1
        query = {"n": str(self._url_nonce)}
        if exp:
            query["exp"] = exp
        query["sig"] = self._sign(token, exp)
        provider = entry.provider or "sandbox"
        base = (request if isinstance(request, str) else str(request.base_url)).rstrip("/")
        return f"{base}{FILES_PREFIX}/{provider}/{token}/{entry.filename}?{urlencode(query)}", expires

    def check_file_url(self, token: str, query: Mapping[str, str]) -> str:
        """'ok' | 'expired' | 'unknown' (unknown token or a signature that does not match)."""
        if self.files.get(token) is None:
            return "unknown"
        exp = query.get("exp", "")
        if not hmac.compare_digest(self._sign(token, exp), query.get("sig", "")):
            return "unknown"
        if exp and self.now() >= float(exp):
            return "expired"
        return "ok"

    def add_input_resolver(self, resolver: Callable[[str], bytes | None]) -> None:
        """Let an emulator resolve its own URLs (e.g. upload targets) for ``fetch_input``."""
        self._resolvers.append(resolver)

    def fetch_input(self, url: str) -> bytes | None:
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
        if not (is_loopback_host(parts.hostname) or (parts.netloc.lower() in self._hosts)):
            return None
        segments = parts.path.split("/")
        if parts.path.startswith(FILES_PREFIX + "/") and len(segments) >= 4:
            data = self.file_bytes(segments[3])
            if data is not None:
                return data
        for resolver in self._resolvers:
            data = resolver(url)
            if data is not None:
                return data
        return None

    # -- background work: timers and callbacks ------------------------------------------------

    def _spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> bool:
        """Run ``fn`` detached from any request (works in-process and under hypercorn)."""
        async def guarded() -> None:
            try:
                await fn()
            except Exception:  # a background failure must never take the server down
                log.exception("sandbox background task %s failed", name)

        try:
            trio.lowlevel.spawn_system_task(guarded, name=name)
        except RuntimeError:  # not inside trio: nothing can run in the background
            return False
        return True

    def call_at(self, when: float, fn: Callable[[], Awaitable[None] | None]) -> None:
        """Call ``fn`` (sync or async) at virtual time ``when``, unless the sandbox is reset first."""
        generation = self._generation

        async def later() -> None:
            await self.sleep_until(when)
            if generation == self._generation:
                result = fn()
                if result is not None:
                    await result

        self._spawn(later, "sandbox-timer")

    def callback(self, url: str, payload: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> None:
        """POST ``payload`` to a replyUrl/webhook in the background; loopback URLs only."""
        entry: dict[str, Any] = {"url": url, "payload": dict(payload), "status": None}
        self.callbacks_log.append(entry)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
            entry["status"] = "refused"
            self._stats["callbacks"]["refused"] += 1
            return
        generation = self._generation

        async def post() -> None:
            try:
                async with httpx.AsyncClient(transport=self.callback_transport, timeout=10) as client:
                    response = await client.post(url, json=dict(payload), headers=dict(headers or {}))
                entry["status"] = response.status_code
                outcome = "sent" if response.is_success else "failed"
            except httpx.HTTPError as exc:
                entry["status"] = type(exc).__name__
                outcome = "failed"
            if generation == self._generation:
                self._stats["callbacks"][outcome] += 1

        if not self._spawn(post, "sandbox-callback"):
            entry["status"] = "no-event-loop"
            self._stats["callbacks"]["failed"] += 1


# -- request helpers shared by the emulators ------------------------------------------------


def bearer_token(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, else None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def accepts(sandbox: Sandbox, *credentials: str) -> bool:
    """Credentials are accepted when non-empty and (no allow-list, or the secret, i.e. the last
    credential, or all of them joined by ``:`` is on it)."""
    if not all(credentials):
        return False
    valid = sandbox.config.valid_tokens
    return not valid or credentials[-1] in valid or ":".join(credentials) in valid


async def json_body(request: Request) -> Any:
    """The decoded JSON body; None when the body is empty or not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return await request.json()
    except ValueError:
        return None


_PROBED: OrderedDict[tuple[str, str], MediaInfo | None] = OrderedDict()
_PROBED_KEEP = 256


async def probe_input(data: bytes | None, suffix: str = ".mp4") -> MediaInfo | None:
    """Probe input bytes off the event loop (None for undecodable bytes).

    Remembered by content: a campaign sends one shared clip with every create, and probing it
    again on every create took a fifth of the worker-thread time in benchmarks/overhead.py.
    """
    if not data:
        return None
    key = (hashlib.sha256(data).hexdigest(), suffix)
    if key in _PROBED:
        _PROBED.move_to_end(key)
        return _PROBED[key]
    info = await trio.to_thread.run_sync(probe_bytes, data, suffix)
    _PROBED[key] = info
    while len(_PROBED) > _PROBED_KEEP:
        _PROBED.popitem(last=False)
    return info
