"""Cost estimates follow the documented prices, and say unknown where there are none."""

from __future__ import annotations

import pytest

from lipbatch.model import InputRef, Job
from lipbatch.pricing import estimate


def job(kind: str, *, seconds: float | None = None, **params) -> Job:
    return Job(key="k" * 64, account="acct", kind=kind, clip="c", script="s", lang="en", voice=None,
               outputs=("o.mp4",), inputs={"video": InputRef("video", "video/mp4", sha256="0" * 64)},
               params=params, expected_seconds=seconds)


@pytest.mark.parametrize(("seconds", "credits"), [(1, 5), (30, 5), (30.5, 10), (45, 10), (61, 15)])
def test_creatify_standard_is_5_credits_per_started_30_seconds(seconds, credits):
    est = estimate(job("creatify-lipsync", seconds=seconds, avatar_id="a", voice_id="v", text="x"))
    assert (est.amount, est.unit, est.uncertain) == (credits, "Creatify credits", False)


@pytest.mark.parametrize(("version", "seconds", "credits", "per_second"),
                         [("aurora_v1", 16, 40, "= 16"), ("aurora_v1_fast", 16, 20, "= 8"),
                          ("aurora_v1", 15, 20, "= 15")])
def test_creatify_aurora_shows_the_create_page_figure_and_is_marked_uncertain(version, seconds, credits,
                                                                              per_second):
    est = estimate(job("creatify-lipsync", seconds=seconds, model_version=version, avatar_id="a"))
    assert est.amount == credits
    assert est.uncertain
    assert per_second in est.note and "credit/s" in est.note


def test_creatify_unknown_duration_is_unknown():
    est = estimate(job("creatify-lipsync", seconds=None, avatar_id="a"))
    assert est.amount is None and "unknown" in est.note


@pytest.mark.parametrize(("params", "fps", "credits"), [
    ({"start_seconds": 0.0, "end_seconds": 10.0}, None, 300),  # the docs' example: 10 s at 30 fps, lite
    ({"start_seconds": 0.0, "end_seconds": 10.0, "generation_mode": "pro"}, None, 600),
    ({"start_seconds": 1.0, "end_seconds": 3.0, "max_fps_limit": 12.0}, 25.0, 24),
    ({"start_seconds": 0.0, "end_seconds": 2.0, "max_fps_limit": 30.0}, 12.0, 24),
    ({"start_seconds": 0.0, "end_seconds": 1.5, "generation_mode": "standard"}, 24.0, 36),
])
def test_magichour_counts_frames(params, fps, credits):
    est = estimate(job("magichour-lipsync", **params), video_fps=fps)
    assert (est.amount, est.unit) == (credits, "Magic Hour credits")
    assert ("assumed" in est.note) == (fps is None)


@pytest.mark.parametrize("kind", ["runway-lipsync", "runway-act-two-voice", "aimlapi-pixverse-lipsync"])
def test_undocumented_prices_are_unknown(kind):
    est = estimate(job(kind, seconds=4.0, voice_id="v"))
    assert est.amount is None and est.short() == "unknown" and est.note


def test_runway_explore_mode_is_free():
    assert estimate(job("runway-lipsync", exploreMode=True)).amount == 0
    assert estimate(job("runway-lipsync", exploreMode=False)).amount is None
