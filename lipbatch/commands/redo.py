"""`lipbatch redo MANIFEST SELECTOR...`: ask for a new, paid take of chosen done jobs.

The next ``lipbatch run`` makes them; the current take is kept under
``<output_dir>/takes/`` and the state keeps every take's task id, cost and
sha256. ``--cancel`` withdraws the request. Selectors: ``lipbatch.selectors``.

On a shared state (``--state``, ``LIPBATCH_STATE_URL``, the manifest's ``state:``)
each chosen job is changed only under its claim (``lipbatch.state.edit``): a job a
live worker holds is left as it is and named, and the command exits 1.
"""

from __future__ import annotations

import argparse

from lipbatch.campaign import add_campaign_arguments, load_campaign
from lipbatch.commands.shared import add_state_argument, campaign_state_url, command_again, report_refused
from lipbatch.errors import EXIT_JOBS_FAILED, EXIT_OK, UsageError
from lipbatch.hashing import HashCache
from lipbatch.plan import video_fps
from lipbatch.pricing import estimate
from lipbatch.selectors import parse_selectors, select_or_fail
from lipbatch.state import JobStatus
from lipbatch.state.edit import edit_jobs

HELP = "mark done jobs for a new paid take (the next run makes it; the old take is kept)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="redo in the rehearsal")
    parser.add_argument("selectors", nargs="+", metavar="SELECTOR",
                        help="clip=anna lang=de provider=runway script=welcome output='de/*' or a key prefix")
    parser.add_argument("--cancel", action="store_true", help="withdraw an earlier redo request")
    add_state_argument(parser)


def main(args: argparse.Namespace) -> int:
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    url = campaign_state_url(args, project)
    jobs = select_or_fail(parse_selectors(args.selectors), project.jobs)
    marked, skipped = [], []
    with edit_jobs(project, url, [job.key for job in jobs]) as editing:
        state = editing.state
        for job in jobs:
            if job.key in editing.refused:
                continue
            record = state.job(job.key)
            if record is None or record.status is not JobStatus.DONE:
                skipped.append(job)
            elif args.cancel:
                if record.redo and editing.update(job.key, redo=None):
                    marked.append(job)
            elif record.redo != "requested":
                if editing.update(job.key, redo="requested"):
                    marked.append(job)
            else:
                marked.append(job)
        refused = editing.refused
    for job in skipped:
        print(f"not done yet (a run makes it anyway): {job.output}")
    report_refused(jobs, refused, command_again(args, "redo", args.manifest, *args.selectors,
                                                    *["--cancel"] * args.cancel))
    if not marked and refused:
        return EXIT_JOBS_FAILED
    if not marked:
        raise UsageError("none of the matching jobs is done; nothing to " + ("cancel" if args.cancel else "redo"))
    verb = "redo withdrawn" if args.cancel else "new take asked for"
    cache = HashCache.for_state(project.state_path)
    for job in marked:
        cost = "" if args.cancel else f"  (est. {estimate(job, video_fps=video_fps(job, cache)).short()})"
        print(f"{verb}: {job.output}{cost}")
    if not args.cancel:
        print(f"{len(marked)} job(s) marked; `lipbatch run {args.manifest}` makes the new take(s), "
              "keeping the current ones under takes/")
    return EXIT_JOBS_FAILED if refused else EXIT_OK
