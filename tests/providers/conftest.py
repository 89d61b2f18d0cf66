"""Fixtures for the provider client tests: tiny local input files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tiny_video(tmp_path: Path) -> Path:
    path = tmp_path / "face.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    return path


@pytest.fixture
def tiny_audio(tmp_path: Path) -> Path:
    path = tmp_path / "line.wav"
    path.write_bytes(b"RIFF....WAVEfmt fake audio")
    return path
