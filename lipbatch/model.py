"""The expanded, provider-ready shape of a manifest: accounts, inputs and jobs.

This is the contract between ``manifest`` (which produces it), ``plan``,
``runner`` and ``providers/*`` (which consume it). Everything here is plain,
immutable data so it can be hashed, compared and serialised.

Per-kind meaning of ``Job.inputs`` roles and ``Job.params`` keys (the
canonical request; only keys that are set appear, values are JSON scalars):

=========================  ==========================  ==================================================
kind                       inputs (role -> InputRef)   params
=========================  ==========================  ==================================================
runway-lipsync             ``image`` xor ``video``;     ``voice_id`` + ``text`` (TTS) unless audio given;
                           ``audio`` optional           ``model_id``; ``exploreMode``
runway-act-two-voice       ``video`` (3-30 s)           ``voice_id``; ``exploreMode``
magichour-lipsync          ``video``, ``audio``         ``start_seconds``, ``end_seconds`` (always set);
                                                        ``max_fps_limit``; ``generation_mode``
aimlapi-pixverse-lipsync   ``video``; ``audio``         ``speaker`` + ``text`` unless audio given
                           optional
creatify-lipsync           ``audio`` optional (URL      ``avatar_id``; ``voice_id`` + ``text`` unless
                           only)                        audio; ``aspect_ratio``; ``model_version``;
                                                        ``captions`` (bool); ``background_url``
=========================  ==========================  ==================================================

Provider-account options from the manifest (exploreMode, model_id, ...) are
folded into ``params`` by the expansion, so ``params`` alone (with input
hashes) determines the request and therefore the job key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS: tuple[str, ...] = (
    "runway-lipsync",
    "runway-act-two-voice",
    "magichour-lipsync",
    "aimlapi-pixverse-lipsync",
    "creatify-lipsync",
)


@dataclass(frozen=True)
class Account:
    """One named provider account from the manifest's ``providers`` section.

    ``credentials`` maps a role to the *name* of an environment variable
    (``{"token": "USEAPI_TOKEN"}``, ``{"api_id": "CREATIFY_API_ID", "api_key": "CREATIFY_API_KEY"}``);
    values are read from the environment only when a run needs them.
    """

    name: str
    kind: str
    base_url: str
    credentials: Mapping[str, str]
    concurrency: int
    options: Mapping[str, Any] = field(default_factory=dict)
    #: None for the provider itself; "in-process" for ``--sandbox``; the URL for ``--sandbox-url``
    sandbox: str | None = None
    budget: float | None = None  # most this account may spend, in its provider's credits (``lipbatch.budget``)
    allow_unknown_cost: bool = False  # jobs without a documented price may run under a budget

    @property
    def endpoint(self) -> str:
        """Who issues this account's task ids and upload handles: they are valid there only.

        The in-process sandbox gets a new port every run but keeps its world beside the
        rehearsal state, so its identity is not its URL.
        """
        where = "sandbox:in-process" if self.sandbox == IN_PROCESS else self.base_url.rstrip("/")
        return f"{self.kind} {self.name} {where}" + (" (sandbox)" if self.sandbox else "")


IN_PROCESS = "in-process"


@dataclass(frozen=True)
class InputRef:
    """One input file of a job: a local file (with its content hash) or a remote URL."""

    role: str  # "video" | "image" | "audio"
    media_type: str  # MIME type, e.g. "video/mp4", "audio/wav", "image/png"
    path: Path | None = None  # absolute local path
    url: str | None = None  # https URL passed through to the provider
    sha256: str | None = None  # hex digest of the local file's bytes
    size: int | None = None
    duration: float | None = None  # seconds, probed for local media

    @property
    def identity(self) -> str:
        """What the job key hashes for this input: content, never the path."""
        return f"sha256:{self.sha256}" if self.sha256 else f"url:{self.url}"


@dataclass(frozen=True)
class Job:
    """One unit of paid work: one request to one provider account.

    ``key`` is the content address (see ``manifest.job_key``). Jobs whose
    requests are identical share a key and are merged: ``outputs`` lists every
    output path (relative to the output folder, POSIX separators); the runner
    pays once and copies the result to the others.
    """

    key: str
    account: str
    kind: str
    clip: str
    script: str | None
    lang: str | None
    voice: str | None
    outputs: tuple[str, ...]
    inputs: Mapping[str, InputRef]
    params: Mapping[str, Any]
    expected_seconds: float | None = None  # output duration estimate (audio / clip / window length)
    take: int = 1  # which take of its outputs the runner is making (``lipbatch redo`` asks for another)

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def reference(self) -> str:
        """What the provider's reference field carries: the key, plus the take after the first,
        so looking up a redo never finds the earlier take's task."""
        return self.key if self.take == 1 else f"{self.key}.take{self.take}"


@dataclass(frozen=True)
class Project:
    """A validated, expanded manifest: what ``plan`` and ``run`` work from."""

    manifest_path: Path
    output_dir: Path
    state_path: Path
    accounts: Mapping[str, Account]
    jobs: tuple[Job, ...]
    budget_usd: float | None = None  # the campaign's budget in US dollars (``lipbatch.budget``)
    state_url: str | None = None  # the manifest's ``state:`` (a shared PostgreSQL state), if any
