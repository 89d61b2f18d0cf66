"""A manifest as the commands see it: the real campaign, or its rehearsal (``--sandbox``).

Every command that reads or writes a campaign's state (run, plan, status,
verify, prune, redo, review) takes ``--sandbox`` to mean the rehearsal: its
own state file and output folder (``lipbatch.paths``), so sandbox results
never count as deliverables and a real run never sees them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lipbatch.manifest import load_project
from lipbatch.model import Project
from lipbatch.paths import rehearsal_output_dir, rehearsal_state_path


def add_campaign_arguments(parser: argparse.ArgumentParser, *, rehearsal_help: str | None = None) -> None:
    parser.add_argument("manifest", help="the manifest YAML file")
    if rehearsal_help is not None:
        parser.add_argument("--sandbox", action="store_true", help=rehearsal_help)


def rehearsal(project: Project) -> Project:
    """The same jobs, with the rehearsal's state file and output folder."""
    return dataclasses.replace(project, output_dir=rehearsal_output_dir(project.output_dir),
                               state_path=rehearsal_state_path(project.state_path))


def load_campaign(manifest: str | Path, *, sandbox: bool = False) -> Project:
    """Load and validate ``manifest``; the rehearsal's paths when ``sandbox``."""
    project = load_project(Path(manifest))
    return rehearsal(project) if sandbox else project


def world_path(project: Project) -> Path:
    """Where ``run --sandbox`` keeps the emulated providers' world (beside the rehearsal state)."""
    return project.state_path.with_name(project.state_path.name + ".world")
