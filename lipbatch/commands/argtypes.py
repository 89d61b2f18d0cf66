"""Argument types shared by the commands: a bad number is a usage error (exit 2), never a traceback later."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """``kind`` greater than zero."""
    def parse(value: str) -> int | float:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return number
    return parse


def fraction(value: str) -> float:
    """A share from 0 to 1."""
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return number


def port(value: str) -> int:
    """A TCP port to listen on; 0 asks the system for a free one."""
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535 (0: a free port)")
    return number
