"""Versus the official Magic Hour SDK: the same N lip-sync jobs by ``client.v1.lip_sync.generate()`` and by lipbatch.

The peer is the SDK's own loop as its README shows it (``magic-hour`` from PyPI, the ``bench`` extra:
``pip install -e '.[bench]'``): per job one ``generate()`` call, which uploads both inputs, creates
the project, polls ``GET /v1/video-projects/{id}`` every ``MAGIC_HOUR_POLL_INTERVAL`` seconds (its
0.5 s default, scaled like everything else) and downloads the result. One job at a time, as the
loop is written; the SDK's ``base_url`` points it at the sandbox. lipbatch runs the same jobs
(one face clip x N recorded lines, distinct audio) with its defaults on the same scaled clock.

Setting: Magic Hour's Creator plan (the sandbox's default: 3 concurrent renders), a job is
``T = 20`` virtual seconds; ``time_scale`` maps it to ``--real`` seconds (quick: 1 s). The sandbox
is reset between the SDK's run and lipbatch's so each one's request counts stand alone. lipbatch runs twice: the
first batch starts with nothing learned (blind polling until jobs finish); the next batch adds N
new lines to the same manifest, as a campaign's later batch does, and predicts from the durations
the first one kept beside its state. Ideal makespan for
lipbatch: ``ceil(N / 3) * T``; for the one-at-a-time SDK loop: ``N * T``. The issue's goal:
lipbatch >= 2.85x the SDK at concurrency 3 with makespan / ideal <= 1.05.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    Media,
    by_category,
    ideal_makespan,
    parser,
    project_on,
    require_all_done,
    run_lipbatch,
    scaled_options,
    served_sandbox,
    table,
    write_manifest,
)

from lipbatch.model import Job, Project

KIND = "magichour-lipsync"
JOB_SECONDS = 20.0  # virtual seconds per job (the T)
PLAN_CONCURRENCY = 3  # Creator plan
SDK_POLL_SECONDS = 0.5  # the SDK's MAGIC_HOUR_POLL_INTERVAL default
SDK_TOKEN = "mhk_live_bench-sdk"


def sdk_run(project: Project, url: str, scale: float, out: Path) -> float:
    """Every job through ``client.v1.lip_sync.generate()``, one after another; returns wall seconds."""
    try:
        from magic_hour import Client
    except ImportError as exc:
        raise SystemExit("peer_magichour needs the official SDK: pip install -e '.[bench]'") from exc
    os.environ["MAGIC_HOUR_POLL_INTERVAL"] = repr(SDK_POLL_SECONDS * scale)
    client = Client(token=SDK_TOKEN, base_url=url)
    start = time.perf_counter()
    for index, job in enumerate(project.jobs):
        folder = out / f"{index:04d}"
        folder.mkdir(parents=True)
        answer = client.v1.lip_sync.generate(**generate_arguments(job), download_outputs=True,
                                             download_directory=str(folder))
        if answer.status != "complete" or not answer.downloaded_paths:
            raise SystemExit(f"peer: the SDK's job {index} ended {answer.status}: {answer.error}")
    return time.perf_counter() - start


def generate_arguments(job: Job) -> dict[str, Any]:
    """The SDK's arguments for the request lipbatch makes for ``job`` (same files, window and options)."""
    params = job.params
    arguments: dict[str, Any] = {
        "assets": {"video_source": "file", "video_file_path": str(job.inputs["video"].path),
                   "audio_file_path": str(job.inputs["audio"].path)},
        "start_seconds": params["start_seconds"], "end_seconds": params["end_seconds"], "name": job.key,
    }
    if "max_fps_limit" in params:
        arguments["max_fps_limit"] = params["max_fps_limit"]
    if "generation_mode" in params:
        arguments["style"] = {"generation_mode": params["generation_mode"]}
    return arguments


def counts(stats: dict[str, Any], jobs: int) -> dict[str, float]:
    """Requests per job and files uploaded (PUTs to presigned URLs) from the sandbox's stats."""
    categories = by_category(stats)
    puts = sum(n for route, n in stats["requests_by_route"].items() if route.startswith("PUT "))
    return {"requests/job": sum(categories.values()) / jobs, "polls/job": categories["poll"] / jobs,
            "uploads": puts}


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(30, 9), jobs_help='N distinct jobs')
    p.add_argument("--real", type=float, help="real seconds per 20 s job (default 2, --quick 1)")
    args = p.parse_args()
    jobs = args.jobs
    real = args.real or (1.0 if args.quick else 2.0)
    scale = real / JOB_SECONDS
    config = {"job_seconds": JOB_SECONDS, "time_scale": scale}
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp, served_sandbox(**config) as sandbox:
        media = Media(Path(tmp) / "media")
        manifest, environ = write_manifest(Path(tmp) / "peer", media, jobs, kind=KIND,
                                           concurrency=PLAN_CONCURRENCY)
        project = project_on(manifest, sandbox.url)
        sdk_seconds = sdk_run(project, sandbox.url, scale, Path(tmp) / "sdk-out")
        sdk = counts(sandbox.stats(), jobs)

        sandbox.reset()
        summary, lip_seconds = run_lipbatch(project, scaled_options(scale), environ=environ)
        require_all_done(summary, "peer: lipbatch")
        lip = counts(sandbox.stats(), jobs)

        # The campaign's next batch: N more lines in the same manifest and state, so the runner
        # predicts finishes from the first batch's durations (kept beside the state) from its first poll.
        # The sandbox keeps what it has (the clip's upload too, as the provider would); counts are the
        # difference.
        before = sandbox.stats()
        write_manifest(Path(tmp) / "peer", media, 2 * jobs, kind=KIND, concurrency=PLAN_CONCURRENCY)
        summary, warm_seconds = run_lipbatch(project_on(manifest, sandbox.url), scaled_options(scale),
                                             environ=environ)
        require_all_done(summary, "peer: lipbatch, next batch")
        if summary.done != jobs:
            raise SystemExit(f"peer: the next batch ran {summary.done} jobs, not {jobs}")
        after = sandbox.stats()
        routes = {route: n - before["requests_by_route"].get(route, 0)
                  for route, n in after["requests_by_route"].items()}
        warm = counts({"requests_by_route": routes}, jobs)

    ideal_sdk, ideal_lip = jobs * real, ideal_makespan(jobs, PLAN_CONCURRENCY, real)
    rows = [["magic-hour SDK generate() loop", sdk_seconds, sdk_seconds / ideal_sdk, *sdk.values()],
            ["lipbatch, first batch (cold)", lip_seconds, lip_seconds / ideal_lip, *lip.values()],
            ["lipbatch, next batch (learned)", warm_seconds, warm_seconds / ideal_lip, *warm.values()]]
    print(f"N = {jobs} {KIND} jobs (one clip x {jobs} recorded lines), T = {JOB_SECONDS:g} s virtual = "
          f"{real:g} s real, Creator plan ({PLAN_CONCURRENCY} concurrent); SDK polls every "
          f"{SDK_POLL_SECONDS:g} s virtual, one job at a time")
    print(table(["client", "makespan s", "/ ideal", "requests/job", "polls/job", "uploads"], rows))
    for label, seconds in (("first batch", lip_seconds), ("next batch", warm_seconds)):
        print(f"lipbatch, {label}: {sdk_seconds / seconds:.2f}x the SDK loop; makespan / ideal "
              f"{seconds / ideal_lip:.2f} (goal >= 2.85x, <= 1.05)")


if __name__ == "__main__":
    main()
