"""Fixtures for the runner tests: tiny media and the in-process sandbox harness."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Harness  # noqa: E402
from kinds import Media  # noqa: E402


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("runner-media"))


@pytest.fixture
def harness() -> type[Harness]:
    return Harness
