"""`lipbatch plan MANIFEST`: every job with its status, output and documented cost, totals and budgets.

Review decisions (``lipbatch review``) count: a rejected take is ``redo`` (the
reason and the reviewer's note follow the table; ``--json`` carries them per
job), and a manifest edit that would replace an approved take is warned of.

``--check-remote`` (opt-in: network and credentials) first checks the manifest's
voice, accent and avatar ids against the providers' catalogues
(``lipbatch.remote_check``); an id they do not list is a problem at its
manifest line, with did-you-mean, and exits 2 before anything is spent. With
``--sandbox`` the in-process emulators' catalogues answer.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from lipbatch.campaign import add_campaign_arguments, load_campaign, rehearsal
from lipbatch.commands.shared import add_state_argument, campaign_state_url
from lipbatch.commands.validate import report_problems
from lipbatch.errors import EXIT_INVALID, EXIT_OK, ManifestError
from lipbatch.plan import Plan, build_plan, render
from lipbatch.remote_check import check_remote
from lipbatch.review.decisions import Decision, decisions_path, read_decisions
from lipbatch.review.judging import Replaced, approved_replaced, decision_name, rejected_in, rejection_for
from lipbatch.state import read_jobs
from lipbatch.state.backend import read_backend

HELP = "show the jobs a run would do, their status in the state file, estimated cost and budgets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="the rehearsal's state (runs made with --sandbox/--sandbox-url)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--check-remote", action="store_true",
                        help="check voice, accent and avatar ids against the providers' catalogues first "
                             "(network; needs the credentials; with --sandbox: the emulators')")
    add_state_argument(parser)


def main(args: argparse.Namespace) -> int:
    try:
        project = load_campaign(args.manifest, sandbox=args.sandbox)
    except ManifestError as err:
        return report_problems(err, as_json=args.json)
    url = campaign_state_url(args, project)
    remote = None
    if args.check_remote:
        checked, problems = check_remote(project, sandbox=args.sandbox)
        remote = {"checked": checked, "problems": problems}
        if problems and not args.json:
            for problem in problems:
                print(problem)
            print(f"{len(problems)} id(s) not in the providers' catalogues; nothing was spent", file=sys.stderr)
            return EXIT_INVALID
    decisions = read_decisions(decisions_path(project.manifest_path, sandbox=args.sandbox))
    shared = read_backend(project, url).loaded if url else None  # with its takes: budgets count them too
    records = shared.jobs if shared is not None else read_jobs(project.state_path)
    plan = build_plan(project, records=records, rehearsal=args.sandbox, rejected=rejected_in(decisions, records),
                      takes=shared.takes if shared is not None else None)
    rejections = {row.job.key: entry for row in plan.rows if row.status == "redo"
                  and (entry := rejection_for(row.job, records.get(row.job.key), decisions)) is not None}
    replaced = approved_replaced(((row.job, row.status) for row in plan.rows), records, decisions)
    if args.json:
        data = plan.as_json()
        for row, job in zip(plan.rows, data["jobs"], strict=True):
            job["decision"] = decision_name(row.job, records.get(row.job.key), decisions)
            if row.job.key in rejections:
                entry = rejections[row.job.key]
                job["redo_reason"] = "rejected"
                job["review"] = {"note": entry.note, "by": entry.by, "at": entry.at, "sha256": entry.sha256}
        data["warnings"] = [_replaced_json(item) for item in replaced]
        if remote is not None:
            data["remote_check"] = remote
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_INVALID if remote and remote["problems"] else EXIT_OK
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # piped: don't squeeze the table to 80 columns
    if remote is not None:
        console.print(f"Remote check: all {remote['checked']} voice/avatar id(s) are in the providers' catalogues.")
    render(plan, console)
    _render_review(plan, rejections, replaced, console)
    if not args.sandbox and rehearsal(project).state_path.exists():
        console.print(f"Rehearsal (sandbox) results are kept apart in {rehearsal(project).output_dir}: "
                      "`lipbatch plan --sandbox` shows them.")
    return EXIT_OK


def _said(entry: Decision) -> str:
    return f"by {entry.by} {entry.at[:10]}" + (f": {entry.note}" if entry.note else "")


def _replaced_json(item: Replaced) -> dict[str, Any]:
    return {"output": item.output, "approved_by": item.decision.by, "approved_at": item.decision.at,
            "sha256": item.decision.sha256, "why": item.why,
            "message": f"{item.output} was approved ({_said(item.decision)}); {item.why}: the next run replaces "
                       "it with an undecided take"}


def _render_review(plan: Plan, rejections: dict[str, Decision], replaced: list[Replaced], console: Console) -> None:
    for row in plan.rows:
        if row.job.key in rejections:
            console.print(f"[yellow]redo (rejected):[/] {escape(row.job.output)} ({escape(_said(rejections[row.job.key]))})")
    for item in replaced:
        console.print(f"[bold yellow]warning:[/] {escape(_replaced_json(item)['message'])}")
