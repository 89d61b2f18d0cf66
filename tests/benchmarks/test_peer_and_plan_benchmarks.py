"""The Magic Hour peer and plan/status benchmarks: they import, map a job faithfully, and run tiny.

No timing asserts: what is checked is that the SDK loop makes the requests the SDK documents
(uploads both files every time, one create) and that the in-process split runs.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from test_benchmarks_smoke import common, load

from lipbatch.manifest import load_project


@pytest.mark.parametrize("name", ["peer_magichour", "plan_status"])
def test_benchmark_imports_with_a_main_and_a_docstring(name):
    module = load(name)
    assert callable(module.main)
    assert module.__doc__ and module.__doc__.strip()


def test_the_sdk_is_asked_for_the_request_lipbatch_makes(tmp_path):
    media = common().Media(tmp_path / "media")
    manifest, _ = common().write_manifest(tmp_path / "m", media, 2, kind="magichour-lipsync", concurrency=3)
    job = load_project(manifest).jobs[1]
    arguments = load("peer_magichour").generate_arguments(job)
    assert arguments["assets"] == {"video_source": "file", "video_file_path": str(job.inputs["video"].path),
                                   "audio_file_path": str(job.inputs["audio"].path)}
    assert (arguments["start_seconds"], arguments["end_seconds"]) == (job.params["start_seconds"],
                                                                     job.params["end_seconds"])
    assert arguments["name"] == job.key


def test_plan_status_splits_the_work_in_process(tmp_path):
    media = common().Media(tmp_path / "media")
    manifest, _ = common().write_manifest(tmp_path / "m", media, 3)
    with contextlib.redirect_stdout(io.StringIO()):
        parts = load("plan_status").in_process(manifest)
    assert set(parts) == {"load_project", "build_plan", "render (rich)"}
    assert all(seconds >= 0 for seconds in parts.values())


@pytest.mark.slow
def test_the_sdk_loop_runs_against_the_served_emulator(tmp_path):
    pytest.importorskip("magic_hour")
    peer, shared = load("peer_magichour"), common()
    media = shared.Media(tmp_path / "media")
    manifest, _ = shared.write_manifest(tmp_path / "m", media, 2, kind="magichour-lipsync", concurrency=3)
    scale = 0.01
    with shared.served_sandbox(job_seconds=peer.JOB_SECONDS, time_scale=scale) as sandbox:
        peer.sdk_run(shared.project_on(manifest, sandbox.url), sandbox.url, scale, tmp_path / "out")
        stats = sandbox.stats()
    routes = stats["requests_by_route"]
    assert routes["POST /v1/lip-sync"] == 2
    assert peer.counts(stats, 2)["uploads"] == 4  # the SDK uploads clip and audio for every job
    assert len(list((tmp_path / "out").glob("*/*.mp4"))) == 2
