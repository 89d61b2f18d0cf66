"""Budgets: a run reserves each job's estimate before its create and never goes past a budget."""

from __future__ import annotations

import pytest
import yaml
from harness import fast_options
from spendkit import create_posts, creatify_manifest, magichour_manifest, runway_manifest, used

from lipbatch.budget import exposure
from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_INVALID, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.report import summary_lines
from lipbatch.state import JobRecord, JobStatus, read_jobs
from lipbatch.state.local import State

pytestmark = pytest.mark.anyio


def record(status: JobStatus, **fields) -> JobRecord:
    return JobRecord(key="k", account="a", kind=fields.pop("kind", "creatify-lipsync"), status=status,
                     outputs=["o.mp4"], **fields)


@pytest.mark.parametrize(("rec", "charged", "held", "refunded"), [
    (record(JobStatus.SUBMITTING, reserved=10.0), 0, 10, 0),  # the POST may be out
    (record(JobStatus.SUBMITTING, reserved=10.0, error_kind="refused"), 0, 0, 10),  # nothing was created
    (record(JobStatus.UNKNOWN, reserved=10.0), 0, 10, 0),
    (record(JobStatus.IN_FLIGHT, reserved=10.0, task_id="t"), 0, 10, 0),
    (record(JobStatus.IN_FLIGHT, reserved=60.0, task_id="t", credits=60.0, kind="magichour-lipsync"), 60, 0, 0),
    (record(JobStatus.DONE, reserved=60.0, task_id="t", credits=12.0, kind="magichour-lipsync"), 12, 0, 48),
    (record(JobStatus.DONE, reserved=10.0, task_id="t"), 10, 0, 0),  # never reported: the estimate stays
    (record(JobStatus.FAILED, reserved=10.0, task_id=None, error_kind="permanent"), 0, 0, 10),  # create refused
    (record(JobStatus.FAILED, reserved=10.0, task_id="t", credits=0.0, error_kind="moderation"), 0, 0, 10),
    (record(JobStatus.FAILED, reserved=9.0, task_id="t", credits=9.0, kind="aimlapi-pixverse-lipsync"), 0, 0, 9),
    (record(JobStatus.FAILED, reserved=10.0, task_id="t", error_kind="timeout"), 0, 10, 0),  # still running
])
def test_exposure_follows_the_record(rec, charged, held, refunded):
    got = exposure(rec)
    assert (got.charged, got.held, got.refunded) == (charged, held, refunded)


async def test_budget_stops_exactly_at_it(harness, tmp_path):
    manifest = creatify_manifest(tmp_path, [5] * 6, budget=17, concurrency=3)
    h = harness()
    summary = await h.run(manifest)
    assert summary.exit_code == EXIT_JOBS_FAILED
    assert h.stats()["creates_total"] == create_posts(h.stats()) == summary.done == 3  # 15 of 17
    assert summary.over_budget == 3
    budget = summary.spend["budgets"][0]
    assert (budget["used"], budget["left"], budget["waiting"], budget["more"]) == (15, 2, 3, 13)
    assert budget["suggest"] == 30  # --max-credits creatify=30 lets them all run

    rerun = await harness().run(manifest)  # the budget is the campaign's: a rerun gets nothing more
    assert rerun.over_budget == 3 and rerun.done == 0


async def test_mixed_costs_stop_where_no_waiting_job_fits(harness, tmp_path):
    manifest = creatify_manifest(tmp_path, [10, 5, 5, 15, 5, 5], budget=20, concurrency=2)
    h = harness()
    summary = await h.run(manifest)
    charged = sum(r.credits or 0 for r in read_jobs(h.project(manifest).state_path).values())
    waiting = [item for item in summary.pending if item.outcome == "over_budget"]
    assert summary.done == h.stats()["creates_total"] and summary.done + len(waiting) == 6
    assert 0 < charged <= 20
    assert charged + min(item.needs for item in waiting) > 20  # it stopped at the budget, not before


async def test_max_credits_overrides_the_manifest_budget_for_one_run(harness, tmp_path):
    manifest = creatify_manifest(tmp_path, [5, 5, 5, 5], budget=5)
    h = harness()
    first = await h.run(manifest)
    assert (first.done, first.over_budget) == (1, 3)
    second = await h.run(manifest, fast_options(max_credits={"creatify": 15}))
    assert (second.done, second.skipped, second.over_budget) == (2, 1, 1)
    assert h.stats()["creates_total"] == 3


async def test_refunds_of_failed_jobs_free_budget(harness, tmp_path):
    # a budget of one job at a time; every line fails content moderation once rendering starts and the
    # provider refunds it, so each job in turn gets the budget: without refunds only one create would fit
    manifest = creatify_manifest(tmp_path, [5, 5, 5, 5], budget=5, moderated=frozenset({0, 1, 2, 3}), concurrency=2)
    h = harness(moderate=("forbiddenword",))
    summary = await h.run(manifest)
    assert (summary.failed, summary.over_budget) == (4, 0)
    assert h.stats()["creates_total"] == 4
    entry = summary.spend["accounts"]["creatify"]
    assert (entry["reserved"], entry["charged"], entry["refunded"]) == (20, 0, 20)


