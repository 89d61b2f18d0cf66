"""Shared fixtures. Async tests run under trio through anyio's pytest plugin."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tests never touch the user's real cache folder; subprocesses inherit this too.
os.environ["LIPBATCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="lipbatch-test-cache-")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "trio"
