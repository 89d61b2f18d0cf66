"""Command-line entry point: one sub-command per module in ``lipbatch/commands/``.

Each command module defines ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int`` (an exit code from ``lipbatch.errors``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lipbatch import __version__
from lipbatch.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, LipbatchError

COMMANDS = ("validate", "plan", "run", "status", "redo", "verify", "prune", "review", "sandbox", "voices", "avatars", "state")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipbatch",
        description="Turn a YAML manifest into a batch of lip-synced videos.",
    )
    parser.add_argument("--version", action="version", version=f"lipbatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"lipbatch.commands.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._module.main(args)
    except KeyboardInterrupt:
        print("lipbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into e.g. `head`: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except LipbatchError as exc:
        print(f"lipbatch: {exc}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
