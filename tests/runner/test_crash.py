"""`lipbatch run` as a subprocess against a separately served sandbox: kill -9, Ctrl-C, a second run.

Slow: each case starts several Python processes. The sandbox runs in this test
process (hypercorn on a loopback port); the runs reach it with ``--sandbox-url``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from harness import assert_all_done
from kinds import KINDS, write_manifest

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.media import verify_playable
from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import Sandbox, SandboxConfig
from lipbatch.sandbox.server import serve
from lipbatch.state import JobStatus, read_jobs

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SLOW_SANDBOX = {"job_seconds": 2.0, "time_scale": 0.05}  # 0.1 s of real time per job
PROCESS_TIMEOUT = 60


@dataclass
class Run:
    code: int | None
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    signalled: bool = False

    def count(self, type_: str) -> int:
        return sum(1 for e in self.events if e.get("type") == type_)


@asynccontextmanager
async def served(**config: Any) -> AsyncIterator[tuple[str, Sandbox]]:
    app = build_app(SandboxConfig(**(SLOW_SANDBOX | config)))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, app))
        yield url, app.state.sandbox
        nursery.cancel_scope.cancel()


async def lipbatch_run(manifest: Path, url: str, *flags: str,
                       until: Callable[[Run], bool] | None = None, sig: int | None = signal.SIGKILL) -> Run:
    """Run ``lipbatch run --json`` to its end; once ``until(run)`` holds, send ``sig`` (if any)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_KEY", "_API_ID"))}
    argv = [sys.executable, "-m", "lipbatch", "run", str(manifest), "--sandbox-url", url, "--json", *flags]
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    run = Run(None)
    buffer = b""
    errors: list[bytes] = []

    async def drain_stderr() -> None:
        while chunk := await process.stderr.receive_some():
            errors.append(chunk)

    with trio.fail_after(PROCESS_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_stderr)
            while chunk := await process.stdout.receive_some():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                run.events += [json.loads(line) for line in lines if line.strip()]
                if until is not None and not run.signalled and until(run):
                    run.signalled = sig is not None
                    if sig is not None:
                        process.send_signal(sig)
            run.code = await process.wait()
    run.stderr = b"".join(errors).decode(errors="replace")
    return run


def nth(type_: str, n: int = 1) -> Callable[[Run], bool]:
    return lambda run: run.count(type_) >= n


def unsettled(state_path: Path) -> int:
    """Jobs a crash left between intent and task id (their create may or may not exist)."""
    return sum(1 for r in read_jobs(state_path).values()
               if r.status in (JobStatus.SUBMITTING, JobStatus.UNKNOWN) and not r.no_task_exists)


@pytest.mark.parametrize("kind", KINDS)
async def test_kill_9_at_several_points_then_rerun_finishes_without_paying_twice(kind, tmp_path, media):
    jobs = 6
    case = write_manifest(kind, tmp_path, media, jobs=jobs, concurrency=2)
    project = load_campaign(case.manifest, sandbox=True)  # runs use --sandbox-url: a rehearsal
    async with served() as (url, sandbox):
        points = [nth("run_started"), nth("job_submitted"), nth("job_succeeded"), nth("job_submitted", 2)]
        ambiguous = kills = 0
        for point in points:
            killed = await lipbatch_run(case.manifest, url, until=point)
            if killed.signalled:
                assert killed.code == -signal.SIGKILL
                kills += 1
            else:  # every job was settled (or left unknown) before this point came: it ended on its own
                assert killed.code in (EXIT_OK, EXIT_JOBS_FAILED), killed.stderr
            ambiguous += unsettled(project.state_path)
            for job in project.jobs:  # an output name only ever holds a complete, playable file
                if (project.output_dir / job.output).exists():
                    verify_playable(project.output_dir / job.output)

        assert kills >= 2
        final = await lipbatch_run(case.manifest, url)
        if not case.reconcilable and final.code != EXIT_OK:
            # jobs the crash left unknown are reported, and resubmitted only when asked
            assert final.count("job_unknown") >= 1
            final = await lipbatch_run(case.manifest, url, "--resubmit-unknown")
        assert final.code == EXIT_OK, final.stderr + json.dumps(final.events[-3:])
        assert_all_done(project, read_jobs(project.state_path))
        assert not list(project.output_dir.rglob(".*.part"))
        stats = sandbox.stats()
        if case.reconcilable:
            assert stats["duplicate_creates"] == 0
        else:
            assert stats["duplicate_creates"] <= ambiguous
        assert stats["creates_total"] - stats["duplicate_creates"] == jobs


@pytest.mark.parametrize("kind", KINDS)
async def test_ctrl_c_records_everything_and_the_same_command_resumes(kind, tmp_path, media):
    case = write_manifest(kind, tmp_path, media, jobs=4, concurrency=2)
    project = load_campaign(case.manifest, sandbox=True)  # runs use --sandbox-url: a rehearsal
    async with served() as (url, sandbox):
        interrupted = await lipbatch_run(case.manifest, url, until=nth("job_submitted"), sig=signal.SIGINT)
        assert interrupted.code == EXIT_INTERRUPTED, interrupted.stderr
        assert interrupted.count("interrupted") == 1
        assert unsettled(project.state_path) == 0  # every create sent was recorded with its task id

        resumed = await lipbatch_run(case.manifest, url)
        assert resumed.code == EXIT_OK, resumed.stderr
        assert_all_done(project, read_jobs(project.state_path))
        assert sandbox.stats()["duplicate_creates"] == 0


async def test_second_concurrent_run_exits_with_a_clear_message(tmp_path, media):
    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=4, concurrency=1)
    project = load_campaign(case.manifest, sandbox=True)  # runs use --sandbox-url: a rehearsal
    async with served(job_seconds=10.0) as (url, sandbox):
        async with trio.open_nursery() as nursery:
            first: list[Run] = []
            started = trio.Event()

            def submitted(run: Run) -> bool:
                if run.count("job_submitted"):
                    started.set()
                return started.is_set()

            async def run_first() -> None:
                first.append(await lipbatch_run(case.manifest, url, until=submitted, sig=None))

            nursery.start_soon(run_first)
            await started.wait()
            second = await lipbatch_run(case.manifest, url)
            assert second.code == EXIT_INVALID
            assert "in use by lipbatch pid" in second.stderr
            assert second.events == []
        assert first[0].code == EXIT_OK, first[0].stderr
    assert_all_done(project, read_jobs(project.state_path))
