"""`plan --check-remote`: ids the providers do not list are caught at their manifest line, before any spend."""

from __future__ import annotations

import yaml
from kinds import RUNWAY_VOICES, creatify_ids
from spendkit import BAD_VOICE_HINT, creatify_manifest, runway_manifest

from lipbatch.errors import EXIT_INVALID, EXIT_OK


def line_of(manifest, text: str) -> int:
    return next(n for n, line in enumerate(manifest.read_text().splitlines(), 1) if text in line)


def test_an_unknown_voice_id_is_reported_at_its_line_with_did_you_mean(tmp_path, media, run_cli):
    typo = RUNWAY_VOICES[0][:-1] + "x"
    manifest = runway_manifest(tmp_path, media, 2, voice=typo)
    result = run_cli("plan", str(manifest), "--sandbox", "--check-remote")
    assert result.code == EXIT_INVALID
    assert result.out.startswith(f"{manifest}:{line_of(manifest, typo)}:")
    assert "$.voices.narrator.runway-lipsync" in result.out
    assert f"did you mean '{RUNWAY_VOICES[0]}' (Benjamin)" in result.out
    assert "nothing was spent" in result.err
    assert not list(tmp_path.glob("*.journal"))


def test_a_voice_name_instead_of_an_id_suggests_the_id(tmp_path, media, run_cli):
    manifest = runway_manifest(tmp_path, media, 1, voice="Benjamin")
    result = run_cli("plan", str(manifest), "--sandbox", "--check-remote", "--json")
    assert result.code == EXIT_INVALID
    [problem] = result.json()["remote_check"]["problems"]
    assert f"did you mean '{RUNWAY_VOICES[0]}'" in problem


def test_creatify_accents_and_avatars_are_checked(tmp_path, run_cli):
    manifest = creatify_manifest(tmp_path, [5, 5])
    good = run_cli("plan", str(manifest), "--sandbox", "--check-remote")
    assert good.code == EXIT_OK and "all 2 voice/avatar id(s)" in good.out
    data = yaml.safe_load(manifest.read_text())
    persona, accent = creatify_ids()
    data["clips"]["host"]["avatar"] = persona[:-2] + "00"
    data["voices"]["narrator"]["creatify-lipsync"] = BAD_VOICE_HINT
    manifest.write_text(yaml.safe_dump(data))
    bad = run_cli("plan", str(manifest), "--sandbox", "--check-remote")
    assert bad.code == EXIT_INVALID
    assert "avatar (persona) id" in bad.out and f"did you mean '{persona}'" in bad.out
    assert f"voice id '{BAD_VOICE_HINT}'" in bad.out and "$.voices.narrator.creatify-lipsync" in bad.out
