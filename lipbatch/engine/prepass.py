"""Pre-pass: what each job needs before anything is sent (no HTTP), and the jobs settled by it.

A DONE job whose output holds the recorded sha256 is skipped; outputs missing beside a
verified one are copied; a job whose output path holds a file lipbatch did not write is
blocked before anything is paid; a superseded take (``redo``, a rejected sha256, another
endpoint, ``--regenerate-missing``) becomes new work with the next take number. Each create's
reservation is estimated here (``lipbatch.pricing``), once per job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lipbatch.confined import OutputWriteError
from lipbatch.engine.control import JobEnded
from lipbatch.engine.outputs import copy_file, remove_partial_files
from lipbatch.model import Job
from lipbatch.plan import video_fps
from lipbatch.pricing import estimate
from lipbatch.state import JobStatus


@dataclass
class Plan:
    """What the pre-pass decided for one job (``job`` carries the take it makes)."""

    action: str  # "skip" | "copy" | "work" | "restore" | "lost" | "blocked"
    job: Job
    source: Path | None = None
    targets: tuple[str, ...] = ()
    reason: str | None = None
    new_take: str | None = None  # why the current take is superseded before submitting


class PrepassPhase:
    """Mixin of ``Runner``: the plan for every job, from the state and the files alone."""

    def _prepass(self) -> dict[str, Plan]:
        if self.leases is None:  # a shared output folder may hold other workers' downloads in progress
            remove_partial_files(self.project.output_dir)
        plans = {job.key: self._decide(job) for job in self.project.jobs}
        for plan in plans.values():  # what each create would reserve (Magic Hour: the probed frame rate)
            if plan.action == "work":
                job = plan.job
                fps = video_fps(job, self.hashes) if job.kind == "magichour-lipsync" else None
                self.reserves[job.key] = estimate(job, video_fps=fps).reserve
        return plans

    def _decide(self, job: Job) -> Plan:
        record = self.state.job(job.key)
        endpoint = self.project.accounts[job.account].endpoint
        if record is not None and not record.made_by(endpoint):
            return self._new_take(job, "endpoint")
        if record is None:
            return self._unless_blocked(job, Plan("work", dataclasses.replace(job, take=self.outputs.next_take(job))))
        if job.take != record.take:
            job = dataclasses.replace(job, take=record.take)
        if (record.status is JobStatus.SUCCEEDED and record.output_sha256
                and all(self.outputs.holds(out, record) for out in job.outputs)):
            # killed between placing the verified result and recording DONE: the file is that result
            self.state.update(job.key, status=JobStatus.DONE, outputs=sorted({*record.outputs, *job.outputs}))
            return Plan("skip", job)
        if record.status is not JobStatus.DONE or not record.output_sha256:
            return self._unless_blocked(job, Plan("work", job))  # never pay again for a file that is there
        if record.redo:
            return self._new_take(job, record.redo)
        if any(self.options.rejected.get(out) == record.output_sha256 for out in job.outputs):
            return self._new_take(job, "rejected")
        verified = [name for name in dict.fromkeys([*job.outputs, *record.outputs])
                    if self.outputs.holds(name, record)]
        missing = tuple(name for name in job.outputs if name not in verified)
        if verified:
            source = self.outputs.path(verified[0])
            for name in missing:
                try:
                    if not self.outputs.make_room(name, job.key, force=self.options.force):
                        return Plan("blocked", job, reason=self._foreign_reason(name))
                    copy_file(source, self.outputs.path(name), root=self.outputs.dir)
                except OutputWriteError as exc:
                    return Plan("blocked", job, reason=str(exc))
            return Plan("copy" if missing else "skip", job, source=source, targets=missing)
        if record.lost:
            if self.options.regenerate_missing:
                return self._new_take(job, "lost")
            return Plan("lost", job, reason=f"{record.error}; --regenerate-missing or `lipbatch redo` pays again")
        return self._unless_blocked(job, Plan("restore", job))

    def _new_take(self, job: Job, reason: str) -> Plan:
        job = dataclasses.replace(job, take=self.outputs.next_take(job))
        return self._unless_blocked(job, Plan("work", job, new_take=reason))

    def _unless_blocked(self, job: Job, plan: Plan) -> Plan:
        """No money for a job whose output path holds a file lipbatch did not write (unless --force)."""
        if not self.options.force:
            for output in job.outputs:
                if self.outputs.foreign(output):
                    return Plan("blocked", job, reason=self._foreign_reason(output))
        return plan

    def _foreign_reason(self, output: str) -> str:
        return (f"{self.outputs.path(output)} holds a file lipbatch did not write; it is left alone and nothing "
                "was submitted: move it away, or --force replaces it")

    def _settled_before(self, job: Job, plan: Plan) -> None:
        if plan.action in ("lost", "blocked"):
            self._count(job, None, JobEnded(plan.action, plan.reason))
            return
        record = self.state.job(job.key)
        assert record is not None
        if plan.action == "copy":
            self.state.update(job.key, outputs=sorted({*record.outputs, *job.outputs}))
            self.emit("job_copied", job, source=str(plan.source), targets=list(plan.targets))
        else:
            self.emit("job_skipped", job)
        self._counted.add(job.key)
        self.summary.skipped += 1
