"""`lipbatch status MANIFEST`: every job's recorded progress, read from the state without locking it.

Statuses are the state's own (``submitting``, ``in_flight``, ``succeeded``,
``done``, ``failed``, ``unknown``), plus ``new``/``changed`` from ``plan`` for
jobs the state has not seen; a ``submitting`` record whose last create was
refused (no task exists) shows as ``waiting``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from lipbatch.errors import EXIT_OK
from lipbatch.manifest import load_project
from lipbatch.plan import job_status
from lipbatch.state import JobRecord, read_jobs

HELP = "show each job's status from the state file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest YAML file")
    parser.add_argument("--json", action="store_true", help="print JSON")


def status_name(record: JobRecord | None, fallback: str) -> str:
    if record is None:
        return fallback
    if record.no_task_exists:
        return "waiting"
    return str(record.status)


def main(args: argparse.Namespace) -> int:
    project = load_project(args.manifest)
    records = read_jobs(project.state_path)
    owners = {out: key for key, record in records.items() for out in record.outputs}
    rows: list[dict[str, Any]] = []
    for job in project.jobs:
        record = records.get(job.key)
        rows.append({
            "outputs": list(job.outputs), "account": job.account, "kind": job.kind, "key": job.key,
            "status": status_name(record, job_status(job, records, owners)),
            "task_id": record.task_id if record else None, "attempts": record.attempts if record else 0,
            "credits": record.credits if record else None, "error": record.error if record else None,
            "error_kind": record.error_kind if record else None,
        })
    counts = Counter(row["status"] for row in rows)
    if args.json:
        print(json.dumps({"state_file": str(project.state_path), "counts": dict(counts), "jobs": rows}, indent=2))
        return EXIT_OK
    console = Console()
    table = Table(title=f"{project.manifest_path.name}: {len(rows)} job(s)")
    for column in ("output", "account", "status", "attempts", "credits", "error"):
        table.add_column(column)
    for row in rows:
        table.add_row(", ".join(row["outputs"]), row["account"], row["status"], str(row["attempts"]),
                      "" if row["credits"] is None else f"{row['credits']:g}", row["error"] or "")
    console.print(table)
    console.print(", ".join(f"{count} {name}" for name, count in sorted(counts.items())))
    return EXIT_OK