def test_unknown_cost_under_a_budget_is_a_validation_error(tmp_path, media, run_cli):
    manifest = runway_manifest(tmp_path, media, 2, budget=100)
    result = run_cli("validate", str(manifest))
    assert result.code == EXIT_INVALID
    line = next(n for n, text in enumerate(manifest.read_text().splitlines(), 1) if "budget:" in text)
    assert f"{manifest}:{line}:" in result.out and "$.providers.runway.budget" in result.out
    assert "allow_unknown_cost: true" in result.out

    allowed = runway_manifest(tmp_path / "ok", media, 2, budget=100, allow_unknown_cost=True)
    assert run_cli("validate", str(allowed)).code == EXIT_OK


def test_campaign_dollar_budget_needs_a_price_or_allow_unknown_cost(tmp_path, run_cli):
    manifest = creatify_manifest(tmp_path, [5], extra={"budget": {"usd": 10}})
    result = run_cli("validate", str(manifest))
    assert result.code == EXIT_INVALID and "$.budget.usd" in result.out and "no documented dollar price" in result.out
    data = yaml.safe_load(manifest.read_text())
    data["providers"]["creatify"]["allow_unknown_cost"] = True
    manifest.write_text(yaml.safe_dump(data))
    assert run_cli("validate", str(manifest)).code == EXIT_OK
    assert load_campaign(manifest).budget_usd == 10


def test_max_credits_on_an_unpriced_account_is_refused_before_anything_runs(tmp_path, media, run_cli):
    manifest = runway_manifest(tmp_path, media, 2)
    result = run_cli("run", str(manifest), "--sandbox", "--max-credits", "runway=50")
    assert result.code == EXIT_INVALID
    assert "allow_unknown_cost" in result.err and "--max-credits" in result.err
    assert not list(tmp_path.glob("*.journal"))
    bad = run_cli("run", str(manifest), "--sandbox", "--max-credits", "runwya=50")
    assert bad.code == EXIT_INVALID and "did you mean 'runway'" in bad.err


async def test_unknown_costs_run_when_allowed_and_stop_once_the_budget_is_used(harness, tmp_path, media):
    manifest = runway_manifest(tmp_path, media, 3, budget=0, allow_unknown_cost=True)
    h = harness()
    summary = await h.run(manifest)
    assert summary.done == 3  # nothing reserved, nothing reported: the budget of 0 is never passed
    records = read_jobs(h.project(manifest).state_path)
    assert all(r.reserved is None for r in records.values())
    assert summary.spend["accounts"]["runway"]["unpriced"] == 3


async def test_a_reservation_survives_a_crash_between_intent_and_answer(harness, tmp_path):
    """A kill -9 after the intent (reservation written) and before the answer: the rerun counts it."""
    manifest = creatify_manifest(tmp_path, [10, 10, 10], budget=20)
    h = harness()
    project = h.project(manifest)
    first = project.jobs[0]
    endpoint = project.accounts["creatify"].endpoint
    with State.open(project.state_path) as state:
        state.update(first.key, account="creatify", kind=first.kind, outputs=list(first.outputs),
                     status=JobStatus.SUBMITTING, attempts=1, endpoint=endpoint, take=1, reserved=10.0)
    summary = await h.run(project)
    # Creatify cannot be searched: the crashed create stays unknown and keeps its 10 credits, so only
    # one more job fits the budget of 20
    assert (summary.unknown, summary.done, summary.over_budget) == (1, 1, 1)
    assert h.stats()["creates_total"] == 1
    assert used(read_jobs(project.state_path), "creatify") == 20


async def test_over_budget_jobs_are_not_counted_as_spending_in_the_plan(tmp_path, harness, run_cli):
    manifest = creatify_manifest(tmp_path, [5, 5, 5], budget=10)
    await harness().run(manifest)
    result = run_cli("plan", str(manifest), "--sandbox", "--json")
    budgets = result.json()["budgets"]
    assert budgets[0]["name"] == "creatify" and budgets[0]["used"] == 10 and budgets[0]["left"] == 0
    assert budgets[0]["next_run"] == 5 and budgets[0]["short"] == 5
    text = run_cli("plan", str(manifest), "--sandbox").out
    assert "Budgets" in text and "short by 5 Creatify credits" in text


async def test_a_campaign_dollar_budget_counts_every_priced_account(harness, tmp_path, media, run_cli):
    # Magic Hour holds 30 credits ($0.075) per 1 s window while queued and charges 6 ($0.015)
    manifest = magichour_manifest(tmp_path, media, [1.0] * 4, concurrency=2)
    data = yaml.safe_load(manifest.read_text())
    data["budget"] = {"usd": 0.1}
    manifest.write_text(yaml.safe_dump(data))
    h = harness()
    summary = await h.run(manifest)
    assert (summary.done, summary.over_budget) == (2, 2)  # $0.015 + $0.075 fits $0.10; a third would not
    [budget] = summary.spend["budgets"]
    assert budget["name"] == "campaign" and budget["unit"] == "USD"
    assert abs(budget["used"] - 0.03) < 1e-9 and abs(budget["more"] - 0.08) < 1e-9
    text = "\n".join(summary_lines(summary))
    assert "Budget campaign: $0.03 of $0.10 used, $0.07 left; 2 job(s) wait for it, needing $0.08 more " \
           "(raise budget.usd in the manifest)" in text
    plan = run_cli("plan", str(manifest), "--sandbox")
    assert "campaign" in plan.out and "$0.10" in plan.out
