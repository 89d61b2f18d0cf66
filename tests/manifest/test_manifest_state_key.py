"""The manifest's ``state:`` (a shared PostgreSQL state): checked offline, a password never echoed."""

from __future__ import annotations

import pytest

from lipbatch.manifest import load_project

MANIFEST = """version: 1
providers: {mh: {kind: magichour-lipsync}}
clips: {anna: {video: media/anna.mp4}}
scripts: {hi: {lines: {en: {audio: media/en.wav}}}}
jobs: [{provider: mh, clips: [anna], scripts: [hi], output: '{clip}.mp4'}]
state: {state}
"""


@pytest.mark.parametrize("url, message", [
    ("postgresql://u:hunter2-secret@db.example/campaigns", "state holds a password"),
    ("mysql://db.example/campaigns", "state takes a postgresql://"),
])
def test_a_bad_state_url_is_refused_without_echoing_it(project_dir, run_cli, url, message):
    manifest = project_dir / "c.yaml"
    manifest.write_text(MANIFEST.replace("{state}", url))
    result = run_cli("validate", str(manifest))
    assert result.code == 2 and message in result.out and ":6:" in result.out
    assert "hunter2" not in result.out + result.err


def test_a_good_state_url_reaches_the_project(project_dir):
    manifest = project_dir / "c.yaml"
    manifest.write_text(MANIFEST.replace("{state}", "postgresql://lipbatch@127.0.0.1/campaigns"))
    assert load_project(manifest).state_url == "postgresql://lipbatch@127.0.0.1/campaigns"
