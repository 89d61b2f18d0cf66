"""Fixtures for the manifest tests: tiny synthetic media, and running the CLI in-process."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import mediagen  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests_examples"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """media/ as the bad-manifest corpus expects it."""
    media = tmp_path_factory.mktemp("media")
    mediagen.make_video(media / "anna.mp4", 2, width=32, height=24, fps=6)
    mediagen.make_video(media / "ben.mp4", 2, width=32, height=24, fps=6, skin=(190, 140, 100))
    mediagen.make_video(media / "talk4.mp4", 4, width=32, height=24, fps=6, audio=True)
    mediagen.make_video(media / "long.mp4", 40, width=16, height=16, fps=1)
    mediagen.make_png(media / "host.png", width=16, height=12)
    mediagen.make_wav(media / "en.wav", 1.0)
    mediagen.make_wav(media / "de.wav", 1.2, pitch=150)
    mediagen.make_big_wav(media / "big.wav", 21 * 1024 * 1024)
    (media / "notes.txt").write_text("not media\n")
    return media


@pytest.fixture
def project_dir(tmp_path: Path, media_dir: Path) -> Path:
    """An empty folder with media/ next to where a manifest will go."""
    (tmp_path / "media").symlink_to(media_dir, target_is_directory=True)
    return tmp_path


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of manifests_examples/: its inputs and manifests only, never a run's state or outputs."""
    target = tmp_path / "manifests_examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("*lipbatch-state*", "*-output", ".*"))
    return target
