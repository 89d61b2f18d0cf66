"""Slot utilisation: how close a run of N jobs on one account with cap C comes to ceil(N/C) * T.

The sandbox runs at most C tasks per account, each for T real seconds
(``--job-seconds``; a ``--virtual-job-seconds`` job in scaled time); the runner
uses its default options on the same scaled clock (see ``_common.scaled_options``).
Ideal makespan = ceil(N/C) * T: every slot busy from the first create to the
last result. Two runs: clean, then with 20 % of provider requests answered 429
and 5 % answered 500/502/503.

Besides makespan / ideal it prints what explains the gap, from the runner's own
events and a timing transport (columns):

- ``busy``: time-weighted mean of slots held / C (start-up and the last wave's tail are idle);
- ``slot/T``: slot-seconds per job / T (the slot is taken *before* the create POST);
- ``hold/T``: accepted create -> the poll that saw the task finished, / T;
- ``pickup/T``: accepted create -> the task started running, estimated from the
  first ``progress`` the provider reports (NaN for kinds without progress);
  useapi's emulator keeps a task PENDING for 10 % of its job time;
- ``vs floor``: makespan / (ceil(N/C) * (T + pickup)), i.e. against what the
  provider itself allows (pickup taken as 0 where it cannot be seen);
- ``create ms`` / ``poll ms``: mean client-side round trip of those requests.

So ``ratio = slot/T / busy`` (times (N/C) / ceil(N/C)), and
``slot/T - hold/T`` is the create phase, ``hold/T - 1 - pickup/T`` the delay in
noticing that a task finished.

Reading: the headline is the *faulted* run's ratio (the harder goal, <= 1.25);
the clean ratio (goal <= 1.05) is in the table.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

import trio
from _common import (
    BENCH_KINDS,
    FAULTS,
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


@dataclasses.dataclass
class Trace:
    """Slot occupancy over time and each job's slot-holding interval, from runner events."""

    job_seconds: float = 1.0
    start: float = 0.0
    samples: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    submitted: dict[str, float] = dataclasses.field(default_factory=dict)
    succeeded: dict[str, float] = dataclasses.field(default_factory=dict)
    started: dict[str, float] = dataclasses.field(default_factory=dict)  # estimated from progress

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        if event.type == "account":
            self.samples.append((now, int(event.data.get("in_use", 0))))
        elif event.type == "job_submitted" and event.job:
            self.submitted.setdefault(event.job, now)
        elif event.type == "job_succeeded" and event.job:
            self.succeeded[event.job] = now
        elif (event.type == "job_progress" and event.job and event.job not in self.started
              and event.data.get("phase") == "running" and event.data.get("progress") is not None):
            self.started[event.job] = now - float(event.data["progress"]) * self.job_seconds

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

    def pickup(self) -> float:
        """Mean seconds from accepted create to the provider starting the task (kinds reporting progress)."""
        spans = [t - self.submitted[k] for k, t in self.started.items() if k in self.submitted]
        return mean(spans) if spans else float("nan")


def one_run(sandbox: Any, manifest: Path, options: RunOptions, *, jobs: int, cap: int, real_t: float,
            faults: dict[str, float]) -> dict[str, Any]:
    sandbox.reset()
    sandbox.configure(rate_429=faults.get("rate_429", 0.0), rate_5xx=faults.get("rate_5xx", 0.0))
    project = project_on(manifest, sandbox.url)
    trace = Trace(job_seconds=real_t)
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
    pickup = trace.pickup()
    floor = ideal_makespan(jobs, cap, real_t + (0.0 if math.isnan(pickup) else pickup))
    return {
        "makespan": makespan,
        "ratio": makespan / ideal_makespan(jobs, cap, real_t),
        "busy": busy / cap,
        "slot_over_t": busy * makespan / jobs / real_t,
        "hold_over_t": trace.hold() / real_t,
        "pickup_over_t": pickup / real_t,
        "vs_floor": makespan / floor,
        "create_ms": timing.mean_ms("create"),
        "poll_ms": timing.mean_ms("poll"),
        "polls_per_job": counts["poll"] / jobs,
        "creates": counts["create"],
        "requests": stats["requests"],
        "faults": sum(stats["faults"].values()),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(200, 50))
    p.add_argument("--cap", type=int, default=5, help="C, the account's concurrency (default 5)")
    p.add_argument("--job-seconds", type=float, nargs="+", default=[0.2, 1.0],
                   help="T: real seconds per job, one run pair per value (default 0.2 1.0)")
    p.add_argument("--virtual-job-seconds", type=float, default=VIRTUAL_JOB_SECONDS,
                   help="the same job in the provider's seconds (sets the time scale; default 60)")
    p.add_argument("--kind", nargs="+", default=["runway-lipsync"], choices=BENCH_KINDS,
                   help="provider kind(s) (default runway-lipsync)")
    p.add_argument("--real-render", action="store_true", help="keep the emulators' own renders")
    p.add_argument("--poll-min", type=float, help="override RunOptions.poll_min (virtual s; default 3)")
    p.add_argument("--poll-max", type=float, help="override RunOptions.poll_max (virtual s; default 30)")
    args = p.parse_args()
    jobs = args.jobs
    cap = args.cap
    tuned = {name: value for name, value in (("poll_min", args.poll_min), ("poll_max", args.poll_max))
             if value is not None}

    rows = []
    headline = []
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp, \
            served_sandbox(real_render=args.real_render) as sandbox:
        media = Media(Path(tmp) / "media")
        for kind in args.kind:
            for real_t in args.job_seconds:
                scale = real_t / args.virtual_job_seconds
                options = scaled_options(scale, **tuned)
                # useapi's emulator: Runway itself runs C at once and queues none (default 2 + 1)
                sandbox.configure(job_seconds=args.virtual_job_seconds, time_scale=scale, max_jobs=cap,
                                  extra={"runway_capacity": cap, "runway_queue": 0})
                ratios = []
                for label, faults in (("clean", {}), ("429+5xx", FAULTS)):
                    manifest, _env = write_manifest(Path(tmp) / f"{kind}-{real_t}-{label}", media, jobs,
                                                    kind=kind, concurrency=cap)
                    r = one_run(sandbox, manifest, options, jobs=jobs, cap=cap, real_t=real_t, faults=faults)
                    ratios.append(r["ratio"])
                    rows.append([kind, real_t, label, jobs, cap, r["makespan"], ideal_makespan(jobs, cap, real_t),
                                 r["ratio"], r["busy"], r["slot_over_t"], r["hold_over_t"], r["pickup_over_t"], r["vs_floor"], r["create_ms"],
                                 r["poll_ms"], r["polls_per_job"], r["creates"], r["requests"], r["faults"]])
                headline.append(f"{kind} T={real_t:g}s clean {ratios[0]:.3f} faults {ratios[1]:.3f}")
    options = scaled_options(1.0, **tuned)
    print(f"T real = {args.virtual_job_seconds:g} s virtual; runner: poll {options.poll_min:g}..{options.poll_max:g}"
          f" s, pace {options.request_rate:g} req/s (virtual); faults = 20 % 429 + 5 % 5xx; "
          f"{'real' if args.real_render else 'pre-rendered'} results")
    print(table(["kind", "T s", "run", "N", "C", "makespan s", "ideal s", "ratio", "busy", "slot/T", "hold/T",
                 "pickup/T", "vs floor", "create ms", "poll ms", "polls/job", "creates", "requests", "faults"], rows))
    print("makespan/ideal (goals: clean <= 1.05, faults <= 1.25): " + "; ".join(headline))


if __name__ == "__main__":
    main()
