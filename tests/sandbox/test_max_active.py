"""``max_active_tasks``: the most tasks of an account active at once, from the scheduled lifecycles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from world_kit import FROZEN, MagicHour, Useapi, client_for, world_app

from lipbatch.sandbox.core import Lifecycle, Sandbox, SandboxConfig, account_label

pytestmark = pytest.mark.anyio

ACCOUNTS = ("a", "b")


def frozen() -> Sandbox:
    return Sandbox(SandboxConfig(time_scale=FROZEN, job_seconds=5.0))


def brute_force(lifecycles: list[Lifecycle]) -> dict[str, int]:
    """Per account, the most intervals [created, finished) holding any one instant (a left end)."""
    best: dict[str, int] = {}
    for lc in lifecycles:
        t = lc.created_at
        active = sum(1 for other in lifecycles if other.account == lc.account
                     and other.created_at <= t < other.finished_at)
        best[f"p/{lc.account}"] = max(best.get(f"p/{lc.account}", 0), active)
    return best


def run(sandbox: Sandbox, jobs, capacity: int | None) -> list[Lifecycle]:
    made = []
    for account, gap, seconds, delay in jobs:
        made.append(sandbox.lifecycle("p", ACCOUNTS[account], capacity=capacity, seconds=seconds, delay=delay))
        sandbox.advance(gap)
    return made


JOBS = st.lists(st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0]),
                          st.sampled_from([0.0, 1.0, 3.0, 5.0]), st.sampled_from([0.0, 0.5, 2.0])),
                min_size=1, max_size=14)


@settings(max_examples=80, deadline=None)
@given(JOBS, JOBS, st.none() | st.integers(1, 3))
def test_max_active_is_exact_and_survives_a_save_and_reload(before, after, capacity):
    first = frozen()
    made = run(first, before, capacity)
    records, volatile = json.loads(json.dumps([first.snapshot(), first.volatile()]))  # as a world file holds them
    second = frozen()
    second.restore(records, volatile, now=volatile["now"], files=Path("/nonexistent"))  # no files to find
    made += run(second, after, capacity)
    assert second.stats()["max_active_tasks"] == brute_force(made)


async def test_a_scripted_magic_hour_schedule(tmp_path):
    """Creator plan: 3 run at once, the rest queue, and queued tasks are active too."""
    script = MagicHour()
    key = f"magichour/{account_label('mhk_live_test')}"
    app = world_app(tmp_path, job_seconds=1.0)
    async with client_for(app) as client:
        inputs = await script.inputs(client)
        for n in range(4):  # t=0: three run [0, 1), one queues and runs [1, 2)
            await script.create(client, inputs, n)
        app.state.sandbox.advance(0.5)
        await script.create(client, inputs, 4)  # t=0.5: five active
    app.state.world.close()

    app = world_app(tmp_path, job_seconds=1.0)
    async with client_for(app) as client:
        sandbox = app.state.sandbox
        assert sandbox.stats()["max_active_tasks"] == {key: 5}
        sandbox.advance(1.0)  # t=1.5: the first three are done, two still active
        for n in range(5, 8):
            await script.create(client, inputs, n)  # four, then five active again
        assert (await client.get("/_sandbox/stats")).json()["max_active_tasks"] == {key: 5}
        await script.create(client, inputs, 8)
        assert (await client.get("/_sandbox/stats")).json()["max_active_tasks"] == {key: 6}
    app.state.world.close()


async def test_refused_creates_are_never_active(tmp_path):
    script = Useapi()
    app = world_app(tmp_path, max_jobs=2)
    async with client_for(app) as client:
        inputs = await script.inputs(client)
        await script.create(client, inputs, 0)
        await script.create(client, inputs, 1)
        busy = await script.create_answer(client, inputs, 2)
        assert busy.status_code == 429
        assert app.state.sandbox.stats()["max_active_tasks"] == {"useapi/runway-1234@example.com": 2}
    app.state.world.close()
