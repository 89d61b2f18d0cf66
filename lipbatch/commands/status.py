"""`lipbatch status MANIFEST`: every job's recorded progress, read from the state without locking it.

Statuses are the state's own (``submitting``, ``in_flight``, ``succeeded``,
``done``, ``failed``, ``unknown``), except where ``plan`` knows better: ``new``,
``changed`` and ``blocked`` for jobs the state has not seen, ``waiting`` for a
create that was refused (no task exists), ``missing`` and ``lost`` for done jobs
whose output is gone, ``redo`` for a new take asked for (or a take rejected in
review). ``decision`` is the review's verdict on the current take (approved,
rejected, undecided; empty with no finished take). ``--sandbox`` reads the
rehearsal's state and decisions. The listing never cuts a path or a word
(``lipbatch.tables``): a table on a wide terminal, one block per job on a narrow one,
tab-separated lines when piped.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from lipbatch.campaign import add_campaign_arguments, load_campaign
from lipbatch.commands.shared import add_state_argument, campaign_state_url
from lipbatch.errors import EXIT_OK
from lipbatch.plan import job_status
from lipbatch.pricing import plain
from lipbatch.review.decisions import decisions_path, read_decisions
from lipbatch.review.judging import decision_for, decision_name, rejected_in
from lipbatch.state import JobRecord
from lipbatch.state.backend import read_backend
from lipbatch.tables import print_listing

HELP = "show each job's status from the state file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="the rehearsal's state (runs made with --sandbox/--sandbox-url)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_state_argument(parser)


_PLAN_KNOWS_BETTER = ("new", "changed", "blocked", "waiting", "missing", "lost", "redo")


def status_name(record: JobRecord | None, planned: str) -> str:
    if record is None or planned in _PLAN_KNOWS_BETTER:
        return planned
    return str(record.status)


def main(args: argparse.Namespace) -> int:
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    url = campaign_state_url(args, project)
    view = read_backend(project, url)
    loaded = view.loaded
    records = loaded.jobs
    owners = {out: key for key, record in records.items() for out in record.outputs}
    decisions = read_decisions(decisions_path(project.manifest_path, sandbox=args.sandbox))
    rejected = rejected_in(decisions, records)
    rows: list[dict[str, Any]] = []
    for job in project.jobs:
        record = records.get(job.key)
        endpoint = None if args.sandbox else project.accounts[job.account].endpoint
        planned = job_status(job, records, owners, endpoint=endpoint, output_dir=project.output_dir,
                             rejected=rejected)
        judged = decision_for(job, record, decisions)
        rows.append({
            "outputs": list(job.outputs), "account": job.account, "kind": job.kind, "key": job.key,
            "status": status_name(record, planned), "take": record.take if record else None,
            "earlier_takes": sum(1 for take in loaded.takes if take.output == job.output),
            "endpoint": record.endpoint if record else None,
            "task_id": record.task_id if record else None, "attempts": record.attempts if record else 0,
            "credits": record.credits if record else None, "error": record.error if record else None,
            "error_kind": record.error_kind if record else None,
            "decision": decision_name(job, record, decisions),
            "review": None if judged is None else {"note": judged.note, "by": judged.by, "at": judged.at},
        })
        if url is not None:  # a shared state: which worker holds the job right now
            rows[-1]["worker"] = view.holders.get(job.key)
    counts = Counter(row["status"] for row in rows)
    if args.json:
        shared = {"state": view.where, "workers": view.workers} if url is not None else {}
        print(json.dumps({"state_file": str(project.state_path), **shared, "rehearsal": args.sandbox,
                          "counts": dict(counts), "jobs": rows}, indent=2))
        return EXIT_OK
    what = " (REHEARSAL: sandbox results)" if args.sandbox else ""
    listing = [{"output": ", ".join(row["outputs"]), "account": row["account"], "status": row["status"],
                "decision": row["decision"], "take": row["take"], "attempts": row["attempts"],
                "credits": None if row["credits"] is None else plain(row["credits"]), "error": row["error"]}
               for row in rows]
    print_listing(listing, list(listing[0]) if listing else ["output"], prose=("error",),
                  title=f"{project.manifest_path.name}{what}: {len(rows)} job(s)")
    if url is not None:
        print(f"shared state {view.where}: {len(view.workers)} worker(s) running")
        for worker in view.workers:
            held = [", ".join(row["outputs"]) for row in rows if row["worker"] == worker["id"]]
            print(f"  {worker['id']} (pid {worker['pid']} on {worker['host']}, since {worker['started']}): "
                  f"{'holds ' + '; '.join(held) if held else 'holds no job'}")
    print(", ".join(f"{count} {name}" for name, count in sorted(counts.items())))
    return EXIT_OK
