"""Finished rehearsal campaigns for the review tests, made with the runner tests' in-process harness.

Each is a real sandbox run (``tests/runner/harness.py``) written to the
rehearsal's paths, so the CLI reads it with ``--sandbox``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import trio
from harness import Harness, fast_options
from kinds import MODERATED_WORD, Media, write_manifest

from lipbatch.errors import EXIT_JOBS_FAILED, EXIT_OK
from lipbatch.model import Project
from lipbatch.review import rejected_takes
from lipbatch.review.judging import Verdict, decide
from lipbatch.runner import RunSummary

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests_examples"
LOCALIZATION = "localization.yaml"
#: a word of the Spanish line: its PixVerse job fails moderation, so the page has a failed cell
FAILING_WORD = "Bienvenidos"
#: the output rejected (and redone) while building the localization campaign: two takes side by side
REDONE = {"clip": "anna", "lang": "de", "account": "runway"}


@dataclass
class Campaign:
    harness: Harness
    project: Project  # the rehearsal's paths, endpoints at the harness's sandbox
    env: dict[str, str]

    @property
    def manifest(self) -> Path:
        return self.project.manifest_path

    async def run(self) -> RunSummary:
        """A run that redoes the rejected takes, as ``lipbatch run`` does."""
        options = fast_options(rejected=rejected_takes(self.project, sandbox=True))
        return await self.harness.run(self.project, options, environ=self.env)


def small_campaign(kind: str, folder: Path, media: Media, *, jobs: int = 3, moderated: set[int] | None = None,
                   ) -> Campaign:
    case = write_manifest(kind, folder, media, jobs=jobs, moderated=moderated)
    h = Harness(moderate=(MODERATED_WORD,))
    campaign = Campaign(h, h.project(case.manifest), case.env)
    summary = trio.run(campaign.run)
    assert summary.exit_code == (EXIT_JOBS_FAILED if moderated else EXIT_OK), summary.failures
    return campaign


def build_localization(folder: Path) -> Path:
    """The five-kind example run in the sandbox: one job fails moderation, one take is rejected and
    redone (take 2 beside the kept take 1). Returns the folder holding the manifest."""
    shutil.copytree(EXAMPLES, folder, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*-output", "*.lipbatch-state*", "*.review*.yaml"))
    h = Harness(moderate=(FAILING_WORD,))
    campaign = Campaign(h, h.project(folder / LOCALIZATION), {})
    first = trio.run(campaign.run)
    assert first.failed == 1 and first.done == len(campaign.project.jobs) - 1, first.failures
    redone = [job for job in campaign.project.jobs
              if (job.clip, job.lang, job.account) == tuple(REDONE.values())]
    decide(campaign.project, [Verdict(redone[0], "rejected", "lips drift after two seconds")], sandbox=True,
           by="tester")
    second = trio.run(campaign.run)
    assert second.done == 1, second.failures
    return folder


def copy_campaign(master: Path, folder: Path) -> Path:
    """A private copy (decisions, pages) of a built campaign folder; returns its manifest."""
    shutil.copytree(master, folder)
    return folder / LOCALIZATION
