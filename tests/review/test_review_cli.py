"""`lipbatch review` from the command line, and how run, plan and status honour the decisions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from campaigns import Campaign

import lipbatch.commands.run as run_command
from lipbatch.errors import EXIT_INVALID, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.paths import take_path
from lipbatch.review import rejected_takes
from lipbatch.review.decisions import decisions_path, read_decisions
from lipbatch.runner import RunSummary
from lipbatch.state import JobStatus, read_state


def _split(campaign: Campaign):
    records = read_state(campaign.project.state_path).jobs
    done = [job for job in campaign.project.jobs if records[job.key].status is JobStatus.DONE]
    failed = [job for job in campaign.project.jobs if records[job.key].status is JobStatus.FAILED]
    assert len(done) == 2 and len(failed) == 1
    return records, done, failed[0]


def _status(run_cli, campaign: Campaign) -> dict[str, dict]:
    result = run_cli("status", str(campaign.manifest), "--sandbox", "--json")
    assert result.code == EXIT_OK, result.err
    return {row["outputs"][0]: row for row in result.json()["jobs"]}


def test_decisions_bind_to_the_current_take_and_show_in_status_and_plan(small, run_cli):
    records, (good, bad), failed = _split(small)
    manifest = str(small.manifest)
    result = run_cli("review", manifest, "--sandbox", "--approve", f"key={good.key[:12]}")
    assert result.code == EXIT_OK, result.err
    path = decisions_path(small.manifest, sandbox=True)
    assert path.is_file() and not decisions_path(small.manifest).exists()  # rehearsal decisions kept apart
    refused = run_cli("review", manifest, "--sandbox", "--reject", f"key={bad.key[:12]}")
    assert refused.code == EXIT_INVALID and "needs a note" in refused.err
    before = path.read_bytes()
    assert run_cli("review", manifest, "--sandbox", "--reject", f"lang={bad.lang}", "--note", "lips late").code == 0
    assert path.read_bytes() != before

    decisions = read_decisions(path)
    for job, decision in ((good, "approved"), (bad, "rejected")):
        entry = decisions[job.output]
        assert (entry.decision, entry.sha256, entry.take) == (decision, records[job.key].output_sha256, 1)
        assert entry.by and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry.at)
    assert decisions[bad.output].note == "lips late"

    rows = _status(run_cli, small)
    assert (rows[good.output]["decision"], rows[good.output]["status"]) == ("approved", "done")
    assert (rows[bad.output]["decision"], rows[bad.output]["status"]) == ("rejected", "redo")
    assert rows[bad.output]["review"]["note"] == "lips late"
    assert rows[failed.output]["decision"] is None
    table = run_cli("status", manifest, "--sandbox").out
    assert "decision" in table and "approved" in table and "rejected" in table

    plan = run_cli("plan", manifest, "--sandbox", "--json").json()
    by_output = {job["outputs"][0]: job for job in plan["jobs"]}
    assert by_output[bad.output]["status"] == "redo" and by_output[bad.output]["redo_reason"] == "rejected"
    assert by_output[bad.output]["review"]["note"] == "lips late"
    assert "redo_reason" not in by_output[good.output] and plan["warnings"] == []
    assert f"redo (rejected): {bad.output}" in run_cli("plan", manifest, "--sandbox").out


def test_a_decision_without_a_done_take_is_refused_and_nothing_is_written(small, run_cli):
    _records, _done, failed = _split(small)
    manifest, path = str(small.manifest), decisions_path(small.manifest, sandbox=True)
    for words in (["--approve", f"key={failed.key[:12]}"], ["--approve", "provider=acct"],
                  ["--reject", "provider=acct", "--note", "no"]):
        result = run_cli("review", manifest, "--sandbox", *words)
        assert result.code == EXIT_INVALID and failed.output in result.err, result.err
        assert not path.exists()
    assert run_cli("review", manifest, "--sandbox", "--approve", "clip=nobody").code == EXIT_INVALID
    assert run_cli("review", manifest, "--sandbox", "--note", "alone").code == EXIT_INVALID
    assert run_cli("review", manifest, "--approve", "provider=acct").code == EXIT_INVALID  # the real campaign: no takes
    assert not path.exists() and not decisions_path(small.manifest).exists()


@pytest.mark.anyio
async def test_reject_then_run_makes_one_new_take_per_rejected_output_and_keeps_the_old(small, run_cli):
    records, done, _failed = _split(small)
    old = {job.output: (small.project.output_dir / job.output).read_bytes() for job in done}
    result = run_cli("review", str(small.manifest), "--sandbox", "--reject", "provider=acct", "lang=" +
                     ",".join(job.lang for job in done), "--note", "mouth out of sync")
    assert result.code == EXIT_OK, result.err
    assert rejected_takes(small.project, sandbox=True) == {job.output: records[job.key].output_sha256 for job in done}

    summary = await small.run()
    assert summary.done == len(done) and summary.exit_code == EXIT_JOBS_FAILED  # the failed job stays failed
    assert small.harness.stats()["creates_total"] == len(done)  # exactly one create per rejected output
    loaded = read_state(small.project.state_path)
    for job in done:
        record = loaded.jobs[job.key]
        assert record.status is JobStatus.DONE and record.take == 2
        [kept] = [t for t in loaded.takes if t.output == job.output]
        assert (kept.take, kept.reason, kept.kept) == (1, "rejected", take_path(job.output, 1))
        assert (small.project.output_dir / kept.kept).read_bytes() == old[job.output]
    rows = _status(run_cli, small)
    assert [rows[job.output]["decision"] for job in done] == ["undecided"] * len(done)
    assert [rows[job.output]["status"] for job in done] == ["done"] * len(done)
    # the new takes are undecided, even if the sandbox rendered the same bytes: nothing more is paid
    assert rejected_takes(small.project, sandbox=True) == {}
    await small.run()
    assert small.harness.stats()["creates_total"] == len(done)


def test_run_hands_the_rejected_takes_to_the_runner(small, run_cli, monkeypatch):
    records, (good, bad), _failed = _split(small)
    assert run_cli("review", str(small.manifest), "--sandbox", "--reject", f"key={bad.key[:12]}",
                   "--note", "x").code == EXIT_OK
    seen = []

    async def fake_run_project(project, options, **kwargs):
        seen.append(options)
        return RunSummary()

    async def fake_time_scale(url):
        return 1.0

    monkeypatch.setattr(run_command, "run_project", fake_run_project)
    monkeypatch.setattr(run_command, "sandbox_time_scale", fake_time_scale)
    assert run_cli("run", str(small.manifest), "--sandbox-url", "http://sandbox.test").code == EXIT_OK
    assert [dict(options.rejected) for options in seen] == [{bad.output: records[bad.key].output_sha256}]


def test_plan_warns_when_a_manifest_edit_would_replace_an_approved_take(small, run_cli):
    _records, (good, _bad), _failed = _split(small)
    manifest = small.manifest
    assert run_cli("review", str(manifest), "--sandbox", "--approve", f"key={good.key[:12]}").code == EXIT_OK
    data = yaml.safe_load(manifest.read_text())
    lines = data["scripts"][good.script]["lines"]
    lines[good.lang] = f"{lines[good.lang]} (rewritten)" if isinstance(lines[good.lang], str) else "New words here"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))

    plan = run_cli("plan", str(manifest), "--sandbox", "--json").json()
    assert [(w["output"], w["approved_by"]) for w in plan["warnings"]] == [
        (good.output, read_decisions(decisions_path(manifest, sandbox=True))[good.output].by)]
    assert "changed its request" in plan["warnings"][0]["message"]
    text = run_cli("plan", str(manifest), "--sandbox").out
    assert "warning:" in text and f"{good.output} was approved" in text


def test_review_writes_a_self_contained_page_with_relative_paths(small, run_cli):
    result = run_cli("review", str(small.manifest), "--sandbox")
    assert result.code == EXIT_OK, result.err
    page = Path(result.out.strip())
    assert page == small.project.output_dir / "review" / "index.html"
    html = page.read_text()
    assert html.count('class="cell"') == len(small.project.jobs)
    refs = re.findall(r'(?:src|poster)="([^"]*)"', html)
    assert len(refs) == 2 * 2  # two done takes: a video and a poster each
    for ref in refs:
        assert "://" not in ref and not ref.startswith("/"), ref
        assert (page.parent / ref).resolve().is_file(), ref
    assert all((page.parent / ref).read_bytes()[:2] == b"\xff\xd8" for ref in refs if ref.endswith(".jpg"))
    assert not re.search(r"https?://", html)  # nothing fetched from anywhere
    assert run_cli("verify", str(small.manifest), "--sandbox").code == EXIT_OK  # the review folder is lipbatch's
