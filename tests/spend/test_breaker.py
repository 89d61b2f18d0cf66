"""The breaker: a voice id the provider keeps refusing stops the jobs that use it, reported once."""

from __future__ import annotations

import pytest
import yaml
from kinds import RUNWAY_VOICES
from spendkit import create_posts, runway_manifest

from lipbatch.engine.breaker import Breaker
from lipbatch.errors import EXIT_JOBS_FAILED, ModerationError, PermanentError
from lipbatch.model import Job
from lipbatch.report import summary_lines

pytestmark = pytest.mark.anyio

BAD_VOICE = "notARealVoiceId123"


def voice_line(manifest) -> tuple[int, int]:
    """(line, column) of the bad voice id in the manifest file."""
    for number, text in enumerate(manifest.read_text().splitlines(), start=1):
        if BAD_VOICE in text:
            return number, text.index(BAD_VOICE) + 1
    raise AssertionError("voice id not in the manifest")


async def test_24_jobs_with_one_bad_voice_id_cost_3_refusals_and_are_reported_once(harness, tmp_path, media):
    manifest = runway_manifest(tmp_path, media, 24, voice=BAD_VOICE, concurrency=5, allow_unknown_cost=True)
    h = harness()
    summary = await h.run(manifest)
    stats = h.stats()
    assert summary.exit_code == EXIT_JOBS_FAILED
    assert create_posts(stats) == 3 and stats["creates_total"] == 0  # all three refused by the provider
    assert (summary.failed, summary.error_blocked) == (3, 21)

    breakers = [e for e in h.events if e.type == "breaker"]
    assert len(breakers) == 1  # reported once, not 21 times
    line, column = voice_line(manifest)
    where = f"{manifest}:{line}:{column} ($.voices.narrator.runway-lipsync)"
    assert breakers[0].data["where"] == where and BAD_VOICE in breakers[0].message

    text = "\n".join(summary_lines(summary))
    assert text.count(where) == 1
    assert "blocked by a repeated error (21)" in text
    blocked = [item for item in summary.pending if item.outcome == "error_blocked"]
    assert len(blocked) == 21 and all(item.output in text for item in blocked)


async def test_good_voices_beside_a_bad_one_all_run(harness, tmp_path, media):
    manifest = runway_manifest(tmp_path, media, 8, voice=BAD_VOICE, concurrency=4, allow_unknown_cost=True)
    data = yaml.safe_load(manifest.read_text())
    data["voices"]["good"] = {"runway-lipsync": RUNWAY_VOICES[1]}
    data["scripts"]["ok"] = {"voice": "good", "lines": {f"x{i}": f"Good line {i}" for i in range(1)}}
    data["scripts"]["ok"]["lines"] = {lang: f"A good line in {lang}" for lang in ("en", "de", "fr", "es")}
    data["jobs"].append({"provider": "runway", "clips": ["face"], "scripts": ["ok"], "output": "ok/{lang}.mp4"})
    manifest.write_text(yaml.safe_dump(data))
    h = harness()
    summary = await h.run(manifest)
    assert summary.done == 4 and summary.failed == 3 and summary.error_blocked == 5
    assert h.stats()["creates_total"] == 4


def job(voice_id: str, avatar_id: str | None = None, key: str = "k") -> Job:
    params = {"voice_id": voice_id, "text": "hi"} | ({"avatar_id": avatar_id} if avatar_id else {})
    return Job(key=key, account="acct", kind="creatify-lipsync", clip="c", script="s", lang="en", voice="v",
               outputs=("o.mp4",), inputs={}, params=params)


def test_a_refusal_is_blamed_on_the_value_it_names_and_never_on_a_proven_one(tmp_path):
    breaker = Breaker(tmp_path / "m.yaml", {"acct": "creatify-lipsync"}, threshold=2)
    refusal = PermanentError("avatar_id: persona bad-avatar does not exist", status=400)
    assert breaker.refused(job("v1", "bad-avatar"), refusal) is None
    trip = breaker.refused(job("v2", "bad-avatar"), refusal)
    assert trip is not None and trip.cause.param == "avatar_id" and trip.cause.value == "bad-avatar"
    assert breaker.trip_for(job("v3", "bad-avatar")) is trip and breaker.trip_for(job("v1", "good")) is None

    vague = PermanentError("invalid request", status=400)
    breaker.accepted(job("v9", "a9"))
    for _ in range(3):
        assert breaker.refused(job("v9", "a9"), vague) is None  # both values were accepted before
    assert breaker.refused(job("v9", "a9"), ModerationError("inappropriate", status=400)) is None
