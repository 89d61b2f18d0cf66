"""What runs learn beside the records (job durations, ``lipbatch.polling``): JSON side files of the local state.

``learned(name)`` reads ``<state>.<name>``; ``learn(name, merge)`` replaces it atomically with
``merge(stored)``. The state's lock makes the run holding it the only writer. The PostgreSQL
backend keeps the same values in its ``meta`` table, merged under a row lock, so every worker
of a shared campaign learns from all the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lipbatch.state.durable import atomic_write_bytes


class LearnedFiles:
    """Mixin of ``State``: learned values as ``<state>.<name>`` files."""

    path: Path

    def learned(self, name: str) -> Any:
        """The stored value (JSON), or None when there is none or it cannot be read."""
        try:
            return json.loads(self._learned_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def learn(self, name: str, merge: Callable[[Any], Any]) -> None:
        """Store ``merge(stored)``; raises ``OSError`` when it cannot be written."""
        atomic_write_bytes(self._learned_path(name), json.dumps(merge(self.learned(name))).encode("utf-8"))

    def _learned_path(self, name: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{name}")
