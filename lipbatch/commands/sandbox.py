"""`lipbatch sandbox`: serve the provider emulators on loopback for rehearsals and tests.

The first line on stdout is the base URL (``http://127.0.0.1:<port>``). ``--world DIR`` serves a
persistent world (see ``lipbatch/sandbox/world.py``): a restart on the same folder continues where
the last process stopped, even after ``kill -9``. SIGINT/SIGTERM stop the server cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
from functools import partial
from pathlib import Path

import trio

from lipbatch.commands.argtypes import fraction, port, positive
from lipbatch.errors import EXIT_OK
from lipbatch.sandbox.core import SandboxConfig

HELP = "serve emulators of every provider API on loopback (no credits spent)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SandboxConfig()
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=0, help="port (default 0: any free port)")
    parser.add_argument("--world", type=Path, metavar="DIR",
                        help="keep the emulated world in DIR (created if missing) and continue it on restart")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host (the emulators accept any token)")
    parser.add_argument("--job-seconds", type=float, default=defaults.job_seconds,
                        help="virtual seconds each job spends processing")
    parser.add_argument("--time-scale", type=positive(float), default=defaults.time_scale,
                        help="real seconds per virtual second (0.01 = 100x faster)")
    parser.add_argument("--max-jobs", type=positive(int), default=None,
                        help="per-account concurrency cap (default: each provider's own)")
    parser.add_argument("--rate-429", type=fraction, default=0.0, help="fraction of requests answered 429")
    parser.add_argument("--rate-5xx", type=fraction, default=0.0, help="fraction answered 500/502/503")
    parser.add_argument("--rate-reset", type=fraction, default=0.0,
                        help="fraction whose connection drops mid-response")
    parser.add_argument("--rate-truncate", type=fraction, default=0.0,
                        help="fraction of result downloads cut short")
    parser.add_argument("--download-ttl", type=positive(float), default=None,
                        help="virtual seconds a result URL stays valid (default: forever)")
    parser.add_argument("--moderate", action="append", default=[], metavar="WORD",
                        help="jobs whose text contains WORD fail moderation (repeatable)")
    parser.add_argument("--credits", type=float, default=None, help="credits per account (default: unlimited)")
    parser.add_argument("--seed", type=int, default=0, help="seed for reproducible faults and ids")
    parser.add_argument("--pixverse-success-status", choices=("succeeded", "completed"),
                        default=defaults.pixverse_success_status)
    parser.add_argument("--creatify-aurora-pricing", choices=("per_block", "per_second"),
                        default=defaults.creatify_aurora_pricing)


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        job_seconds=args.job_seconds, time_scale=args.time_scale, max_jobs=args.max_jobs,
        rate_429=args.rate_429, rate_5xx=args.rate_5xx, rate_reset=args.rate_reset,
        rate_truncate=args.rate_truncate, download_ttl=args.download_ttl, moderate=tuple(args.moderate),
        credits=args.credits, seed=args.seed, pixverse_success_status=args.pixverse_success_status,
        creatify_aurora_pricing=args.creatify_aurora_pricing,
    )


def main(args: argparse.Namespace) -> int:
    from lipbatch.sandbox.app import build_app
    from lipbatch.sandbox.server import check_host, serve

    check_host(args.host, args.allow_remote)
    app = build_app(config_from_args(args), world=args.world)
    world = app.state.world
    if world is not None:
        how = (f"continued at virtual second {app.state.sandbox.now():.1f}" if world.loaded else "new")
        print(f"sandbox world {world.folder}: {how}", file=sys.stderr)

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(partial(serve, app, host=args.host, port=args.port,
                                                  allow_remote=args.allow_remote))
                print(url, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    finally:
        if world is not None:
            world.close()
    print("sandbox stopped", file=sys.stderr)
    return EXIT_OK
