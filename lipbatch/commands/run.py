"""`lipbatch run MANIFEST`: run every job to a verified output; safe to interrupt and rerun.

``--sandbox`` serves the emulators in this process on a free loopback port and
points every account at it (no keys needed); its emulated world (uploads,
tasks, credits, clock) is kept beside the rehearsal state, so a rerun finds
what the last one left, as at a real provider. ``--sandbox-url`` points every
account at a ``lipbatch sandbox`` already running. Both are rehearsals: their
own state file and output folder (``lipbatch.campaign``), missing credential
variables get dummy values and requests are not paced. Ctrl-C (or SIGTERM)
once: no new submissions, state recorded, exit 130; twice: stop at once.
``--only SELECTOR...`` runs the matching jobs (``lipbatch.selectors``).
``--max-credits ACCOUNT=N`` sets that account's budget for this run in place of
the manifest's (``lipbatch.budget``: the same cumulative total, so what the state
already records as charged counts). Every run ends with the closing summary
(``lipbatch.report``) on stdout, or in the ``run_finished`` event with ``--json``.
Takes rejected in review (``lipbatch review``) are made again, the rejected ones kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
from collections.abc import Mapping

import httpx
import trio

from lipbatch.budget import unknown_cost_refusals
from lipbatch.campaign import load_campaign, world_path
from lipbatch.commands.argtypes import positive
from lipbatch.commands.shared import add_state_argument, campaign_state_url
from lipbatch.errors import UsageError
from lipbatch.manifest import did_you_mean
from lipbatch.model import Project
from lipbatch.progress import open_sink
from lipbatch.report import summary_lines
from lipbatch.review import rejected_takes
from lipbatch.runner import RunOptions, point_at_sandbox, run_project
from lipbatch.sandbox.core import CONTROL_PREFIX, SandboxConfig
from lipbatch.selectors import parse_selectors, select_or_fail

HELP = "run every job of a manifest (resumable; --sandbox needs no API keys)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="the manifest YAML file")
    parser.add_argument("--only", nargs="+", metavar="SELECTOR",
                        help="run only the matching jobs: clip=anna lang=de provider=runway script=welcome "
                             "output='de/*' or a key prefix")
    parser.add_argument("--regenerate-missing", action="store_true",
                        help="pay for a new take of done jobs whose output and provider copy are both gone")
    parser.add_argument("--force", action="store_true",
                        help="replace files at output paths that lipbatch did not write (default: leave them, "
                             "skip their jobs)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--sandbox", action="store_true",
                        help="run against the built-in emulators on loopback (no credits, no keys)")
    target.add_argument("--sandbox-url", metavar="URL", help="run against a running `lipbatch sandbox` at URL")
    parser.add_argument("--jobs", type=positive(int), metavar="N",
                        help="at most N jobs in flight across all accounts (default: per-account caps only)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="resubmit jobs that failed before (never moderation failures)")
    parser.add_argument("--resubmit-unknown", action="store_true",
                        help="resubmit jobs whose create request's outcome is unknown (may pay twice)")
    parser.add_argument("--fail-fast", action="store_true",
                        help="stop submitting after the first failure (default: keep going)")
    parser.add_argument("--max-credits", action="append", metavar="ACCOUNT=N", default=[],
                        help="budget of ACCOUNT in its provider's credits for this run, in place of the "
                             "manifest's (what the state records as charged counts); repeatable")
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    add_state_argument(parser)


def max_credits(values: list[str], project: Project) -> dict[str, float]:
    """``--max-credits ACCOUNT=N`` values; nonsense and unknown-cost accounts are usage errors (exit 2)."""
    budgets: dict[str, float] = {}
    for value in values:
        name, _, number = value.partition("=")
        if name not in project.accounts:
            known = ", ".join(project.accounts)
            raise UsageError(f"--max-credits {value}: no provider account {name!r}"
                             f"{did_you_mean(name, project.accounts)} (accounts: {known})")
        try:
            budgets[name] = float(number.replace(",", "").replace("_", ""))
        except ValueError:
            raise UsageError(f"--max-credits {value}: N must be a number of credits, e.g. {name}=5000") from None
        if not budgets[name] >= 0:
            raise UsageError(f"--max-credits {value}: N must be >= 0")
    refusals = unknown_cost_refusals(project, budgets)
    if refusals:
        raise UsageError("; ".join(refusals))
    return budgets


def rerun_command(args: argparse.Namespace) -> str:
    """What a producer types to continue this run (the same manifest and target)."""
    words = ["lipbatch", "run", shlex.quote(args.manifest)]
    if args.sandbox:
        words.append("--sandbox")
    elif args.sandbox_url:
        words += ["--sandbox-url", shlex.quote(args.sandbox_url)]
    for value in args.max_credits:
        words += ["--max-credits", shlex.quote(value)]
    return " ".join(words)


def options_from_args(args: argparse.Namespace, *, time_scale: float = 1.0,
                      rejected: Mapping[str, str] | None = None,
                      budgets: dict[str, float] | None = None) -> RunOptions:
    sandboxed = bool(args.sandbox or args.sandbox_url)
    options = RunOptions(retry_failed=args.retry_failed, resubmit_unknown=args.resubmit_unknown,
                         fail_fast=args.fail_fast, max_jobs=args.jobs,
                         regenerate_missing=args.regenerate_missing, force=args.force, rejected=rejected or {},
                         max_credits=budgets or {}, rerun=rerun_command(args))
    if sandboxed:
        options = dataclasses.replace(options, sandbox=True, time_scale=time_scale, poll_min=1.0,
                                      request_rate=None)
    return options


async def sandbox_time_scale(url: str) -> float:
    """The running sandbox's time scale, so the runner's waits follow its clock (1.0 if unreadable)."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.get(url.rstrip("/") + CONTROL_PREFIX + "/config")
        return float(response.json()["time_scale"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--sandbox-url {url}: no lipbatch sandbox answers there ({exc})") from exc


async def _watch_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.is_set():
                raise KeyboardInterrupt
            stop.set()


async def _run(args: argparse.Namespace, project: Project, rejected: Mapping[str, str],
               budgets: dict[str, float]) -> int:
    stop = trio.Event()
    world = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, stop)
            time_scale = 1.0
            if args.sandbox:
                from lipbatch.sandbox.app import build_app
                from lipbatch.sandbox.server import serve

                config = SandboxConfig()
                app = build_app(config, world=world_path(project))
                world = app.state.world
                url = await nursery.start(lambda task_status: serve(app, task_status=task_status))
                time_scale = config.time_scale
                project = point_at_sandbox(project, url, in_process=True)
            elif args.sandbox_url:
                time_scale = await sandbox_time_scale(args.sandbox_url)
                project = point_at_sandbox(project, args.sandbox_url)
            with open_sink(json_lines=args.json, stream=sys.stdout) as sink:
                options = options_from_args(args, time_scale=time_scale, rejected=rejected, budgets=budgets)
                summary = await run_project(project, options, sink=sink, stop=stop, state_url=args.state_url)
            nursery.cancel_scope.cancel()
    finally:
        if world is not None:
            world.close()  # the emulated providers' world, saved for the next rehearsal, and unlocked
    if not args.json:
        print("\n".join(summary_lines(summary)), flush=True)
    return summary.exit_code


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def main(args: argparse.Namespace) -> int:
    rehearsing = bool(args.sandbox or args.sandbox_url)
    project = load_campaign(args.manifest, sandbox=rehearsing)
    args.state_url = campaign_state_url(args, project)
    rejected = rejected_takes(project, sandbox=rehearsing, url=args.state_url)
    if args.only:
        selected = select_or_fail(parse_selectors(args.only), project.jobs)
        project = dataclasses.replace(project, jobs=tuple(selected))
    budgets = max_credits(args.max_credits, project)
    try:
        return trio.run(_run, args, project, rejected, budgets)
    except BaseExceptionGroup as group:
        # nurseries wrap errors; the CLI maps LipbatchError / KeyboardInterrupt to exit codes
        raise _leaf(group) from None
