"""Where a campaign's state is, for the commands that read or change it: ``--state URL``,
``LIPBATCH_STATE_URL`` or the manifest's ``state:`` (``backend.state_url``), else the local files;
and how a command that changes jobs reports the ones a live worker holds (``lipbatch.state.edit``)."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Iterable, Mapping

from lipbatch.model import Job, Project
from lipbatch.state.backend import STATE_OPTION_HELP, state_url


def add_state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", metavar="URL", help=STATE_OPTION_HELP)


def campaign_state_url(args: argparse.Namespace, project: Project) -> str | None:
    """The shared state's URL (``--state`` wins over the variable, which wins over the manifest), or None."""
    return state_url(args.state, os.environ, project.state_url)


def report_refused(jobs: Iterable[Job], refused: Mapping[str, str], again: str) -> None:
    """One line per job left unchanged because a live worker holds it; ``again``: the command to rerun."""
    for job in jobs:
        if job.key in refused:
            print(f"not changed, a worker holds it right now ({refused[job.key]}): {job.output}; "
                  f"run `{again}` again once it is settled")


def command_again(args: argparse.Namespace, *words: str) -> str:
    """The command line to run once the workers have settled what they hold: ``lipbatch <words>``
    with this invocation's ``--sandbox`` and ``--state``."""
    flags = ["--sandbox"] * args.sandbox + (["--state", args.state] if args.state else [])
    return shlex.join(["lipbatch", *words, *flags])
