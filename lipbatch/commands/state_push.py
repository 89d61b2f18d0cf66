"""`lipbatch state push MANIFEST --to URL` / `lipbatch state pull MANIFEST --from URL`.

Push copies the campaign's local state (snapshot + journal, read under its lock so no
run writes meanwhile) into the shared PostgreSQL state; pull copies a shared
campaign back into the local files. Either refuses a target that already holds a
different state, and is a no-op when it holds the very same records. ``--sandbox``
moves the rehearsal's state. The campaign is named after the state file (or
``?campaign=NAME`` in the URL), as for ``lipbatch run --state``.

These are actions of ``lipbatch state`` (``commands/state.py``), added there by
``add_subcommands``; each sets ``_state_main``, which ``state.main`` calls.
"""

from __future__ import annotations

import argparse

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_OK, LipbatchError
from lipbatch.state import State, read_state
from lipbatch.state.backend import campaign_name, is_postgres_url
from lipbatch.state.lock import acquire_lock, release_lock
from lipbatch.state.postgres import pull, push, same_records
from lipbatch.state.postgres.transfer import counts
from lipbatch.state.replay import Loaded


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    for name, direction, help_, run in (
        ("push", "--to", "copy the local state of a manifest into a shared PostgreSQL state", push_main),
        ("pull", "--from", "copy a shared PostgreSQL state into the manifest's local state file", pull_main),
    ):
        parser = sub.add_parser(name, help=help_, description=help_)
        parser.add_argument("manifest", help="the manifest YAML file")
        parser.add_argument(direction, dest="url", required=True, metavar="URL",
                            help="postgresql://[user@]host[:port]/database[?campaign=NAME] (password from "
                                 "PGPASSWORD or ~/.pgpass)")
        parser.add_argument("--sandbox", action="store_true", help="the rehearsal's state instead")
        parser.set_defaults(_state_main=run)


def _checked(url: str) -> str:
    if not is_postgres_url(url):
        raise LipbatchError("the shared state is addressed as postgresql://host/database")
    return url


def push_main(args: argparse.Namespace) -> int:
    url = _checked(args.url)
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    path = project.state_path
    if not path.exists():
        raise LipbatchError(f"nothing to push: there is no local state at {path}")
    lock = acquire_lock(path)  # no local run writes while it is copied
    try:
        loaded = read_state(path)
        where, copied = push(loaded, url, campaign_name(path), manifest=project.manifest_path.name)
    finally:
        release_lock(path, lock)
    if copied:
        print(f"pushed {counts(loaded)} from {path} to {where}")
    else:
        print(f"{where} already holds exactly this state: nothing copied")
    return EXIT_OK


def pull_main(args: argparse.Namespace) -> int:
    url = _checked(args.url)
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    where, loaded = pull(url, campaign_name(project.state_path))
    with State.open(project.state_path) as state:
        if state.jobs or state.uploads or state.takes:
            if same_records(Loaded(jobs=state.jobs, uploads=state.uploads, takes=state.takes), loaded):
                print(f"{state.path} already holds exactly this state: nothing copied")
                return EXIT_OK
            raise LipbatchError(f"{state.path} already holds a different state ({len(state.jobs)} job(s)); nothing "
                                "was copied. Push it, or move it away first")
        state.jobs.update(loaded.jobs)
        state.uploads.update(loaded.uploads)
        state.takes.extend(loaded.takes)
        state.compact()
    print(f"pulled {counts(loaded)} from {where} to {project.state_path}")
    return EXIT_OK

