"""What the review page shows: one row per clip × script (clip × voice for voice swaps), one column per
language, rows grouped by provider account; each cell is one job with its current and earlier takes.

Built from the manifest, the state and the decisions file only; the previews
(poster frames, durations) are read from the files with PyAV, so building
blocks. A job with several outputs (merged identical requests) is one cell,
shown by its first output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lipbatch.commands.status import status_name
from lipbatch.model import Job, Project
from lipbatch.plan import job_status
from lipbatch.review.decisions import Decision
from lipbatch.review.judging import decision_for, decision_name, rejected_in
from lipbatch.review.thumbnails import Preview, preview
from lipbatch.state import Loaded

NO_LANGUAGE = "—"  # the column of voice swaps: they keep the video's own language


@dataclass(frozen=True)
class Take:
    """One playable take: the current output or an earlier take kept under ``takes/``."""

    number: int
    path: str  # relative to the output folder, POSIX
    sha256: str | None
    preview: Preview
    credits: float | None = None
    decision: Decision | None = None  # the decision that judged this very take
    superseded: str | None = None  # why a newer take replaced it (earlier takes only)


@dataclass(frozen=True)
class Cell:
    job: Job
    status: str
    take: int | None  # the current take's number (None: never submitted)
    credits: float | None
    error: str | None
    decision: str | None  # approved | rejected | undecided; None when there is no done take
    current: Take | None  # None when no file can be shown
    earlier: tuple[Take, ...] = ()

    @property
    def column(self) -> str:
        return self.job.lang or NO_LANGUAGE


@dataclass
class Row:
    clip: str
    what: str  # the script, or "voice <name>" for a voice swap
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Group:
    account: str
    kind: str
    rows: list[Row] = field(default_factory=list)
    credits: float = 0.0  # charged for every take of its jobs, superseded ones included


@dataclass
class Grid:
    project: Project
    rehearsal: bool
    columns: list[str]
    groups: list[Group]

    def cells(self) -> list[Cell]:
        return [cell for group in self.groups for row in group.rows for cell in row.cells.values()]

    def counts(self) -> Counter[str]:
        return Counter(cell.status for cell in self.cells())


def build_grid(project: Project, loaded: Loaded, decisions: Mapping[str, Decision], thumbs: Path, *,
               rehearsal: bool) -> Grid:
    """The page's model; posters of every take shown are written to ``thumbs``."""
    records = loaded.jobs
    rejected = rejected_in(decisions, records)
    owners = {out: key for key, record in records.items() for out in record.outputs}
    groups: dict[str, Group] = {}
    rows: dict[tuple[str, str, str], Row] = {}
    columns: dict[str, None] = {}
    for job in project.jobs:
        record = records.get(job.key)
        endpoint = None if rehearsal else project.accounts[job.account].endpoint
        status = status_name(record, job_status(job, records, owners, endpoint=endpoint,
                                                output_dir=project.output_dir, rejected=rejected))
        current = None
        if record is not None and record.output_sha256 and (project.output_dir / job.output).is_file():
            current = Take(record.take, job.output, record.output_sha256,
                           preview(project.output_dir / job.output, record.output_sha256, thumbs),
                           record.credits, decision_for(job, record, decisions))
        earlier = tuple(
            Take(t.take, t.kept, t.sha256, preview(project.output_dir / t.kept, t.sha256, thumbs), t.credits,
                 _judged(decisions.get(job.output), t.sha256, t.take), t.reason)
            for t in sorted(loaded.takes, key=lambda t: t.take)
            if t.output == job.output and t.kept and (project.output_dir / t.kept).is_file())
        cell = Cell(job, status, record.take if record else None, record.credits if record else None,
                    record.error if record else None, decision_name(job, record, decisions), current, earlier)
        group = groups.setdefault(job.account, Group(job.account, job.kind))
        what = job.script if job.script is not None else f"voice {job.voice}"
        row_key = (job.account, job.clip, what)
        while row_key in rows and cell.column in rows[row_key].cells:  # two jobs for one cell: a row each
            row_key = (*row_key[:2], row_key[2] + " ")
        if row_key not in rows:
            rows[row_key] = Row(job.clip, what.strip())
            group.rows.append(rows[row_key])
        rows[row_key].cells[cell.column] = cell
        columns[cell.column] = None
    for account, credits in _credits(project, loaded).items():
        groups[account].credits = credits
    for group in groups.values():
        group.rows.sort(key=lambda row: (row.clip, row.what))
    ordered = sorted(c for c in columns if c != NO_LANGUAGE) + [c for c in columns if c == NO_LANGUAGE]
    accounts = list(project.accounts)
    return Grid(project, rehearsal, ordered, sorted(groups.values(), key=lambda g: accounts.index(g.account)))


def _credits(project: Project, loaded: Loaded) -> dict[str, float]:
    """Credits charged per account for every take of the manifest's jobs, each paid take counted once."""
    account_of = {out: job.account for job in project.jobs for out in job.outputs}
    paid: dict[tuple[str, int], tuple[str, float]] = {}
    for job in project.jobs:
        record = loaded.jobs.get(job.key)
        if record is not None:
            paid[(job.key, record.take)] = (job.account, record.credits or 0.0)
    for take in loaded.takes:
        if take.output in account_of:
            paid.setdefault((take.key, take.take), (account_of[take.output], take.credits or 0.0))
    totals: dict[str, float] = {}
    for account, credits in paid.values():
        totals[account] = totals.get(account, 0.0) + credits
    return totals


def _judged(entry: Decision | None, sha256: str | None, take: int) -> Decision | None:
    return entry if entry is not None and entry.holds_for(sha256, take) else None
