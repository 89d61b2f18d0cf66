"""The runner under injected faults, busy providers, expiring URLs; and secrets never leak."""

from __future__ import annotations

import io
from functools import partial

import pytest
import trio
from harness import FAST_SANDBOX, assert_all_done, fast_options
from kinds import (
    EMULATORS,
    KINDS,
    MODERATED_WORD,
    TEXT_KINDS,
    sandbox_account,
    write_manifest,
)

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_OK
from lipbatch.media import verify_playable
from lipbatch.progress import JsonSink, LogSink
from lipbatch.runner import point_at_sandbox, run_project
from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import SandboxConfig
from lipbatch.sandbox.server import serve
from lipbatch.state import read_jobs

pytestmark = pytest.mark.anyio


@pytest.mark.slow  # whole runs of every kind under injected faults
@pytest.mark.parametrize("kind", KINDS)
async def test_every_job_done_under_faults(kind, tmp_path, media, harness):
    case = write_manifest(kind, tmp_path, media, jobs=6 if kind == "runway-act-two-voice" else 8)
    h = harness(rate_429=0.2, rate_5xx=0.05, rate_reset=0.05, rate_truncate=0.05, seed=7)
    project = h.project(case.manifest)
    await settle_lost_answers(case, project, lambda options: h.run(project, options), h.stats)
    for job in project.jobs:
        verify_playable(project.output_dir / job.output)
    assert sum(h.stats()["faults"].values()) > 0


async def settle_lost_answers(case, project, run, stats):
    """Run under faults. Searchable kinds finish with no duplicate. On the others a create whose answer
    was lost is never re-sent in that run: it is reported unknown, and each such job is one whose create
    the provider really received (a --resubmit-unknown rerun duplicates exactly those)."""
    summary = await run(fast_options(transient_retries=10))
    if case.reconcilable:
        assert summary.exit_code == EXIT_OK, summary.failures
        assert stats()["duplicate_creates"] == 0
    else:
        assert summary.done + summary.unknown == case.jobs, summary.failures
        assert stats()["duplicate_creates"] == 0
        unknown, duplicates = summary.unknown, 0
        for _ in range(4):
            if not unknown:
                break
            duplicates += unknown
            again = await run(fast_options(transient_retries=10, resubmit_unknown=True))
            assert stats()["duplicate_creates"] == duplicates
            unknown = again.unknown
        assert not unknown
    assert_all_done(project, read_jobs(project.state_path))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
async def test_busy_provider_all_done_within_its_cap_without_spinning(kind, tmp_path, media, harness):
    jobs = 6 if kind == "runway-act-two-voice" else 10
    case = write_manifest(kind, tmp_path, media, jobs=jobs, concurrency=5)
    h = harness(max_jobs=2, job_seconds=20.0)  # long enough that the limiter probes past the cap, even under load
    provider = EMULATORS[kind]
    account = sandbox_account(kind, {"ACCT_TOKEN": "sandbox-token", "ACCT_API_ID": "sandbox-api_id"}, "ACCT_")
    accepted: list[int] = []

    def sample(event) -> None:
        if event.type == "job_submitted":
            accepted.append(h.sandbox.running_tasks(provider, account))
            if provider == "useapi":  # useapi refuses beyond maxJobs; the others queue
                accepted.append(h.sandbox.active_tasks(provider, account))

    summary = await h.run(case.manifest, sink=sample)

    assert summary.exit_code == EXIT_OK, summary.failures
    assert summary.done == jobs
    assert accepted and max(accepted) <= 2
    stats = h.stats()
    assert stats["duplicate_creates"] == 0
    creates = sum(n for route, n in stats["requests_by_route"].items() if route.startswith("POST")
                  and ("create" in route or "act-two" in route or "lip-sync" in route or "generations" in route
                       or "lipsyncs" in route))
    assert creates <= 3 * jobs  # refused creates are bounded, not a spin
    assert stats["requests"] <= 15 * jobs
    if provider == "useapi":
        assert any(e.type == "job_busy" for e in h.events)


