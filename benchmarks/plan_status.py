"""`lipbatch plan` and `lipbatch status` on a big manifest, as ratios of `lipbatch validate`'s wall time.

A manifest of N distinct runway-lipsync jobs (10,000; quick 2,000) whose first half is finished in
the state (built with ``lipbatch.state``, as ``rerun.py`` does), so both commands show a mix of
``done`` and ``new``. Every command runs as a user types it (a subprocess, stdout to a file, i.e.
not a terminal); each is timed best of ``REPEATS``, taking turns. ``validate`` is the floor: all three load and
check the manifest the same way, so a ratio well above 1 is the command's own work.

In process, the same work split: ``load_project`` (what validate does), ``build_plan``, and the
rich rendering of the plan's tables into a 160-column console (what ``plan`` prints when piped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Media, parser, table, write_manifest
from rerun import build_finished_state
from rich.console import Console

from lipbatch.manifest import load_project
from lipbatch.plan import build_plan, render

REPEATS = 3
COMMANDS = (["validate"], ["plan"], ["plan", "--json"], ["status"], ["status", "--json"])


def best_walls(commands: list[list[str]], out: Path) -> list[float]:
    """Best of ``REPEATS`` wall times of each CLI command (stdout to ``out``), which must succeed.

    The commands take turns, round after round, so a load spike on a shared machine hits them alike.
    """
    best = [math.inf] * len(commands)
    for _ in range(REPEATS):
        for index, command in enumerate(commands):
            start = time.perf_counter()
            with out.open("w") as sink:
                done = subprocess.run(command, stdout=sink, stderr=subprocess.PIPE, text=True)
            best[index] = min(best[index], time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"plan_status: {' '.join(command[3:])} exited {done.returncode}: "
                                 f"{done.stderr[-500:]}")
    return best


def in_process(manifest: Path) -> dict[str, float]:
    """Seconds of load_project, build_plan and the plan's rich rendering, measured separately."""
    start = time.perf_counter()
    project = load_project(manifest)
    loaded = time.perf_counter()
    plan = build_plan(project)
    planned = time.perf_counter()
    render(plan, Console(file=io.StringIO(), width=160))
    rendered = time.perf_counter()
    return {"load_project": loaded - start, "build_plan": planned - loaded, "render (rich)": rendered - planned}


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(10_000, 2_000))
    args = p.parse_args()
    jobs = args.jobs
    cli = [sys.executable, "-m", "lipbatch"]
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp:
        media = Media(Path(tmp) / "media")
        manifest, _ = write_manifest(Path(tmp) / "big", media, jobs)
        project = load_project(manifest)
        build_finished_state(dataclasses.replace(project, jobs=project.jobs[: jobs // 2]), media.video.read_bytes())
        seconds = best_walls([[*cli, *c, str(manifest)] for c in COMMANDS], Path(tmp) / "out.txt")
        walls = {" ".join(c): s for c, s in zip(COMMANDS, seconds, strict=True)}
        with contextlib.redirect_stdout(io.StringIO()):
            parts = in_process(manifest)
    floor = walls["validate"]
    rows = [[f"lipbatch {name} (CLI)", seconds, seconds / floor] for name, seconds in walls.items()]
    rows += [[f"  {name} (in-process)", seconds, seconds / floor] for name, seconds in parts.items()]
    print(f"{jobs} distinct runway-lipsync jobs, {jobs // 2} done in the state; best of {REPEATS}")
    print(table(["step", "wall s", "x validate"], rows))
    print(f"plan {walls['plan'] / floor:.2f}x, status {walls['status'] / floor:.2f}x the wall time of validate "
          f"(--json: {walls['plan --json'] / floor:.2f}x, {walls['status --json'] / floor:.2f}x)")


if __name__ == "__main__":
    main()
