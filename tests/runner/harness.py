"""Runner test helpers: a fast in-process sandbox and runner options on its clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from lipbatch.campaign import load_campaign
from lipbatch.hashing import file_sha256
from lipbatch.model import Project
from lipbatch.runner import Event, RunOptions, RunSummary, point_at_sandbox, run_project
from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import Sandbox, SandboxConfig
from lipbatch.state import JobStatus

TIME_SCALE = 0.01  # 1 virtual second = 10 ms
FAST_SANDBOX = {"job_seconds": 1.0, "time_scale": TIME_SCALE}
SANDBOX_URL = "http://sandbox.test"


def fast_options(**changes: Any) -> RunOptions:
    """Runner options on the sandbox's scaled clock, unpaced, with quick retries."""
    base = RunOptions(sandbox=True, time_scale=TIME_SCALE, poll_min=0.5, poll_max=5.0, request_rate=None,
                      job_timeout=600.0)
    return dataclasses.replace(base, **changes)


class Harness:
    """One in-process sandbox and helpers to run projects against it."""

    def __init__(self, **config: Any) -> None:
        self.app: Starlette = build_app(SandboxConfig(**(FAST_SANDBOX | config)))
        self.events: list[Event] = []

    @property
    def sandbox(self) -> Sandbox:
        return self.app.state.sandbox

    def stats(self) -> dict[str, Any]:
        return self.sandbox.stats()

    def project(self, manifest: Path) -> Project:
        """The manifest as a rehearsal on this sandbox: its own state and outputs, as ``--sandbox-url``."""
        return point_at_sandbox(load_campaign(manifest, sandbox=True), SANDBOX_URL)

    async def run(self, manifest: Path | Project, options: RunOptions | None = None, *,
                  environ: dict[str, str] | None = None, sink=None) -> RunSummary:
        project = manifest if isinstance(manifest, Project) else self.project(manifest)

        def record(event: Event) -> None:
            self.events.append(event)
            if sink is not None:
                sink(event)

        return await run_project(project, options or fast_options(), transport=httpx.ASGITransport(app=self.app),
                                 sink=record, environ=environ or {})


def assert_all_done(project: Project, records: dict) -> None:
    """Every job DONE, and every output file holds the recorded bytes."""
    for job in project.jobs:
        record = records[job.key]
        assert record.status is JobStatus.DONE, (job.output, record.status, record.error)
        for output in job.outputs:
            path = project.output_dir / output
            assert file_sha256(path) == record.output_sha256
            assert path.stat().st_size == record.output_size
