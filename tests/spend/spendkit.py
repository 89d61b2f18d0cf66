"""Manifests for the spend tests: accounts with budgets, jobs of known (or unknown) cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from kinds import RUNWAY_VOICES, Media, creatify_ids

from lipbatch.budget import exposure
from lipbatch.state import JobRecord, JobStatus

# Creatify standard costs 5 credits per started 30 s of speech (15 characters a second): these texts
# cost 5, 10 and 15 credits, far from the block edges where rounding could differ.
TEXT_COSTS = {5: 150, 10: 600, 15: 1050}
LANGS = ("en", "de", "fr", "es", "it", "pt", "nl", "sv", "da", "fi", "pl", "cs", "ja", "ko", "tr", "el",
         "hu", "ro", "bg", "hr", "sk", "sl", "et", "lv")
MODERATED = "forbiddenword"


def text(cost: int, index: int, *, moderated: bool = False) -> str:
    """A line that costs ``cost`` Creatify standard credits (distinct per ``index``)."""
    head = f"line {index} {MODERATED} " if moderated else f"line {index} "
    return (head + "la " * TEXT_COSTS[cost])[: TEXT_COSTS[cost]]


def creatify_manifest(directory: Path, costs: list[int], *, budget: float | None = None,
                      moderated: frozenset[int] = frozenset(), concurrency: int = 2,
                      extra: dict[str, Any] | None = None) -> Path:
    """One Creatify account, one job per entry of ``costs`` (its credits), in that order."""
    persona, accent = creatify_ids()
    account: dict[str, Any] = {"kind": "creatify-lipsync", "concurrency": concurrency}
    if budget is not None:
        account["budget"] = budget
    lines = {LANGS[i]: text(cost, i, moderated=i in moderated) for i, cost in enumerate(costs)}
    data: dict[str, Any] = {
        "version": 1,
        "providers": {"creatify": account},
        "clips": {"host": {"avatar": persona}},
        "voices": {"narrator": {"creatify-lipsync": accent}},
        "scripts": {"talk": {"voice": "narrator", "lines": lines}},
        "jobs": [{"provider": "creatify", "clips": ["host"], "scripts": ["talk"],
                  "languages": list(lines), "output": "{lang}.mp4"}],
    }
    data.update(extra or {})
    path = directory / "campaign.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def runway_manifest(directory: Path, media: Media, jobs: int, *, voice: str = RUNWAY_VOICES[0],
                    concurrency: int = 5, allow_unknown_cost: bool = False, budget: float | None = None) -> Path:
    """``jobs`` text lines spoken by one voice on a Runway lip-sync account (the voice id on its own line)."""
    account: dict[str, Any] = {"kind": "runway-lipsync", "concurrency": concurrency}
    if budget is not None:
        account["budget"] = budget
    if allow_unknown_cost:
        account["allow_unknown_cost"] = True
    lines = {LANGS[i]: f"Line number {i} is spoken here" for i in range(jobs)}
    data = {
        "version": 1,
        "providers": {"runway": account},
        "clips": {"face": {"video": str(media.video)}},
        "voices": {"narrator": {"runway-lipsync": voice}},
        "scripts": {"talk": {"voice": "narrator", "lines": lines}},
        "jobs": [{"provider": "runway", "clips": ["face"], "scripts": ["talk"], "output": "{lang}/{clip}.mp4"}],
    }
    path = directory / "campaign.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def journal_prefixes(state_path: Path) -> list[dict[str, JobRecord]]:
    """The job records after each journal line: the snapshot, then the lines a crash left after it."""
    raw: dict[str, dict[str, Any]] = {}
    seq = 0
    if state_path.exists():
        snapshot = json.loads(state_path.read_text())
        seq = snapshot["seq"]
        raw = {job["key"]: dict(job) for job in snapshot["jobs"]}
    journal = state_path.with_name(state_path.name + ".journal")
    out = []
    for line in journal.read_text().splitlines() if journal.exists() else []:
        event = json.loads(line)
        if "seq" not in event or event["seq"] <= seq:  # the journal's head line, or already in the snapshot
            continue
        if event["op"] == "job":
            raw.setdefault(event["key"], {"key": event["key"]}).update(event["set"])
        out.append({key: JobRecord(**{**fields, "status": JobStatus(fields["status"])})
                    for key, fields in raw.items()})
    return out


def used(records: dict[str, JobRecord], account: str) -> float:
    """Charged + reserved for ``account`` in one state."""
    return sum(exposure(record).used for record in records.values() if record.account == account)


def create_posts(stats: dict[str, Any]) -> int:
    """Create requests the sandbox received, refused or not."""
    return sum(count for route, count in stats["requests_by_route"].items()
               if route.startswith("POST") and ("lipsync" in route or "lip-sync" in route or "lipsyncs" in route))


def magichour_manifest(directory: Path, media: Media, windows: list[float], *, budget: float | None = None,
                       concurrency: int = 2) -> Path:
    """One Magic Hour job per window (seconds of the 6 fps test clip), each with its own audio.

    Magic Hour deducts 30 fps worth of frames when a job is queued and settles to the rendered
    frames (6 fps here) when it completes: a window of 1 s holds 30 credits and costs 6.
    """
    account: dict[str, Any] = {"kind": "magichour-lipsync", "concurrency": concurrency}
    if budget is not None:
        account["budget"] = budget
    clips = {f"w{i}": {"video": str(media.video), "start": 0.0, "end": w} for i, w in enumerate(windows)}
    jobs = [{"provider": "mh", "clips": [f"w{i}"], "scripts": [f"s{i}"], "output": "{clip}.mp4"}
            for i in range(len(windows))]
    data = {
        "version": 1,
        "providers": {"mh": account},
        "clips": clips,
        "scripts": {f"s{i}": {"lines": {"en": {"audio": str(media.wav(i, 1.0))}}} for i in range(len(windows))},
        "jobs": jobs,
    }
    path = directory / "campaign.yaml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path

# a voice id the useapi emulator does not know (its refusal names it)
BAD_VOICE_HINT = "notARealVoiceId123"
