"""A campaign's life end to end: `lipbatch` subprocesses over real loopback sockets.

`run --sandbox` keeps its emulated world beside the rehearsal state; between runs these tests open that
world in-process (``build_app(world=...)``) to read its stats or make the provider forget things, exactly
as the next run will find it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kinds import Media, mediagen, write_manifest

from lipbatch.campaign import load_campaign, world_path
from lipbatch.errors import EXIT_INTERRUPTED, EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.hashing import file_sha256
from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import SandboxConfig
from lipbatch.state import JobStatus, read_state

pytestmark = pytest.mark.slow
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LIPBATCH_CACHE_DIR": os.environ["LIPBATCH_CACHE_DIR"]}


def lipbatch(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lipbatch", *args], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=timeout)


def events(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@contextmanager
def world_of(manifest: Path):
    """The rehearsal's emulated world, opened in-process (as the next `run --sandbox` will find it)."""
    app = build_app(SandboxConfig(), world=world_path(load_campaign(manifest, sandbox=True)))
    try:
        yield app.state.sandbox
    finally:
        app.state.world.close()


def stats(manifest: Path) -> dict:
    with world_of(manifest) as sandbox:
        return sandbox.stats()


def test_a_rehearsal_never_counts_for_the_real_provider(tmp_path, media):
    case = write_manifest("creatify-lipsync", tmp_path, media, jobs=3)
    rehearsal = lipbatch("run", str(case.manifest), "--sandbox", "--json")
    assert rehearsal.returncode == EXIT_OK, rehearsal.stderr
    no_keys = lipbatch("run", str(case.manifest))
    assert no_keys.returncode == 2 and "CREATIFY_API_ID" in no_keys.stderr  # nothing is "already done"
    plan = json.loads(lipbatch("plan", str(case.manifest), "--json").stdout)
    assert {job["status"] for job in plan["jobs"]} == {"new"}

    # the "real" provider: a separately served sandbox named by the manifest's base_url
    served = subprocess.Popen([sys.executable, "-m", "lipbatch", "sandbox", "--port", "0", "--time-scale", "0.01",
                               "--job-seconds", "1"], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        url = served.stdout.readline().strip()
        data = yaml.safe_load(case.manifest.read_text())
        data["providers"]["acct"]["base_url"] = url
        case.manifest.write_text(yaml.safe_dump(data, sort_keys=False))
        real = lipbatch("run", str(case.manifest), "--json", env={"CREATIFY_API_ID": "id", "CREATIFY_API_KEY": "k"})
        assert real.returncode == EXIT_OK, real.stderr
        finished = events(real)[-1]["data"]
        assert finished["done"] == 3 and finished["skipped"] == 0
    finally:
        served.terminate()
        served.wait(timeout=30)
    real_project = load_campaign(case.manifest)
    assert all(r.status is JobStatus.DONE for r in read_state(real_project.state_path).jobs.values())
    assert real_project.output_dir != load_campaign(case.manifest, sandbox=True).output_dir


@pytest.mark.parametrize("kind", ["runway-lipsync", "magichour-lipsync", "aimlapi-pixverse-lipsync"])
def test_ctrl_c_with_sandbox_then_rerun_pays_nothing_twice(kind, tmp_path, media):
    case = write_manifest(kind, tmp_path, media, jobs=6)
    argv = [sys.executable, "-m", "lipbatch", "run", str(case.manifest), "--sandbox", "--json"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    submitted = 0
    for line in process.stdout:
        submitted += '"job_submitted"' in line
        if submitted >= 2:
            process.send_signal(signal.SIGINT)
            break
    process.communicate(timeout=120)
    assert process.returncode in (EXIT_INTERRUPTED, EXIT_OK)
    rerun = lipbatch("run", str(case.manifest), "--sandbox", "--json")
    assert rerun.returncode == EXIT_OK, rerun.stderr
    finished = events(rerun)[-1]["data"]
    assert finished["failed"] == 0 and finished["done"] + finished["skipped"] == 6
    world = stats(case.manifest)
    assert world["duplicate_creates"] == 0 and world["creates_total"] == 6


def test_re_recorded_input_then_rerun_submits_exactly_the_changed_jobs(tmp_path):
    media = Media(tmp_path / "media")
    case = write_manifest("magichour-lipsync", tmp_path, media, jobs=4)
    assert lipbatch("run", str(case.manifest), "--sandbox").returncode == EXIT_OK
    mediagen.make_wav(media.wav(1), 2.0, pitch=555.0)
    rerun = lipbatch("run", str(case.manifest), "--sandbox", "--json")
    assert rerun.returncode == EXIT_OK, rerun.stderr
    finished = events(rerun)[-1]["data"]
    assert (finished["done"], finished["skipped"], finished["failed"]) == (1, 3, 0)
    world = stats(case.manifest)
    assert world["creates_total"] == 5 and world["duplicate_creates"] == 0


@pytest.mark.parametrize("kind", ["runway-lipsync", "magichour-lipsync"])
def test_a_forgotten_upload_is_uploaded_again_once(kind, tmp_path):
    media = Media(tmp_path / "media")
    case = write_manifest(kind, tmp_path, media, jobs=2)
    assert lipbatch("run", str(case.manifest), "--sandbox").returncode == EXIT_OK
    uploads_before = sum(n for route, n in stats(case.manifest)["requests_by_route"].items() if _is_upload(route))
    with world_of(case.manifest) as sandbox:
        assert sandbox.forget(uploads=True)["uploads"] > 0
    # a new line for the same face: its video handle is remembered, but the provider forgot it
    data = yaml.safe_load(case.manifest.read_text())
    lines = data["scripts"]["s_acct"]["lines"]
    lines["it"] = {"audio": str(media.wav(9))} if kind == "magichour-lipsync" else "A brand new line to say"
    case.manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    rerun = lipbatch("run", str(case.manifest), "--sandbox", "--json")
    assert rerun.returncode == EXIT_OK, rerun.stderr
    assert any(e["type"] == "job_reupload" for e in events(rerun))
    finished = events(rerun)[-1]["data"]
    assert (finished["done"], finished["failed"]) == (1, 0)
    world = stats(case.manifest)
    uploads_after = sum(n for route, n in world["requests_by_route"].items() if _is_upload(route))
    new_inputs = 1 if kind == "magichour-lipsync" else 0  # the new recording itself
    assert uploads_after - uploads_before == 1 + new_inputs  # the forgotten face, once
    assert world["creates_total"] == 3


def _is_upload(route: str) -> bool:
    return route.startswith("POST") and ("assets" in route or "upload-urls" in route)


def test_a_deleted_output_is_restored_free_or_reported_lost(tmp_path, media):
    case = write_manifest("creatify-lipsync", tmp_path, media, jobs=2)
    assert lipbatch("run", str(case.manifest), "--sandbox").returncode == EXIT_OK
    project = load_campaign(case.manifest, sandbox=True)
    victim = project.output_dir / project.jobs[0].output
    recorded = file_sha256(victim)
    victim.unlink()
    restored = lipbatch("run", str(case.manifest), "--sandbox", "--json")
    assert restored.returncode == EXIT_OK and file_sha256(victim) == recorded
    assert stats(case.manifest)["creates_total"] == 2

    victim.unlink()
    with world_of(case.manifest) as sandbox:
        sandbox.forget(tasks=True, results=True)
    lost = lipbatch("run", str(case.manifest), "--sandbox", "--json")
    assert lost.returncode == EXIT_JOBS_FAILED
    assert events(lost)[-1]["data"]["lost"] == 1
    record = read_state(project.state_path).jobs[project.jobs[0].key]
    assert record.status is JobStatus.DONE and record.lost
    status = json.loads(lipbatch("status", str(case.manifest), "--sandbox", "--json").stdout)
    assert status["counts"] == {"lost": 1, "done": 1}
    assert stats(case.manifest)["creates_total"] == 2  # nothing paid for the lost output
    again = lipbatch("run", str(case.manifest), "--sandbox", "--regenerate-missing", "--json")
    assert again.returncode == EXIT_OK, again.stderr
    assert victim.exists() and stats(case.manifest)["creates_total"] == 3
