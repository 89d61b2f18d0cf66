"""Runner overhead: jobs per second through the whole pipeline against the in-process emulator, zero job time.

The sandbox app runs in this process behind ``httpx.ASGITransport`` (no
sockets), tasks take 0 s and results are one pre-rendered clip, so what is
left is lipbatch's own work per job: upload once, create, poll, stream the
download to disk, decode it (``verify_playable``: in the verifier's child
process from 32 jobs, ``lipbatch.verifier``), fsync'd state records, plus
the emulator's request handling, which shares the CPU and the GIL.

Measured in one run: lipbatch with its default verifier (a child process
here) and with ``verifier="thread"``, and the **bare-client floor**: the same
three requests per job (create, poll, download into memory) made by a plain
``httpx.AsyncClient`` under the same cap against the same in-process emulator,
with no state, no files and no verification. The floor is what any client
pays here for HTTP and the emulator; lipbatch's own time per job is
``1/rate - 1/floor``, and "runner's own rate" is its inverse.

A last lipbatch run goes under cProfile and prints the top five functions by
own time and by cumulative time (lipbatch's own code), and own time per
package. cProfile sees the trio thread only: work in worker threads (file
writes and fsyncs of downloads, the pre-pass) is "worker-thread CPU", the
verifier child's is "child CPU".
"""

from __future__ import annotations

import cProfile
import dataclasses
import os
import pstats
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from _common import RUNWAY_VOICES, Media, parser, require_all_done, table, write_manifest

from lipbatch.manifest import load_project
from lipbatch.runner import RunOptions, point_at_sandbox, run_project
from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import SandboxConfig
from lipbatch.sandbox.render import render_mp4

CAP = 10  # useapi.net's highest maxJobs
SANDBOX_URL = "http://sandbox.invalid"  # never resolved: requests go through ASGITransport
OPTIONS = RunOptions(sandbox=True, time_scale=1e-4, request_rate=None)  # waits of ~0.3 ms


def _area(filename: str) -> str:
    for marker, name in (("/lipbatch/sandbox/", "lipbatch.sandbox (emulator)"), ("/lipbatch/", "lipbatch"),
                         ("/starlette/", "starlette"), ("/httpx/", "httpx"), ("/httpcore/", "httpcore"),
                         ("/trio/", "trio"), ("/anyio/", "anyio"), ("/av/", "PyAV"), ("/json/", "json")):
        if marker in filename:
            return name
    return "builtins" if filename == "~" else "other (stdlib, ...)"


def _app() -> Any:
    """The in-process emulator, answering every render with one pre-rendered clip."""
    app = build_app(SandboxConfig(job_seconds=0.0, max_jobs=CAP, extra={"runway_capacity": CAP, "runway_queue": 0}))
    clip = render_mp4(tts_text="A pre-rendered result.")

    async def render(**_inputs: Any) -> bytes:
        return clip

    app.state.sandbox.render = render
    return app


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(jobs: int, root: Path, *, profile: bool = False, verifier: str = "auto") -> dict[str, Any]:
    """Run ``jobs`` zero-time jobs in-process; returns throughput (and the profile when asked)."""
    media = Media(root / "media")
    manifest, _ = write_manifest(root / f"overhead-{profile}-{verifier}", media, jobs, concurrency=CAP)
    project = point_at_sandbox(load_project(manifest), SANDBOX_URL)
    app = _app()
    profiler = cProfile.Profile() if profile else None
    options = dataclasses.replace(OPTIONS, verifier=verifier)

    async def main() -> Any:
        return await run_project(project, options, transport=httpx.ASGITransport(app=app), environ={})

    fsyncs = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:  # journal group commits, result files, folders: all of them
        nonlocal fsyncs
        fsyncs += 1
        real_fsync(fd)

    os.fsync = counting_fsync
    children = _children_cpu()  # the verifier's child, once it has exited (the run closes it)
    cpu, thread_cpu, start = time.process_time(), time.thread_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    try:
        summary = trio.run(main)
    finally:
        if profiler:
            profiler.disable()
        os.fsync = real_fsync
    wall = time.perf_counter() - start
    require_all_done(summary, "overhead")
    result = {"jobs": jobs, "wall": wall, "jobs_per_s": jobs / wall, "cpu": time.process_time() - cpu,
              "worker_cpu": (time.process_time() - cpu) - (time.thread_time() - thread_cpu),
              "child_cpu": _children_cpu() - children,
              "requests": app.state.sandbox.stats()["requests"], "done": summary.done, "fsyncs": fsyncs}
    if profiler:
        result["stats"] = pstats.Stats(profiler)
    return result


