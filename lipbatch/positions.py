"""Where a manifest sets a value: ``file:line:col`` for a JSON path, for reports made after loading.

The loader positions its own problems; a run that learns about a bad value later
(a voice id the provider refuses, a catalogue check) re-reads the manifest's
nodes here instead of carrying every position through the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode


def _node(text: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None


def _child(node: Node, part: str | int) -> Node | None:
    if isinstance(node, MappingNode):
        return next((value for key, value in node.value if getattr(key, "value", None) == part), None)
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


def locate(manifest: Path, path: Sequence[str | int]) -> tuple[int, int] | None:
    """1-based (line, column) of the value at ``path``, or None when the manifest has no such value."""
    try:
        node = _node(Path(manifest).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    for part in path:
        if node is None:
            return None
        node = _child(node, part)
    if node is None:
        return None
    return node.start_mark.line + 1, node.start_mark.column + 1


def find(manifest: Path, candidates: Sequence[Sequence[str | int]]) -> tuple[str, str] | None:
    """(``file:line:col``, ``$.a.b``) of the first of ``candidates`` the manifest sets, else None."""
    for path in candidates:
        where = locate(manifest, path)
        if where is not None:
            dotted = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
            return f"{manifest}:{where[0]}:{where[1]}", dotted
    return None


def describe(manifest: Path, candidates: Sequence[Sequence[str | int]]) -> str | None:
    """``file:line:col ($.a.b)`` for the first of ``candidates`` the manifest sets, else None."""
    found = find(manifest, candidates)
    return f"{found[0]} ({found[1]})" if found else None


def value_paths(job_voice: str | None, clip: str, account: str, kind: str, param: str) -> list[tuple[str, ...]]:
    """Where the manifest may set a job's ``param``: a voice's entry (account name first, then kind), or
    the clip's avatar."""
    if param == "avatar_id":
        return [("clips", clip, "avatar")]
    if job_voice is None:
        return []
    return [("voices", job_voice, account), ("voices", job_voice, kind)]
