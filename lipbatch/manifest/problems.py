"""Problems found in a manifest, each positioned on its source, and the collector they go to.

The collector stops a hostile manifest early: after ``MAX_PROBLEMS`` findings it
raises ``TooManyProblems`` instead of listing millions of lines (a 10 MB list of
bad entries would otherwise take minutes to check and print).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lipbatch.errors import ManifestError

JsonPath = tuple[str | int, ...]

#: findings reported before validation stops (the last one says so)
MAX_PROBLEMS = 1000
#: longest piece of manifest text quoted back in a message
QUOTE_CHARS = 80
#: did-you-mean looks among at most this many names (difflib is quadratic-ish per name)
_SUGGEST_AMONG = 5000


@dataclass(frozen=True, order=True)
class Problem:
    """One finding, positioned on the manifest's source."""

    line: int
    column: int
    path: str
    message: str
    file: str = ""

    def format(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column,
                "path": self.path, "message": self.message}


class ManifestProblems(ManifestError):
    """A ``ManifestError`` that also keeps the structured problems (for ``--json``)."""

    def __init__(self, problems: list[Problem]):
        super().__init__([p.format() for p in problems])
        self.details = problems


class TooManyProblems(Exception):
    """Raised by ``Report.add`` once ``MAX_PROBLEMS`` findings are in."""


class Report:
    """Every problem of one manifest, labelled with the manifest's path as the user gave it."""

    def __init__(self, label: str):
        self.label = label
        self.problems: list[Problem] = []

    def __bool__(self) -> bool:
        return bool(self.problems)

    def add(self, line: int, column: int, path: JsonPath, message: str) -> None:
        self.problems.append(Problem(line, column, format_path(path), message, self.label))
        if len(self.problems) >= MAX_PROBLEMS:
            self.problems.append(Problem(line, column, format_path(path),
                                         f"stopped after {MAX_PROBLEMS:,} problems: fix these and validate again",
                                         self.label))
            raise TooManyProblems

    def error(self) -> ManifestProblems:
        return ManifestProblems(sorted(set(self.problems)))


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Iterable[str | int]) -> str:
    """JSONPath of a node: ``$.jobs[0].clips[1]``, ``$.clips["anna.v2"]``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(quote(part), ensure_ascii=False)}]"
    return out


def quote(text: str) -> str:
    """``text`` cut to ``QUOTE_CHARS`` characters for a message (a 5 MB key is not echoed whole)."""
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    names = sorted(set(candidates))
    if len(word) > QUOTE_CHARS or len(names) > _SUGGEST_AMONG:
        return ""
    match = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
