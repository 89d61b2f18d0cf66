"""`lipbatch plan MANIFEST`: every job with its status, output and documented cost, totals and budgets.

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

from rich.console import Console

from lipbatch.campaign import add_campaign_arguments, load_campaign, rehearsal
from lipbatch.commands.validate import report_problems
from lipbatch.errors import EXIT_INVALID, EXIT_OK, ManifestError
from lipbatch.plan import build_plan, render
from lipbatch.remote_check import check_remote

HELP = "show the jobs a run would do, their status in the state file, estimated cost and budgets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="the rehearsal's state (runs made with --sandbox/--sandbox-url)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--check-remote", action="store_true",
                        help="check voice, accent and avatar ids against the providers' catalogues first "
                             "(network; needs the credentials; with --sandbox: the emulators')")


def main(args: argparse.Namespace) -> int:
    try:
        project = load_campaign(args.manifest, sandbox=args.sandbox)
    except ManifestError as err:
        return report_problems(err, as_json=args.json)
    remote = None
    if args.check_remote:
        checked, problems = check_remote(project, sandbox=args.sandbox)
        remote = {"checked": checked, "problems": problems}
        if problems and not args.json:
            for problem in problems:
                print(problem)
            print(f"{len(problems)} id(s) not in the providers' catalogues; nothing was spent", file=sys.stderr)
            return EXIT_INVALID
    plan = build_plan(project, rehearsal=args.sandbox)
    if args.json:
        print(json.dumps({**plan.as_json(), **({"remote_check": remote} if remote else {})}, indent=2,
                         ensure_ascii=False))
        return EXIT_INVALID if remote and remote["problems"] else EXIT_OK
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # piped: don't squeeze the table to 80 columns
    if remote is not None:
        console.print(f"Remote check: all {remote['checked']} voice/avatar id(s) are in the providers' catalogues.")
    render(plan, console)
    if not args.sandbox and rehearsal(project).state_path.exists():
        console.print(f"Rehearsal (sandbox) results are kept apart in {rehearsal(project).output_dir}: "
                      "`lipbatch plan --sandbox` shows them.")
    return EXIT_OK
