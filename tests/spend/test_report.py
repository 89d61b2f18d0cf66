"""The closing summary and the run's log file on a mixed run: done, failed, unknown, waiting for budget."""

from __future__ import annotations

import io
import json

import httpx
import pytest
import trio
import yaml
from harness import SANDBOX_URL, fast_options
from kinds import PIXVERSE_SPEAKER
from spendkit import creatify_manifest, magichour_manifest

from lipbatch.progress import JsonSink
from lipbatch.report import log_path, summary_lines
from lipbatch.runner import run_project
from lipbatch.state import JobStatus, read_jobs
from lipbatch.state.local import State

pytestmark = pytest.mark.anyio


def mixed_manifest(tmp_path, media):
    """Creatify under a budget of 10 (two jobs of 5 done, one waits), Magic Hour (30 credits held while
    queued, 6 charged), and PixVerse of unknown cost: one done, one moderated, one a crash left unknown."""
    manifest = creatify_manifest(tmp_path, [5, 5, 5], budget=10)
    data = yaml.safe_load(manifest.read_text())
    mh = yaml.safe_load(magichour_manifest(tmp_path / "mh", media, [1.0]).read_text())
    data["providers"]["mh"] = mh["providers"]["mh"]
    data["clips"].update(mh["clips"])
    data["scripts"].update(mh["scripts"])
    data["jobs"] += mh["jobs"]
    data["providers"]["px"] = {"kind": "aimlapi-pixverse-lipsync", "allow_unknown_cost": True}
    data["clips"]["face"] = {"video": str(media.video)}
    data["voices"]["narrator"]["aimlapi-pixverse-lipsync"] = PIXVERSE_SPEAKER
    data["scripts"]["px"] = {"voice": "narrator", "lines": {
        "en": "Hello from PixVerse", "de": "Hallo von PixVerse", "fr": "Bonjour forbiddenword"}}
    data["jobs"].append({"provider": "px", "clips": ["face"], "scripts": ["px"], "output": "px/{lang}.mp4"})
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest


async def test_summary_and_log_of_a_mixed_run(harness, tmp_path, media):
    manifest = mixed_manifest(tmp_path, media)
    h = harness(moderate=("forbiddenword",))
    project = h.project(manifest)
    crashed = next(job for job in project.jobs if job.output == "px/de.mp4")
    with State.open(project.state_path) as state:  # a kill -9 during its create, on an unsearchable kind
        state.update(crashed.key, account="px", kind=crashed.kind, outputs=list(crashed.outputs), take=1,
                     status=JobStatus.SUBMITTING, attempts=1, endpoint=project.accounts["px"].endpoint)
    json_out = io.StringIO()
    summary = await h.run(project, sink=JsonSink(json_out))
    assert (summary.done, summary.failed, summary.unknown, summary.over_budget) == (4, 1, 1, 1)

    text = "\n".join(summary_lines(summary))
    assert f"Outputs: {project.output_dir}" in text
    assert "4 done" in text and "1 failed" in text and "1 unknown" in text and "1 waiting for budget" in text
    assert "Finished after " in text
    assert "creatify  Creatify credits: est. 10 · charged 10" in text
    assert "mh        Magic Hour credits: est. 30 · charged 6, refunded 24 · $0.01" in text
    assert "px        AI/ML API credits: est. ? · charged 2,000,000 · $1.00" in text
    assert "Budget creatify: 10 of 10 Creatify credits used, 0 left; 1 job(s) wait for it, needing 5 more " \
           "(--max-credits creatify=15)" in text
    for item in summary.pending:  # every job not done, with its reason and how to continue it
        assert f"{item.output} [{item.key[:12]}]" in text
    assert f"--resubmit-unknown --only {crashed.key[:12]}" in text
    assert "none: moderation failures are never retried" in text
    assert text.count("continue: ") == 3
    log = log_path(project.state_path)
    assert f"Log: {log}" in text

    logged = log.read_text()
    for line in summary_lines(summary):
        assert line in logged
    for kind in ("run_started", "job_submitted", "job_failed", "job_unknown", "job_over_budget", "job_done"):
        assert f" {kind}: " in logged
    assert "account:" not in logged  # slot snapshots feed the live display only

    events = [json.loads(line) for line in json_out.getvalue().splitlines()]
    finished = events[-1]
    assert finished["type"] == "run_finished"
    data = finished["data"]
    assert data["over_budget"] == 1 and data["log_file"] == str(log)
    assert {p["outcome"] for p in data["pending"]} == {"failed", "unknown", "over_budget"}
    assert data["spend"]["accounts"]["px"]["charged"] == 2_000_000
    assert data["spend"]["budgets"][0]["more"] == 5
    accounts = [e for e in events if e["type"] == "account"]
    assert any(e["data"]["charged"] == 2_000_000 for e in accounts if e["account"] == "px")
    for blob in (text, logged, json_out.getvalue()):
        assert "e+" not in blob


async def test_ctrl_c_summary_separates_paid_in_flight_jobs_from_unsubmitted_ones(harness, tmp_path, media):
    manifest = magichour_manifest(tmp_path, media, [0.5, 1.0, 1.5, 0.5, 1.0], concurrency=2)
    h = harness(job_seconds=50.0)  # renders take long enough to interrupt them
    project = h.project(manifest)
    stop = trio.Event()

    def sink(event):
        if event.type == "job_submitted":
            stop.set()

    summary = await run_project(project, fast_options(), transport=httpx.ASGITransport(app=h.app), sink=sink,
                                stop=stop, environ={})
    assert summary.interrupted and summary.in_flight >= 1 and summary.not_run == 5
    records = read_jobs(project.state_path)
    in_flight = {item.output for item in summary.pending if item.outcome == "in_flight"}
    assert in_flight == {job.output for job in project.jobs
                         if job.key in records and records[job.key].task_id}
    text = "\n".join(summary_lines(summary))
    assert text.startswith("Interrupted after")
    assert f"in flight (paid, will be collected on rerun) ({len(in_flight)})" in text
    assert f"not submitted ({5 - len(in_flight)})" in text
    assert SANDBOX_URL not in text
