"""Semantic checks of the manifest's sections: providers, voices, scripts, clips, job languages.

What the schema cannot say: references between sections, input files, a clip's
window inside its video, credential values that look like secrets, language
tags against the IANA registry, and the length of text lines.

Text lines are capped at ``MAX_TEXT_CHARS`` (5,000 characters, about five
minutes of speech) whatever the provider: no provider document gives a
general limit (Runway's and Creatify's pages list none; Magic Hour takes no
text), so this is lipbatch's own bound against runaway input. Per-kind limits,
where a document gives one, are in ``TEXT_CHARS_BY_KIND`` and checked where a
job uses the line (``expand.py``): PixVerse 200 characters, the TTS limit
useapi.net's PixVerse wrapper documents (the AI/ML API page gives none; see
/work/shared/providers/aimlapi-pixverse-lipsync.md, "Upload flow").
"""

from __future__ import annotations

import re
from typing import Any

from lipbatch.manifest.context import Context, mapping, strings
from lipbatch.manifest.credentials import ROLE, ROLE_MESSAGE, SECRET_MESSAGE, looks_like_secret
from lipbatch.manifest.inputs import InputFiles
from lipbatch.manifest.languages import tag_problem
from lipbatch.manifest.problems import did_you_mean, quote
from lipbatch.manifest.schema import pixverse_speakers, schema
from lipbatch.model import Account
from lipbatch.providers import DEFAULT_BASE_URLS, DEFAULT_CREDENTIALS

# Client-side caps when the manifest sets none: useapi recommends maxJobs 5; Magic Hour's smallest paid
# plan (Creator) runs 3 at once; AIML and Creatify publish no limit, so stay gentle.
DEFAULT_CONCURRENCY: dict[str, int] = {
    "runway-lipsync": 5,
    "runway-act-two-voice": 5,
    "magichour-lipsync": 3,
    "aimlapi-pixverse-lipsync": 2,
    "creatify-lipsync": 2,
}
MAX_TEXT_CHARS = 5000
TEXT_CHARS_BY_KIND = {"aimlapi-pixverse-lipsync": 200}
_DURATION_SLACK = 0.05  # container durations round; a window may end a frame past the probed end


def line_text(line: Any) -> str | None:
    """The text of a script line (stripped), or None for a recorded line or a malformed one."""
    text = line.get("text") if isinstance(line, dict) else line
    return text.strip() if isinstance(text, str) else None


class Sections:
    """Checks each section once; builds the provider accounts the jobs refer to."""

    def __init__(self, ctx: Context, inputs: InputFiles):
        self.ctx = ctx
        self.inputs = inputs
        data = ctx.data
        self.providers = mapping(data.get("providers"))
        self.clips = mapping(data.get("clips"))
        self.voices = mapping(data.get("voices"))
        self.scripts = mapping(data.get("scripts"))
        self.accounts: dict[str, Account] = {}

    def check_all(self) -> None:
        self.check_providers()
        self.check_voices()
        self.check_scripts()
        self.check_clips()
        self.check_job_languages()

    def check_providers(self) -> None:
        for name, spec in self.providers.items():
            credentials = mapping(mapping(spec).get("credentials"))
            for role, value in credentials.items():
                path = ("providers", name, "credentials", role)
                if not ROLE.match(role):  # the schema knows no roles for a broken kind; the path must not echo it
                    self.ctx.add(path[:3], ROLE_MESSAGE,
                                 key=True, once=("role", name))
                elif not self.ctx.broken(path) and looks_like_secret(value):
                    self.ctx.add(path, SECRET_MESSAGE)
            if self.ctx.broken(("providers", name)) or not isinstance(spec, dict):
                continue
            kind = spec["kind"]
            self.accounts[name] = Account(
                name=name,
                kind=kind,
                base_url=spec.get("base_url") or DEFAULT_BASE_URLS[kind],
                credentials={**DEFAULT_CREDENTIALS[kind], **credentials},
                concurrency=spec.get("concurrency") or DEFAULT_CONCURRENCY[kind],
                options=dict(mapping(spec.get("options"))),
            )

    def check_voices(self) -> None:
        kinds = set(DEFAULT_BASE_URLS)
        speakers = pixverse_speakers()
        for vname, ids in self.voices.items():
            for target, vid in mapping(ids).items():
                path = ("voices", vname, target)
                if target in kinds:
                    continue
                if target not in self.providers:
                    hint = did_you_mean(target, [*self.providers, *kinds])
                    self.ctx.add(path, f"'{quote(target)}' is neither a providers: account nor a provider "
                                       f"kind{hint}", key=True)
                elif (target in self.accounts and self.accounts[target].kind == "aimlapi-pixverse-lipsync"
                      and vid not in speakers):
                    self.ctx.add(path, f"'{quote(str(vid))}' is not a PixVerse TTS speaker"
                                       f"{did_you_mean(str(vid), speakers)}; expected one of: {', '.join(speakers)}")

    def check_scripts(self) -> None:
        for sname, script in self.scripts.items():
            if not isinstance(script, dict):
                continue
            if isinstance(script.get("voice"), str):
                self.ctx.ref(("scripts", sname, "voice"), script["voice"], "voices", "voice")
            for lang, line in mapping(script.get("lines")).items():
                lpath = ("scripts", sname, "lines", lang)
                self.check_language(lpath, lang, key=True)
                if self.ctx.broken(lpath):
                    continue
                text = line_text(line)
                if text is not None and len(text) > MAX_TEXT_CHARS:
                    self.ctx.add(lpath, f"text is {len(text):,} characters long; lipbatch takes lines of at most "
                                        f"{MAX_TEXT_CHARS:,} characters (about five minutes of speech): split it")
                if not isinstance(line, dict):
                    continue
                if isinstance(line.get("voice"), str):
                    self.ctx.ref((*lpath, "voice"), line["voice"], "voices", "voice")
                if isinstance(line.get("audio"), str):
                    self.inputs.media((*lpath, "audio"), line["audio"], "audio")

    def check_job_languages(self) -> None:
        jobs = self.ctx.data.get("jobs")
        for i, job in enumerate(jobs if isinstance(jobs, list) else []):
            for k, lang in strings(mapping(job).get("languages")):
                self.check_language(("jobs", i, "languages", k), lang)

    def check_language(self, path: tuple, tag: str, *, key: bool = False) -> None:
        """A tag the schema's pattern let through (it reports the others), against the IANA registry."""
        if re.match(schema()["$defs"]["lang"]["pattern"], tag):
            problem = tag_problem(tag)
            if problem:
                self.ctx.add(path, problem, key=key)

    def check_clips(self) -> None:
        for cname, clip in self.clips.items():
            cpath = ("clips", cname)
            if self.ctx.broken(cpath) or not isinstance(clip, dict):
                continue
            start, end = clip.get("start"), clip.get("end")
            if start is not None and end is not None and end <= start:
                self.ctx.add((*cpath, "end"), f"end ({end} s) must be after start ({start} s)")
            for role in ("video", "image"):
                if role not in clip:
                    continue
                ref, info = self.inputs.media((*cpath, role), clip[role], role)
                if ref is None or info is None or role != "video" or not info.duration:
                    continue
                duration = info.duration
                if start is not None and start >= duration:
                    self.ctx.add((*cpath, "start"),
                                 f"start ({start} s) is at or past the end of the video ({duration:.2f} s)")
                if end is not None and end > duration + _DURATION_SLACK:
                    self.ctx.add((*cpath, "end"), f"end ({end} s) is past the end of the video ({duration:.2f} s)")
