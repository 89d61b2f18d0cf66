"""What is in a campaign's output folder, checked against the state: ``verify`` and ``prune``.

Every file is one of: a current output (a done job's take, expected at its
path with its recorded sha256), a kept take (``takes/...``), an output no
current job makes (``orphan``: a removed language, a changed template; lipbatch
wrote it), or ``unknown`` (lipbatch has no record of it). The review page's
folder (``review/``) is lipbatch's too and is not listed. ``verify`` rehashes
every byte (not size and mtime: a same-size, same-mtime change is caught).
Temp files of an interrupted download (``.<name>.<random>.part``) are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lipbatch.hashing import file_sha256
from lipbatch.model import Project
from lipbatch.paths import REVIEW_DIR
from lipbatch.state import JobStatus, Loaded


@dataclass
class Inventory:
    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # a done job's output is not there
    altered: list[str] = field(default_factory=list)  # there, but not the recorded bytes
    lost: list[str] = field(default_factory=list)  # gone here and at the provider (recorded)
    orphans: list[str] = field(default_factory=list)  # lipbatch wrote it; no current job makes it
    unknown: list[str] = field(default_factory=list)  # lipbatch has no record of it
    takes: list[str] = field(default_factory=list)  # kept takes present and intact
    stale: list[str] = field(default_factory=list)  # lipbatch's file for an older request; the next run replaces it

    @property
    def clean(self) -> bool:
        return not (self.missing or self.altered or self.unknown or self.lost)

    def as_json(self) -> dict[str, list[str]]:
        return {name: getattr(self, name) for name in ("ok", "missing", "altered", "lost", "orphans", "unknown",
                                                        "takes", "stale")}


def files_in(folder: Path) -> list[str]:
    """Every regular file below ``folder`` (relative, POSIX), temp files of downloads excluded."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(".") and name.endswith(".part"):
                continue
            found.append(Path(root, name).relative_to(folder).as_posix())
    return found


def take_stock(project: Project, loaded: Loaded, *, rehash: bool = True) -> Inventory:
    """Classify every expected and present file of ``project``'s output folder."""
    inv = Inventory()
    current = {out for job in project.jobs for out in job.outputs}
    expected: dict[str, str | None] = {}  # path -> sha256 lipbatch recorded there
    for record in loaded.jobs.values():
        if record.status is JobStatus.DONE and record.output_sha256:
            for out in record.outputs:
                expected[out] = record.output_sha256
    kept = {take.kept: take.sha256 for take in loaded.takes if take.kept}
    present = set(files_in(project.output_dir)) if project.output_dir.is_dir() else set()

    def check(path: str, sha: str | None) -> bool:
        return not rehash or file_sha256(project.output_dir / path) == sha

    for job in project.jobs:
        record = loaded.jobs.get(job.key)
        if record is None or record.status is not JobStatus.DONE or not record.output_sha256:
            continue
        for out in job.outputs:
            if record.lost:
                inv.lost.append(out)
            elif out not in present:
                inv.missing.append(out)
            elif check(out, record.output_sha256):
                inv.ok.append(out)
            else:
                inv.altered.append(out)
    settled = set(inv.ok) | set(inv.altered)
    for path in sorted(present - settled):
        if path in kept:
            (inv.takes if check(path, kept[path]) else inv.altered).append(path)
        elif path in expected and check(path, expected[path]):
            (inv.stale if path in current else inv.orphans).append(path)
        elif path.startswith(f"{REVIEW_DIR}/"):
            continue  # the review page and its thumbnails (`lipbatch review`)
        else:
            inv.unknown.append(path)
    return inv
