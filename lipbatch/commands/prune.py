"""`lipbatch prune MANIFEST [--yes]`: remove outputs no current job makes.

Lists the files lipbatch wrote for jobs the manifest no longer has (a removed
language, a changed template), with their kept takes; removes them only with
``--yes``, and then forgets them in the state. Files lipbatch did not write are
listed and never touched.

On a shared state (``--state``, ``LIPBATCH_STATE_URL``, the manifest's ``state:``)
the files are this machine's output folder's, and each job whose outputs are
forgotten is changed only under its claim (``lipbatch.state.edit``): the files of
a job a live worker holds are kept, named, and the command exits 1.
"""

from __future__ import annotations

import argparse
import os

from lipbatch.campaign import add_campaign_arguments, load_campaign
from lipbatch.commands.shared import add_state_argument, campaign_state_url, command_again
from lipbatch.errors import EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.inventory import take_stock
from lipbatch.state.backend import read_backend
from lipbatch.state.edit import edit_jobs

HELP = "list (and with --yes remove) outputs that no current job makes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_campaign_arguments(parser, rehearsal_help="prune the rehearsal's outputs")
    parser.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    add_state_argument(parser)


def main(args: argparse.Namespace) -> int:
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    url = campaign_state_url(args, project)
    loaded = read_backend(project, url).loaded
    inv = take_stock(project, loaded)
    orphans = set(inv.orphans)
    orphan_takes = sorted(t.kept for t in loaded.takes
                          if t.kept and t.output in orphans and (project.output_dir / t.kept).is_file())
    doomed = sorted(orphans) + orphan_takes
    if not args.yes:
        for path in doomed:
            print(f"would remove: {path}")
    for path in inv.unknown:
        print(f"left alone (lipbatch did not write it): {path}")
    if not doomed:
        print("nothing to prune")
        return EXIT_OK
    if not args.yes:
        print(f"{len(doomed)} file(s) no current job makes; `lipbatch prune {args.manifest} --yes` removes them")
        return EXIT_OK
    owners = [key for key, record in loaded.jobs.items() if orphans.intersection(record.outputs)]
    with edit_jobs(project, url, owners) as editing:
        state = editing.state
        kept_back: set[str] = set()  # outputs of jobs a live worker holds: neither forgotten nor removed
        for key in owners:
            record = state.job(key) or loaded.jobs[key]
            kept = [out for out in record.outputs if out not in orphans]
            if kept == record.outputs:
                continue
            if key in editing.refused or not editing.update(key, outputs=kept):
                kept_back.update(record.outputs, loaded.jobs[key].outputs)
        removed = [path for path in doomed if path not in kept_back
                   and not any(t.kept == path and t.output in kept_back for t in loaded.takes)]
        for path in removed:
            (project.output_dir / path).unlink(missing_ok=True)
            _remove_empty_parents(project.output_dir, project.output_dir / path)
            print(f"removed: {path}")  # after the claims: a held job's files are never listed as going
        refused = editing.refused
    for key, who in sorted(refused.items()):
        outputs = ", ".join(sorted(orphans.intersection(loaded.jobs[key].outputs)))
        print(f"kept, a worker holds its job right now ({who}): {outputs}; run `{command_again(args, 'prune', args.manifest, '--yes')}` again once it is "
              "settled")
    print(f"removed {len(removed)} file(s)")
    return EXIT_JOBS_FAILED if refused else EXIT_OK


def _remove_empty_parents(top, path) -> None:
    parent = path.parent
    while parent != top and top in parent.parents:
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = parent.parent
