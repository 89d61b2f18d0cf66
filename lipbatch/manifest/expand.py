"""Job matrices into cells (one per output), cells into content-addressed, merged ``Job``s.

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
- A manifest makes at most ``MAX_OUTPUTS`` (100,000) outputs: a matrix is
  counted before it is built, so aliases or long lists cannot make expansion
  run for hours or exhaust memory (a 40,000-output manifest validates in
  about 170 MB and 12 s on a loaded 2-core machine).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lipbatch.manifest.context import Context, mapping, strings
from lipbatch.manifest.inputs import KIND_LABEL, InputFiles
from lipbatch.manifest.outputs import Outputs
from lipbatch.manifest.problems import JsonPath, did_you_mean, quote
from lipbatch.manifest.rules import TEXT_CHARS_BY_KIND, Sections, line_text
from lipbatch.manifest.schema import pixverse_speakers
from lipbatch.model import Account, InputRef, Job

TTS_CHARS_PER_SECOND = 15.0
ACT_TWO_SECONDS = (3.0, 30.0)
MAX_OUTPUTS = 100_000
_OPTION_PARAMS = ("exploreMode", "model_id", "generation_mode", "max_fps_limit", "aspect_ratio",
                  "model_version", "captions", "background_url")
_FLOAT_PARAMS = {"start_seconds", "end_seconds", "max_fps_limit"}


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


@dataclass
class Cell:
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


Line = tuple[str, str, str | None, dict[str, InputRef], dict[str, Any], float | None]


class Expander:
    """Every job matrix into cells, explaining each combination a provider kind cannot make."""

    def __init__(self, ctx: Context, sections: Sections, inputs: InputFiles, outputs: Outputs):
        self.ctx, self.sections, self.inputs, self.outputs = ctx, sections, inputs, outputs
        self.clips, self.scripts, self.voices = sections.clips, sections.scripts, sections.voices
        self.count = 0

    def expand_jobs(self) -> list[Cell]:
        cells: list[Cell] = []
        jobs = self.ctx.data.get("jobs")
        for i, job in enumerate(jobs if isinstance(jobs, list) else []):
            jpath: JsonPath = ("jobs", i)
            if self.ctx.broken(jpath) or not isinstance(job, dict):
                continue
            if not self.ctx.ref((*jpath, "provider"), job["provider"], "providers", "provider account"):
                continue
            account = self.sections.accounts.get(job["provider"])
            if account is None:
                continue
            clip_names = [(j, c) for j, c in strings(job.get("clips"))
                          if self.ctx.ref((*jpath, "clips", j), c, "clips", "clip")]
            clip_names = [(j, c) for j, c in clip_names if not self.ctx.broken(("clips", c))]
            template_ok = self.outputs.check_template(jpath, job["output"], account.kind)
            if account.kind == "runway-act-two-voice":
                new = self.expand_act_two(i, jpath, job, account, clip_names)
            else:
                new = self.expand_lipsync(i, jpath, job, account, clip_names)
            if template_ok:
                cells.extend(c for c in new if self.outputs.render(jpath, job["output"], c))
        return cells

    def within_budget(self, jpath: JsonPath, count: int) -> bool:
        """Counts a matrix of ``count`` cells before building it; refuses the one that passes MAX_OUTPUTS."""
        self.count += count
        if self.count <= MAX_OUTPUTS:
            return True
        self.ctx.add(jpath, f"this job makes {count:,} outputs, {self.count:,} so far: lipbatch makes at most "
                            f"{MAX_OUTPUTS:,} per manifest; split the campaign into several manifests",
                     key=True, once=("budget",))
        return False

    def expand_act_two(self, i: int, jpath: JsonPath, job: dict, account: Account,
                       clip_names: list[tuple[int, str]]) -> list[Cell]:
        voices = [(k, v) for k, v in strings(job.get("voices"))
                  if self.ctx.ref((*jpath, "voices", k), v, "voices", "voice")]
        if "scripts" in job:
            self.ctx.add((*jpath, "scripts"), "runway-act-two-voice swaps the voice of a video and takes no "
                                              "scripts: list voices: instead")
            return []
        if not self.within_budget(jpath, len(clip_names) * len(voices)):
            return []
        cells = []
        low, high = ACT_TWO_SECONDS
        for j, cname in clip_names:
            clip = self.clip_for(jpath, j, cname, account.kind, account.name)
            if clip is None:
                continue
            ref, _info = self.inputs.media(("clips", cname, "video"), clip["video"], "video")
            if ref is None or not self.inputs.check_uploadable(("clips", cname, "video"), ref, account):
                continue
            if ref.duration is not None and not low <= ref.duration <= high:
                self.ctx.add(("clips", cname, "video"),
                             f"'{quote(clip['video'])}' is {ref.duration:.2f} s long; Runway Act-Two takes videos of "
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
                cells.append(Cell(i, account, cname, None, None, vname, "", {"video": ref}, params,
                                  ref.duration))
        return cells

    def line_langs(self, jpath: JsonPath, job: dict, scripts: list[str]) -> list[tuple[str, str]]:
        """(script, lang) pairs the job covers; reports languages a script lacks."""
        explicit = strings(job.get("languages"))
        pairs = []
        for sname in scripts:
            lines = mapping(self.scripts[sname].get("lines"))
            if not explicit:
                pairs.extend((sname, lang) for lang in lines)
                continue
            for k, lang in explicit:
                if lang in lines:
                    pairs.append((sname, lang))
                else:
                    have = ", ".join(list(lines)[:20]) or "none"
                    self.ctx.add((*jpath, "languages", k), f"script '{sname}' has no '{quote(lang)}' line"
                                                           f"{did_you_mean(lang, lines)} (it has: {have})")
        return pairs

    def expand_lipsync(self, i: int, jpath: JsonPath, job: dict, account: Account,
                       clip_names: list[tuple[int, str]]) -> list[Cell]:
        kind = account.kind
        if "voices" in job:
            self.ctx.add((*jpath, "voices"),
                         f"voices: makes clips x voices for runway-act-two-voice; account '{account.name}' is "
                         f"{kind}: list scripts: and set each script's (or line's) voice")
            return []
        scripts = [s for k, s in strings(job.get("scripts"))
                   if self.ctx.ref((*jpath, "scripts", k), s, "scripts", "script")
                   and not self.ctx.broken(("scripts", s))]
        pairs = self.line_langs(jpath, job, scripts)
        if not self.within_budget(jpath, len(clip_names) * len(pairs)):
            return []
        lines: list[Line] = []
        for sname, lang in pairs:
            spoken = self.line_request(i, account, sname, lang)
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
                cells.append(Cell(i, account, cname, sname, lang, voice, "", {**face_inputs, **inputs},
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
        ref, _info = self.inputs.media(("clips", cname, role), clip[role], role)
        if ref is None or not self.inputs.check_uploadable(("clips", cname, role), ref, account):
            return None
        if kind == "aimlapi-pixverse-lipsync" and not self.inputs.check_size(("clips", cname, role), ref,
                                                                              account.name):
            return None
        window = ref.duration
        if kind == "magichour-lipsync":
            start = float(clip.get("start", 0.0))
            end = clip.get("end", ref.duration)
            if end is None:
                self.ctx.add((*jpath, "clips", j),
                             f"clip '{cname}' is a remote video lipbatch cannot measure offline; Magic Hour needs "
                             f"an end time: set 'end:' (seconds) on the clip", once=("mh-end", cname))
                return None
            if end <= start:
                return None  # reported on the clip
            params.update(start_seconds=start, end_seconds=float(end))
            window = round(float(end) - start, 3)
        return {role: ref}, params, window

    def line_request(self, i: int, account: Account, sname: str,
                     lang: str) -> tuple[str | None, dict[str, InputRef], dict[str, Any], float | None] | None:
        """(voice, inputs, params, seconds) of one script line for this account, or None if unusable."""
        kind = account.kind
        script = self.scripts[sname]
        line = script["lines"][lang]
        lpath: JsonPath = ("scripts", sname, "lines", lang)
        used_by = f"jobs[{i}] (account '{account.name}', script '{sname}', {lang})"
        if isinstance(line, dict) and "audio" in line:
            ref, _info = self.inputs.media((*lpath, "audio"), line["audio"], "audio")
            if ref is None or not self.inputs.check_uploadable((*lpath, "audio"), ref, account):
                return None
            if kind == "creatify-lipsync" and ref.url is None:
                self.ctx.add((*lpath, "audio"),
                             f"Creatify has no upload endpoint, so audio must be a public https URL, not a local "
                             f"file (used by {used_by})", once=("creatify-audio", lpath))
                return None
            if kind == "aimlapi-pixverse-lipsync" and not self.inputs.check_size((*lpath, "audio"), ref,
                                                                                  account.name):
                return None
            return None, {"audio": ref}, {}, ref.duration
        text = line_text(line) or ""
        if kind == "magichour-lipsync":
            self.ctx.add(lpath, f"Magic Hour has no text-to-speech: it lip-syncs to an audio file, so this line "
                                f"needs 'audio: <file or URL>' (used by {used_by})", key=True,
                         once=("mh-text", lpath))
            return None
        limit = TEXT_CHARS_BY_KIND.get(kind)
        if limit is not None and len(text) > limit:
            self.ctx.add(lpath, f"text is {len(text):,} characters long; {KIND_LABEL[kind]} speaks at most {limit} "
                                f"(used by {used_by})", key=True, once=("text-length", lpath, kind))
            return None
        voice = line.get("voice") if isinstance(line, dict) else None
        voice = voice or script.get("voice")
        if voice is None:
            self.ctx.add(lpath, f"text line has no voice: set 'voice:' on script '{sname}' or on this line "
                                f"(used by {used_by})", key=True, once=("novoice-line", lpath))
            return None
        if voice not in self.voices:
            return None  # reported where the voice is named
        vid = self.voice_id(voice, account, used_by)
        if vid is None:
            return None
        params = ({"speaker": vid, "text": text} if kind == "aimlapi-pixverse-lipsync"
                  else {"voice_id": vid, "text": text})
        return voice, {}, params, round(len(text) / TTS_CHARS_PER_SECOND, 1)

    def clip_for(self, jpath: JsonPath, j: int, cname: str, kind: str, account: str) -> dict | None:
        """The clip, or None after explaining why this kind cannot use it."""
        clip = self.clips[cname]
        source = next(r for r in ("video", "image", "avatar") if r in clip)
        label = KIND_LABEL[kind]
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
            self.ctx.add((*jpath, "clips", j), f"{why} (account '{account}')", once=("clip", jpath, cname))
            return None
        return clip

    def voice_id(self, vname: str, account: Account, used_by: str) -> str | None:
        if self.ctx.broken(("voices", vname)):
            return None
        ids = mapping(self.voices.get(vname))
        vid = ids.get(account.name, ids.get(account.kind))
        if vid is None:
            self.ctx.add(("voices", vname),
                         f"voice '{vname}' has no id for provider '{account.name}' (kind {account.kind}), needed by "
                         f"{used_by}: add '{account.kind}: <id>' or '{account.name}: <id>'",
                         key=True, once=("voice", vname, account.name))
        elif account.kind == "aimlapi-pixverse-lipsync" and vid not in pixverse_speakers():
            return None  # reported by the schema (kind key) or check_voices (account key)
        return vid


def merge(ctx: Context, cells: list[Cell]) -> list[Job]:
    """Identical requests into one job with several outputs; one output path written by two requests is an error."""
    for cell in cells:
        cell.params = {k: _canonical(v, k) for k, v in cell.params.items()}
        cell.key = job_key(cell.account.kind, cell.params, cell.inputs)
    owners: dict[str, Cell] = {}
    clashes: dict[tuple[int, int], list[tuple[Cell, Cell]]] = {}
    unique: list[Cell] = []
    for cell in sorted(cells, key=lambda c: (c.job_index, c.output)):
        folded = cell.output.casefold()
        first = owners.get(folded)
        if first is None:
            owners[folded] = cell
            unique.append(cell)
        elif first.key != cell.key or first.output != cell.output:
            clashes.setdefault((cell.job_index, first.job_index), []).append((first, cell))
    for (later, earlier), pairs in clashes.items():
        ctx.add(("jobs", later, "output"), _clash(later, earlier, pairs))
    by_key: dict[str, list[Cell]] = {}
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


def _clash(later: int, earlier: int, pairs: list[tuple[Cell, Cell]]) -> str:
    first, cell = pairs[0]
    more = f" ({len(pairs) - 1} more like this)" if len(pairs) > 1 else ""
    same = "the same path" if first.output == cell.output else "paths differing only in case"
    if later != earlier:
        return (f"output '{cell.output}' ({cell.describe()}) is also written by jobs[{earlier}] "
                f"({first.describe()}) with a different request; each job needs its own output{more}")
    fields = [f for f in ("clip", "script", "lang", "voice") if getattr(first, f) != getattr(cell, f)]
    hint = f": add {' or '.join('{' + f + '}' for f in fields)} to it" if fields else ""
    if first.output != cell.output:
        hint = ": case-insensitive file systems (macOS, Windows) would write one file; rename one"
    return f"output template gives {same} '{cell.output}' to {first.describe()} and {cell.describe()}{hint}{more}"
