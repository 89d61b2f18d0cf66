"""The review decisions file: ``<manifest stem>.review.yaml`` beside the manifest, meant to be committed.

One entry per output path: ``decision`` (approved | rejected), ``note``,
``take`` (its number) and ``sha256`` of the take judged, ``by`` and ``at``. A
decision holds only for the take it names, so a new take of that output is
undecided again, even when its bytes happen to be identical (a deterministic
renderer, the sandbox): otherwise a rejected take made again identically would
be redone, and paid for, on every run. Entries are sorted by output and fields come in a fixed order, so the
same decisions always give the same bytes and a diff shows exactly the
outputs someone judged. A rehearsal's decisions (``--sandbox``) go to
``<stem>.review.sandbox.yaml``: sandbox takes are never deliverables.

Writers (``lipbatch review --serve`` and the CLI, possibly at once) take an
exclusive ``flock`` on the file, read it, change their entries and replace it
atomically. The file itself is the lock, so nothing but it appears in the
manifest's folder: after the lock is granted the writer checks that the path
still names the inode it locked (another writer may just have replaced it)
and tries again if not. Readers need no lock: the file is only ever replaced
whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lipbatch.errors import LipbatchError
from lipbatch.state import atomic_write_bytes

FORMAT = 1
APPROVED, REJECTED = "approved", "rejected"
DECISIONS = (APPROVED, REJECTED)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("decision", "note", "take", "sha256", "by", "at")
# libyaml when present (PyYAML wheels bundle it): a few times faster for campaigns of thousands of outputs
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class Decision:
    """A reviewer's verdict on one take of one output."""

    decision: str  # APPROVED | REJECTED
    sha256: str  # the take judged
    take: int  # its number
    note: str = ""
    by: str = ""
    at: str = ""  # UTC, ISO 8601 to the second

    def holds_for(self, sha256: str | None, take: int | None) -> bool:
        """True when this decision judged the take ``take`` with ``sha256`` (a newer take is undecided)."""
        return sha256 is not None and self.sha256 == sha256 and self.take == take


def decisions_path(manifest_path: Path, *, sandbox: bool = False) -> Path:
    """``campaign.yaml`` -> ``campaign.review.yaml`` (``campaign.review.sandbox.yaml`` for the rehearsal)."""
    suffix = ".review.sandbox.yaml" if sandbox else ".review.yaml"
    return manifest_path.with_name(manifest_path.stem + suffix)


def reviewer(cwd: Path | None = None) -> str:
    """Who is deciding: ``git config user.name`` where the manifest is, else $USER."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", "config", "user.name"], cwd=cwd, capture_output=True, text=True,
                              timeout=5, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    with contextlib.suppress(OSError, KeyError):
        return os.environ.get("USER") or getpass.getuser()
    return "unknown"


def now_utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_decisions(path: Path) -> dict[str, Decision]:
    """Every decision in ``path`` ({} when there is no file); a damaged file is a ``LipbatchError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return _parse(text, path)


def _parse(text: str, path: Path) -> dict[str, Decision]:
    if not text.strip():
        return {}
    if re.search(r"^(<{7}|>{7}|={7})( |$)", text, re.MULTILINE):
        raise LipbatchError(f"{path}: holds an unresolved merge conflict (<<<<<<< ... >>>>>>>); resolve it, "
                            "keeping one entry per output")
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise LipbatchError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or data.get("version") != FORMAT or not isinstance(data.get("outputs", {}), dict):
        raise LipbatchError(f"{path}: not a lipbatch review file (expected version: {FORMAT} and outputs: {{...}})")
    return {str(output): _entry(output, entry, path) for output, entry in (data.get("outputs") or {}).items()}


def _entry(output: Any, entry: Any, path: Path) -> Decision:
    where = f"{path}: outputs.{output}"
    if not isinstance(entry, dict) or set(entry) - set(_FIELDS):
        raise LipbatchError(f"{where}: expected the fields {', '.join(_FIELDS)}")
    if entry.get("decision") not in DECISIONS:
        raise LipbatchError(f"{where}: decision must be one of {', '.join(DECISIONS)}, not {entry.get('decision')!r}")
    if not isinstance(entry.get("sha256"), str) or not _SHA256.match(entry["sha256"]):
        raise LipbatchError(f"{where}: sha256 must be the 64 hex digits of the take judged")
    take = entry.get("take")
    if not isinstance(take, int) or isinstance(take, bool) or take < 1:
        raise LipbatchError(f"{where}: take must be the number of the take judged (1, 2, ...)")
    return Decision(entry["decision"], entry["sha256"], take,
                    *(str(entry.get(name) or "") for name in ("note", "by", "at")))


def dump_decisions(decisions: Mapping[str, Decision], manifest_name: str) -> bytes:
    """The file's bytes: a header, then the entries sorted by output, fields in a fixed order."""
    outputs = {output: {name: getattr(decisions[output], name) for name in _FIELDS}
               for output in sorted(decisions)}
    header = (f"# Review decisions for {manifest_name}, written by `lipbatch review`. Commit this file.\n"
              "# A decision holds for the take (number and sha256) it names; a new take is undecided again.\n")
    body = yaml.dump({"version": FORMAT, "outputs": outputs}, Dumper=_DUMPER, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=1 << 16)
    return (header + body).encode("utf-8")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file at ``path`` (created if missing) as it is now."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                continue
            if current == os.fstat(fd).st_ino:
                yield
                return
        finally:
            os.close(fd)  # releases the lock


def record_decisions(path: Path, changes: Mapping[str, Decision], *, manifest_name: str) -> dict[str, Decision]:
    """Set ``changes`` (output -> decision) in the file at ``path`` under its lock; returns every decision.

    Concurrent writers lose nothing: each reads the file after taking the lock.
    """
    with _locked(path):
        decisions = _parse(path.read_text(encoding="utf-8"), path)
        decisions.update(changes)
        data = dump_decisions(decisions, manifest_name)
        if path.read_bytes() != data:
            atomic_write_bytes(path, data)
    return decisions
