"""Load, validate and expand a manifest (see schemas/manifest.schema.json) into a ``Project``.

Three passes, every problem collected before anything is reported:

1. YAML, composed into nodes so each value keeps its line and column. Booleans
   are YAML 1.2's (``true``/``false`` only) and dates stay strings: ``no:`` is
   the Norwegian line, not ``False``. Mapping keys are always their source
   text. Duplicate keys are an error (PyYAML silently keeps the last).
2. The JSON Schema, with each error mapped back to the node it is about.
3. Semantic checks: references with did-you-mean, input files, media
   durations (probed locally through ``hashing.HashCache``; never the network),
   what each provider kind accepts, voice ids, output templates and paths.

Readings of the spec where the documents left a choice:

- A clip's ``start``/``end`` window is honoured by magichour-lipsync only (the
  one API that takes start/end seconds). Any other kind given a windowed clip
  is an error asking for a trimmed file: silently sending the whole video
  would lip-sync the wrong footage. The Act-Two 3-30 s check uses the probed
  length; remote (https) clips cannot be probed offline and are not checked.
- ``voices:`` on a job is Act-Two only; lip-sync voices come from the script
  or the line. An Act-Two job takes no ``scripts``/``languages``.
- ``model_id`` (Runway) only reaches ``params`` for text lines: the docs say it
  only matters with a TTS voice, and it must not change audio jobs' keys.
- Numbers in ``params`` that are seconds or fps are floats, so ``2`` and
  ``2.0`` give one key. Text is stripped of surrounding whitespace.
- Identical requests (same key) merge into one ``Job`` even across accounts of
  one kind; the job keeps the account, clip, script, language and voice of its
  first output in sorted order. ``Project.jobs`` is sorted by first output, so
  it does not depend on YAML order.
- ``{voice}`` in a template needs a voice: a recorded-audio line has none, and
  using it there is an error. Output paths are compared case-insensitively
  (macOS and Windows file systems would make them collide).
- PixVerse's inline data-URI cap is 20 MiB per file; Magic Hour needs an end
  time for a remote clip (it cannot be probed offline).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lipbatch.budget import cost_problems
from lipbatch.errors import ManifestError
from lipbatch.hashing import HashCache
from lipbatch.media import MediaError, media_type
from lipbatch.model import Account, InputRef, Job, Project
from lipbatch.providers import DEFAULT_BASE_URLS, DEFAULT_CREDENTIALS, client_class
from lipbatch.providers.aimlapi_pixverse import DATA_URI_LIMIT_BYTES

_SCHEMA_CANDIDATES = (
    Path(__file__).parent / "schemas" / "manifest.schema.json",
    Path(__file__).parent.parent / "schemas" / "manifest.schema.json",
)

# Client-side caps when the manifest sets none: useapi recommends maxJobs 5; Magic Hour's smallest paid
# plan (Creator) runs 3 at once; AIML and Creatify publish no limit, so stay gentle.
DEFAULT_CONCURRENCY: dict[str, int] = {
    "runway-lipsync": 5,
    "runway-act-two-voice": 5,
    "magichour-lipsync": 3,
    "aimlapi-pixverse-lipsync": 2,
    "creatify-lipsync": 2,
}
TEMPLATE_FIELDS = ("clip", "script", "lang", "voice", "provider")
TTS_CHARS_PER_SECOND = 15.0
ACT_TWO_SECONDS = (3.0, 30.0)
_DURATION_SLACK = 0.05  # container durations round; a window may end a frame past the probed end
_OPTION_PARAMS = ("exploreMode", "model_id", "generation_mode", "max_fps_limit", "aspect_ratio",
                  "model_version", "captions", "background_url")
_FLOAT_PARAMS = {"start_seconds", "end_seconds", "max_fps_limit"}
_KIND_LABEL = {
    "runway-lipsync": "Runway lip sync",
    "runway-act-two-voice": "Runway Act-Two voice swap",
    "magichour-lipsync": "Magic Hour lip sync",
    "aimlapi-pixverse-lipsync": "PixVerse lip sync (AI/ML API)",
    "creatify-lipsync": "Creatify lip sync",
}
_ROLE_MIME = {"video": ("video/",), "image": ("image/",), "audio": ("audio/", "video/webm")}

JsonPath = tuple[str | int, ...]


# --------------------------------------------------------------------------- problems


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
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


# --------------------------------------------------------------------------- YAML with positions


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when built with it: ~2x faster
    """SafeLoader with YAML 1.2 booleans and no implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _Positions:
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