@pytest.mark.parametrize("kind", KINDS)
async def test_expired_result_urls_are_refreshed(kind, tmp_path, media, harness):
    case = write_manifest(kind, tmp_path, media, jobs=2)
    h = harness(download_ttl=50.0)

    def expire(event) -> None:
        if event.type == "job_succeeded":
            h.sandbox.advance(100.0)  # the URL the poll just returned is now stale

    summary = await h.run(case.manifest, sink=expire)

    assert summary.exit_code == EXIT_OK, summary.failures
    assert h.stats()["downloads_expired"] >= case.jobs
    assert sum(1 for e in h.events if e.type == "job_url_expired") >= case.jobs
    project = h.project(case.manifest)
    assert_all_done(project, read_jobs(project.state_path))


@pytest.mark.parametrize("kind", KINDS)
async def test_no_secret_in_state_journal_logs_or_json(kind, tmp_path, media, harness):
    moderated = {0} if kind in TEXT_KINDS else set()
    case = write_manifest(kind, tmp_path, media, jobs=3, accounts=2, moderated=moderated)
    secrets = {var: f"s3cr3t-{var.lower()}-value-{i}" for i, var in enumerate(sorted(case.env))}
    good = [v for k, v in secrets.items() if k.startswith("ACCT0_")]
    valid = [":".join(good), *good] if kind == "creatify-lipsync" else good
    # acct1's credentials are refused by the provider (401): its errors must not echo them either.
    h = harness(valid_tokens=tuple(valid), moderate=(MODERATED_WORD,), rate_5xx=0.1, rate_429=0.1, seed=3)
    json_out, log_out = io.StringIO(), io.StringIO()
    sinks = (JsonSink(json_out), LogSink(log_out))

    summary = await h.run(case.manifest, fast_options(transient_retries=10), environ=secrets,
                          sink=lambda e: [s(e) for s in sinks])

    texts = [json_out.getvalue(), log_out.getvalue(), repr(summary.to_json())]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".mp4"
              and p.stat().st_size < 10_000_000]
    for secret in secrets.values():
        for text in texts:
            assert secret not in text
    assert summary.done == 3 - len(moderated)  # the good account ran with its real secret
    assert [e.account for e in h.events if e.type == "account_stopped"] == ["acct1"]  # the 401 one


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
async def test_faults_over_real_loopback_sockets(kind, tmp_path, media):
    """The same fault mix through hypercorn: resets and truncations are real closed connections."""
    case = write_manifest(kind, tmp_path, media, jobs=5)
    app = build_app(SandboxConfig(**(FAST_SANDBOX | {"rate_429": 0.2, "rate_5xx": 0.05, "rate_reset": 0.05,
                                                     "rate_truncate": 0.05, "seed": 11})))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, app))
        project = point_at_sandbox(load_campaign(case.manifest, sandbox=True), url)
        await settle_lost_answers(case, project, lambda options: run_project(project, options, environ={}),
                                  app.state.sandbox.stats)
        nursery.cancel_scope.cancel()
    assert_all_done(project, read_jobs(project.state_path))
    stats = app.state.sandbox.stats()
    assert sum(stats["faults"].values()) > 0
    if case.reconcilable:
        assert stats["duplicate_creates"] == 0



async def test_a_provider_echoing_the_key_in_an_error_never_reaches_events_or_summary(tmp_path, media, harness,
                                                                                     monkeypatch):
    from lipbatch.errors import PermanentError
    from lipbatch.providers import magichour

    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=2, accounts=1)
    secret = "mhk_live_s3cr3t-echoed-value"

    async def create(self, body):
        raise PermanentError(f"invalid key {self.headers['Authorization']}", status=400)

    monkeypatch.setattr(magichour.Client, "create", create)
    json_out, log_out = io.StringIO(), io.StringIO()
    sinks = (JsonSink(json_out), LogSink(log_out))
    summary = await harness().run(case.manifest, fast_options(), environ={"MAGIC_HOUR_API_KEY": secret},
                                  sink=lambda e: [s(e) for s in sinks])

    assert summary.failed == 2
    assert "[redacted]" in json_out.getvalue()  # the error was reported, without the key
    for text in (json_out.getvalue(), log_out.getvalue(), repr(summary.to_json())):
        assert secret not in text
