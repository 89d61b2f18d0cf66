"""Property: any sequence of run / interrupted run / re-record / delete output / redo / switch endpoint.

Afterwards (one last complete run), every create the sandboxes counted is accounted for exactly once
in the state (a current record or a kept take), none was duplicated, every output path holds its latest
take's bytes, and when no run was interrupted the creates equal the jobs that needed one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import trio
from harness import Harness, fast_options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kinds import Media, mediagen, write_manifest

from lipbatch import cli
from lipbatch.hashing import file_sha256
from lipbatch.runner import point_at_sandbox
from lipbatch.state import JobStatus, read_state

ENDPOINTS = ("http://endpoint-a.test", "http://endpoint-b.test")
JOBS = 2

operation = st.one_of(
    st.tuples(st.just("run"), st.integers(0, 1), st.none() | st.integers(1, 2)),
    st.tuples(st.just("edit"), st.integers(0, JOBS - 1), st.integers(1, 500)),
    st.tuples(st.just("delete"), st.integers(0, JOBS - 1)),
    st.tuples(st.just("redo"), st.integers(0, JOBS - 1)),
)


class Campaign:
    def __init__(self, root: Path) -> None:
        self.media = Media(root / "media")
        self.case = write_manifest("magichour-lipsync", root, self.media, jobs=JOBS)
        self.sandboxes = [Harness() for _ in ENDPOINTS]
        self.latest: dict[str, int] = {}  # job key -> endpoint of its last completed take (the model)
        self.redo: set[str] = set()
        self.needed = 0
        self.interrupted = False

    def project(self, endpoint: int):
        return point_at_sandbox(self.sandboxes[endpoint].project(self.case.manifest), ENDPOINTS[endpoint])

    def run(self, endpoint: int, stop_after: int | None) -> None:
        project = self.project(endpoint)
        stop = trio.Event()
        submitted = 0

        def watch(event) -> None:
            nonlocal submitted
            submitted += event.type == "job_submitted"
            if stop_after is not None and submitted >= stop_after:
                stop.set()

        async def go():
            import httpx

            from lipbatch.runner import run_project
            return await run_project(project, fast_options(), environ=self.case.env, sink=watch, stop=stop,
                                     transport=httpx.ASGITransport(app=self.sandboxes[endpoint].app))

        summary = trio.run(go)
        if summary.interrupted:
            self.interrupted = True
            self.latest.clear()  # partial progress: the model no longer predicts exactly
            return
        for job in project.jobs:
            if self.latest.get(job.key) != endpoint or job.key in self.redo:
                self.needed += 1
            self.latest[job.key] = endpoint
            self.redo.discard(job.key)

    def edit(self, index: int, pitch: int) -> None:
        mediagen.make_wav(self.media.wav(index), 2.0, pitch=float(100 + pitch))

    def delete(self, index: int) -> None:
        project = self.project(0)
        job = project.jobs[index % len(project.jobs)]  # identical recordings merge jobs
        (project.output_dir / job.output).unlink(missing_ok=True)

    def redo_job(self, index: int) -> None:
        jobs = self.project(0).jobs
        job = jobs[index % len(jobs)]
        if cli.main(["redo", str(self.case.manifest), "--sandbox", f"key={job.key[:16]}"]) == 0:
            self.redo.add(job.key)

    def creates(self) -> int:
        return sum(h.stats()["creates_total"] for h in self.sandboxes)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, max_size=6))
def test_any_campaign_history_pays_exactly_for_what_it_needed(ops, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        campaign = Campaign(Path(tmp))
        for op in ops:
            if op[0] == "run":
                campaign.run(op[1], op[2])
            elif op[0] == "edit":
                campaign.edit(op[1], op[2])
            elif op[0] == "delete":
                campaign.delete(op[1])
            else:
                campaign.redo_job(op[1])
        campaign.run(0, None)

        project = campaign.project(0)
        loaded = read_state(project.state_path)
        paid = {(r.endpoint, r.task_id) for r in loaded.jobs.values() if r.task_id}
        paid |= {(t.endpoint, t.task_id) for t in loaded.takes if t.task_id}
        assert campaign.creates() == len(paid)
        assert all(h.stats()["duplicate_creates"] == 0 for h in campaign.sandboxes)
        for job in project.jobs:
            record = loaded.jobs[job.key]
            assert record.status is JobStatus.DONE
            assert file_sha256(project.output_dir / job.output) == record.output_sha256
        if not campaign.interrupted:
            assert campaign.creates() == campaign.needed
    capsys.readouterr()
