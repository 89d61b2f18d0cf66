"""Fixtures for the review tests: finished rehearsal campaigns made with the in-process sandbox harness."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
sys.path.insert(0, str(Path(__file__).parent))

from campaigns import Campaign, build_localization, small_campaign  # noqa: E402
from harness import Harness  # noqa: E402
from kinds import MODERATED_WORD, Media  # noqa: E402

SMALL_KIND = "runway-lipsync"


@pytest.fixture(scope="session")
def review_media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("review-media"))


@pytest.fixture(scope="session")
def localization_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples' five-kind campaign, rehearsed once per session (see ``build_localization``)."""
    return build_localization(tmp_path_factory.mktemp("localization"))


@pytest.fixture(scope="session")
def small_master(tmp_path_factory: pytest.TempPathFactory, review_media: Media) -> Path:
    folder = tmp_path_factory.mktemp("small")
    small_campaign(SMALL_KIND, folder, review_media, jobs=3, moderated={2})
    return folder


@pytest.fixture
def small(small_master: Path, tmp_path: Path) -> Campaign:
    """A private copy of a finished 3-job rehearsal: two takes done, one failed moderation."""
    shutil.copytree(small_master, tmp_path / "c")
    h = Harness(moderate=(MODERATED_WORD,))
    return Campaign(h, h.project(tmp_path / "c" / f"{SMALL_KIND}.yaml"), {})
