"""No-op rerun: a finished manifest of 10,000 jobs run again sends nothing and costs about a validate.

The finished state is built directly with ``lipbatch.state`` (every job DONE,
its output file on disk with the recorded sha256 and size) rather than by
running 10,000 jobs. Then, as a user would type them, ``lipbatch validate``
and ``lipbatch run --sandbox-url`` (against a served sandbox, whose stats must
show 0 provider requests) run as subprocesses; each is timed best of three.
In-process times split the rerun into manifest loading (what validate does)
and ``run_project`` (state load plus hashing every output).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from _common import Media, parser, served_sandbox, table, write_manifest

from lipbatch.campaign import load_campaign
from lipbatch.model import Project
from lipbatch.runner import RunOptions, point_at_sandbox, run_project
from lipbatch.state import JobStatus, State

REPEATS = 3


def build_finished_state(project: Project, result: bytes) -> None:
    """Every job DONE with ``result`` as its output, as a finished run leaves it."""
    digest = hashlib.sha256(result).hexdigest()
    with State.open(project.state_path, compact_every=len(project.jobs) + 1) as state:
        for index, job in enumerate(project.jobs):
            for output in job.outputs:
                path = project.output_dir / output
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(result)
            state.update(job.key, account=job.account, kind=job.kind, outputs=list(job.outputs),
                         status=JobStatus.DONE, task_id=f"task-{index}", attempts=1,
                         output_sha256=digest, output_size=len(result))


def best_wall(command: list[str]) -> float:
    """Best of ``REPEATS`` wall times of a CLI command, which must succeed."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"rerun: {' '.join(command[2:])} exited {done.returncode}: {done.stderr[-500:]}")
    return min(times)


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(10_000, 2_000))
    args = p.parse_args()
    jobs = args.jobs
    cli = [sys.executable, "-m", "lipbatch"]
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp, served_sandbox() as sandbox:
        media = Media(Path(tmp) / "media")
        manifest, _ = write_manifest(Path(tmp) / "rerun", media, jobs)
        started = time.perf_counter()
        project = load_campaign(manifest, sandbox=True)  # the CLI rerun below is a rehearsal (--sandbox-url)
        build_finished_state(project, media.video.read_bytes())
        built = time.perf_counter() - started

        start = time.perf_counter()
        project = load_campaign(manifest, sandbox=True)  # the CLI rerun below is a rehearsal (--sandbox-url)
        load_seconds = time.perf_counter() - start
        options = RunOptions(sandbox=True, request_rate=None)
        start = time.perf_counter()
        summary = trio.run(lambda: run_project(point_at_sandbox(project, sandbox.url), options, environ={}))
        run_seconds = time.perf_counter() - start
        if summary.skipped != jobs:
            raise SystemExit(f"rerun: {summary.skipped} of {jobs} jobs were recognised as done")

        validate = best_wall([*cli, "validate", str(manifest)])
        rerun = best_wall([*cli, "run", str(manifest), "--sandbox-url", sandbox.url])
        requests = sandbox.stats()["requests"]
    rows = [
        ["lipbatch validate (CLI)", validate, 1.0],
        ["lipbatch run, all done (CLI)", rerun, rerun / validate],
        ["  load_project (in-process)", load_seconds, load_seconds / validate],
        ["  run_project (in-process)", run_seconds, run_seconds / validate],
    ]
    print(f"{jobs} finished runway-lipsync jobs (state built in {built:.1f} s); best of {REPEATS}; "
          f"provider requests during {REPEATS + 1} reruns: {requests}")
    print(table(["step", "wall s", "x validate"], rows))
    if requests:
        raise SystemExit(f"rerun: a finished manifest sent {requests} provider requests (must be 0)")
    print(f"no-op rerun of {jobs} jobs: {requests} requests, {rerun / validate:.2f}x the wall time of validate")


if __name__ == "__main__":
    main()
