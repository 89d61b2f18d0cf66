"""Listings keep whole words and paths: at 80 columns on a terminal, and when piped."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from spendkit import BAD_VOICE_HINT, runway_manifest

from lipbatch import tables
from lipbatch.errors import EXIT_OK
from lipbatch.sandbox.useapi import VOICES
from lipbatch.tables import print_listing

pytestmark = pytest.mark.anyio

LONG = "de/runway/a-rather-long-campaign-folder-name/presenter-anna-opening-take/welcome.de-AT.mp4"
ROWS = [
    {"output": LONG, "account": "runway", "status": "failed", "credits": "4,000,000",
     "error": "HTTP 400: Parameter voiceId 'pNInz6obpgDQGcFmaJgBxx' is not a valid voice, see GET /lipsync/voices"},
    {"output": "en/short.mp4", "account": "magichour", "status": "done", "credits": "24", "error": None},
]


def terminal(width: int = 80) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=width, color_system=None), out


def words(rows, columns) -> list[str]:
    return [word for row in rows for c in columns for word in str(row.get(c) or "-").split()]


@pytest.mark.parametrize("width", [80, 60, 200])
def test_a_terminal_listing_never_cuts_a_word_or_a_path(width):
    console, out = terminal(width)
    print_listing(ROWS, list(ROWS[0]), title="status", prose=("error",), console=console)
    text = out.getvalue()
    for word in words(ROWS, ROWS[0]):
        assert word in text, word
    assert max(len(line) for line in text.splitlines()) <= width or LONG in text


def test_a_table_is_used_when_everything_fits_and_record_blocks_when_not():
    short = [{"id": "abc", "name": "Benjamin"}]
    assert tables.fits(short, ["id", "name"], 80)
    assert not tables.fits(ROWS, list(ROWS[0]), 80, frozenset({"error"}))
    console, out = terminal(80)
    print_listing(ROWS, list(ROWS[0]), prose=("error",), console=console)
    assert "  account: runway" in out.getvalue()


def test_piped_listings_are_one_record_per_line():
    out = io.StringIO()
    print_listing(ROWS, list(ROWS[0]), title="status", console=Console(file=out))
    lines = out.getvalue().splitlines()
    assert lines[0] == "# status" and lines[1].split("\t") == list(ROWS[0])
    assert lines[2].split("\t")[0] == LONG and lines[3].split("\t")[-1] == "-"
    assert len(lines) == 2 + len(ROWS)


async def test_status_after_a_run_keeps_whole_paths_at_80_columns(harness, tmp_path, media, run_cli,
                                                                   monkeypatch):
    manifest = runway_manifest(tmp_path, media, 3, voice=BAD_VOICE_HINT, allow_unknown_cost=True)
    await harness().run(manifest)
    piped = run_cli("status", str(manifest), "--sandbox")
    assert piped.code == EXIT_OK
    rows = [line.split("\t") for line in piped.out.splitlines()[2:-1]]
    assert len(rows) == 3 and all(re.fullmatch(r"[a-z]{2}/face\.mp4", row[0]) for row in rows)
    assert all(BAD_VOICE_HINT in row[-1] for row in rows)  # the provider's whole reason, on its line

    monkeypatch.setattr(tables, "Console", lambda: Console(force_terminal=True, width=80, color_system=None))
    narrow = run_cli("status", str(manifest), "--sandbox")
    for row in rows:
        for word in [row[0], *row[-1].split()]:
            assert word in narrow.out, word
    assert max(len(line) for line in narrow.out.splitlines()) <= 80


def test_voices_listing_keeps_every_id_whole_at_80_columns(run_cli, monkeypatch):
    piped = run_cli("voices", "runway-lipsync", "--sandbox")
    ids = [line.split("\t")[0] for line in piped.out.splitlines()[2:]]
    assert ids == [voice["voiceId"] for voice in VOICES]
    monkeypatch.setattr(tables, "Console", lambda: Console(force_terminal=True, width=80, color_system=None))
    narrow = run_cli("voices", "runway-lipsync", "--sandbox")
    assert all(voice_id in narrow.out for voice_id in ids)
    assert all(url in narrow.out for url in re.findall(r"https?://\S+", piped.out))