def bare_client(jobs: int, root: Path) -> dict[str, Any]:
    """The floor: create, poll, download (into memory) per job with a plain httpx client, same cap."""
    app = _app()
    video = Media(root / "media").video.read_bytes()
    auth = {"Authorization": "Bearer sandbox-token"}

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), headers=auth,
                                     base_url=f"{SANDBOX_URL}/v1/runwayml") as http:
            answer = await http.post("/assets/", params={"name": "face.mp4"}, content=video,
                                     headers={"Content-Type": "video/mp4"})
            asset, slots = answer.json()["assetId"], trio.Semaphore(CAP)

            async def job(i: int) -> None:
                async with slots:
                    body = {"video_assetId": asset, "voiceId": RUNWAY_VOICES[0], "replyRef": f"{i:064x}",
                            "voice_text": f"Line {i:05d} of account acct is spoken here."}
                    task_id = (await http.post("/lipsync/create", json=body)).json()["taskId"]
                    while True:
                        await trio.sleep(OPTIONS.poll_min * OPTIONS.time_scale)
                        task = (await http.get(f"/tasks/{task_id}")).json()
                        if task["status"] == "SUCCEEDED":
                            break
                    async with http.stream("GET", task["artifacts"][0]["url"], headers={"Authorization": ""}) as got:
                        async for _chunk in got.aiter_bytes():
                            pass

            async with trio.open_nursery() as nursery:
                for i in range(jobs):
                    nursery.start_soon(job, i)

    cpu, start = time.process_time(), time.perf_counter()
    trio.run(main)
    wall = time.perf_counter() - start
    return {"jobs": jobs, "wall": wall, "jobs_per_s": jobs / wall, "cpu": time.process_time() - cpu,
            "requests": app.state.sandbox.stats()["requests"]}


def profile_tables(stats: pstats.Stats, total: float) -> str:
    entries = stats.stats  # type: ignore[attr-defined]
    rows = [(f"{Path(file).name}:{line} {name}", file, calls, own, cum)
            for (file, line, name), (_cc, calls, own, cum, _callers) in entries.items()]
    own_top = sorted(rows, key=lambda r: r[3], reverse=True)[:5]
    mine = [r for r in rows if "/lipbatch/" in r[1] and "/lipbatch/sandbox/" not in r[1]
            and not r[0].endswith(("run_project", " run", "_run_work", "_job_task", "_drive"))]
    cum_top = sorted(mine, key=lambda r: r[4], reverse=True)[:5]
    areas: dict[str, float] = {}
    for r in rows:
        areas[_area(r[1])] = areas.get(_area(r[1]), 0.0) + r[3]
    out = ["top 5 by own time (all code on the trio thread)",
           table(["function", "calls", "own s", "cum s"], [[r[0], r[2], r[3], r[4]] for r in own_top]),
           "top 5 lipbatch functions by cumulative time (entry points excluded)",
           table(["function", "calls", "own s", "cum s"], [[r[0], r[2], r[3], r[4]] for r in cum_top]),
           "own time by package (trio thread)",
           table(["package", "own s", "share"],
                 [[name, own, f"{100 * own / total:.0f} %"]
                  for name, own in sorted(areas.items(), key=lambda kv: kv[1], reverse=True)[:8]])]
    return "\n".join(out)


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(2_000, 300))
    args = p.parse_args()
    jobs = args.jobs
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp:
        floor = bare_client(jobs, Path(tmp))
        plain = measure(jobs, Path(tmp))
        threaded = measure(jobs, Path(tmp), verifier="thread")
        profiled = measure(jobs, Path(tmp), profile=True)
    rows = [[label, r["jobs"], r["wall"], r["jobs_per_s"], r["cpu"], r.get("worker_cpu", 0.0), r.get("child_cpu", 0.0),
             r["requests"] / r["jobs"], r.get("fsyncs", 0) / r["jobs"]]
            for label, r in (("bare httpx client (floor)", floor), ("lipbatch", plain),
                             ("lipbatch, verifier=thread", threaded), ("lipbatch under cProfile", profiled))]
    print(f"runway-lipsync, in-process sandbox (ASGITransport), 0 s jobs, cap {CAP}")
    print(table(["run", "jobs", "wall s", "jobs/s", "CPU s", "worker-thread CPU s", "child CPU s", "requests/job",
                 "fsyncs/job"], rows))
    stats = profiled["stats"]
    print(profile_tables(stats, sum(v[2] for v in stats.stats.values())))  # type: ignore[attr-defined]
    own = 1 / plain["jobs_per_s"] - 1 / floor["jobs_per_s"]
    print(f"through the whole pipeline: {plain['jobs_per_s']:.0f} jobs/s (floor {floor['jobs_per_s']:.0f}: "
          f"{plain['jobs_per_s'] / floor['jobs_per_s']:.2f}x of it; verifier in a thread "
          f"{threaded['jobs_per_s']:.0f}, the child process {plain['jobs_per_s'] / threaded['jobs_per_s']:.2f}x that)")
    print(f"runner's own time: {1000 * own:.2f} ms per job over the floor's {1000 / floor['jobs_per_s']:.2f} ms "
          f"= {1 / own:.0f} jobs/s of the runner's own")


if __name__ == "__main__":
    main()
