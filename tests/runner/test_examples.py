"""Every example manifest runs to completion in the sandbox: the README's promise, kept in CI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import assert_all_done

from lipbatch.errors import EXIT_OK
from lipbatch.media import verify_playable
from lipbatch.state import read_jobs

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests_examples"
MANIFESTS = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.yaml"))


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.parametrize("name", MANIFESTS)
async def test_example_manifest_runs_in_the_sandbox(name, tmp_path, harness):
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("*-output", "*.lipbatch-state*"))
    h = harness()
    project = h.project(tmp_path / "examples" / name)

    summary = await h.run(project)

    assert summary.exit_code == EXIT_OK, summary.failures
    assert_all_done(project, read_jobs(project.state_path))
    for job in project.jobs:
        verify_playable(project.output_dir / job.output)
