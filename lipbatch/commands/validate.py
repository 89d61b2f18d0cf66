"""`lipbatch validate` (placeholder until implemented)."""

from __future__ import annotations

import argparse

from lipbatch.errors import UsageError

HELP = "validate (not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs="*")


def main(args: argparse.Namespace) -> int:
    raise UsageError("validate is not implemented yet")
