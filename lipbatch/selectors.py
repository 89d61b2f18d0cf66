"""Selectors a producer types to pick jobs: ``clip=anna lang=de``, a key prefix, ``output=de/*``.

Used by ``run --only``, ``redo`` and ``review --approve/--reject``. Grammar:

- ``FIELD=VALUE[,VALUE...]`` with FIELD one of ``clip script lang voice provider output key``;
  ``provider`` matches an account name or a kind; ``output`` is a shell pattern (``de/*.mp4``)
  matched against every output path of the job; ``key`` is a prefix.
- A bare word of 4 or more hex digits is a job key prefix (what ``plan`` prints).
- Terms on different fields must all match (AND); several values or terms for one field
  are alternatives (OR): ``lang=de lang=fr clip=anna`` is anna's German and French jobs.

Nonsense (an unknown field, an empty value, a word that is neither) is a ``UsageError`` (exit 2).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lipbatch.errors import UsageError
from lipbatch.manifest import did_you_mean
from lipbatch.model import Job

FIELDS = ("clip", "script", "lang", "voice", "provider", "output", "key")
_HEX = re.compile(r"^[0-9a-f]{4,64}$")


@dataclass(frozen=True)
class Selector:
    """Alternatives per field; a job matches when every field named matches one of its values."""

    terms: dict[str, tuple[str, ...]] = field(default_factory=dict)
    text: str = ""

    def matches(self, job: Job) -> bool:
        return all(any(_match(name, value, job) for value in values) for name, values in self.terms.items())

    def select(self, jobs: Iterable[Job]) -> list[Job]:
        return [job for job in jobs if self.matches(job)]


def _match(name: str, value: str, job: Job) -> bool:
    if name == "key":
        return job.key.startswith(value)
    if name == "provider":
        return value in (job.account, job.kind)
    if name == "output":
        return any(fnmatch.fnmatchcase(output, value) for output in job.outputs)
    return getattr(job, name) == value


def parse_selectors(words: Sequence[str]) -> Selector:
    """Parse command-line words into one ``Selector``; raises ``UsageError`` explaining any nonsense."""
    if not words:
        raise UsageError("no selector given: e.g. clip=anna lang=de, provider=runway, or a key prefix from `plan`")
    terms: dict[str, list[str]] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep:
            if _HEX.match(word.lower()):
                terms.setdefault("key", []).append(word.lower())
                continue
            raise UsageError(f"selector {word!r}: expected FIELD=VALUE (fields: {', '.join(FIELDS)}) "
                             "or a job key prefix of 4+ hex digits")
        name = name.strip().lower()
        if name not in FIELDS:
            raise UsageError(f"selector {word!r}: unknown field {name!r}{did_you_mean(name, FIELDS)}; "
                             f"fields: {', '.join(FIELDS)}")
        values = [v.strip() for v in value.split(",")]
        if not all(values):
            raise UsageError(f"selector {word!r}: empty value")
        if name == "key":
            bad = [v for v in values if not _HEX.match(v.lower())]
            if bad:
                raise UsageError(f"selector {word!r}: a key prefix is 4+ hex digits, not {bad[0]!r}")
            values = [v.lower() for v in values]
        terms.setdefault(name, []).extend(values)
    return Selector({name: tuple(values) for name, values in terms.items()}, " ".join(words))


def select_or_fail(selector: Selector, jobs: Sequence[Job]) -> list[Job]:
    """The matching jobs; no match at all is a usage error that names what exists."""
    chosen = selector.select(jobs)
    if not chosen:
        raise UsageError(f"no job matches {selector.text!r} ({len(jobs)} job(s) in the manifest; "
                         "`lipbatch plan` lists them)")
    return chosen
