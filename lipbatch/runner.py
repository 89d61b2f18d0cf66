"""The engine's entry point: ``run_project`` runs every job of a ``Project`` to a verified output.

The engine itself lives in ``lipbatch.engine`` split by phase (accounts, submit, wait, fetch,
outputs, runner); this module is what commands, tests and benchmarks import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx
import trio

from lipbatch.engine.accounts import credential_names, point_at_sandbox, resolve_secrets
from lipbatch.engine.options import Event, RunOptions, RunSummary, Sink
from lipbatch.engine.outputs import copy_file, remove_partial_files
from lipbatch.engine.runner import Runner
from lipbatch.hashing import HashCache
from lipbatch.model import Project
from lipbatch.state.backend import open_backend

__all__ = ["Event", "HashCache", "RunOptions", "RunSummary", "Runner", "Sink", "copy_file", "credential_names",
           "point_at_sandbox", "remove_partial_files", "resolve_secrets", "run_project"]


async def run_project(
    project: Project,
    options: RunOptions | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sink: Sink | None = None,
    stop: trio.Event | None = None,
    environ: Mapping[str, str] | None = None,
    state_url: str | None = None,
) -> RunSummary:
    """Run every job of ``project``; the library entry point behind ``lipbatch run``.

    ``transport`` replaces the network (tests: ``httpx.ASGITransport`` of the
    sandbox app). Setting ``stop`` ends the run gracefully (Ctrl-C): nothing
    new is submitted and the summary says ``interrupted``. Raises
    ``MissingCredentialError`` before any request and ``StateLockedError`` when
    another run holds the state. ``state_url``: a shared PostgreSQL state (``lipbatch.state.backend``)
    instead of the local files; this run is then one worker among any number.
    """
    options = options or RunOptions()
    environ = os.environ if environ is None else environ
    redact = [environ[variable] for account in project.accounts.values()
              for variable in credential_names(account).values() if environ.get(variable)]
    own_transport = transport is None
    base = transport or httpx.AsyncHTTPTransport(retries=0)
    try:
        with open_backend(project, state_url, redact=redact) as state:
            state.group_commit = True  # one fsync for many jobs' changes, awaited before any request
            runner = Runner(project, options, state, transport=base, environ=environ, sink=sink, stop=stop)
            return await runner.run()
    finally:
        if own_transport:
            await base.aclose()
