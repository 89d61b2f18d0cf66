"""Shared fixtures. Async tests run under trio through anyio's pytest plugin."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from lipbatch import cli

# Tests never touch the user's real cache folder; subprocesses inherit this too.
os.environ["LIPBATCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="lipbatch-test-cache-")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "trio"


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """The CLI in-process: exit code, stdout and stderr."""
    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
