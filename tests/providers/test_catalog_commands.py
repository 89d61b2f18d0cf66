"""`lipbatch voices` / `lipbatch avatars`: account resolution, output, and the in-process sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lipbatch import cli
from lipbatch.errors import EXIT_INVALID, EXIT_OK
from lipbatch.providers.aimlapi_pixverse import PIXVERSE_SPEAKERS

MANIFEST = """\
version: 1
providers:
  talking-heads:
    kind: creatify-lipsync
    credentials: {api_id: MY_CREATIFY_ID, api_key: MY_CREATIFY_KEY}
  runway-main:
    kind: runway-lipsync
  pix:
    kind: aimlapi-pixverse-lipsync
  mh:
    kind: magichour-lipsync
clips: {}
"""


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(MANIFEST)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("provider", ["aimlapi-pixverse-lipsync", "pix"])
def test_pixverse_speakers_need_no_network_or_key(capsys, manifest: Path, monkeypatch, provider: str) -> None:
    monkeypatch.delenv("AIMLAPI_KEY", raising=False)
    code, out, _ = run(capsys, "voices", provider, "--manifest", str(manifest), "--json")
    assert code == EXIT_OK
    assert [row["id"] for row in json.loads(out)] == list(PIXVERSE_SPEAKERS)


def test_table_output_lists_every_speaker(capsys) -> None:
    code, out, _ = run(capsys, "voices", "aimlapi-pixverse-lipsync")
    assert code == EXIT_OK
    assert all(speaker in out for speaker in PIXVERSE_SPEAKERS)


def test_missing_credential_names_the_manifest_variable(capsys, manifest: Path, monkeypatch) -> None:
    monkeypatch.delenv("MY_CREATIFY_ID", raising=False)
    monkeypatch.setenv("MY_CREATIFY_KEY", "do-not-print-me")
    code, out, err = run(capsys, "voices", "talking-heads", "-m", str(manifest), "--json")
    assert code == EXIT_INVALID
    assert "MY_CREATIFY_ID" in err and "do-not-print-me" not in out + err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["voices", "nobody"], "not a kind"),
        (["voices", "nobody", "-m", "{manifest}"], "talking-heads"),
        (["voices", "mh", "-m", "{manifest}"], "recorded audio only"),
        (["avatars", "runway-main", "-m", "{manifest}"], "Creatify"),
    ],
)
def test_unusable_accounts_are_explained(capsys, manifest: Path, argv: list[str], needle: str) -> None:
    code, out, err = run(capsys, *(a.format(manifest=manifest) for a in argv))
    assert code == EXIT_INVALID
    assert needle in err and out == ""
