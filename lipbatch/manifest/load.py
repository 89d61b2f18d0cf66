"""Reading a manifest file into plain data that remembers where every value came from.

YAML dialect: booleans are YAML 1.2's (``true``/``false`` only) and dates stay
strings, so ``no:`` is the Norwegian line, not ``False``. Mapping keys are
always their source text. Duplicate keys are an error (PyYAML silently keeps
the last). Merge keys (``<<: *base``) work; keys written beside them win.

A manifest is untrusted input. Everything below is refused with a position, in
bounded time and memory, never with a traceback:

- Not a regular file (a folder, a FIFO, ``/dev/zero``): checked with ``os.stat``
  before opening, and the file is opened with ``O_NONBLOCK``, so nothing blocks.
- Larger than ``MAX_MANIFEST_BYTES`` (10 MiB; the 5,000-job test campaign is 6 kB).
- Not UTF-8: the first undecodable byte is reported at its line and column.
- More than ``MAX_NODES`` (200,000) YAML nodes (keys, values and alias uses;
  the 5,000-job test campaign has 550), or nesting deeper than ``MAX_DEPTH``
  (64; a manifest needs 7): they bound the Python recursion and the memory of
  the composed document (under 1 kB per node).
- Aliases that repeat more than ``MAX_ALIAS_NODES`` (100,000) values in all
  ("billion laughs"): every value reached through an alias, merge keys
  included, counts against one budget; the problem is reported at the alias,
  written in the document, whose expansion crossed it.
- Numbers that are not finite (``.nan``, ``.inf``, ``1e999``) or too large for
  a float, and YAML types JSON does not have (``!!binary``, ``!!set``).
"""

from __future__ import annotations

import copy
import math
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lipbatch.manifest.credentials import ROLE, in_credentials
from lipbatch.manifest.problems import JsonPath, Report, TooManyProblems, quote

MAX_MANIFEST_BYTES = 10 * 1024 * 1024
MAX_NODES = 200_000
MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 64

Add = Callable[[int, int, JsonPath, str], None]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((words for test, words in _FILE_KINDS if test(mode)), "not a regular file")


# --------------------------------------------------------------------------- the file


