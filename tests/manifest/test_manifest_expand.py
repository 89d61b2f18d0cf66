"""Expansion details: YAML dialect, account defaults, params per kind, merging."""

from __future__ import annotations

from pathlib import Path

import pytest

from lipbatch.errors import ManifestError
from lipbatch.hashing import HashCache
from lipbatch.manifest import ManifestProblems, load_project
from lipbatch.providers import DEFAULT_BASE_URLS

HEAD = "version: 1\n"


def load(project_dir: Path, text: str):
    manifest = project_dir / "m.yaml"
    manifest.write_text(HEAD + text, encoding="utf-8")
    return load_project(manifest, hash_cache=HashCache())


def problems(project_dir: Path, text: str) -> list[str]:
    with pytest.raises(ManifestProblems) as info:
        load(project_dir, text)
    return [f"{p.line} {p.path}: {p.message}" for p in info.value.details]


RUNWAY = """providers:
  runway: {kind: runway-lipsync, options: {model_id: eleven_multilingual_v2, exploreMode: true}}
clips: {anna: {video: media/anna.mp4}, host: {image: media/host.png}}
voices: {narrator: {runway-lipsync: VOICE}}
"""


def test_norwegian_is_a_language_not_false(project_dir: Path):
    project = load(project_dir, RUNWAY + """scripts:
  hi: {voice: narrator, lines: {no: "Hei.", yes: "Yendang.", en: "  Hi.  "}}
jobs: [{provider: runway, clips: [anna], scripts: [hi], languages: [no, en], output: "{lang}.mp4"}]
""")
    assert {j.output: j.params["text"] for j in project.jobs} == {"no.mp4": "Hei.", "en.mp4": "Hi."}


def test_yaml_11_boolean_words_are_names(project_dir: Path):
    project = load(project_dir, """providers: {off: {kind: runway-lipsync}}
clips: {on: {video: media/anna.mp4}, no: {image: media/host.png}}
voices: {yes: {runway-lipsync: VOICE}}
scripts: {y: {voice: yes, lines: {no: "Hei."}}}
jobs: [{provider: off, clips: [on, no], scripts: [y], output: "{clip}.{lang}.{voice}.mp4"}]
""")
    assert [j.output for j in project.jobs] == ["no.no.yes.mp4", "on.no.yes.mp4"]
    assert {j.account for j in project.jobs} == {"off"}


def test_yaml_11_booleans_are_strings(project_dir: Path):
    found = problems(project_dir, """providers:
  runway: {kind: runway-lipsync, options: {exploreMode: yes}}
clips: {anna: {video: media/anna.mp4}}
scripts: {hi: {lines: {en: {audio: media/en.wav}}}}
jobs: [{provider: runway, clips: [anna], scripts: [hi], output: "{lang}.mp4"}]
""")
    assert found == ["3 $.providers.runway.options.exploreMode: expected true or false, got a string ('yes')"]


def test_anchors_and_merge_keys(project_dir: Path):
    project = load(project_dir, """providers:
  mh-a: &mh {kind: magichour-lipsync, options: {generation_mode: pro}}
  mh-b: {<<: *mh, concurrency: 1}
clips: {anna: {video: media/anna.mp4}}
scripts: {hi: {lines: {en: {audio: media/en.wav}}}}
jobs:
  - {provider: mh-a, clips: [anna], scripts: [hi], output: "a/{lang}.mp4"}
  - {provider: mh-b, clips: [anna], scripts: [hi], output: "b/{lang}.mp4"}
""")
    assert project.accounts["mh-b"].options == {"generation_mode": "pro"}
    assert project.accounts["mh-b"].concurrency == 1
    # one request on two accounts of one kind: one job, two outputs, the first output's account
    assert len(project.jobs) == 1
    assert project.jobs[0].outputs == ("a/en.mp4", "b/en.mp4") and project.jobs[0].account == "mh-a"


def test_account_defaults_and_overrides(project_dir: Path):
    project = load(project_dir, """providers:
  creatify: {kind: creatify-lipsync, credentials: {api_key: MY_KEY}}
  local: {kind: magichour-lipsync, base_url: "http://127.0.0.1:8000", concurrency: 7}
clips: {p: {avatar: abc}}
voices: {v: {creatify-lipsync: accent}}
scripts: {hi: {voice: v, lines: {en: "Hi."}}}
jobs: [{provider: creatify, clips: [p], scripts: [hi], output: "{lang}.mp4"}]
""")
    creatify, local = project.accounts["creatify"], project.accounts["local"]
    assert dict(creatify.credentials) == {"api_id": "CREATIFY_API_ID", "api_key": "MY_KEY"}
    assert creatify.base_url == DEFAULT_BASE_URLS["creatify-lipsync"] and creatify.concurrency == 2
    assert (local.base_url, local.concurrency) == ("http://127.0.0.1:8000", 7)
    assert dict(local.credentials) == {"token": "MAGIC_HOUR_API_KEY"}
    (job,) = project.jobs
    assert dict(job.params) == {"avatar_id": "abc", "voice_id": "accent", "text": "Hi."}
    assert job.inputs == {} and job.expected_seconds == pytest.approx(0.2)


