"""A 5,000-job manifest validates, and a second validate rereads no unchanged media."""

from __future__ import annotations

import os
from pathlib import Path

import mediagen
import yaml

from lipbatch.hashing import HashCache, cache_path_for
from lipbatch.manifest import default_paths, load_project

CLIPS, SCRIPTS, LANGS = 50, 10, 10


def write_campaign(root: Path) -> Path:
    media = root / "media"
    for i in range(CLIPS):
        mediagen.make_png(media / f"face{i:02d}.png", width=16, height=12, skin=(120 + 2 * i, 150, 110))
    langs = ["en", "de", "fr", "es", "it", "pt-BR", "nl", "sv", "ja", "zh-Hans"][:LANGS]
    data = {
        "version": 1,
        "providers": {"runway": {"kind": "runway-lipsync"}},
        "clips": {f"face{i:02d}": {"image": f"media/face{i:02d}.png"} for i in range(CLIPS)},
        "voices": {"narrator": {"runway-lipsync": "pNInz6obpgDQGcFmaJgB"}},
        "scripts": {f"s{n}": {"voice": "narrator", "lines": {lang: f"Line {n} in {lang}." for lang in langs}}
                    for n in range(SCRIPTS)},
        "jobs": [{"provider": "runway", "clips": [f"face{i:02d}" for i in range(CLIPS)],
                  "scripts": [f"s{n}" for n in range(SCRIPTS)], "output": "{clip}/{script}.{lang}.mp4"}],
    }
    manifest = root / "campaign.yaml"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest


def test_5000_jobs_and_the_hash_cache(tmp_path: Path):
    manifest = write_campaign(tmp_path)
    cache_file = cache_path_for(default_paths(manifest)[1])

    first_cache = HashCache(cache_file)
    first = load_project(manifest, hash_cache=first_cache)
    assert len(first.jobs) == CLIPS * SCRIPTS * LANGS == 5000
    assert (first_cache.hash_reads, first_cache.probe_calls) == (CLIPS, CLIPS)
    assert cache_file.is_file()

    second_cache = HashCache(cache_file)
    second = load_project(manifest, hash_cache=second_cache)
    assert (second_cache.hash_reads, second_cache.probe_calls) == (0, 0)
    assert second.jobs == first.jobs

    # one face re-rendered: exactly that file is read again, exactly its jobs change key
    changed = tmp_path / "media" / "face07.png"
    before = changed.stat()
    mediagen.make_png(changed, width=16, height=12, skin=(10, 200, 30))
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    third_cache = HashCache(cache_file)
    third = load_project(manifest, hash_cache=third_cache)
    assert (third_cache.hash_reads, third_cache.probe_calls) == (1, 1)
    old = {j.output: j.key for j in first.jobs}
    moved = {j.output for j in third.jobs if old[j.output] != j.key}
    assert moved == {j.output for j in third.jobs if j.clip == "face07"}
    assert len(moved) == SCRIPTS * LANGS


def test_default_cache_lives_in_the_cache_folder_not_beside_the_manifest(tmp_path: Path, media_dir: Path):
    (tmp_path / "media").symlink_to(media_dir)
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(
        "version: 1\nproviders: {mh: {kind: magichour-lipsync}}\nclips: {anna: {video: media/anna.mp4}}\n"
        "scripts: {hi: {lines: {en: {audio: media/en.wav}}}}\n"
        "jobs: [{provider: mh, clips: [anna], scripts: [hi], output: '{clip}.mp4'}]\n")
    project = load_project(manifest)
    assert project.state_path == tmp_path / "tiny.lipbatch-state.json"
    assert project.output_dir == tmp_path / "tiny-output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media", "tiny.yaml"]
    assert cache_path_for(project.state_path).is_file()
    again = HashCache.for_state(project.state_path)
    load_project(manifest, hash_cache=again)
    assert (again.hash_reads, again.probe_calls) == (0, 0)
