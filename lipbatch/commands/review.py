"""`lipbatch review MANIFEST`: a review page of every take, and approve / reject decisions kept in git.

Without options it writes ``<output_dir>/review/index.html`` (self-contained,
relative paths: zip the output folder and send it) and prints its path.
``--serve`` serves it on 127.0.0.1 with working approve / reject buttons;
``--approve SELECTOR...`` / ``--reject SELECTOR... --note TEXT`` decide from
the command line. Decisions go to ``<manifest stem>.review.yaml`` beside the
manifest (``lipbatch.review.decisions``); a rejected take is redone by the next
``lipbatch run``. ``--sandbox`` reviews the rehearsal, with its own decisions file.
A shared state (``--state``, ``LIPBATCH_STATE_URL``, the manifest's ``state:``)
is read for the records and takes without claiming anything; review writes
nothing into it (the decisions file stays beside the manifest), and the videos
are this machine's output folder's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import trio

from lipbatch.campaign import add_campaign_arguments, load_campaign
from lipbatch.commands.argtypes import port
from lipbatch.commands.shared import add_state_argument, campaign_state_url
from lipbatch.errors import EXIT_OK, UsageError
from lipbatch.review.decisions import APPROVED, REJECTED, decisions_path
from lipbatch.review.judging import Verdict, decide
from lipbatch.review.page import write_page
from lipbatch.review.server import ReviewApp, serve_review
from lipbatch.selectors import parse_selectors, select_or_fail

HELP = "write a review page of every take; approve or reject takes (decisions kept beside the manifest)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="review the rehearsal (runs made with --sandbox/--sandbox-url)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--serve", action="store_true",
                        help="serve the page on 127.0.0.1 with approve / reject buttons (Ctrl-C stops)")
    action.add_argument("--approve", nargs="+", metavar="SELECTOR",
                        help="approve the current take of the matching jobs (clip=anna lang=de, a key prefix...)")
    action.add_argument("--reject", nargs="+", metavar="SELECTOR",
                        help="reject the current take of the matching jobs (needs --note): the next run redoes them")
    parser.add_argument("--note", default="", help="why (required with --reject)")
    parser.add_argument("--port", type=port, default=0, help="port for --serve (default: a free one)")
    add_state_argument(parser)


def main(args: argparse.Namespace) -> int:
    if args.note and not (args.approve or args.reject):
        raise UsageError("--note goes with --approve or --reject")
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    url = campaign_state_url(args, project)
    if args.serve:
        review = ReviewApp(Path(args.manifest), sandbox=args.sandbox, url=url)
        trio.run(lambda: serve_review(review, port=args.port, announce=_announce))
        print("review server stopped", file=sys.stderr)
        return EXIT_OK
    if args.approve or args.reject:
        decision, words = (APPROVED, args.approve) if args.approve else (REJECTED, args.reject)
        jobs = select_or_fail(parse_selectors(words), project.jobs)
        written = decide(project, [Verdict(job, decision, args.note) for job in jobs], sandbox=args.sandbox,
                         url=url)
        for output, entry in sorted(written.items()):
            print(f"{decision}: {output} (take {entry.take}, sha256 {entry.sha256[:12]})")
        target = decisions_path(project.manifest_path, sandbox=args.sandbox)
        follow = f"; `lipbatch run {args.manifest}` makes new takes" if decision == REJECTED else ""
        print(f"{len(written)} output(s) recorded in {target} (commit it){follow}")
        return EXIT_OK
    print(write_page(project, sandbox=args.sandbox, url=url))
    return EXIT_OK


def _announce(url: str) -> None:
    print(url, flush=True)
    print("serving the review page; Ctrl-C stops", file=sys.stderr, flush=True)
