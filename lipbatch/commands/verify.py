"""`lipbatch verify MANIFEST`: rehash every output against the state; exit 1 on anything amiss.

Reads every byte (a same-size, same-mtime change is caught) and writes nothing.
Lists missing, altered and lost outputs and files lipbatch has no record of.
A shared state (``--state``, ``LIPBATCH_STATE_URL``, the manifest's ``state:``) is
read as ``status`` reads it: without locking or claiming anything.
"""

from __future__ import annotations

import argparse
import json

from lipbatch.campaign import add_campaign_arguments, load_campaign
from lipbatch.commands.shared import add_state_argument, campaign_state_url
from lipbatch.errors import EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.inventory import take_stock
from lipbatch.state.backend import read_backend

HELP = "rehash every output against its recorded sha256; list missing, altered and unknown files"

_LABELS = (("missing", "missing (the next run restores it from the provider)"),
           ("altered", "altered (not the recorded bytes; `run --force` restores them)"),
           ("lost", "lost (gone here and at the provider; `run --regenerate-missing` or `redo`)"),
           ("unknown", "unknown to lipbatch (left alone)"),
           ("orphans", "made for jobs the manifest no longer has (`lipbatch prune`)"),
           ("stale", "older request's take, replaced by the next run"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="verify the rehearsal's outputs")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_state_argument(parser)


def main(args: argparse.Namespace) -> int:
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    url = campaign_state_url(args, project)
    view = read_backend(project, url)
    inv = take_stock(project, view.loaded)
    code = EXIT_OK if inv.clean else EXIT_JOBS_FAILED
    if args.json:
        shared = {"state": view.where} if url is not None else {}
        print(json.dumps({"output_dir": str(project.output_dir), **shared, "clean": inv.clean, **inv.as_json()},
                         indent=2))
        return code
    for name, label in _LABELS:
        for path in getattr(inv, name):
            print(f"{name}: {path}  — {label}")
    print(f"{project.output_dir}: {len(inv.ok)} output(s) verified, {len(inv.takes)} kept take(s); "
          + ", ".join(f"{len(getattr(inv, name))} {name}" for name, _ in _LABELS))
    return code
