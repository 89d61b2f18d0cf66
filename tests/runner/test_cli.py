"""`lipbatch run` / `lipbatch status` on the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from kinds import write_manifest

from lipbatch import cli
from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_INVALID, EXIT_OK
from lipbatch.manifest import load_project
from lipbatch.state import JobStatus, read_jobs


def test_missing_credential_names_the_variable_and_sends_nothing(tmp_path, media, monkeypatch, capsys):
    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=1)
    monkeypatch.delenv("MAGIC_HOUR_API_KEY", raising=False)

    code = cli.main(["run", str(case.manifest)])

    assert code == EXIT_INVALID
    err = capsys.readouterr().err
    assert "MAGIC_HOUR_API_KEY" in err
    assert read_jobs(load_project(case.manifest).state_path) == {}


@pytest.mark.anyio
async def test_status_reports_the_state(tmp_path, media, harness, capsys):
    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=2)
    h = harness()
    assert (await h.run(case.manifest)).done == 2

    assert cli.main(["status", str(case.manifest), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["counts"] == {"new": 2}  # the real campaign: nothing done
    assert cli.main(["status", str(case.manifest), "--sandbox", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"done": 2}
    assert {tuple(job["outputs"]) for job in report["jobs"]} == {job.outputs for job in h.project(case.manifest).jobs}
    assert all(job["attempts"] == 1 for job in report["jobs"])

    assert cli.main(["status", str(case.manifest), "--sandbox"]) == EXIT_OK
    assert "2 done" in capsys.readouterr().out


@pytest.mark.slow
def test_run_with_builtin_sandbox_needs_no_keys(tmp_path, media):
    case = write_manifest("runway-lipsync", tmp_path, media, jobs=2)
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "lipbatch", "run", str(case.manifest), "--sandbox", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == EXIT_OK, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "run_finished" and events[-1]["data"]["done"] == 2
    project = load_campaign(case.manifest, sandbox=True)  # sandbox runs are rehearsals
    records = read_jobs(project.state_path)
    assert all(records[job.key].status is JobStatus.DONE for job in project.jobs)
    assert all((project.output_dir / job.output).exists() for job in project.jobs)
