"""Command-line entry point: one sub-command per module in ``lipbatch/commands/``.

Each command module defines ``HELP``, ``add_arguments(parser)`` and
``main(args) -> int`` (an exit code from ``lipbatch.errors``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Sequence

from lipbatch import __version__
from lipbatch.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, LipbatchError
from lipbatch.oserrors import describe_os_error
from lipbatch.state import StateDamagedError, backup_path

COMMANDS = ("validate", "plan", "run", "status", "redo", "verify", "prune", "review", "state", "sandbox", "voices",
            "avatars")


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


def _repair_hint(args: argparse.Namespace, error: StateDamagedError) -> str:
    manifest = getattr(args, "manifest", None)
    rehearsal = getattr(args, "sandbox", False) or getattr(args, "sandbox_url", None)
    command = f"lipbatch state repair {shlex.quote(manifest) if manifest else 'MANIFEST'}" + (
        " --sandbox" if rehearsal else "")
    return (f"lipbatch: state damaged: {error.problem}.\n"
            "  Nothing was run: with records missing, a run could pay again for jobs already paid for.\n"
            f"  To recover: {command}\n"
            f"  (rebuilds the state from {backup_path(error.path).name} and the journal, keeps the damaged files "
            "aside, and adopts every output whose sha256 a record holds; nothing is sent to any provider)")


def _first_known(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of a nursery's error group that the CLI turns into a message (else the group)."""
    leaves: list[BaseException] = [group]
    while leaves:
        error = leaves.pop(0)
        if isinstance(error, BaseExceptionGroup):
            leaves[:0] = error.exceptions
        elif isinstance(error, LipbatchError | OSError | KeyboardInterrupt):
            return error
    return group


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            return args._module.main(args)
        except BaseExceptionGroup as group:  # several tasks failed at once: report the first one we can name
            raise _first_known(group) from None
    except StateDamagedError as exc:
        print(_repair_hint(args, exc), file=sys.stderr)
        return EXIT_INVALID
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
    except OSError as exc:  # the last net: every file-system failure is a message, never a traceback
        print(f"lipbatch: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    raise SystemExit(main())
