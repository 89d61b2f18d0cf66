"""Fixtures for the spend tests: the runner tests' media and in-process sandbox harness."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))

from harness import Harness  # noqa: E402
from kinds import Media  # noqa: E402


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("spend-media"))


@pytest.fixture
def harness() -> type[Harness]:
    return Harness
