"""`lipbatch plan MANIFEST`: every job with its status, output and documented cost, and totals."""

from __future__ import annotations

import argparse
import json
import os

from rich.console import Console

from lipbatch.campaign import add_campaign_arguments, load_campaign, rehearsal
from lipbatch.commands.validate import report_problems
from lipbatch.errors import EXIT_OK, ManifestError
from lipbatch.plan import build_plan, render
from lipbatch.state.backend import STATE_OPTION_HELP, read_backend, state_url

HELP = "show the jobs a run would do, their status in the state file and estimated cost"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="the rehearsal's state (runs made with --sandbox/--sandbox-url)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--state", metavar="URL", help=STATE_OPTION_HELP)


def main(args: argparse.Namespace) -> int:
    try:
        project = load_campaign(args.manifest, sandbox=args.sandbox)
    except ManifestError as err:
        return report_problems(err, as_json=args.json)
    url = state_url(args.state, os.environ)
    records = read_backend(project, url).loaded.jobs if url else None
    plan = build_plan(project, records=records, rehearsal=args.sandbox)
    if args.json:
        print(json.dumps(plan.as_json(), indent=2, ensure_ascii=False))
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 160))  # piped: don't squeeze the table to 80 columns
        render(plan, console)
        if not args.sandbox and rehearsal(project).state_path.exists():
            console.print(f"Rehearsal (sandbox) results are kept apart in {rehearsal(project).output_dir}: "
                          "`lipbatch plan --sandbox` shows them.")
    return EXIT_OK
