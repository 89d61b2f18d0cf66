"""What a run would do: each job's status from the state file, and its documented cost.

Statuses: ``new`` (never submitted), ``done``, ``in flight`` (submitting,
in flight, or finished at the provider but not yet downloaded), ``failed``,
``unknown`` (a crash left an intent nobody could reconcile), ``waiting`` (a
create was refused: nothing exists), ``changed``: the job's key is not in the
state, but one of its output paths is recorded under another key, i.e. the
request behind that output changed (an input byte, a text, an option; the old
file is listed as stale and kept as a take when the new one lands),
``missing`` (done, but the output file is gone or not the recorded size: the
next run restores it from the provider), ``lost`` (done, but the file and the
provider's copy are gone: ``--regenerate-missing`` or ``redo``), ``redo`` (a
new take is asked for, or the record was made at another endpoint: paid
again), and ``blocked`` (a file lipbatch did not write is at the output path).
Only existence and size are checked here; ``lipbatch verify`` rehashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lipbatch.budget import Ledger, pools
from lipbatch.hashing import HashCache
from lipbatch.media import MediaError
from lipbatch.model import Job, Project
from lipbatch.pricing import Estimate, dollars, estimate, plain
from lipbatch.state import JobRecord, JobStatus, TakeRecord, read_state
from lipbatch.tables import print_listing

STATUS_NAMES: dict[str, str] = {
    JobStatus.SUBMITTING: "in flight",
    JobStatus.IN_FLIGHT: "in flight",
    JobStatus.SUCCEEDED: "in flight",
    JobStatus.DONE: "done",
    JobStatus.FAILED: "failed",
    JobStatus.UNKNOWN: "unknown",
}
STATUSES = ("new", "changed", "redo", "waiting", "in flight", "unknown", "failed", "blocked", "missing", "lost",
            "done")
PAID_AGAIN = ("new", "changed", "redo")


@dataclass(frozen=True)
class Stale:
    """An output written for a request the manifest no longer makes."""

    output: str
    old_key: str
    new_key: str


@dataclass(frozen=True)
class Row:
    job: Job
    status: str
    estimate: Estimate
    charged: float | None
    error: str | None = None


@dataclass
class Plan:
    project: Project
    rows: list[Row]
    stale: list[Stale] = field(default_factory=list)
    rehearsal: bool = False
    budgets: list[dict[str, Any]] = field(default_factory=list)  # see ``budget_rows``

    def totals(self) -> dict[str, dict[str, Any]]:
        """Per account: job counts by status, estimated cost (known part), unknown count, credits charged."""
        out: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            entry = out.setdefault(row.job.account, {
                "kind": row.job.kind, "jobs": 0, "statuses": {}, "unit": row.estimate.unit,
                "estimated": 0.0, "unknown_estimates": 0, "uncertain_estimates": 0, "charged": 0.0,
                "to_pay": 0.0, "to_pay_jobs": 0, "to_pay_unknown": 0})
            entry["jobs"] += 1
            entry["statuses"][row.status] = entry["statuses"].get(row.status, 0) + 1
            if row.estimate.amount is None:
                entry["unknown_estimates"] += 1
            else:
                entry["estimated"] += row.estimate.amount
                entry["uncertain_estimates"] += row.estimate.uncertain
            entry["charged"] += row.charged or 0.0
            if row.status in PAID_AGAIN or row.status == "waiting":
                entry["to_pay_jobs"] += 1
                if row.estimate.amount is None:
                    entry["to_pay_unknown"] += 1
                else:
                    entry["to_pay"] += row.estimate.amount
        return dict(sorted(out.items()))

    def as_json(self) -> dict[str, Any]:
        project = self.project
        return {
            "manifest": str(project.manifest_path),
            "output_dir": str(project.output_dir),
            "state_file": str(project.state_path),
            "rehearsal": self.rehearsal,
            "jobs": [{
                "key": row.job.key, "account": row.job.account, "kind": row.job.kind, "clip": row.job.clip,
                "script": row.job.script, "lang": row.job.lang, "voice": row.job.voice,
                "outputs": list(row.job.outputs), "status": row.status, "estimate": row.estimate.as_dict(),
                "credits_charged": row.charged, "error": row.error,
            } for row in self.rows],
            "totals": self.totals(),
            "budgets": self.budgets,
            "stale": [{"output": s.output, "old_key": s.old_key, "new_key": s.new_key} for s in self.stale],
        }


def budget_rows(project: Project, rows: list[Row], records: Mapping[str, JobRecord],
                takes: list[TakeRecord]) -> list[dict[str, Any]]:
    """Per budget: its limit, what the state records as used, what the next run reserves, what is left after."""
    ledger = Ledger(records, takes, project)
    out = []
    for pool in ledger.pools:
        used = ledger.used(pool)
        next_run, unknown = 0.0, 0
        for row in rows:
            if row.job.account in pool.accounts and (row.status in PAID_AGAIN or row.status == "waiting"):
                amount = row.estimate.reserve
                if amount is None:
                    unknown += 1
                else:
                    next_run += pool.amount(project.accounts[row.job.account].kind, amount) or 0.0
        left = max(0.0, pool.limit - used)
        out.append({"name": pool.name, "unit": pool.unit, "limit": pool.limit, "used": used, "left": left,
                    "next_run": next_run, "next_run_unknown": unknown, "left_after": max(0.0, left - next_run),
                    "short": max(0.0, next_run - left)})
    return out


def job_status(job: Job, records: Mapping[str, JobRecord], owners: Mapping[str, str], *,
               endpoint: str | None = None, output_dir: Path | None = None,
               rejected: Mapping[str, str] | None = None) -> str:
    """The plan status of ``job``; ``owners`` maps each recorded output path to its key.

    ``endpoint``: the account's endpoint (records another one made are a redo here);
    ``output_dir``: check that done outputs exist with their recorded size, and that nothing
    foreign sits where a new job will write. ``rejected``: output -> sha256 of a take a reviewer
    rejected (the next run redoes it).
    """
    record = records.get(job.key)
    if record is not None and endpoint is not None and not record.made_by(endpoint):
        return "redo"
    if record is not None:
        if record.no_task_exists:
            return "waiting"  # refused or out of credits before: nothing was created or paid
        if record.status is JobStatus.DONE:
            if record.redo or (rejected and any(rejected.get(out) == record.output_sha256
                                                 for out in job.outputs)):
                return "redo"
            if record.lost:
                return "lost"
            if output_dir is not None and not _present(output_dir / job.output, record.output_size):
                return "missing"
        return STATUS_NAMES.get(record.status, str(record.status))
    if any(owners.get(out, job.key) != job.key for out in job.outputs):
        return "changed"
    if output_dir is not None and any((output_dir / out).exists() for out in job.outputs):
        return "blocked"
    return "new"


def _present(path: Path, size: int | None) -> bool:
    try:
        return size is None or path.stat().st_size == size
    except OSError:
        return False


def video_fps(job: Job, cache: HashCache) -> float | None:
    ref = job.inputs.get("video")
    if ref is None or ref.path is None:
        return None
    try:
        return cache.probe(ref.path).fps
    except (OSError, MediaError):
        return None


def build_plan(project: Project, *, records: Mapping[str, JobRecord] | None = None,
               hash_cache: HashCache | None = None, rehearsal: bool = False,
               rejected: Mapping[str, str] | None = None, takes: list[TakeRecord] | None = None) -> Plan:
    """Statuses (from ``records``, default: the project's state file) and estimates of every job.

    ``rehearsal``: the project's paths are the sandbox's; its records count whatever sandbox made them.
    ``takes``: the superseded takes budgets count (default: the state file's, read when there are budgets).
    """
    if records is None:
        loaded = read_state(project.state_path)
        records, takes = loaded.jobs, loaded.takes
    cache = hash_cache if hash_cache is not None else HashCache.for_state(project.state_path)
    owners = {out: key for key, record in records.items() for out in record.outputs}
    rows, stale = [], []
    for job in project.jobs:
        endpoint = None if rehearsal else project.accounts[job.account].endpoint
        status = job_status(job, records, owners, endpoint=endpoint, output_dir=project.output_dir,
                            rejected=rejected)
        record = records.get(job.key)
        if status == "changed":
            stale.extend(Stale(out, owners[out], job.key) for out in job.outputs
                         if owners.get(out, job.key) != job.key)
        fps = video_fps(job, cache) if job.kind == "magichour-lipsync" else None
        rows.append(Row(job, status, estimate(job, video_fps=fps),
                        record.credits if record is not None else None,
                        record.error if record is not None else None))
    cache.save()
    budgets = []
    if pools(project):  # superseded takes' costs count too
        takes = takes if takes is not None else read_state(project.state_path).takes
        budgets = budget_rows(project, rows, records, takes)
    return Plan(project, rows, stale, rehearsal, budgets)


def render(plan: Plan, console: Console) -> None:
    """The plan as rich tables: one row per job, then totals per account."""
    what = "REHEARSAL (sandbox) " if plan.rehearsal else ""
    title = f"{what}{len(plan.rows)} jobs → {plan.project.output_dir}"
    if not console.is_terminal:  # piped: one tab-separated line per job (rich tables cost ~1 ms a row)
        print_listing([{"key": row.job.key[:12], "clip": row.job.clip,
                        "script": row.job.script or (f"voice {row.job.voice}" if row.job.voice else "-"),
                        "lang": row.job.lang or "-", "provider": row.job.account, "output": ", ".join(row.job.outputs),
                        "status": row.status, "est. cost": row.estimate.short(),
                        "charged": "-" if row.charged is None else plain(row.charged)} for row in plan.rows],
                      ("key", "clip", "script", "lang", "provider", "output", "status", "est. cost", "charged"),
                      title=title, console=console)
    else:
        _job_table(plan, title, console)
    _totals(plan, console)
    if plan.budgets:
        render_budgets(plan, console)
    for item in plan.stale:
        console.print(f"[yellow]stale:[/] {item.output} was made for job {item.old_key[:12]}; "
                      f"job {item.new_key[:12]} will replace it")


def _job_table(plan: Plan, title: str, console: Console) -> None:
    table = Table(title=title, title_justify="left")
    for name, kw in (("key", {"style": "dim", "no_wrap": True}), ("clip", {}), ("script", {}), ("lang", {}),
                     ("provider", {}), ("output", {"overflow": "fold"}), ("status", {"no_wrap": True}),
                     ("est. cost", {"justify": "right"}), ("charged", {"justify": "right"})):
        table.add_column(name, **kw)
    styles = {"done": "green", "failed": "red", "changed": "yellow", "redo": "yellow", "in flight": "cyan",
              "unknown": "magenta", "missing": "red", "lost": "red", "blocked": "red"}
    for row in plan.rows:
        job = row.job
        output = job.output + (f" (+{len(job.outputs) - 1})" if len(job.outputs) > 1 else "")
        status = row.status if row.status not in styles else f"[{styles[row.status]}]{row.status}[/]"
        table.add_row(job.key[:12], job.clip, job.script or (f"voice {job.voice}" if job.voice else "-"),
                      job.lang or "-", job.account, output, status, row.estimate.short(),
                      "-" if row.charged is None else plain(row.charged))
    console.print(table)


def _totals(plan: Plan, console: Console) -> None:
    totals = Table(title="Totals per provider account", title_justify="left")
    for name in ("provider", "kind", "jobs", "status", "estimated", "next run pays", "charged"):
        totals.add_column(name, justify="left" if name in ("provider", "kind", "status") else "right")
    for account, entry in plan.totals().items():
        estimated = f"{plain(entry['estimated'])} {entry['unit']}"
        if entry["unknown_estimates"] == entry["jobs"]:
            estimated = "unknown"
        elif entry["unknown_estimates"]:
            estimated += f" + {entry['unknown_estimates']} unknown"
        if entry["uncertain_estimates"]:
            estimated += " (docs disagree: see --json notes)"
        counts = ", ".join(f"{entry['statuses'][s]} {s}" for s in STATUSES if s in entry["statuses"])
        to_pay = "-"
        if entry["to_pay_jobs"]:
            to_pay = f"{entry['to_pay_jobs']} jobs: " + (
                "unknown" if entry["to_pay_unknown"] == entry["to_pay_jobs"]
                else f"{plain(entry['to_pay'])} {entry['unit']}"
                + (f" + {entry['to_pay_unknown']} unknown" if entry["to_pay_unknown"] else ""))
        totals.add_row(account, entry["kind"], str(entry["jobs"]), counts, estimated, to_pay,
                       plain(entry["charged"]) if entry["charged"] else "-")
    console.print(totals)


def render_budgets(plan: Plan, console: Console) -> None:
    """Each budget: its limit, what is used, what the next run would reserve, and what would be left."""
    table = Table(title="Budgets (each create reserves its estimate first; see --json for the reasoning)",
                  title_justify="left")
    for name in ("budget", "limit", "used", "next run (est.)", "left after"):
        table.add_column(name, justify="left" if name == "budget" else "right")
    for entry in plan.budgets:
        def show(value: float, entry: dict[str, Any] = entry) -> str:
            return dollars(value) if entry["unit"] == "USD" else f"{plain(value)} {entry['unit']}"

        next_run = show(entry["next_run"]) + (f" + {entry['next_run_unknown']} unknown"
                                              if entry["next_run_unknown"] else "")
        after = show(entry["left_after"])
        if entry["short"]:
            after = f"[red]0: short by {show(entry['short'])}; jobs past it wait[/]"
        table.add_row(entry["name"], show(entry["limit"]), show(entry["used"]), next_run, after)
    console.print(table)
