"""The live display: overall progress, elapsed and ETA, per-account in flight / cap and labelled credits."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from spendkit import runway_manifest

from lipbatch.engine.options import Event
from lipbatch.progress import LiveSink, credits_cell

pytestmark = pytest.mark.anyio


def render(events) -> str:
    out = io.StringIO()
    sink = LiveSink(Console(file=out, force_terminal=True, width=100, color_system=None))
    with sink.live:
        for event in events:
            sink(event)
    return out.getvalue()


def test_progress_counts_eta_and_credits_labelled():
    events = [
        Event("run_started", data={"jobs": 4, "to_do": 3, "skipped": 1}),
        Event("account", account="px", data={"in_flight": 1, "cap": 2, "done": 1, "failed": 0,
                                             "charged": 2_000_000.0, "held": 0.0, "unknown": 0}),
        Event("account", account="runway", data={"in_flight": 2, "cap": 5, "done": 0, "failed": 0,
                                                 "charged": 0.0, "held": 0.0, "unknown": 2}),
        Event("account", account="mh", data={"in_flight": 1, "cap": 3, "done": 1, "failed": 0,
                                             "charged": 6.0, "held": 30.0, "unknown": 0}),
        Event("job_done", job="k", account="px", output="px/en.mp4", data={"size": 1, "sha256": "ab"}),
        Event("run_finished", data={}),
    ]
    text = render(events)
    assert "2/4 done" in text and "elapsed 0:0" in text and "ETA 0:0" in text
    assert "charged 2,000,000" in text and "e+" not in text
    assert "charged ?" in text  # nobody knows what Runway charged: never 0
    assert "charged 6 · est. 30" in text
    assert "1/2" in text and "2/5" in text and "1/3" in text


@pytest.mark.parametrize(("data", "shown"), [
    ({"charged": 0.0, "held": 0.0, "unknown": 1}, "charged ?"),
    ({"charged": 12.5, "held": 0.0, "unknown": 1}, "charged 12.5+?"),
    ({"charged": 0.0, "held": 4_000_000.0, "unknown": 0}, "charged 0 · est. 4,000,000"),
])
def test_credits_cell(data, shown):
    assert credits_cell(data) == shown


async def test_a_run_of_unpriced_jobs_shows_unknown_charges(harness, tmp_path, media):
    manifest = runway_manifest(tmp_path, media, 2, allow_unknown_cost=True)
    h = harness()
    await h.run(manifest)
    last = [e for e in h.events if e.type == "account"][-1]
    assert last.data["unknown"] == 2 and last.data["charged"] == 0
    assert credits_cell(last.data) == "charged ?"