def test_runway_params_for_text_and_audio(project_dir: Path):
    project = load(project_dir, RUNWAY + """scripts:
  hi: {voice: narrator, lines: {en: "Hello there.", de: {audio: media/de.wav}}}
jobs: [{provider: runway, clips: [host], scripts: [hi], output: "{lang}.mp4"}]
""")
    jobs = {j.lang: j for j in project.jobs}
    assert dict(jobs["en"].params) == {"exploreMode": True, "model_id": "eleven_multilingual_v2",
                                      "voice_id": "VOICE", "text": "Hello there."}
    assert dict(jobs["de"].params) == {"exploreMode": True}
    assert set(jobs["de"].inputs) == {"image", "audio"} and jobs["de"].expected_seconds == 1.2
    assert jobs["de"].inputs["audio"].media_type == "audio/wav"
    assert jobs["en"].inputs["image"].path == project_dir.resolve() / "media" / "host.png"


def test_window_numbers_are_canonical(project_dir: Path):
    text = """providers: {mh: {kind: magichour-lipsync, options: {max_fps_limit: %s}}}
clips: {anna: {video: media/anna.mp4, start: %s, end: 1.5}}
scripts: {hi: {lines: {en: {audio: media/en.wav}}}}
jobs: [{provider: mh, clips: [anna], scripts: [hi], output: "{lang}.mp4"}]
"""
    a = load(project_dir, text % ("24", "0"))
    b = load(project_dir, text % ("24.0", "0.0"))
    assert a.jobs[0].key == b.jobs[0].key
    assert dict(a.jobs[0].params) == {"max_fps_limit": 24.0, "start_seconds": 0.0, "end_seconds": 1.5}


def test_default_languages_are_each_scripts_own(project_dir: Path):
    project = load(project_dir, RUNWAY + """scripts:
  a: {voice: narrator, lines: {en: "A.", de: "A!"}}
  b: {voice: narrator, lines: {fr: "B."}}
jobs: [{provider: runway, clips: [anna], scripts: [a, b], output: "{script}.{lang}.mp4"}]
""")
    assert [j.output for j in project.jobs] == ["a.de.mp4", "a.en.mp4", "b.fr.mp4"]


def test_act_two_expansion(project_dir: Path):
    project = load(project_dir, """providers: {swap: {kind: runway-act-two-voice, options: {exploreMode: false}}}
clips: {talk: {video: media/talk4.mp4}}
voices: {warm: {swap: W1}, bright: {runway-act-two-voice: B1}}
jobs: [{provider: swap, clips: [talk], voices: [warm, bright], output: "{clip}/{voice}.mp4"}]
""")
    assert [(j.output, dict(j.params), j.voice, j.script) for j in project.jobs] == [
        ("talk/bright.mp4", {"voice_id": "B1", "exploreMode": False}, "bright", None),
        ("talk/warm.mp4", {"voice_id": "W1", "exploreMode": False}, "warm", None)]
    assert project.jobs[0].expected_seconds == pytest.approx(4.0, abs=0.1)


def test_outputs_differing_only_in_case_collide(project_dir: Path):
    found = problems(project_dir, """providers: {mh: {kind: magichour-lipsync}}
clips: {anna: {video: media/anna.mp4}, Anna: {video: media/ben.mp4}}
scripts: {hi: {lines: {en: {audio: media/en.wav}}}}
jobs: [{provider: mh, clips: [anna, Anna], scripts: [hi], output: "{clip}.mp4"}]
""")
    assert found == ["5 $.jobs[0].output: output template gives paths differing only in case 'anna.mp4' to "
                     "clip 'Anna', script 'hi', language 'en' and clip 'anna', script 'hi', language 'en': "
                     "case-insensitive file systems (macOS, Windows) would write one file; rename one"]


def test_voice_field_needs_a_voice(project_dir: Path):
    found = problems(project_dir, RUNWAY + """scripts: {hi: {lines: {en: {audio: media/en.wav}}}}
jobs: [{provider: runway, clips: [anna], scripts: [hi], output: "{voice}.mp4"}]
""")
    assert found == ["7 $.jobs[0].output: output uses {voice}, but script 'hi' line 'en' is recorded audio "
                     "with no voice"]


def test_problems_are_a_manifest_error_with_details(project_dir: Path):
    with pytest.raises(ManifestError) as info:
        load(project_dir, "providers: []\n")
    err = info.value
    assert isinstance(err, ManifestProblems)
    assert err.problems == [p.format() for p in err.details]
    assert [p.path for p in err.details] == ["$", "$", "$.providers"]
