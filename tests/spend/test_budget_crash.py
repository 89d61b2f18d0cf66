"""kill -9 and rerun under a budget: no prefix of the journal, and no provider's books, ever pass it.

Slow: separate `lipbatch run` processes against a sandbox served on loopback (see tests/runner/test_crash.py).
"""

from __future__ import annotations

import signal

import pytest
from spendkit import creatify_manifest, journal_prefixes, used
from test_crash import lipbatch_run, nth, served

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_JOBS_FAILED
from lipbatch.state import read_jobs

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

BUDGET = 25


async def test_kill_9_and_rerun_never_pass_the_budget(tmp_path):
    manifest = creatify_manifest(tmp_path, [5] * 8, budget=BUDGET, concurrency=2)
    project = load_campaign(manifest, sandbox=True)
    async with served() as (url, sandbox):
        kills = 0
        for point in (nth("job_submitted", 2), nth("job_submitted", 1), nth("job_submitted", 1)):
            killed = await lipbatch_run(manifest, url, until=point)
            if killed.signalled:
                assert killed.code == -signal.SIGKILL, killed.stderr
                kills += 1
                # a killed run leaves its journal whole: every line is a state a crash could leave
                prefixes = journal_prefixes(project.state_path)
                assert max((used(records, "creatify") for records in prefixes), default=0.0) <= BUDGET
            else:  # the budget left nothing to submit before the kill point: it ended on its own
                assert killed.code == EXIT_JOBS_FAILED, killed.stderr
        assert kills >= 1
        final = await lipbatch_run(manifest, url)
        assert final.code == EXIT_JOBS_FAILED, final.stderr
        finished = final.events[-1]["data"]
        assert finished["over_budget"] >= 3  # at most 5 of the 8 jobs fit
        assert used(read_jobs(project.state_path), "creatify") <= BUDGET
        assert sum(sandbox.stats()["credits_used"].values()) <= BUDGET
        assert sandbox.stats()["creates_total"] <= BUDGET // 5
