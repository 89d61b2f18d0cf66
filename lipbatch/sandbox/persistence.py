"""What a world saves of the sandbox core; the file I/O is ``sandbox/world.py``'s.

``snapshot`` holds what changes only with the world's content, ``volatile`` what
changes with nearly every request; emulators snapshot and restore their own
records. Lifecycles keep their ids, so emulators and the schedule share them
again after a reload.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lipbatch.sandbox.clock import VirtualClock
from lipbatch.sandbox.credits import Credits
from lipbatch.sandbox.faults import Faults
from lipbatch.sandbox.inputs import Inputs
from lipbatch.sandbox.results import ResultFiles
from lipbatch.sandbox.schedule import Schedule
from lipbatch.sandbox.stats import Stats


class Persistence:
    """``Sandbox``'s snapshot/volatile/restore, over the parts it holds (a mixin of ``core.Sandbox``)."""

    _clock: VirtualClock
    _generation: int
    _id_count: int
    _schedule: Schedule
    _credits: Credits
    _results: ResultFiles
    _stats: Stats
    _faults: Faults
    _inputs: Inputs

    def _clear(self) -> None:
        raise NotImplementedError  # Sandbox's: a fresh world

    def snapshot(self) -> dict[str, Any]:
        """This sandbox's records as JSON values: what changes only with the world's content (file
        bytes excluded; emulators snapshot their own records)."""
        now = self._clock.now()
        return {
            "secret": self._results.secret.hex(), "generation": self._generation,
            "lifecycles": self._schedule.count, "schedule": self._schedule.pending_json(now),
            "max_active": [[p, a, n] for (p, a), n in self._schedule.max_active.items()],
            "credits_used": self._credits.to_json(),
            "files": self._results.files.snapshot(),
            "seen_bodies": {kind: list(seen) for kind, seen in self._stats.seen_bodies.items()},
        }

    def volatile(self) -> dict[str, Any]:
        """What changes with nearly every request (clock, counters, stats), saved apart from ``snapshot``."""
        return {"now": self._clock.now(), "ids": self._id_count, "url_nonce": self._results.url_nonce,
                "fault_counts": self._faults.counts, "hosts": list(self._inputs.hosts),
                "stats": self._stats.counts}

    def restore(self, records: Mapping[str, Any], volatile: Mapping[str, Any], *, now: float, files: Path) -> None:
        """Load ``snapshot()`` and ``volatile()`` output, with the virtual clock set to ``now``; stored
        file bytes are in the folder ``files``. Call before the emulators restore (they look
        lifecycles up here). Raises KeyError/TypeError/ValueError on malformed data."""
        self._clear()
        self._results.secret = bytes.fromhex(records["secret"])
        self._generation = int(records["generation"])
        self._schedule.count = int(records["lifecycles"])
        self._clock.set(now)
        self._schedule.restore(records["schedule"])
        self._schedule.max_active = {(p, a): int(n) for p, a, n in records["max_active"]}
        self._credits.restore(records["credits_used"])
        self._results.files.restore(records["files"], files)
        self._stats.seen_bodies = {kind: set(seen) for kind, seen in records["seen_bodies"].items()}
        self._id_count, self._results.url_nonce = int(volatile["ids"]), int(volatile["url_nonce"])
        self._faults.counts = Counter(volatile["fault_counts"])
        self._inputs.hosts = set(volatile["hosts"])
        self._stats.restore(volatile["stats"])
