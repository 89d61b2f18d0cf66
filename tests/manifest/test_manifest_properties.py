"""Properties of expansion and job keys, over generated manifests (hypothesis)."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipbatch.hashing import HashCache
from lipbatch.manifest import job_key, load_project
from lipbatch.model import InputRef

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
LANGS = ("en", "de", "fr", "es")
TEXTS = ("Hello.", "Welcome back.", "Spring is here.", "Grüß Gott!", "¡Hola!")
WAVS = ("en.wav", "de.wav", "a1.wav", "a2.wav")
VIDEO_CLIPS = {"anna": "media/anna.mp4", "ben": "media/ben.mp4", "anna-again": "media/anna.mp4"}


@pytest.fixture(scope="module")
def workdir(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mediagen

    root = tmp_path_factory.mktemp("props")
    media = root / "media"
    media.mkdir()
    for item in media_dir.iterdir():
        if item.stat().st_size < 1 << 20:
            shutil.copy(item, media / item.name)
    mediagen.make_wav(media / "a1.wav", 0.8, pitch=220)
    mediagen.make_wav(media / "a2.wav", 0.9, pitch=260)
    return root


@st.composite
def specs(draw) -> dict:
    """A valid manifest as plain data: lip sync on three kinds, plus an optional Act-Two job."""
    scripts = {}
    for n in range(draw(st.integers(1, 3))):
        langs = draw(st.lists(st.sampled_from(LANGS), min_size=1, max_size=4, unique=True))
        audio_only = draw(st.booleans())
        lines = {}
        for lang in langs:
            if audio_only or draw(st.booleans()):
                lines[lang] = {"audio": f"media/{draw(st.sampled_from(WAVS))}"}
            else:
                lines[lang] = draw(st.sampled_from(TEXTS))
        scripts[f"s{n}"] = {"voice": "narrator", "lines": lines}
    clips = dict(VIDEO_CLIPS)
    clips["host"] = {"image": "media/host.png"}
    clips = {k: ({"video": v} if isinstance(v, str) else v) for k, v in clips.items()}
    clips["talk"] = {"video": "media/talk4.mp4"}
    audio_scripts = [s for s, body in scripts.items() if all(isinstance(v, dict) for v in body["lines"].values())]
    providers = {
        "runway": {"kind": "runway-lipsync", "options": {"exploreMode": draw(st.booleans())}},
        "pix": {"kind": "aimlapi-pixverse-lipsync"},
    }
    jobs = [
        {"provider": "runway", "clips": draw(st.lists(st.sampled_from(["anna", "ben", "anna-again", "host"]),
                                                      min_size=1, unique=True)),
         "scripts": sorted(scripts), "output": "{provider}/{clip}/{script}.{lang}.mp4"},
        {"provider": "pix", "clips": draw(st.lists(st.sampled_from(["anna", "ben"]), min_size=1, unique=True)),
         "scripts": sorted(scripts), "output": "{provider}/{clip}/{script}.{lang}.mp4"},
    ]
    if audio_scripts:
        providers["mh"] = {"kind": "magichour-lipsync",
                           "options": {"generation_mode": draw(st.sampled_from(["lite", "standard", "pro"]))}}
        jobs.append({"provider": "mh", "clips": ["anna", "ben"], "scripts": audio_scripts,
                     "output": "{provider}/{clip}/{script}.{lang}.mp4"})
    voices = {"narrator": {"runway": "pNInz6obpgDQGcFmaJgB", "aimlapi-pixverse-lipsync": "Ava",
                           "runway-act-two-voice": "21m00Tcm4TlvDq8ikWAM"},
              "bright": {"runway-act-two-voice": "EXAVITQu4vr4xnSDxMaL"}}
    if draw(st.booleans()):
        providers["swap"] = {"kind": "runway-act-two-voice"}
        jobs.append({"provider": "swap", "clips": ["talk"], "voices": ["narrator", "bright"],
                     "output": "{provider}/{clip}/{voice}.mp4"})
    return {"version": 1, "providers": providers, "clips": clips, "voices": voices, "scripts": scripts,
            "jobs": jobs}


def shuffled(data, rng: random.Random):
    """Every mapping and every list reordered (lists of references keep their meaning)."""
    if isinstance(data, dict):
        items = list(data.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(data, list):
        items = [shuffled(v, rng) for v in data]
        rng.shuffle(items)
        return items
    return data


def renamed(data: dict, suffix: str) -> dict:
    """Every clip, script, voice and account id renamed (references follow)."""
    def ren(name: str) -> str:
        return f"{name}-{suffix}"

    out = json.loads(json.dumps(data))
    out["providers"] = {ren(k): v for k, v in out["providers"].items()}
    out["clips"] = {ren(k): v for k, v in out["clips"].items()}
    out["voices"] = {ren(k): {(ren(t) if t in data["providers"] else t): vid for t, vid in v.items()}
                     for k, v in out["voices"].items()}
    out["scripts"] = {ren(k): {**v, "voice": ren(v["voice"])} for k, v in out["scripts"].items()}
    for job in out["jobs"]:
        job["provider"] = ren(job["provider"])
        for field in ("clips", "scripts", "voices"):
            if field in job:
                job[field] = [ren(x) for x in job[field]]
    return out


def load(workdir: Path, data: dict, cache: HashCache | None = None):
    fd, name = tempfile.mkstemp(suffix=".yaml", dir=workdir)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, sort_keys=False, allow_unicode=True)
    try:
        return load_project(Path(name), hash_cache=cache or HashCache())
    finally:
        os.unlink(name)


def keys_by_output(project) -> dict[str, str]:
    return {out: job.key for job in project.jobs for out in job.outputs}


@pytest.mark.slow
@SETTINGS
@given(spec=specs(), rng=st.randoms(use_true_random=False))
def test_expansion_is_deterministic_and_order_independent(workdir, spec, rng):
    first = load(workdir, spec)
    assert load(workdir, spec).jobs == first.jobs
    assert load(workdir, shuffled(spec, rng)).jobs == first.jobs


@pytest.mark.slow
@SETTINGS
@given(spec=specs(), suffix=st.sampled_from(["x", "renamed", "v2"]), rng=st.randoms(use_true_random=False))
def test_keys_survive_renames_and_reordering(workdir, spec, suffix, rng):
    before = load(workdir, spec)
    after = load(workdir, shuffled(renamed(spec, suffix), rng))
    assert sorted(j.key for j in after.jobs) == sorted(j.key for j in before.jobs)
    assert sorted(len(j.outputs) for j in after.jobs) == sorted(len(j.outputs) for j in before.jobs)


@SETTINGS
@given(spec=specs())
def test_distinct_requests_never_share_a_key(workdir, spec):
    project = load(workdir, spec)
    keys = [job.key for job in project.jobs]
    assert len(keys) == len(set(keys))
    requests = {(job.kind, json.dumps(dict(job.params), sort_keys=True),
                 tuple(sorted((r, i.identity) for r, i in job.inputs.items()))) for job in project.jobs}
    assert len(requests) == len(keys)
    for job in project.jobs:
        assert job.key == job_key(job.kind, job.params, job.inputs)
    # anna and anna-again are the same file: same request, one job, two outputs
    by_output = keys_by_output(project)
    for out, key in by_output.items():
        if "/anna/" in out:
            twin = out.replace("/anna/", "/anna-again/")
            if twin in by_output:
                assert by_output[twin] == key


def _flip_byte(path: Path) -> bytes:
    """Flip one payload byte (wav sample data / mp4 mdat), keeping the file readable; returns the original."""
    original = path.read_bytes()
    offset = original.find(b"mdat") + 24 if path.suffix == ".mp4" else len(original) // 2
    changed = bytearray(original)
    changed[offset] ^= 0x01
    st_ = path.stat()
    path.write_bytes(bytes(changed))
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
    return original


@SETTINGS
@given(spec=specs(), target=st.sampled_from(["en.wav", "de.wav", "a1.wav", "a2.wav", "ben.mp4"]))
def test_changing_an_input_byte_changes_exactly_the_jobs_using_it(workdir, spec, target):
    before = keys_by_output(load(workdir, spec))
    file = workdir / "media" / target
    original = _flip_byte(file)
    try:
        project = load(workdir, spec)
    finally:
        file.write_bytes(original)
    after = keys_by_output(project)
    assert after.keys() == before.keys()
    users = {out for job in project.jobs for out in job.outputs
             if any(ref.path is not None and ref.path.name == target for ref in job.inputs.values())}
    changed = {out for out in before if before[out] != after[out]}
    assert changed == users


@SETTINGS
@given(spec=specs(), data=st.data())
def test_changing_an_option_or_a_text_changes_exactly_the_affected_keys(workdir, spec, data):
    before = keys_by_output(load(workdir, spec))
    changed_spec = json.loads(json.dumps(spec))
    what = data.draw(st.sampled_from(["explore", "mode", "text"]))
    if what == "explore":
        opts = changed_spec["providers"]["runway"]["options"]
        opts["exploreMode"] = not opts["exploreMode"]
        affected = {o for o in before if o.startswith("runway/")}
    elif what == "mode" and "mh" in spec["providers"]:
        opts = changed_spec["providers"]["mh"]["options"]
        opts["generation_mode"] = {"lite": "pro", "pro": "standard", "standard": "lite"}[opts["generation_mode"]]
        affected = {o for o in before if o.startswith("mh/")}
    else:
        texts = [(s, lang) for s, body in spec["scripts"].items() for lang, line in body["lines"].items()
                 if isinstance(line, str)]
        if not texts:
            return
        script, lang = data.draw(st.sampled_from(texts))
        changed_spec["scripts"][script]["lines"][lang] += " Now!"
        affected = {o for o in before if o.endswith(f"/{script}.{lang}.mp4")}
    after = keys_by_output(load(workdir, changed_spec))
    assert {o for o in before if before[o] != after[o]} == affected


_SCALARS = st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "b", "lite"]),
                     st.sampled_from([0.5, 2.0]))
_REQUESTS = st.tuples(
    st.sampled_from(["runway-lipsync", "magichour-lipsync"]),
    st.dictionaries(st.sampled_from(["text", "voice_id", "exploreMode", "start_seconds"]), _SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["video", "audio"]), st.sampled_from(["0" * 64, "1" * 64, "https://x/y"]),
                    max_size=2),
)


def _refs(inputs: dict[str, str]) -> dict[str, InputRef]:
    return {role: InputRef(role, "video/mp4", url=v) if v.startswith("https")
            else InputRef(role, "video/mp4", sha256=v) for role, v in inputs.items()}


@settings(max_examples=300, deadline=None)
@given(a=_REQUESTS, b=_REQUESTS)
def test_job_key_is_injective_on_canonical_requests(a, b):
    def canonical(req):
        kind, params, inputs = req
        norm = {k: float(v) if k == "start_seconds" and type(v) in (int, float) else v for k, v in params.items()}
        return kind, json.dumps(norm, sort_keys=True), tuple(sorted((r, _refs(inputs)[r].identity) for r in inputs))

    key_a = job_key(a[0], a[1], _refs(a[2]))
    key_b = job_key(b[0], b[1], _refs(b[2]))
    assert (key_a == key_b) == (canonical(a) == canonical(b))
    assert key_a == job_key(a[0], dict(reversed(list(a[1].items()))), _refs(a[2]))