def _mark(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _parse_yaml(text: str, pos: _Positions, add) -> Any:
    """The document as plain data; problems (syntax, duplicate keys) go to ``add(line, col, path, msg)``."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            add(1, 1, (), "the manifest is empty")
            return None
        active: set[int] = set()

        def build(node: Node, path: JsonPath) -> Any:
            pos.value.setdefault(path, _mark(node))
            if id(node) in active:
                add(*_mark(node), path, "an alias refers to itself")
                return None
            if isinstance(node, MappingNode):
                active.add(id(node))
                loader.flatten_mapping(node)
                out: dict[str, Any] = {}
                first_line: dict[str, int] = {}
                for key_node, value_node in node.value:
                    if not isinstance(key_node, ScalarNode):
                        add(*_mark(key_node), path, "mapping keys must be plain names, not lists or mappings")
                        continue
                    key = key_node.value
                    child = (*path, key)
                    if key in out:
                        add(*_mark(key_node), child,
                            f"duplicate key '{key}' (first given on line {first_line[key]})")
                        continue
                    first_line[key] = _mark(key_node)[0]
                    pos.key.setdefault(child, _mark(key_node))
                    out[key] = build(value_node, child)
                active.discard(id(node))
                return out
            if isinstance(node, SequenceNode):
                active.add(id(node))
                items = [build(item, (*path, i)) for i, item in enumerate(node.value)]
                active.discard(id(node))
                return items
            return loader.construct_object(node, deep=True)

        return build(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        detail = ", ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        add(line, col, (), f"YAML syntax error: {detail}")
        return None
    except yaml.YAMLError as exc:
        add(1, 1, (), f"YAML error: {exc}")
        return None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- schema


@functools.cache
def schema() -> dict[str, Any]:
    """The manifest JSON Schema (draft 2020-12)."""
    for candidate in _SCHEMA_CANDIDATES:
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    raise FileNotFoundError("manifest.schema.json is not installed with lipbatch")


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def pixverse_speakers() -> tuple[str, ...]:
    """PixVerse's documented TTS speakers (the schema holds the list)."""
    return tuple(schema()["$defs"]["voice"]["properties"]["aimlapi-pixverse-lipsync"]["enum"])


_TYPE_WORDS = {"string": "a string", "object": "a mapping", "array": "a list", "integer": "a whole number",
               "number": "a number", "boolean": "true or false", "null": "nothing"}
_SCALAR_VALIDATORS = {"type", "enum", "const", "pattern", "minimum", "maximum", "exclusiveMinimum",
                      "exclusiveMaximum", "minLength", "maxLength"}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    return "a list" if isinstance(value, list) else "a mapping"


def _fill(template: str, **values: Any) -> str:
    """``{name}`` placeholders of a schema errorMessage (other braces are literal text)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def _schema_problems(data: Any) -> list[tuple[JsonPath, bool, str]]:
    """(path, point-at-key?, message) for every schema error."""
    found: list[tuple[JsonPath, bool, str]] = []
    for err in _validator().iter_errors(data):
        path: JsonPath = tuple(err.absolute_path)
        sub = err.schema if isinstance(err.schema, dict) else {}
        custom = sub.get("errorMessage", {})
        template = custom.get(err.validator) if isinstance(custom, dict) else None
        instance = err.instance
        if "propertyNames" in err.schema_path:
            found.append(((*path, instance), True, _fill(template, instance=instance) if template
                          else f"'{instance}' is not a valid name"))
            continue
        if err.validator == "additionalProperties":
            allowed = list(sub.get("properties", {}))
            for extra in [k for k in instance if k not in sub.get("properties", {})]:
                if template:
                    msg = _fill(template, key=extra)
                else:
                    msg = f"unknown key '{extra}'" + (
                        did_you_mean(extra, allowed) or f"; expected one of: {', '.join(allowed)}")
                found.append(((*path, extra), True, msg))
            continue
        at_key = err.validator not in _SCALAR_VALIDATORS or isinstance(instance, dict | list)
        if template:
            msg = _fill(template, instance=instance, limit=err.validator_value)
        elif err.validator == "required":
            match = re.match(r"^'(.+)' is a required property$", err.message)
            msg = f"missing required key '{match.group(1)}'" if match else err.message
        elif err.validator == "type":
            wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            msg = f"expected {' or '.join(_TYPE_WORDS.get(t, t) for t in wanted)}, got {_describe(instance)}"
        elif err.validator == "enum":
            choices = [str(c) for c in err.validator_value]
            msg = f"{instance!r} is not one of: {', '.join(choices)}"
            if isinstance(instance, str):
                msg += did_you_mean(instance, choices)
        elif err.validator == "const":
            msg = f"must be {err.validator_value!r}, got {instance!r}"
        elif err.validator == "minimum":
            msg = f"must be at least {err.validator_value}, got {instance}"
        elif err.validator == "maximum":
            msg = f"must be at most {err.validator_value}, got {instance}"
        elif err.validator == "exclusiveMinimum":
            msg = f"must be greater than {err.validator_value}, got {instance}"
        elif err.validator == "minLength":
            msg = "must not be empty"
        elif err.validator in ("minItems", "minProperties"):
            msg = "must list at least one entry"
        elif err.validator == "uniqueItems":
            seen: set[str] = set()
            dups = [x for x in instance if isinstance(x, str) and (x in seen or seen.add(x))]
            msg = f"lists '{dups[0]}' more than once" if dups else "lists an entry more than once"
        elif err.validator == "pattern":
            msg = f"{instance!r} does not match {err.validator_value}"
        else:
            msg = err.message
        found.append((path, at_key, msg))
    return found


# --------------------------------------------------------------------------- keys


def _canonical(value: Any, name: str = "") -> Any:
    if name in _FLOAT_PARAMS and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def job_key(kind: str, params: Mapping[str, Any], inputs: Mapping[str, InputRef]) -> str:
    """Content address of a request: sha256 of canonical JSON of kind, params and input identities.

    Account names, clip/script ids, output paths and YAML order are not part of it.
    """
    payload = {
        "kind": kind,
        "params": {name: _canonical(value, name) for name, value in params.items()},
        "inputs": {role: ref.identity for role, ref in inputs.items()},
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- semantic checks + expansion


@dataclass
class _Cell:
    """One matrix cell before identical requests merge."""

    job_index: int
    account: Account
    clip: str
    script: str | None
    lang: str | None
    voice: str | None
    output: str
    inputs: dict[str, InputRef]
    params: dict[str, Any]
    expected_seconds: float | None
    key: str = ""

    def describe(self) -> str:
        parts = [f"clip '{self.clip}'"]
        if self.script is not None:
            parts.append(f"script '{self.script}'")
        if self.lang is not None:
            parts.append(f"language '{self.lang}'")
        if self.script is None and self.voice is not None:
            parts.append(f"voice '{self.voice}'")
        return ", ".join(parts)


def _similar_file(file: Path) -> str:
    """Did-you-mean for a missing file: same-stem siblings first (de.mp3 -> de.wav), then any name."""
    siblings = sorted(p.name for p in file.parent.iterdir()) if file.parent.is_dir() else []
    stems = difflib.get_close_matches(file.stem, [Path(n).stem for n in siblings], n=1, cutoff=0.6)
    if stems:
        return f" (did you mean '{next(n for n in siblings if Path(n).stem == stems[0])}'?)"
    return did_you_mean(file.name, siblings)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[tuple[int, str]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


def _is_url(ref: str) -> bool:
    return ref.startswith("https://")


def default_paths(manifest: Path, data: Any = None) -> tuple[Path, Path]:
    """(output_dir, state_path) of a manifest: its settings or the defaults beside it."""
    base = manifest.parent
    data = _mapping(data)
    out, state = data.get("output_dir"), data.get("state_file")
    output_dir = base / out if isinstance(out, str) and out else base / f"{manifest.stem}-output"
    state_path = base / state if isinstance(state, str) and state else base / f"{manifest.stem}.lipbatch-state.json"
    return output_dir.resolve(), state_path.resolve()


class _Checker:
    def __init__(self, path: Path, data: dict[str, Any], pos: _Positions, broken: set[JsonPath],
                 cache: HashCache, add):
        self.base = path.resolve().parent
        self.data = data
        self.pos = pos
        self.broken_paths = broken
        self.cache = cache
        self._add = add
        self._reported: set[tuple] = set()
        self._media: dict[tuple[str, str], tuple[InputRef | None, Any]] = {}
        self.providers = _mapping(data.get("providers"))
        self.clips = _mapping(data.get("clips"))
        self.voices = _mapping(data.get("voices"))
        self.scripts = _mapping(data.get("scripts"))
        self.accounts: dict[str, Account] = {}

    # -- helpers

    def add(self, path: JsonPath, message: str, *, key: bool = False, once: tuple | None = None) -> None:
        if once is not None:
            if once in self._reported:
                return
            self._reported.add(once)
        self._add(*self.pos.at(path, key=key), path, message)

    def broken(self, path: JsonPath) -> bool:
        n = len(path)
        return any(p[:n] == path for p in self.broken_paths)

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
            hint = did_you_mean(name, table) or (f"; defined: {', '.join(sorted(table))}" if table else "")
            self.add(path, f"unknown {what} '{name}'{hint}")
            return False
        return True

    # -- sections

    def check_providers(self) -> None:
        for name, spec in self.providers.items():
            if self.broken(("providers", name)) or not isinstance(spec, dict):
                continue
            kind = spec["kind"]
            self.accounts[name] = Account(
                name=name,
                kind=kind,
                base_url=spec.get("base_url") or DEFAULT_BASE_URLS[kind],
                credentials={**DEFAULT_CREDENTIALS[kind], **_mapping(spec.get("credentials"))},
                concurrency=spec.get("concurrency") or DEFAULT_CONCURRENCY[kind],
                options=dict(_mapping(spec.get("options"))),
                budget=spec.get("budget"),
                allow_unknown_cost=spec.get("allow_unknown_cost", False),
            )

    def check_voices(self) -> None:
        kinds = set(DEFAULT_BASE_URLS)
        speakers = pixverse_speakers()
        for vname, ids in self.voices.items():
            for target, vid in _mapping(ids).items():
                path = ("voices", vname, target)
                if target in kinds:
                    continue
                if target not in self.providers:
                    hint = did_you_mean(target, [*self.providers, *kinds])
                    self.add(path, f"'{target}' is neither a providers: account nor a provider kind{hint}",
                             key=True)
                elif (target in self.accounts and self.accounts[target].kind == "aimlapi-pixverse-lipsync"
                      and vid not in speakers):
                    self.add(path, f"'{vid}' is not a PixVerse TTS speaker{did_you_mean(str(vid), speakers)}; "
                                   f"expected one of: {', '.join(speakers)}")

    def check_scripts(self) -> None:
        for sname, script in self.scripts.items():
            if not isinstance(script, dict):
                continue
            if isinstance(script.get("voice"), str):
                self.ref(("scripts", sname, "voice"), script["voice"], "voices", "voice")
            for lang, line in _mapping(script.get("lines")).items():
                lpath = ("scripts", sname, "lines", lang)
                if not isinstance(line, dict) or self.broken(lpath):
                    continue
                if isinstance(line.get("voice"), str):
                    self.ref((*lpath, "voice"), line["voice"], "voices", "voice")
                if isinstance(line.get("audio"), str):
                    self.media((*lpath, "audio"), line["audio"], "audio")

    def check_clips(self) -> None:
        for cname, clip in self.clips.items():
            cpath = ("clips", cname)
            if self.broken(cpath) or not isinstance(clip, dict):
                continue
            start, end = clip.get("start"), clip.get("end")
            if start is not None and end is not None and end <= start:
                self.add((*cpath, "end"), f"end ({end} s) must be after start ({start} s)")
            for role in ("video", "image"):
                if role in clip:
                    ref, info = self.media((*cpath, role), clip[role], role)
                    if ref is not None and info is not None and role == "video" and info.duration:
                        duration = info.duration
                        if start is not None and start >= duration:
                            self.add((*cpath, "start"),
                                     f"start ({start} s) is at or past the end of the video ({duration:.2f} s)")
                        if end is not None and end > duration + _DURATION_SLACK:
                            self.add((*cpath, "end"),
                                     f"end ({end} s) is past the end of the video ({duration:.2f} s)")

    def media(self, path: JsonPath, ref: str, role: str) -> tuple[InputRef | None, Any]:
        """(InputRef, probe info or None) for a clip/line file; problems reported at ``path`` once."""
        memo_key = (role, ref)
        if memo_key in self._media:
            return self._media[memo_key]
        if _is_url(ref):
            result = (InputRef(role=role, media_type=media_type(urlsplit(ref).path), url=ref), None)
        else:
            result = self._local_media(path, ref, role)
        self._media[memo_key] = result
        return result

    def _local_media(self, path: JsonPath, ref: str, role: str) -> tuple[InputRef | None, Any]:
        file = Path(os.path.normpath(self.base / ref))  # one cache entry however the path is spelled
        if not file.is_file():
            hint = _similar_file(file)
            what = "is a folder, not a file" if file.exists() else "not found"
            self.add(path, f"{role} file '{ref}' {what}{hint} (looked at {file})")
            return None, None
        mime = media_type(file)
        if not mime.startswith(_ROLE_MIME[role]):
            better = next((r for r, prefixes in _ROLE_MIME.items() if mime.startswith(prefixes)), None)
            hint = f": use {better}: for it" if better and better != "audio" else ""
            if role == "audio":
                hint = ": give speech as an audio file (wav, mp3, m4a, ...)"
            self.add(path, f"'{ref}' is {mime}, not {'a' if role == 'video' else 'an'} {role} file{hint}")
            return None, None
        try:
            sha, size = self.cache.sha256(file)
            info = self.cache.probe(file)
        except OSError as exc:
            self.add(path, f"cannot read '{ref}': {exc.strerror or exc}")
            return None, None
        except MediaError as exc:
            self.add(path, f"'{ref}' is not readable media: {str(exc).split(': ', 1)[-1]}")
            return None, None
        if role == "video" and not info.has_video:
            self.add(path, f"'{ref}' has no video stream")
            return None, None
        if role == "audio" and not info.has_audio:
            self.add(path, f"'{ref}' has no audio stream")
            return None, None
        duration = round(info.duration, 3) if info.duration else None
        ref_obj = InputRef(role=role, media_type=mime, path=file, sha256=sha, size=size, duration=duration)
        return ref_obj, info

    # -- jobs

    def check_template(self, jpath: JsonPath, template: str, kind: str) -> bool:
        opath = (*jpath, "output")
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            self.add(opath, f"output template {template!r} is malformed ({exc}); write fields as {{clip}}")
            return False
        usable = [f for f in TEMPLATE_FIELDS if not (kind == "runway-act-two-voice" and f in ("script", "lang"))]
        ok = True
        for _, field, spec, conv in parsed:
            if field is None:
                continue
            if field not in TEMPLATE_FIELDS:
                self.add(opath, f"unknown field {{{field}}} in output template{did_you_mean(field, usable)}; "
                                f"fields: {' '.join('{' + f + '}' for f in usable)}")
                ok = False
            elif field not in usable:
                self.add(opath, f"{{{field}}} is not available for runway-act-two-voice jobs "
                                f"(clips x voices, no scripts); use {{voice}}")
                ok = False
            if spec or conv:
                self.add(opath, f"output field {{{field}}} takes no format spec or conversion")
                ok = False
        if "\\" in template:
            self.add(opath, "output template uses '\\': separate folders with '/'")
            ok = False
        elif template.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", template):
            self.add(opath, f"output template {template!r} is absolute: outputs must stay inside output_dir")
            ok = False
        elif ".." in template.split("/"):
            self.add(opath, f"output template {template!r} escapes output_dir with '..'")
            ok = False
        elif any(part in ("", ".") for part in template.split("/")):
            self.add(opath, f"output template {template!r} has an empty or '.' path segment")
            ok = False
        return ok

    def clip_for(self, jpath: JsonPath, j: int, cname: str, kind: str, account: str) -> dict | None:
        """The clip, or None after explaining why this kind cannot use it."""
        clip = self.clips[cname]
        source = next(r for r in ("video", "image", "avatar") if r in clip)
        label = _KIND_LABEL[kind]
        why = None
        if kind == "creatify-lipsync" and source != "avatar":
            why = (f"clip '{cname}' is {'a video' if source == 'video' else 'an image'}, but {label} animates "
                   f"its own avatars (personas) and has no upload endpoint for footage: use a clip with "
                   f"'avatar: <persona id>' (`lipbatch avatars` lists them)")
        elif source == "avatar" and kind != "creatify-lipsync":
            why = (f"clip '{cname}' is a Creatify avatar id, which only creatify-lipsync accounts can use; "
                   f"{label} needs a {'video or image' if kind == 'runway-lipsync' else 'video'}")
        elif source == "image" and kind != "runway-lipsync":
            why = (f"clip '{cname}' is a still image, but {label} takes a video only "
                   f"(runway-lipsync is the kind that animates a still image)")
        elif ("start" in clip or "end" in clip) and kind != "magichour-lipsync":
            why = (f"clip '{cname}' has a start/end window, which only magichour-lipsync cuts server-side; "
                   f"{label} uses the whole video: trim the file or use a clip without start/end")
        if why:
            self.add((*jpath, "clips", j), f"{why} (account '{account}')", once=("clip", jpath, cname))
            return None
        return clip

    def voice_id(self, vname: str, account: Account, used_by: str) -> str | None:
        if self.broken(("voices", vname)):
            return None
        ids = _mapping(self.voices.get(vname))
        vid = ids.get(account.name, ids.get(account.kind))
        if vid is None:
            self.add(("voices", vname),
                     f"voice '{vname}' has no id for provider '{account.name}' (kind {account.kind}), needed by "
                     f"{used_by}: add '{account.kind}: <id>' or '{account.name}: <id>'",
                     key=True, once=("voice", vname, account.name))
        elif account.kind == "aimlapi-pixverse-lipsync" and vid not in pixverse_speakers():
            return None  # reported by the schema (kind key) or check_voices (account key)
        return vid

    def check_size(self, path: JsonPath, ref: InputRef, account: str) -> bool:
        if ref.size is not None and ref.size > DATA_URI_LIMIT_BYTES:
            self.add(path, f"'{ref.path.name if ref.path else ref.url}' is {ref.size / 2**20:.1f} MiB: PixVerse (AI/ML API) gets local files as "
                           f"inline data URIs, capped at {DATA_URI_LIMIT_BYTES // 2**20} MiB per file; host it "
                           f"and give an https URL (account '{account}')", once=("size", ref.path))
            return False
        return True

    def check_uploadable(self, path: JsonPath, ref: InputRef, account: Account) -> bool:
        """Runway (useapi.net) only takes uploaded assets: a URL input cannot be sent."""
        if ref.url is not None and not client_class(account.kind).accepts_input_urls:
            self.add(path, f"{_KIND_LABEL[account.kind]} (useapi.net) takes uploaded files only, not URLs: "
                           f"download it and give the local path (account '{account.name}')",
                     once=("url", path, account.kind))
            return False
        return True

    def expand_jobs(self) -> list[_Cell]:
        cells: list[_Cell] = []
        for i, job in enumerate(self.data.get("jobs") or []):
            jpath: JsonPath = ("jobs", i)
            if self.broken(jpath) or not isinstance(job, dict):
                continue
            if not self.ref((*jpath, "provider"), job["provider"], "providers", "provider account"):
                continue
            account = self.accounts.get(job["provider"])
            if account is None:
                continue
            clip_names = [(j, c) for j, c in _strings(job.get("clips"))
                          if self.ref((*jpath, "clips", j), c, "clips", "clip")]
            clip_names = [(j, c) for j, c in clip_names if not self.broken(("clips", c))]
            template_ok = self.check_template(jpath, job["output"], account.kind)
            if account.kind == "runway-act-two-voice":
                new = self.expand_act_two(i, jpath, job, account, clip_names)
            else:
                new = self.expand_lipsync(i, jpath, job, account, clip_names)
            if template_ok:
                cells.extend(c for c in new if self.render_output(jpath, job["output"], c))
        return cells

    def render_output(self, jpath: JsonPath, template: str, cell: _Cell) -> bool:
        if "{voice}" in template and cell.voice is None:
            self.add((*jpath, "output"),
                     f"output uses {{voice}}, but script '{cell.script}' line '{cell.lang}' is recorded audio "
                     f"with no voice", once=("novoice", jpath, cell.script, cell.lang))
            return False
        cell.output = template.format(clip=cell.clip, script=cell.script, lang=cell.lang, voice=cell.voice,
                                      provider=cell.account.name)
        return True

    def expand_act_two(self, i: int, jpath: JsonPath, job: dict, account: Account,
                       clip_names: list[tuple[int, str]]) -> list[_Cell]:
        voices = [(k, v) for k, v in _strings(job.get("voices"))
                  if self.ref((*jpath, "voices", k), v, "voices", "voice")]
        if "scripts" in job:
            self.add((*jpath, "scripts"), "runway-act-two-voice swaps the voice of a video and takes no scripts: "
                                          "list voices: instead")
            return []
        cells = []
        low, high = ACT_TWO_SECONDS
        for j, cname in clip_names:
            clip = self.clip_for(jpath, j, cname, account.kind, account.name)
            if clip is None:
                continue
            ref, _info = self.media(("clips", cname, "video"), clip["video"], "video")
            if ref is None or not self.check_uploadable(("clips", cname, "video"), ref, account):
                continue
            if ref.duration is not None and not low <= ref.duration <= high:
                self.add(("clips", cname, "video"),
                         f"'{clip['video']}' is {ref.duration:.2f} s long; Runway Act-Two takes videos of "
                         f"{low:.0f}-{high:.0f} s (jobs[{i}], account '{account.name}')",
                         once=("act-two-duration", cname))
                continue
            for _k, vname in voices:
                vid = self.voice_id(vname, account, f"jobs[{i}]")
                if vid is None:
                    continue
                params: dict[str, Any] = {"voice_id": vid}
                if "exploreMode" in account.options:
                    params["exploreMode"] = account.options["exploreMode"]
                cells.append(_Cell(i, account, cname, None, None, vname, "", {"video": ref}, params,
                                   ref.duration))
        return cells

    def line_langs(self, jpath: JsonPath, job: dict, scripts: list[str]) -> list[tuple[str, str]]:
        """(script, lang) pairs the job covers; reports languages a script lacks."""
        explicit = _strings(job.get("languages"))
        pairs = []
        for sname in scripts:
            lines = _mapping(self.scripts[sname].get("lines"))
            if not explicit:
                pairs.extend((sname, lang) for lang in lines)
                continue
            for k, lang in explicit:
                if lang in lines:
                    pairs.append((sname, lang))
                else:
                    have = ", ".join(lines) or "none"
                    self.add((*jpath, "languages", k),
                             f"script '{sname}' has no '{lang}' line{did_you_mean(lang, lines)} (it has: {have})")
        return pairs

    def expand_lipsync(self, i: int, jpath: JsonPath, job: dict, account: Account,
                       clip_names: list[tuple[int, str]]) -> list[_Cell]:
        kind = account.kind
        if "voices" in job:
            self.add((*jpath, "voices"),
                     f"voices: makes clips x voices for runway-act-two-voice; account '{account.name}' is {kind}: "
                     f"list scripts: and set each script's (or line's) voice")
            return []
        scripts = [s for k, s in _strings(job.get("scripts"))
                   if self.ref((*jpath, "scripts", k), s, "scripts", "script")
                   and not self.broken(("scripts", s))]
        lines = []
        for sname, lang in self.line_langs(jpath, job, scripts):
            spoken = self.line_request(i, jpath, account, sname, lang)
            if spoken is not None:
                lines.append((sname, lang, *spoken))
        cells = []
        for j, cname in clip_names:
            clip = self.clip_for(jpath, j, cname, kind, account.name)
            if clip is None:
                continue
            face = self.face_request(jpath, j, cname, clip, account)
            if face is None:
                continue
            face_inputs, face_params, window = face
            for sname, lang, voice, inputs, params, seconds in lines:
                all_params = {**face_params, **params}
                if kind == "runway-lipsync" and "text" not in params:
                    all_params.pop("model_id", None)
                expected = seconds if seconds is not None else window
                cells.append(_Cell(i, account, cname, sname, lang, voice, "", {**face_inputs, **inputs},
                                   all_params, expected))
        return cells

    def face_request(self, jpath: JsonPath, j: int, cname: str, clip: dict,
                     account: Account) -> tuple[dict[str, InputRef], dict[str, Any], float | None] | None:
        """(inputs, params, window seconds) contributed by the clip and the account options."""
        kind = account.kind
        params = {k: account.options[k] for k in _OPTION_PARAMS if k in account.options}
        if kind == "creatify-lipsync":
            return {}, {"avatar_id": clip["avatar"], **params}, None
        role = "video" if "video" in clip else "image"
        ref, _info = self.media(("clips", cname, role), clip[role], role)
        if ref is None or not self.check_uploadable(("clips", cname, role), ref, account):
            return None
        if kind == "aimlapi-pixverse-lipsync" and not self.check_size(("clips", cname, role), ref, account.name):
            return None
        window = ref.duration
        if kind == "magichour-lipsync":
            start = float(clip.get("start", 0.0))
            end = clip.get("end", ref.duration)
            if end is None:
                self.add((*jpath, "clips", j),
                         f"clip '{cname}' is a remote video lipbatch cannot measure offline; Magic Hour needs "
                         f"an end time: set 'end:' (seconds) on the clip", once=("mh-end", cname))
                return None
            if end <= start:
                return None  # reported on the clip
            params.update(start_seconds=start, end_seconds=float(end))
            window = round(float(end) - start, 3)
        return {role: ref}, params, window

    def line_request(self, i: int, jpath: JsonPath, account: Account, sname: str,
                     lang: str) -> tuple[str | None, dict[str, InputRef], dict[str, Any], float | None] | None:
        """(voice, inputs, params, seconds) of one script line for this account, or None if unusable."""
        kind = account.kind
        script = self.scripts[sname]
        line = script["lines"][lang]
        lpath: JsonPath = ("scripts", sname, "lines", lang)
        used_by = f"jobs[{i}] (account '{account.name}', script '{sname}', {lang})"
        if isinstance(line, dict) and "audio" in line:
            ref, _info = self.media((*lpath, "audio"), line["audio"], "audio")
            if ref is None or not self.check_uploadable((*lpath, "audio"), ref, account):
                return None
            if kind == "creatify-lipsync" and ref.url is None:
                self.add((*lpath, "audio"),
                         f"Creatify has no upload endpoint, so audio must be a public https URL, not a local "
                         f"file (used by {used_by})", once=("creatify-audio", lpath))
                return None
            if kind == "aimlapi-pixverse-lipsync" and not self.check_size((*lpath, "audio"), ref, account.name):
                return None
            return None, {"audio": ref}, {}, ref.duration
        text = (line["text"] if isinstance(line, dict) else line).strip()
        if kind == "magichour-lipsync":
            self.add(lpath, f"Magic Hour has no text-to-speech: it lip-syncs to an audio file, so this line "
                            f"needs 'audio: <file or URL>' (used by {used_by})", key=True,
                     once=("mh-text", lpath))
            return None
        voice = line.get("voice") if isinstance(line, dict) else None
        voice = voice or script.get("voice")
        if voice is None:
            self.add(lpath, f"text line has no voice: set 'voice:' on script '{sname}' or on this line "
                            f"(used by {used_by})", key=True, once=("novoice-line", lpath))
            return None
        if voice not in self.voices:
            return None  # reported where the voice is named
        vid = self.voice_id(voice, account, used_by)
        if vid is None:
            return None
        params = {"speaker": vid, "text": text} if kind == "aimlapi-pixverse-lipsync" else {"voice_id": vid,
                                                                                          "text": text}
        return voice, {}, params, round(len(text) / TTS_CHARS_PER_SECOND, 1)

    # -- merging

    def merge(self, cells: list[_Cell]) -> list[Job]:
        for cell in cells:
            cell.params = {k: _canonical(v, k) for k, v in cell.params.items()}
            cell.key = job_key(cell.account.kind, cell.params, cell.inputs)
        owners: dict[str, _Cell] = {}
        clashes: dict[tuple[int, int], list[tuple[_Cell, _Cell]]] = {}
        unique: list[_Cell] = []
        for cell in sorted(cells, key=lambda c: (c.job_index, c.output)):
            folded = cell.output.casefold()
            first = owners.get(folded)
            if first is None:
                owners[folded] = cell
                unique.append(cell)
            elif first.key != cell.key or first.output != cell.output:
                clashes.setdefault((cell.job_index, first.job_index), []).append((first, cell))
        for (later, earlier), pairs in clashes.items():
            first, cell = pairs[0]
            more = f" ({len(pairs) - 1} more like this)" if len(pairs) > 1 else ""
            same = "the same path" if first.output == cell.output else "paths differing only in case"
            if later == earlier:
                fields = [f for f in ("clip", "script", "lang", "voice")
                          if getattr(first, f) != getattr(cell, f)]
                hint = f": add {' or '.join('{' + f + '}' for f in fields)} to it" if fields else ""
                if first.output != cell.output:
                    hint = ": case-insensitive file systems (macOS, Windows) would write one file; rename one"
                msg = (f"output template gives {same} '{cell.output}' to {first.describe()} and "
                       f"{cell.describe()}{hint}{more}")
            else:
                msg = (f"output '{cell.output}' ({cell.describe()}) is also written by jobs[{earlier}] "
                       f"({first.describe()}) with a different request; each job needs its own output{more}")
            self.add(("jobs", later, "output"), msg)
        by_key: dict[str, list[_Cell]] = {}
        for cell in sorted(unique, key=lambda c: c.output):
            by_key.setdefault(cell.key, []).append(cell)
        jobs = []
        for key, group in by_key.items():
            head = group[0]
            jobs.append(Job(key=key, account=head.account.name, kind=head.account.kind, clip=head.clip,
                            script=head.script, lang=head.lang, voice=head.voice,
                            outputs=tuple(c.output for c in group), inputs=dict(head.inputs),
                            params=dict(head.params), expected_seconds=head.expected_seconds))
        return sorted(jobs, key=lambda job: job.output)


# --------------------------------------------------------------------------- entry point


def load_project(path: Path, *, hash_cache: HashCache | None = None) -> Project:
    """Validate and expand the manifest at ``path``; raises ``ManifestProblems`` listing every problem."""
    path = Path(path)
    label = str(path)
    problems: list[Problem] = []

    def add(line: int, col: int, jpath: JsonPath, message: str) -> None:
        problems.append(Problem(line, col, format_path(jpath), message, label))

    def fail() -> ManifestProblems:
        return ManifestProblems(sorted(set(problems)))

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        add(1, 1, (), "manifest file not found")
        raise fail() from None
    except (OSError, UnicodeDecodeError) as exc:
        add(1, 1, (), f"cannot read the manifest: {exc}")
        raise fail() from None
    pos = _Positions()
    data = _parse_yaml(text, pos, add)
    if problems and data is None:
        raise fail()
    if not isinstance(data, dict):
        add(*pos.at(()), (), f"a manifest is a mapping with version, providers, clips, ...; got {_describe(data)}")
        raise fail()
    broken: set[JsonPath] = set()
    for jpath, at_key, message in _schema_problems(data):
        broken.add(jpath)
        add(*pos.at(jpath, key=at_key), jpath, message)
    output_dir, state_path = default_paths(path, data)
    cache = hash_cache if hash_cache is not None else HashCache.for_state(state_path)
    checker = _Checker(path, data, pos, broken, cache, add)
    checker.check_providers()
    checker.check_voices()
    checker.check_scripts()
    checker.check_clips()
    cells = checker.expand_jobs()
    jobs = checker.merge(cells)
    budget_usd = _mapping(data.get("budget")).get("usd") if not checker.broken(("budget",)) else None
    for jpath, message in cost_problems(checker.accounts, jobs, budget_usd):
        checker.add(jpath, message)
    cache.save()
    if problems:
        raise fail()
    return Project(manifest_path=path.resolve(), output_dir=output_dir, state_path=state_path,
                   accounts=checker.accounts, jobs=tuple(jobs), budget_usd=budget_usd)
