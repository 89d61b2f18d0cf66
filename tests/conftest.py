"""Shared fixtures. Async tests run under trio through anyio's pytest plugin."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "trio"
