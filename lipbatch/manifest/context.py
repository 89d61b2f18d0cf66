"""What every semantic check shares: the document, its positions, what the schema already refused."""

from __future__ import annotations

from typing import Any

from lipbatch.manifest.load import Positions
from lipbatch.manifest.problems import JsonPath, Report, did_you_mean, quote


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def strings(value: Any) -> list[tuple[int, str]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


class Context:
    """The parsed manifest plus reporting: each problem once, at its node, never under a broken path."""

    def __init__(self, data: dict[str, Any], pos: Positions, broken: set[JsonPath], report: Report):
        self.data = data
        self.pos = pos
        self.report = report
        # every prefix of a path the schema (or the YAML reader) refused: ``broken`` is a set lookup
        self._broken = {p[:n] for p in broken for n in range(len(p) + 1)}
        self._reported: set[tuple] = set()

    def add(self, path: JsonPath, message: str, *, key: bool = False, once: tuple | None = None) -> None:
        if once is not None:
            if once in self._reported:
                return
            self._reported.add(once)
        self.report.add(*self.pos.at(path, key=key), path, message)

    def broken(self, path: JsonPath) -> bool:
        """True when the schema reported a problem at ``path`` or below it."""
        return path in self._broken

    def ref(self, path: JsonPath, name: str, section: str, what: str) -> bool:
        """True when ``name`` names an entry of ``section``; reports undefined names.

        A required section that is missing, or a section of the wrong type, already has its
        schema problem: references into it are not reported again.
        """
        table = self.data.get(section)
        if not isinstance(table, dict):
            if section in self.data or section in ("providers", "clips"):
                return False
            table = {}
        if name not in table:
            hint = did_you_mean(name, table) or (
                f"; defined: {', '.join(sorted(table))}" if 0 < len(table) <= 20 else "")
            self.add(path, f"unknown {what} '{quote(name)}'{hint}")
            return False
        return True