def read_manifest(path: Path, add: Add) -> str | None:
    """The manifest's text, or None after reporting why it cannot be read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        add(1, 1, (), "manifest file not found")
        return None
    except (OSError, ValueError) as exc:
        add(1, 1, (), f"cannot read the manifest: {getattr(exc, 'strerror', None) or exc}")
        return None
    if not _usable(st, add):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            if not _usable(os.fstat(fh.fileno()), add):  # replaced between stat and open
                return None
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        add(1, 1, (), f"cannot read the manifest: {exc.strerror or exc}")
        return None
    if len(data) > MAX_MANIFEST_BYTES:
        add(1, 1, (), _too_big(len(data)))
        return None
    return _decode(data, add)


def _usable(st: os.stat_result, add: Add) -> bool:
    if stat.S_ISDIR(st.st_mode):
        add(1, 1, (), "the manifest path is a folder, not a YAML file")
        return False
    if not stat.S_ISREG(st.st_mode):
        add(1, 1, (), f"the manifest is {file_kind(st.st_mode)}, not a regular file: give the path of a YAML file")
        return False
    if st.st_size > MAX_MANIFEST_BYTES:
        add(1, 1, (), _too_big(st.st_size))
        return False
    return True


def _too_big(size: int) -> str:
    return (f"the manifest is {'more than ' if size > MAX_MANIFEST_BYTES else ''}{size:,} bytes; lipbatch reads "
            f"manifests of at most {MAX_MANIFEST_BYTES // 2**20} MiB ({MAX_MANIFEST_BYTES:,} bytes)")


def _decode(data: bytes, add: Add) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            add(1, 1, (), "the manifest is UTF-16: save it as UTF-8")
            return None
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        add(line, column, (), f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded; save the manifest "
                              f"as UTF-8")
        return None


# --------------------------------------------------------------------------- YAML with positions


class Positions:
    """1-based (line, column) of each value node and of each mapping key, by JSON path."""

    def __init__(self) -> None:
        self.value: dict[JsonPath, tuple[int, int]] = {}
        self.key: dict[JsonPath, tuple[int, int]] = {}

    def at(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        while True:
            if key and path in self.key:
                return self.key[path]
            if path in self.value:
                return self.value[path]
            if not path:
                return (1, 1)
            path = path[:-1]


class _Refused(Exception):
    """A limit was crossed: stop reading, report ``message`` at ``mark`` (and ``path`` when known)."""

    def __init__(self, mark: Any, message: str, path: JsonPath = ()):
        super().__init__(message)
        self.mark, self.message, self.path = mark, message, path


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when built with it: ~2x faster
    """SafeLoader with YAML 1.2 booleans, no implicit timestamps, and a composer that counts.

    Composition runs in Python (over libyaml's events) so it can count nodes,
    bound the nesting, and give every alias use its own node (a shallow copy
    that shares the anchored node's children) carrying the alias's position.
    """

    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node

    def __init__(self, text: str):
        super().__init__(text)
        self.anchors: dict[str, Node] = {}
        self.nodes = 0
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        mark = self.peek_event().start_mark
        self.nodes += 1  # an alias use is a node too: a file of 2 million "*a" must not become 2 million copies
        if self.nodes > MAX_NODES:
            raise _Refused(mark, f"the manifest has more than {MAX_NODES:,} values; lipbatch reads at most "
                                 f"{MAX_NODES:,} (split the campaign into several manifests)")
        if self.check_event(AliasEvent):
            event = self.get_event()
            if event.anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {quote(event.anchor)!r}", event.start_mark)
            target = self.anchors[event.anchor]
            node = copy.copy(target)
            node.start_mark = node.end_mark = event.start_mark
            node.alias_of = getattr(target, "alias_of", target)
            return node
        if self.depth >= MAX_DEPTH:
            raise _Refused(mark, f"values are nested more than {MAX_DEPTH} levels deep (a manifest needs 7)")
        self.depth += 1
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _mark(node_or_mark: Any) -> tuple[int, int]:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return (mark.line + 1, mark.column + 1)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


class _Builder:
    """Plain data from composed nodes, with positions, alias budget and merge keys."""

    def __init__(self, loader: _Loader, pos: Positions, add: Add, refused: set[JsonPath]):
        self.loader, self.pos, self.add, self.refused = loader, pos, add, refused
        self.active: set[int] = set()
        self.alias_nodes = 0
        self.outer_alias: tuple[Node, JsonPath] | None = None

    def build(self, node: Node, path: JsonPath) -> Any:
        self.pos.value.setdefault(path, _mark(node))
        origin = getattr(node, "alias_of", None)
        entered = origin is not None and self.outer_alias is None
        if entered:
            self.outer_alias = (node, path)
        try:
            if self.outer_alias is not None:
                self.alias_nodes += 1
                if self.alias_nodes > MAX_ALIAS_NODES:
                    alias, at = self.outer_alias
                    raise _Refused(alias.start_mark, f"aliases expand to more than {MAX_ALIAS_NODES:,} values "
                                                     f"(an alias bomb?); lipbatch expands at most "
                                                     f"{MAX_ALIAS_NODES:,}", at)
            if len(path) > MAX_DEPTH:
                raise _Refused(node.start_mark, f"values are nested more than {MAX_DEPTH} levels deep "
                                                f"(through aliases)", path)
            key = id(origin or node)
            if key in self.active:
                self.add(*_mark(node), path, "an alias refers to itself")
                return None
            if isinstance(node, ScalarNode):
                return self.scalar(node, path)
            if node.tag not in _COLLECTION_TAGS:
                self.refuse(node, path, f"the YAML tag {quote(node.tag)!r} is not used in manifests: write a plain "
                                        f"list or mapping")
                return None
            self.active.add(key)
            try:
                return self.mapping(node, path) if isinstance(node, MappingNode) else self.sequence(node, path)
            finally:
                self.active.discard(key)
        finally:
            if entered:
                self.outer_alias = None

    def sequence(self, node: SequenceNode, path: JsonPath) -> list[Any]:
        return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]

    def mapping(self, node: MappingNode, path: JsonPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.add(*_mark(key_node), path, "mapping keys must be plain names, not lists or mappings")
                continue
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = key_node.value
            child = (*path, key)
            if key in out:
                shown, where = (key, child) if not in_credentials(child) or ROLE.match(key) else ("(not shown)", path)
                self.add(*_mark(key_node), where,
                         f"duplicate key '{quote(shown)}' (first given on line {first_line[key]})")
                continue
            first_line[key] = _mark(key_node)[0]
            self.pos.key.setdefault(child, _mark(key_node))
            out[key] = self.build(value_node, child)
        for merge in merges:  # after the keys written here, whose positions and values win
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.add(*_mark(source), path, "'<<' merges a mapping (or a list of mappings) into this one")
                    continue
                merged = self.build(source, path)
                for key, value in (merged if isinstance(merged, dict) else {}).items():
                    out.setdefault(key, value)
        return out

    def scalar(self, node: ScalarNode, path: JsonPath) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except ValueError:  # an integer of more than 4,300 digits, or a malformed explicit !!int
            self.refuse(node, path, f"{quote(node.value)!r} is not a number lipbatch can read")
            return None
        if isinstance(value, float | int) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) <= sys.float_info.max:
                return value
            if isinstance(value, float) and math.isfinite(value):
                return value
            what = "not a finite number" if isinstance(value, float) else "too large for a number"
            self.refuse(node, path, f"{quote(node.value)!r} is {what}: give a finite number")
            return None
        if value is None or isinstance(value, str | bool):
            return value
        self.refuse(node, path, f"a YAML {node.tag.rsplit(':', 1)[-1]} value is not used in manifests: "
                                f"write a string, number, true/false, list or mapping")
        return None

    def refuse(self, node: Node, path: JsonPath, message: str) -> None:
        self.refused.add(path)
        self.add(*_mark(node), path, message)


def parse_yaml(text: str, pos: Positions, add: Add) -> tuple[Any, set[JsonPath]]:
    """(document as plain data or None, paths whose values were refused); problems go to ``add``."""
    refused: set[JsonPath] = set()
    loader = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is None:
            add(1, 1, (), "the manifest is empty")
            return None, refused
        return _Builder(loader, pos, add, refused).build(root, ()), refused
    except _Refused as exc:
        add(*_mark(exc.mark), exc.path, exc.message)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        detail = ", ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        add(line, col, (), f"YAML syntax error: {detail}")
    except yaml.reader.ReaderError as exc:
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        add(*_line_col(text, exc.position), (), f"YAML does not allow the character {char} ({exc.reason})")
    except yaml.YAMLError as exc:
        add(1, 1, (), f"YAML error: {exc}")
    except RecursionError:  # belt and braces: MAX_DEPTH keeps the recursion far below Python's limit
        add(1, 1, (), "values are nested too deeply")
    finally:
        if loader is not None:
            loader.dispose()
    return None, refused


def read_document(path: Path) -> Any:
    """The manifest as plain data under every limit above (no schema, no checks); raises ``ManifestProblems``.

    For commands that only need a section of a manifest (``lipbatch voices -m``) and must not
    read it with a plain ``yaml.safe_load``, which has none of these limits.
    """
    report = Report(str(path))
    data = None
    try:
        text = read_manifest(Path(path), report.add)
        if text is not None:
            data, _refused = parse_yaml(text, Positions(), report.add)
    except TooManyProblems:
        pass
    if report:
        raise report.error()
    return data
