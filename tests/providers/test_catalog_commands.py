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


@pytest.mark.parametrize(
    ("argv", "fields"),
    [
        (["voices", "runway-main"], {"id", "name", "gender", "accent"}),
        (["voices", "runway-act-two-voice"], {"id", "name", "gender", "accent"}),
        (["voices", "talking-heads"], {"id", "voice", "gender", "accent"}),
        (["avatars", "talking-heads"], {"id", "name", "gender", "style"}),
    ],
)
def test_catalogues_from_the_in_process_sandbox(capsys, manifest: Path, monkeypatch, argv: list[str],
                                                fields: set[str]) -> None:
    for variable in ("USEAPI_TOKEN", "MY_CREATIFY_ID", "MY_CREATIFY_KEY"):
        monkeypatch.delenv(variable, raising=False)
    code, out, err = run(capsys, *argv, "-m", str(manifest), "--sandbox", "--json")
    assert code == EXIT_OK, err
    rows = json.loads(out)
    assert rows and all(fields <= row.keys() and row["id"] for row in rows)
    assert len({row["id"] for row in rows}) == len(rows)


def test_creatify_voices_list_every_accent(capsys, manifest: Path) -> None:
    from lipbatch.sandbox.creatify import VOICES

    code, out, _ = run(capsys, "voices", "talking-heads", "-m", str(manifest), "--sandbox", "--json")
    assert code == EXIT_OK
    assert sorted(row["id"] for row in json.loads(out)) == sorted(a["id"] for v in VOICES for a in v["accents"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("provider", "base_url"),
    [("runway-main", "http://127.0.0.1:9/v1/runwayml"), ("talking-heads", "http://127.0.0.1:9")],
)
async def test_sandbox_url_maps_onto_each_kind(manifest: Path, provider: str, base_url: str) -> None:
    from argparse import Namespace

    from lipbatch.commands.voices import load_account, open_catalog

    args = Namespace(sandbox=False, sandbox_url="http://127.0.0.1:9/")
    async with open_catalog(args, load_account(provider, manifest)) as (account, _):
        assert account.base_url == base_url


def test_speaker_list_matches_the_manifest_schema() -> None:
    from lipbatch import manifest

    assert manifest.pixverse_speakers() == PIXVERSE_SPEAKERS
