"""Runner overhead of several commits, interleaved: overhead.measure() of each in turn, medians and ratios.

This machine's speed moves by up to 1.6x within an hour, so two overhead figures
taken apart say little; runs interleaved round by round, each in a fresh
process, give ratios that hold. Each ``--rev`` is exported with ``git archive``
into a temporary folder (the repository is only read); ``.`` is the working tree
as it is. Every tree runs its own ``benchmarks/overhead.py`` and ``lipbatch``
with this interpreter's packages.

    python benchmarks/compare.py --rev b7d6d44 --rev . --rounds 3
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from _common import parser, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
_MEASURE = r"""
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, "benchmarks")
import overhead
with tempfile.TemporaryDirectory(prefix="lipbatch-compare-") as tmp:
    result = overhead.measure(int(sys.argv[1]), Path(tmp))
print(json.dumps({key: result.get(key, 0) for key in ("jobs_per_s", "cpu", "fsyncs")}))
"""


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (``.``: the working tree itself)."""
    if rev == ".":
        return ROOT
    folder = into / rev.replace("/", "_")
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True,
                             check=True).stdout
    with tempfile.TemporaryFile() as raw:
        raw.write(archive)
        raw.seek(0)
        with tarfile.open(fileobj=raw) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                tar.extractall(folder, filter="data")
            else:  # our own repository's archive
                tar.extractall(folder)  # noqa: S202
    return folder


def measure(tree: Path, jobs: int) -> dict[str, float]:
    """One ``overhead.measure`` of ``tree`` in a fresh process (its ``lipbatch`` first on the path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(jobs)], cwd=tree, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: overhead.measure failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def compare(revs: list[str], rounds: int, jobs: int) -> list[list[object]]:
    """One table row per rev: jobs/s of every round, their median, CPU ms and fsyncs per job, ratio."""
    with tempfile.TemporaryDirectory(prefix="lipbatch-compare-") as tmp:
        trees = [export(rev, Path(tmp)) for rev in revs]
        runs: list[list[dict[str, float]]] = [[] for _ in revs]
        for _round in range(rounds):
            for index, tree in enumerate(trees):
                runs[index].append(measure(tree, jobs))
    medians = [statistics.median(run["jobs_per_s"] for run in rev_runs) for rev_runs in runs]
    rows: list[list[object]] = []
    for rev, rev_runs, median in zip(revs, runs, medians, strict=True):
        rows.append([rev, " ".join(f"{run['jobs_per_s']:.0f}" for run in rev_runs), round(median),
                     round(1000 * statistics.median(run["cpu"] for run in rev_runs) / jobs, 2),
                     round(rev_runs[0]["fsyncs"] / jobs, 2), f"{median / medians[0]:.2f}x"])
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(2000, 300))
    p.add_argument("--rev", action="append", help="a commit, branch or . (the working tree); repeat (default: HEAD, .)")
    p.add_argument("--rounds", type=int, default=3, help="runs of each rev, interleaved (default 3)")
    args = p.parse_args()
    jobs = args.jobs or (300 if args.quick else 2000)
    revs = args.rev or ["HEAD", "."]
    rows = compare(revs, args.rounds, jobs)
    print(table(["rev", "jobs/s per round", "median", "CPU ms/job", "fsyncs/job", "vs first"], rows))
    print(f"{revs[-1]}: {rows[-1][5]} the jobs/s of {revs[0]} ({args.rounds} interleaved rounds, {jobs} jobs each)")


if __name__ == "__main__":
    main()
