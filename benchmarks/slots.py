"""Slot utilisation: how close a run of N jobs on one account with cap C comes to ceil(N/C) * T.

The sandbox runs at most C tasks per account, each for T real seconds
(``--job-seconds``; a ``--virtual-job-seconds`` job in scaled time); the runner
uses its default options on the same scaled clock (see ``_common.scaled_options``).
Ideal makespan = ceil(N/C) * T: every slot busy from the first create to the
last result. Two runs: clean, then with 20 % of provider requests answered 429
and 5 % answered 500/502/503.

Besides makespan / ideal it prints what explains the gap, from the runner's own
events: the mean number of slots held, how long a slot is held per job beyond T,
and the polls per job.

Reading: the headline is the *faulted* run's ratio (the harder goal, <= 1.25);
the clean ratio (goal <= 1.05) is in the table.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

import trio
from _common import (
    VIRTUAL_JOB_SECONDS,
    Media,
    TimingTransport,
    by_category,
    ideal_makespan,
    parser,
    project_on,
    require_all_done,
    scaled_options,
    served_sandbox,
    table,
    write_manifest,
)

from lipbatch.runner import Event, RunOptions, run_project

FAULTS = {"rate_429": 0.20, "rate_5xx": 0.05}


@dataclasses.dataclass
class Trace:
    """Slot occupancy over time and each job's slot-holding interval, from runner events."""

    start: float = 0.0
    samples: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    submitted: dict[str, float] = dataclasses.field(default_factory=dict)
    succeeded: dict[str, float] = dataclasses.field(default_factory=dict)

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        if event.type == "account":
            self.samples.append((now, int(event.data.get("in_use", 0))))
        elif event.type == "job_submitted" and event.job:
            self.submitted.setdefault(event.job, now)
        elif event.type == "job_succeeded" and event.job:
            self.succeeded[event.job] = now

    def mean_in_use(self, end: float) -> float:
        """Time-weighted mean of slots held between the run's start and ``end``."""
        total, last_t, last_n = 0.0, self.start, 0
        for t, n in self.samples:
            total += (t - last_t) * last_n
            last_t, last_n = t, n
        total += (end - last_t) * last_n
        return total / max(1e-9, end - self.start)

    def hold(self) -> float:
        """Mean seconds from a job's accepted create to the poll that saw it finished."""
        spans = [self.succeeded[k] - t for k, t in self.submitted.items() if k in self.succeeded]
        return mean(spans) if spans else float("nan")


def one_run(sandbox: Any, manifest: Path, options: RunOptions, *, jobs: int, cap: int, real_t: float,
            faults: dict[str, float]) -> dict[str, Any]:
    sandbox.reset()
    sandbox.configure(rate_429=faults.get("rate_429", 0.0), rate_5xx=faults.get("rate_5xx", 0.0))
    project = project_on(manifest, sandbox.url)
    trace = Trace()
    timing = TimingTransport()

    async def main() -> tuple[Any, float]:
        trace.start = time.perf_counter()
        try:
            summary = await run_project(project, options, transport=timing, sink=trace, environ={})
        finally:
            await timing.aclose()
        return summary, time.perf_counter()

    summary, end = trio.run(main)
    require_all_done(summary, "slots")
    makespan = end - trace.start
    stats = sandbox.stats()
    counts = by_category(stats)
    busy = trace.mean_in_use(end)
    return {
        "makespan": makespan,
        "ratio": makespan / ideal_makespan(jobs, cap, real_t),
        "busy": busy / cap,
        "slot_over_t": busy * makespan / jobs / real_t,
        "hold_over_t": trace.hold() / real_t,
        "create_ms": timing.mean_ms("create"),
        "poll_ms": timing.mean_ms("poll"),
        "polls_per_job": counts["poll"] / jobs,
        "creates": counts["create"],
        "requests": stats["requests"],
        "faults": sum(stats["faults"].values()),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, help="N (default 200, --quick 50)")
    p.add_argument("--cap", type=int, default=5, help="C, the account's concurrency (default 5)")
    p.add_argument("--job-seconds", type=float, default=0.2, help="T: real seconds per job (default 0.2)")
    p.add_argument("--virtual-job-seconds", type=float, default=VIRTUAL_JOB_SECONDS,
                   help="the same job in the provider's seconds (sets the time scale; default 60)")
    p.add_argument("--kind", default="runway-lipsync", help="provider kind (default runway-lipsync)")
    p.add_argument("--real-render", action="store_true", help="keep the emulators' own renders")
    p.add_argument("--poll-min", type=float, help="override RunOptions.poll_min (virtual s; default 3)")
    p.add_argument("--poll-max", type=float, help="override RunOptions.poll_max (virtual s; default 30)")
    args = p.parse_args()
    jobs = args.jobs or (50 if args.quick else 200)
    scale = args.job_seconds / args.virtual_job_seconds
    options = scaled_options(scale)
    if args.poll_min is not None:
        options = dataclasses.replace(options, poll_min=args.poll_min)
    if args.poll_max is not None:
        options = dataclasses.replace(options, poll_max=args.poll_max)

    config = {"job_seconds": args.virtual_job_seconds, "time_scale": scale, "max_jobs": args.cap,
              # useapi's emulator: Runway itself runs C at once and queues none (default 2 + 1)
              "extra": {"runway_capacity": args.cap, "runway_queue": 0}}
    rows = []
    results = {}
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp, served_sandbox(real_render=args.real_render, **config) as sandbox:
        media = Media(Path(tmp) / "media")
        for label, faults in (("clean", {}), ("429 20% + 5xx 5%", FAULTS)):
            manifest, _env = write_manifest(Path(tmp) / label.split()[0], media, jobs, kind=args.kind,
                                            concurrency=args.cap)
            r = results[label] = one_run(sandbox, manifest, options, jobs=jobs, cap=args.cap,
                                         real_t=args.job_seconds, faults=faults)
            rows.append([label, jobs, args.cap, r["makespan"], ideal_makespan(jobs, args.cap, args.job_seconds),
                         r["ratio"], r["busy"], r["slot_over_t"], r["hold_over_t"], r["create_ms"], r["poll_ms"],
                         r["polls_per_job"], r["creates"], r["requests"], r["faults"]])
    print(f"kind {args.kind}, T = {args.job_seconds} s real = {args.virtual_job_seconds:g} s virtual "
          f"(scale {scale:.4g}); poll {options.poll_min:g}..{options.poll_max:g} s virtual, "
          f"pace {options.request_rate and options.request_rate * scale:g} req/virtual s")
    print(table(["run", "N", "C", "makespan s", "ideal s", "ratio", "busy", "slot/T", "hold/T", "create ms",
                 "poll ms", "polls/job", "creates", "requests", "faults"], rows))
    clean, faulted = results["clean"]["ratio"], results["429 20% + 5xx 5%"]["ratio"]
    print(f"makespan/ideal: clean {clean:.3f} (goal <= 1.05), faults {faulted:.3f} (goal <= 1.25)")


if __name__ == "__main__":
    main()
