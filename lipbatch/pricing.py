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

``Estimate.reserve`` is what a budget sets aside before a create: the most the
provider may take for the job at any moment. It differs from ``amount`` for
Magic Hour, which deducts a 30 fps estimate when the job is queued and settles
it to the rendered frames on completion, and for Creatify, where it covers both
documented aurora prices.

``PRICE_TABLE`` is the money side, one row per kind, as documented in the
providers' pages collected in /work/shared/providers (read 2026-11-29).
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
class Price:
    """One kind's documented prices: credits per video (how) and US dollars per credit (or None)."""

    per_video: str
    usd_per_credit: float | None
    source: str
    #: a failed task costs nothing (documented refund or "never charged"), whatever was reserved
    failures_free: bool = False


PRICES_READ = "2026-11-29"
PRICE_TABLE: dict[str, Price] = {
    "runway-lipsync": Price(
        "unknown (useapi.net does not document Runway's credits per second; exploreMode: 0)", None,
        "Runway plan credits of the linked account; useapi.net is a flat subscription"),
    "runway-act-two-voice": Price(
        "unknown (credits per second of voice swap not documented; exploreMode: 0)", None,
        "Runway plan credits of the linked account"),
    "magichour-lipsync": Price(
        "1 credit per rendered frame (lite, standard), 2 (pro); 30 fps estimate deducted when queued", 1 / 400,
        "credit packs: about 400 credits per $1 (plans: Creator $19 / 12,000, Pro $39 / 25,000, Business $99 / "
        "70,000); the pack price, the highest listed, is used so money is never understated",
        failures_free=True),
    "aimlapi-pixverse-lipsync": Price(
        "unknown (no price list in the docs; their sample run reported 2,000,000 credits)", 1 / 2_000_000,
        "AI/ML API: $1 = 2,000,000 credits; failed generations are never charged", failures_free=True),
    "creatify-lipsync": Price(
        "standard 5 per 30 s; aurora_v1 20 per 15 s (newer pages: 1 per s); aurora_v1_fast 10 per 15 s "
        "(newer pages: 0.5 per s)", None, "no money price for API credits in the docs"),
}


def usd(kind: str, credits: float | None) -> float | None:
    """``credits`` of ``kind`` in US dollars, or None when the docs give no price."""
    rate = PRICE_TABLE[kind].usd_per_credit
    return None if rate is None or credits is None else credits * rate


def plain(value: float) -> str:
    """A number in plain notation with thousands separators: ``4,000,000``, ``12.5`` (never ``4e+06``)."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def dollars(value: float) -> str:
    if 0 < value < 0.01:
        return "<$0.01"
    return f"${value:,.2f}"


@dataclass(frozen=True)
class Estimate:
    """An estimated cost: ``amount`` in ``unit``, or None when the provider documents no price."""

    amount: float | None
    unit: str
    note: str = ""
    uncertain: bool = False
    hold: float | None = None  # most the provider takes at once, when more than ``amount``

    @property
    def reserve(self) -> float | None:
        """What a budget sets aside for the job before its create."""
        if self.amount is None:
            return None
        return max(self.amount, self.hold or 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reserve": self.reserve}

    def short(self) -> str:
        if self.amount is None:
            return "unknown"
        text = plain(self.amount)
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
    queued_fps = MAGICHOUR_ESTIMATE_FPS
    if limit:
        fps, queued_fps = min(fps, float(limit)), min(queued_fps, float(limit))
    mode = str(job.params.get("generation_mode", "lite"))
    per_frame = MAGICHOUR_CREDITS_PER_FRAME.get(mode, 1)
    frames = math.ceil(round(seconds * fps, 6))
    basis = "probed" if video_fps else "assumed"
    hold = math.ceil(round(seconds * queued_fps, 6)) * per_frame
    return Estimate(frames * per_frame, unit,
                    f"{seconds:g} s x {fps:g} fps ({basis}) = {frames} frames x {per_frame} ({mode}); "
                    f"{plain(hold)} deducted when queued (30 fps basis), settled to rendered frames", hold=hold)


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
                                  f"= {plain(other)}", uncertain=True, hold=math.ceil(seconds * per_second))
