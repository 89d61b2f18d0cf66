"""The benchmarks still import and run: a smoke test with trivially small sizes and no timing asserts.

The benchmark folder is put on ``sys.path`` only while importing: it holds a
module named ``requests``, which must not shadow the real package for the
rest of the test session. Modules load under ``bench_<name>`` names.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NAMES = ("slots", "naive", "requests", "rerun", "overhead", "download", "notice", "run_all")


def load(name: str) -> ModuleType:
    if f"bench_{name}" in sys.modules:
        return sys.modules[f"bench_{name}"]
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def common() -> ModuleType:
    """The benchmarks' shared helper module (imported by every benchmark as ``_common``)."""
    load("slots")
    return sys.modules["_common"]


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_imports_with_a_main_and_a_docstring(name):
    module = load(name)
    assert callable(module.main)
    assert module.__doc__ and module.__doc__.strip()


def test_run_all_lists_every_benchmark():
    assert set(load("run_all").BENCHMARKS) == set(NAMES) - {"run_all"}


def test_requests_are_categorised_by_route():
    category = common().category
    assert category("POST /v1/runwayml/assets/") == "upload"
    assert category("POST /v1/files/upload-urls") == "upload"
    assert category("PUT /api-assets/{asset}/{filename}") == "upload"
    assert category("POST /v1/runwayml/lipsync/create") == "create"
    assert category("GET /v1/video-projects/{id}") == "poll"
    assert category("GET /cdn/{provider}/{token}/{filename:path}") == "download"
    assert category("GET /v1/runwayml/assets/") == "other"


def test_ideal_makespan_counts_partial_waves():
    ideal = common().ideal_makespan
    assert ideal(200, 5, 0.2) == pytest.approx(8.0)
    assert ideal(11, 5, 1.0) == pytest.approx(3.0)


def test_overhead_runs_a_few_jobs_in_process(tmp_path):
    result = load("overhead").measure(3, tmp_path)
    assert result["done"] == 3
    # one shared upload, then per job at least a create, a poll and a download
    assert result["requests"] >= 1 + 3 * 3


def test_the_bare_client_floor_makes_exactly_the_requests_lipbatch_makes(tmp_path):
    overhead = load("overhead")
    floor = overhead.bare_client(4, tmp_path)
    lipbatch = overhead.measure(4, tmp_path, verifier="process")
    assert lipbatch["done"] == 4 and lipbatch["child_cpu"] > 0  # the child decoded the results
    # one upload, then a create, one poll (0 s tasks) and a download per job: the same for both
    assert floor["requests"] == lipbatch["requests"] == 1 + 4 * 3


def test_notice_imports_and_splits_cold_from_learned_jobs():
    notice = load("notice")  # not in run_all: a served sandbox for ~1 min even with --quick
    assert callable(notice.main) and notice.__doc__.strip()
    # one account, one job at a time, 10 s each, every task polled at +4 s and +11 s after its create
    tasks = [{"account": "a", "created": 11.0 * i, "finished": 11.0 * i + 10.0,
              "polls": [11.0 * i + 4.0, 11.0 * i + 11.0]} for i in range(7)]
    rows = notice.per_task(tasks, 10.0)
    assert [r["learned"] for r in rows] == [False] * 5 + [True] * 2  # created once 5 were noticed
    assert all(r["lag"] == pytest.approx(0.1) and r["polls"] == 2 for r in rows)


@pytest.mark.slow
def test_compare_measures_two_trees_interleaved_and_reports_their_ratio():
    """The working tree against its own HEAD (exported with git archive: the repository is only read)."""
    root = BENCHMARKS.parent
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout (or no git): nothing to export a commit from")
    compare = load("compare")
    rows = compare.compare(["HEAD", "."], rounds=1, jobs=3)
    assert [row[0] for row in rows] == ["HEAD", "."]
    assert all(row[2] > 0 and row[3] > 0 for row in rows)  # jobs/s and CPU per job were measured
    assert rows[0][5] == "1.00x"
