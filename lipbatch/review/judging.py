"""Decisions meet the state: which take a decision is about, what the next run redoes, what a plan warns of.

Readings where the issue left room:

- A job with several outputs (identical requests merged) is one take: judging
  the job judges every output it wrote.
- Only a done take can be judged (its number and sha256 are what the decision binds to);
  deciding on anything else is refused with exit 2 and nothing is written.
- A rejection needs a note: it is what the next take should fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lipbatch.errors import UsageError
from lipbatch.model import Job, Project
from lipbatch.review.decisions import (
    APPROVED,
    REJECTED,
    Decision,
    decisions_path,
    now_utc,
    read_decisions,
    record_decisions,
    reviewer,
)
from lipbatch.state import JobRecord, JobStatus
from lipbatch.state.backend import read_backend

UNDECIDED = "undecided"


def current_take(record: JobRecord | None) -> str | None:
    """The sha256 of the take a reviewer can judge now (None: no done take)."""
    if record is None or record.status is not JobStatus.DONE:
        return None
    return record.output_sha256


def judges(entry: Decision | None, record: JobRecord | None) -> bool:
    """True when ``entry`` judged ``record``'s current, done take."""
    return (entry is not None and record is not None and current_take(record) is not None
            and entry.holds_for(record.output_sha256, record.take))


def decision_for(job: Job, record: JobRecord | None, decisions: Mapping[str, Decision]) -> Decision | None:
    """The decision that holds for ``job``'s current take (its first output's), if any."""
    entry = decisions.get(job.output)
    return entry if judges(entry, record) else None


def decision_name(job: Job, record: JobRecord | None, decisions: Mapping[str, Decision]) -> str | None:
    """approved | rejected | undecided for a done take; None when there is nothing to judge."""
    if current_take(record) is None:
        return None
    entry = decision_for(job, record, decisions)
    return entry.decision if entry is not None else UNDECIDED


def rejection_for(job: Job, record: JobRecord | None, decisions: Mapping[str, Decision]) -> Decision | None:
    """The rejection of ``job``'s current take (on any of its outputs), if any: why it is redone."""
    for output in job.outputs:
        entry = decisions.get(output)
        if entry is not None and entry.decision == REJECTED and judges(entry, record):
            return entry
    return None


def rejected_in(decisions: Mapping[str, Decision], records: Mapping[str, JobRecord]) -> dict[str, str]:
    """Output path -> sha256 of its rejected take, where that take is still the current one.

    The take number matters: a new take with the same bytes (a deterministic renderer) is not rejected.
    """
    owners: dict[str, list[JobRecord]] = {}
    for record in records.values():
        for output in record.outputs:
            owners.setdefault(output, []).append(record)
    return {output: entry.sha256 for output, entry in decisions.items()
            if entry.decision == REJECTED and any(judges(entry, record) for record in owners.get(output, ()))}


def rejected_takes(project: Project, sandbox: bool = False, url: str | None = None) -> dict[str, str]:
    """Output path -> sha256 of its rejected current take, for ``RunOptions.rejected`` and ``build_plan``;
    ``url``: the shared state the takes are recorded in (None: the local files)."""
    decisions = read_decisions(decisions_path(project.manifest_path, sandbox=sandbox))
    return rejected_in(decisions, read_backend(project, url).loaded.jobs) if decisions else {}


@dataclass(frozen=True)
class Verdict:
    """What a reviewer says about one job's current take."""

    job: Job
    decision: str
    note: str = ""


def decide(project: Project, verdicts: Sequence[Verdict], *, sandbox: bool, by: str | None = None,
           url: str | None = None, records: Mapping[str, JobRecord] | None = None) -> dict[str, Decision]:
    """Record ``verdicts`` in the project's decisions file; returns output -> the decision written.
    The takes judged are ``records``, else read from the state (``url``: a shared one, read without
    claiming; it is not written: decisions live in the file).

    Refuses (``UsageError``, nothing written) when a job has no done take or a rejection has no note.
    """
    if records is None:
        records = read_backend(project, url).loaded.jobs
    not_done = [v.job for v in verdicts if current_take(records.get(v.job.key)) is None]
    if not_done:
        listed = ", ".join(job.output for job in not_done[:5]) + (" ..." if len(not_done) > 5 else "")
        raise UsageError(f"{len(not_done)} output(s) have no finished take to judge: {listed}; "
                         "nothing was recorded (narrow the selector, or run the manifest first)")
    if any(v.decision == REJECTED and not v.note.strip() for v in verdicts):
        raise UsageError("a rejection needs a note saying what is wrong (--note '...'): the next take should fix it")
    if any(v.decision not in (APPROVED, REJECTED) for v in verdicts):
        raise UsageError(f"a decision is {APPROVED} or {REJECTED}")
    who, when = by or reviewer(project.manifest_path.parent), now_utc()
    changes = {}
    for verdict in verdicts:
        record = records[verdict.job.key]
        assert record.output_sha256 is not None
        for output in verdict.job.outputs:
            changes[output] = Decision(verdict.decision, record.output_sha256, record.take, verdict.note.strip(),
                                       who, when)
    record_decisions(decisions_path(project.manifest_path, sandbox=sandbox), changes,
                     manifest_name=project.manifest_path.name)
    return changes


@dataclass(frozen=True)
class Replaced:
    """An approved take that the next run replaces."""

    output: str
    decision: Decision
    why: str


def approved_replaced(rows: Iterable[tuple[Job, str]], records: Mapping[str, JobRecord],
                      decisions: Mapping[str, Decision]) -> list[Replaced]:
    """Approved takes a run would replace, from plan rows (job, status).

    ``changed``: the manifest edit gave the approved output path a new key (a new request);
    ``redo``: a new take of the approved one was asked for, or it was made at another endpoint.
    """
    owners = {out: key for key, record in records.items() for out in record.outputs}
    found = []
    for job, status in rows:
        if status not in ("changed", "redo"):
            continue
        for output in job.outputs:
            entry = decisions.get(output)
            owner = owners.get(output)
            if entry is None or entry.decision != APPROVED or owner is None:
                continue
            if not judges(entry, records.get(owner)):
                continue
            why = (f"the manifest changed its request (job {owner[:12]} is now {job.key[:12]})" if owner != job.key
                   else "the next run makes a new take of it")
            found.append(Replaced(output, entry, why))
    return found

