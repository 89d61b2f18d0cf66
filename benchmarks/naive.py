"""Versus the naive loop: the same jobs done the way the providers' docs show it, then by lipbatch.

The naive client is written here with httpx (no lipbatch code on its request
path), as useapi.net's example client works for Runway lip sync: upload the
face, then per job one create request, a poll every 20 s (useapi's example
interval, in the sandbox's scaled time) until the task ends, and a download
read fully into memory before it is written. One job at a time.

Readings: the naive loop uploads the shared clip once (a cache by file), which
favours it; it handles no errors (the sandbox runs without faults here), and it
checks nothing it downloads. lipbatch runs with its default options on the
same scaled clock. Both runs see the same sandbox (cap C per account, T per
job), reset in between so each run's request counts stand alone.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
from _common import (
    CATEGORIES,
    VIRTUAL_JOB_SECONDS,
    Media,
    by_category,
    parser,
    project_on,
    require_all_done,
    run_lipbatch,
    scaled_options,
    served_sandbox,
    table,
    write_manifest,
)

from lipbatch.model import Project

DOCS_POLL_SECONDS = 20.0  # useapi's example client polls every 20 s
NAIVE_TOKEN = "user:1-naive"


def naive_run(project: Project, poll_every: float) -> float:
    """Every job in order, the docs' way; returns the wall time in seconds."""
    account = next(iter(project.accounts.values()))
    headers = {"Authorization": f"Bearer {NAIVE_TOKEN}"}
    start = time.perf_counter()
    assets: dict[Path, str] = {}
    with httpx.Client(base_url=account.base_url, headers=headers, timeout=60.0) as client:
        for job in project.jobs:
            video = job.inputs["video"]
            assert video.path is not None
            if video.path not in assets:
                answer = client.post("/assets/", params={"name": video.path.name}, content=video.path.read_bytes(),
                                     headers={"Content-Type": video.media_type})
                answer.raise_for_status()
                assets[video.path] = answer.json()["assetId"]
            created = client.post("/lipsync/create", json={"video_assetId": assets[video.path],
                                                           "voiceId": job.params["voice_id"],
                                                           "voice_text": job.params["text"]})
            created.raise_for_status()
            task_id = created.json()["taskId"]
            while True:
                time.sleep(poll_every)
                task = client.get(f"/tasks/{task_id}")
                task.raise_for_status()
                status = task.json()["status"]
                if status == "SUCCEEDED":
                    break
                if status == "FAILED":
                    raise SystemExit(f"naive: task {task_id} failed: {task.json().get('error')}")
            result = client.get(task.json()["artifacts"][0]["url"])
            result.raise_for_status()
            data = result.content  # the whole video in memory, as the examples do
            dest = project.output_dir / job.output
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    return time.perf_counter() - start


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(200, 30))
    p.add_argument("--cap", type=int, default=5, help="the account's concurrency for lipbatch (default 5)")
    p.add_argument("--job-seconds", type=float, default=0.2, help="T: real seconds per job (default 0.2)")
    args = p.parse_args()
    jobs = args.jobs
    scale = args.job_seconds / VIRTUAL_JOB_SECONDS
    config = {"job_seconds": VIRTUAL_JOB_SECONDS, "time_scale": scale, "max_jobs": args.cap,
              "extra": {"runway_capacity": args.cap, "runway_queue": 0}}
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp, served_sandbox(**config) as sandbox:
        media = Media(Path(tmp) / "media")
        naive_manifest, _ = write_manifest(Path(tmp) / "naive", media, jobs, concurrency=args.cap)
        naive_seconds = naive_run(project_on(naive_manifest, sandbox.url), DOCS_POLL_SECONDS * scale)
        naive_counts = by_category(sandbox.stats())

        sandbox.reset()
        manifest, _ = write_manifest(Path(tmp) / "lipbatch", media, jobs, concurrency=args.cap)
        summary, lip_seconds = run_lipbatch(project_on(manifest, sandbox.url), scaled_options(scale))
        require_all_done(summary, "naive: lipbatch")
        lip_counts = by_category(sandbox.stats())

    rows = []
    for name, seconds, counts in (("naive loop", naive_seconds, naive_counts), ("lipbatch", lip_seconds, lip_counts)):
        rows.append([name, jobs, seconds, seconds / jobs * 1000, *(counts[c] for c in CATEGORIES),
                     sum(counts.values()), sum(counts.values()) / jobs])
    print(f"N = {jobs} runway-lipsync jobs, T = {args.job_seconds} s real ({VIRTUAL_JOB_SECONDS:g} s virtual), "
          f"cap {args.cap}; naive polls every {DOCS_POLL_SECONDS:g} s virtual")
    print(table(["client", "N", "wall s", "ms/job", *CATEGORIES, "requests", "req/job"], rows))
    print(f"lipbatch is {naive_seconds / lip_seconds:.2f}x faster than the naive loop "
          f"({sum(lip_counts.values())} vs {sum(naive_counts.values())} requests)")


if __name__ == "__main__":
    main()
