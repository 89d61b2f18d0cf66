"""Fixtures for the review tests: finished rehearsal campaigns made with the in-process sandbox harness."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
sys.path.insert(0, str(Path(__file__).parent))

from campaigns import build_localization  # noqa: E402
from kinds import Media  # noqa: E402


@pytest.fixture(scope="session")
def review_media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("review-media"))


@pytest.fixture(scope="session")
def localization_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples' five-kind campaign, rehearsed once per session (see ``build_localization``)."""
    return build_localization(tmp_path_factory.mktemp("localization"))
