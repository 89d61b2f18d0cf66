"""Cost estimates from the providers' documented pricing, and nothing else.

Where a provider documents no price (Runway per second, Act-Two, PixVerse via
AI/ML API), the estimate is ``None`` with a note saying so: a made-up number
would be worse than none. Where the docs disagree (Creatify aurora models:
"20 credits per 15 s" on the v2 create page vs "1 credit per second" on newer
pages), the create-page figure is the amount, the other is in the note, and
``uncertain`` is set.

Readings: Creatify partial blocks round up (the web app does; the API's
rounding is undocumented). Magic Hour frames = window seconds x min(input fps,
max_fps_limit), with 30 fps (the docs' estimate basis) when the input fps is
unknown; credits are charged per frame, rounded up.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from lipbatch.model import Job

UNITS: dict[str, str] = {
    "runway-lipsync": "Runway credits",
    "runway-act-two-voice": "Runway credits",
    "magichour-lipsync": "Magic Hour credits",
    "aimlapi-pixverse-lipsync": "AI/ML API credits",
    "creatify-lipsync": "Creatify credits",
}
MAGICHOUR_ESTIMATE_FPS = 30.0
MAGICHOUR_CREDITS_PER_FRAME = {"lite": 1, "standard": 1, "pro": 2}
# model_version -> ((credits, per seconds) from the v2 create page, credits/s from newer pages or None)
CREATIFY_PRICES: dict[str, tuple[tuple[float, float], float | None]] = {
    "standard": ((5, 30), None),
    "aurora_v1": ((20, 15), 1.0),
    "aurora_v1_fast": ((10, 15), 0.5),
}


@dataclass(frozen=True)
class Estimate:
    """An estimated cost: ``amount`` in ``unit``, or None when the provider documents no price."""

    amount: float | None
    unit: str
    note: str = ""
    uncertain: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def short(self) -> str:
        if self.amount is None:
            return "unknown"
        text = f"{self.amount:g}"
        return f"~{text}?" if self.uncertain else text


def estimate(job: Job, *, video_fps: float | None = None) -> Estimate:
    """The documented cost of ``job``; ``video_fps`` is the probed input frame rate (Magic Hour)."""
    unit = UNITS[job.kind]
    if job.kind in ("runway-lipsync", "runway-act-two-voice"):
        if job.params.get("exploreMode") is True:
            return Estimate(0, unit, "explore mode: no credits (Runway Unlimited plans only)")
        return Estimate(None, unit, "Runway's credits per second are not documented by useapi.net")
    if job.kind == "aimlapi-pixverse-lipsync":
        return Estimate(None, unit, "no price list in the AI/ML API docs (their one sample run reported "
                                    "2,000,000 credits, about $1)")
    if job.kind == "magichour-lipsync":
        return _magichour(job, unit, video_fps)
    return _creatify(job, unit)


def _magichour(job: Job, unit: str, video_fps: float | None) -> Estimate:
    seconds = float(job.params["end_seconds"]) - float(job.params["start_seconds"])
    fps = video_fps or MAGICHOUR_ESTIMATE_FPS
    limit = job.params.get("max_fps_limit")
    if limit:
        fps = min(fps, float(limit))
    mode = str(job.params.get("generation_mode", "lite"))
    per_frame = MAGICHOUR_CREDITS_PER_FRAME.get(mode, 1)
    frames = math.ceil(round(seconds * fps, 6))
    basis = "probed" if video_fps else "assumed"
    return Estimate(frames * per_frame, unit,
                    f"{seconds:g} s x {fps:g} fps ({basis}) = {frames} frames x {per_frame} ({mode}); "
                    f"settled to rendered frames")


def _creatify(job: Job, unit: str) -> Estimate:
    version = str(job.params.get("model_version", "standard"))
    (block_credits, block_seconds), per_second = CREATIFY_PRICES.get(version, CREATIFY_PRICES["standard"])
    seconds = job.expected_seconds
    if seconds is None:
        return Estimate(None, unit, f"{version}: {block_credits:g} credits per {block_seconds:g} s, "
                                    f"but the audio length is unknown (remote file)")
    amount = math.ceil(seconds / block_seconds) * block_credits
    source = "estimated from the text length" if "text" in job.params else "from the audio"
    note = f"{version}: {block_credits:g} credits per {block_seconds:g} s, {seconds:g} s {source}"
    if per_second is None:
        return Estimate(amount, unit, note)
    other = math.ceil(seconds * per_second * 10) / 10
    return Estimate(amount, unit, f"{note} (v2 create page); newer Creatify pages say {per_second:g} credit/s "
                                  f"= {other:g}", uncertain=True)
