"""`lipbatch prune MANIFEST [--yes]`: remove outputs no current job makes.

Lists the files lipbatch wrote for jobs the manifest no longer has (a removed
language, a changed template), with their kept takes; removes them only with
``--yes``, and then forgets them in the state. Files lipbatch did not write are
listed and never touched.
"""

from __future__ import annotations

import argparse
import os

from lipbatch.campaign import add_campaign_arguments, load_campaign
from lipbatch.errors import EXIT_OK
from lipbatch.inventory import take_stock
from lipbatch.state import State, read_state

HELP = "list (and with --yes remove) outputs that no current job makes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="prune the rehearsal's outputs")
    parser.add_argument("--yes", action="store_true", help="remove them (default: only list)")


def main(args: argparse.Namespace) -> int:
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    loaded = read_state(project.state_path)
    inv = take_stock(project, loaded)
    orphans = set(inv.orphans)
    orphan_takes = sorted(t.kept for t in loaded.takes
                          if t.kept and t.output in orphans and (project.output_dir / t.kept).is_file())
    doomed = sorted(orphans) + orphan_takes
    for path in doomed:
        print(f"{'removing' if args.yes else 'would remove'}: {path}")
    for path in inv.unknown:
        print(f"left alone (lipbatch did not write it): {path}")
    if not doomed:
        print("nothing to prune")
        return EXIT_OK
    if not args.yes:
        print(f"{len(doomed)} file(s) no current job makes; `lipbatch prune {args.manifest} --yes` removes them")
        return EXIT_OK
    with State.open(project.state_path) as state:
        for record in list(state.jobs.values()):
            kept = [out for out in record.outputs if out not in orphans]
            if kept != record.outputs:
                state.update(record.key, outputs=kept)
        for path in doomed:
            (project.output_dir / path).unlink(missing_ok=True)
            _remove_empty_parents(project.output_dir, project.output_dir / path)
    print(f"removed {len(doomed)} file(s)")
    return EXIT_OK


def _remove_empty_parents(top, path) -> None:
    parent = path.parent
    while parent != top and top in parent.parents:
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = parent.parent
