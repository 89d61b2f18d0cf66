"""How a job's task ends: one exception carrying the outcome, raised from any phase."""

from __future__ import annotations

OUTCOMES = ("done", "skipped", "failed", "unknown", "not_run", "lost", "blocked")


class JobEnded(Exception):
    """Unwinds a job's task with its outcome (one of ``OUTCOMES``) and the reason a user reads."""

    def __init__(self, outcome: str, reason: str | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.reason = reason
