"""The spend tests reuse the runner tests' fixtures: tiny media and the in-process sandbox harness."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "runner"
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(RUNNER))

_spec = importlib.util.spec_from_file_location("runner_fixtures", RUNNER / "conftest.py")
assert _spec is not None and _spec.loader is not None
_runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_runner)

media = _runner.media
harness = _runner.harness
