"""What ``GET /_sandbox/stats`` counts: requests, creates, faults, downloads, callbacks, task timings.

Keys: ``requests`` (total), ``requests_by_provider``, ``requests_by_route``
(``"METHOD /route/template"``), ``creates`` (per kind), ``creates_total``,
``duplicate_creates`` (total; bodies are compared by the digest of their
canonical JSON, kept in a world), ``duplicate_creates_by_kind``, ``faults``
(per fault type), ``downloads``, ``downloads_expired``, ``callbacks``
(sent/failed/refused); ``Sandbox.stats`` adds ``credits_used`` and
``max_active_tasks`` (``"provider/account"`` keys). With
``extra["task_timings"]`` true, also ``tasks``: per task created since (the
last ``TASK_TIMINGS_LIMIT``, in creation order) its ``provider``, ``account``,
virtual ``created``/``started``/``finished`` and ``polls``, the virtual
instants of the provider requests whose answer read its state
(``Lifecycle.phase()`` during a request, once per request; the emulators' own
timers do not count; faulted requests never reach it). Not kept in a world.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Any

from lipbatch.sandbox.schedule import Lifecycle

#: The provider request being answered (a fresh marker per request; None in timers and control
#: routes' tasks): ``Lifecycle.phase()`` reads during one request count as one poll of the task.
_REQUEST: contextvars.ContextVar[object | None] = contextvars.ContextVar("lipbatch_sandbox_request",
                                                                         default=None)


def canonical_json(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class Stats:
    """The counters of requests, creates, faults, downloads and callbacks (kept in a world)."""

    def __init__(self) -> None:
        self.seen_bodies: dict[str, set[str]] = {}  # kind -> digests of canonical create bodies
        self.counts: dict[str, Any] = {
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

    def to_json(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Counter) else v for k, v in self.counts.items()}

    def record_request(self, provider: str | None, route: str | None = None) -> None:
        """Count a request and mark it as the one being answered (for the ``tasks`` polls); its route
        now, or with ``record_route`` once routed."""
        _REQUEST.set(object())  # the middleware's call: what the handler reads belongs to this request
        self.counts["requests"] += 1
        if provider:
            self.counts["requests_by_provider"][provider] += 1
        if route is not None:
            self.record_route(route)

    def record_route(self, route: str) -> None:
        self.counts["requests_by_route"][route] += 1

    def record_fault(self, kind: str) -> None:
        self.counts["faults"][kind] += 1

    def record_download(self, *, expired: bool = False) -> None:
        self.counts["downloads_expired" if expired else "downloads"] += 1

    def record_callback(self, outcome: str) -> None:
        """``outcome``: 'sent' | 'failed' | 'refused'."""
        self.counts["callbacks"][outcome] += 1

    def record_create(self, kind: str, body: Mapping[str, Any]) -> None:
        """Count a successful create; also counts ``duplicate_creates`` for repeated bodies."""
        self.counts["creates"][kind] += 1
        self.counts["creates_total"] += 1
        seen = self.seen_bodies.setdefault(kind, set())
        digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()[:32]
        if digest in seen:
            self.counts["duplicate_creates"] += 1
            self.counts["duplicate_creates_by_kind"][kind] += 1
        seen.add(digest)

    def restore(self, counts: Mapping[str, Any]) -> None:
        """Load saved ``counts``; ValueError on a stat this version does not keep."""
        for name, value in counts.items():
            if name not in self.counts:
                raise ValueError(f"unknown stat {name!r}")
            self.counts[name] = Counter(value) if isinstance(self.counts[name], Counter) else int(value)


class TaskTimings:
    """The latest tasks' schedules and polls, with ``extra["task_timings"]`` (not kept in a world)."""

    def __init__(self) -> None:
        self.tasks: OrderedDict[int, Lifecycle] = OrderedDict()

    def add(self, lifecycle: Lifecycle, *, keep: int) -> None:
        """Time a new task, forgetting the oldest beyond ``keep``."""
        self.tasks[lifecycle.id] = lifecycle
        while len(self.tasks) > keep:
            self.tasks.popitem(last=False)

    def note_poll(self, lifecycle: Lifecycle, now: float) -> None:
        """A read of ``lifecycle``'s phase at virtual ``now``: one poll per provider request."""
        request = _REQUEST.get()
        if request is None or request is lifecycle._polled_by or self.tasks.get(lifecycle.id) is not lifecycle:
            return
        lifecycle._polled_by = request
        lifecycle.polls.append(now)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"provider": lc.provider, "account": lc.account, "created": lc.created_at,
                 "started": lc.started_at, "finished": lc.finished_at, "polls": list(lc.polls)}
                for lc in self.tasks.values()]
