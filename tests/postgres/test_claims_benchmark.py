"""benchmarks/claims.py still runs: two worker processes take every job exactly once (no timing asserts).

The worker processes are spawned, so they import the benchmark as ``claims`` from the benchmark
folder; that folder is on ``sys.path`` only during the call (it holds a module named ``requests``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_workers_of_the_claims_benchmark_make_every_job_once(pg_url):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        claims = importlib.import_module("claims")
        seconds, made = claims.shared_claims(pg_url, 40, 2)
    finally:
        sys.path.remove(str(BENCHMARKS))
        sys.modules.pop("claims", None)
    assert sum(made) == 40 and len(made) == 2 and seconds > 0
