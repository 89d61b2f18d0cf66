"""The exception hierarchy and exit codes, shared by every command.

Provider errors are classified once, here, so the runner can decide what to do
(wait, retry, stop an account, fail a job) without knowing which API said it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_JOBS_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


class LipbatchError(Exception):
    """Base class for every error lipbatch reports to a user."""


class UsageError(LipbatchError):
    """Bad command-line usage or an unusable environment (exit 2)."""


class ManifestError(LipbatchError):
    """The manifest is invalid; ``problems`` holds every finding, already formatted."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class StateLockedError(LipbatchError):
    """Another live process holds the state file's lock."""


class MissingCredentialError(LipbatchError):
    """A provider account's credential environment variable is not set."""


class ProviderError(LipbatchError):
    """A provider refused or failed a request. Subclasses say what the runner should do.

    ``status`` is the HTTP status when there was one; ``message`` is the
    provider's own reason, never containing credentials.
    """

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}" if self.status else self.message


class TransientError(ProviderError):
    """5xx, dropped connections, timeouts: retry a bounded number of times."""

    retryable = True


class RateLimitedError(ProviderError):
    """A plain 429 / throttle: wait (Retry-After when given) and retry, without limit."""

    retryable = True


class BusyError(RateLimitedError):
    """The account's concurrency slots are full (useapi.net's busy 429): wait for a slot."""


class OutOfCreditsError(ProviderError):
    """The account has no credits left: stop submitting to it; other accounts go on."""


class PermanentError(ProviderError):
    """400/401/403/404/422 and the like: the job fails with the provider's reason."""


class ModerationError(PermanentError):
    """The provider's moderation rejected the job. Never retried: repeats can suspend accounts."""


class NotFoundError(PermanentError):
    """The task, asset or result is unknown to the provider (404)."""
