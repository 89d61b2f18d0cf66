"""`lipbatch state SUBCOMMAND`: moving and mending a campaign's state.

Sub-commands come from modules that each offer ``add_subcommands(subparsers)`` and set
``_state_main`` on their parsers: ``state_push`` (push, pull).
"""

from __future__ import annotations

import argparse
import importlib

HELP = "move a campaign's state between the local files and a shared PostgreSQL state (push, pull)"
SUBCOMMAND_MODULES = ("lipbatch.commands.state_push",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="state_command", required=True, metavar="SUBCOMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_subcommands(sub)


def main(args: argparse.Namespace) -> int:
    return args._state_main(args)
