"""Where a campaign's files live: real and rehearsal state, side files, outputs, kept takes.

One place names every file lipbatch writes for a manifest, so validation can
refuse an output that would land on one of them and the runner, ``verify`` and
``prune`` agree on what is lipbatch's.

Readings where the lifecycle issue left room:

- A rehearsal (``--sandbox``/``--sandbox-url``) keeps its own state and outputs:
  ``campaign.lipbatch-state.json`` becomes ``campaign.lipbatch-state.sandbox.json``
  and ``campaign-output/`` becomes ``campaign-sandbox-output/`` (a custom
  ``output_dir: renders`` becomes ``renders-sandbox/``). Rehearsal results can
  therefore never count as deliverables.
- Earlier takes of an output are kept under ``<output_dir>/takes/``, mirroring
  the output's path with ``.take<N>`` before the suffix; ``takes/`` is reserved
  (no output template may write there).
- ``lipbatch review`` writes its page and thumbnails under ``<output_dir>/review/``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

TAKES_DIR = "takes"
REVIEW_DIR = "review"
#: suffixes of files (and one folder) kept beside a state file ``S``: ``S.journal``, ...
STATE_SIDE_SUFFIXES = (".journal", ".lock", ".backup", ".log", ".world", ".timings")


def rehearsal_state_path(state_path: Path) -> Path:
    name = state_path.name
    if name.endswith(".json"):
        return state_path.with_name(name[: -len(".json")] + ".sandbox.json")
    return state_path.with_name(name + ".sandbox")


def rehearsal_output_dir(output_dir: Path) -> Path:
    name = output_dir.name
    if name.endswith("-output"):
        return output_dir.with_name(name[: -len("-output")] + "-sandbox-output")
    return output_dir.with_name(name + "-sandbox")


def state_side_files(state_path: Path) -> tuple[Path, ...]:
    """The state file and every file or folder lipbatch keeps beside it."""
    return (state_path, *(state_path.with_name(state_path.name + suffix) for suffix in STATE_SIDE_SUFFIXES))


def campaign_files(state_path: Path) -> tuple[Path, ...]:
    """State and side files of both the real campaign and its rehearsal."""
    return (*state_side_files(state_path), *state_side_files(rehearsal_state_path(state_path)))


def take_path(output: str, take: int) -> str:
    """Where take ``take`` of ``output`` (relative, POSIX) is kept once a newer take replaces it."""
    path = PurePosixPath(output)
    return str(PurePosixPath(TAKES_DIR, path.parent, f"{path.stem}.take{take}{path.suffix}"))
