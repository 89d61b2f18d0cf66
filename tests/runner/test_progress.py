"""Progress sinks: the live table, log lines and JSON lines all come from the same events."""

from __future__ import annotations

import io
import json

from rich.console import Console

from lipbatch.progress import JsonSink, LiveSink, LogSink, describe
from lipbatch.runner import Event

EVENTS = [
    Event("account", account="runway", data={"kind": "runway-lipsync", "limit": 2, "cap": 5, "in_use": 2,
                                             "in_flight": 2, "done": 3, "failed": 1, "credits": 12.5,
                                             "charged": 12.5, "held": 4_000_000, "unknown": 0}),
    Event("job_submitted", job="k1", account="runway", output="en/anna.mp4", data={"task_id": "t-9", "attempt": 1}),
    Event("job_failed", job="k2", account="runway", output="de/anna.mp4", message="HTTP 400: bad voice"),
    Event("job_progress", job="k1", account="runway", output="en/anna.mp4", data={"progress": 0.5}),
]


def test_live_table_shows_slots_counts_and_credits_per_account():
    out = io.StringIO()
    sink = LiveSink(Console(file=out, force_terminal=True, width=120))
    with sink.live:
        for event in EVENTS:
            sink(event)
    text = out.getvalue()
    assert "runway" in text and "2/5" in text and "charged 12.5 · est. 4,000,000" in text
    assert "HTTP 400: bad voice" in text


def test_log_lines_skip_noise_and_json_keeps_everything():
    log, js = io.StringIO(), io.StringIO()
    for event in EVENTS:
        LogSink(log)(event)
        JsonSink(js)(event)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("[runway] en/anna.mp4: submitted as task t-9 (attempt 1)")
    assert [json.loads(line)["type"] for line in js.getvalue().splitlines()] == [e.type for e in EVENTS]
    assert describe(Event("job_progress")) is None
