"""Plumbing every benchmark shares: manifests of N jobs, a served sandbox, request counts, tables.

Why a separate sandbox *process*: on a small machine (2 cores) an emulator in
the runner's own process would steal the runner's CPU and GIL and the
benchmark would measure both at once. ``lipbatch sandbox`` on 127.0.0.1 port 0
is what a user rehearses against, and its ``/_sandbox`` control routes give the
request counts. (``overhead.py`` deliberately uses the in-process app instead.)

Scaled time: a benchmark picks a real job time ``T`` (e.g. 0.2 s) and a
virtual job time (default 60 s, about what the providers' docs report: PixVerse's
sample run took 34 s, Magic Hour's median is ~4 min). The sandbox and the
runner then share ``time_scale = T / virtual``, so the runner's own constants
(poll 3..30 s, backoff) keep their real-world proportion to a job's length.

Rendering: the emulators render each result with PyAV on a request's path
(useapi: the first poll that sees a task finished; AIML and Creatify: the
create), 20-100 ms of real time per job, i.e. 10-50 % of T = 0.2 s that would
be charged to the runner although a real provider's result is ready when its
task ends. By default the benchmark's sandbox therefore answers every render
with one pre-rendered clip (``stub_render``); ``real_render`` keeps the
emulators' own renders (the result is then also content-correct).

Media and provider ids come from the test helpers (``tests/manifest/mediagen.py``
through ``tests/runner/kinds.py``), so benchmarks and tests build the same
tiny inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import trio
import yaml

ROOT = Path(__file__).resolve().parents[1]
for _helpers in (ROOT / "tests" / "runner", ROOT / "tests" / "manifest"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

from kinds import PIXVERSE_SPEAKER, RUNWAY_VOICES, Media, creatify_ids, provider_accounts  # noqa: E402

from lipbatch.manifest import load_project  # noqa: E402
from lipbatch.model import Project  # noqa: E402
from lipbatch.runner import RunOptions, RunSummary, point_at_sandbox, run_project  # noqa: E402

LOOPBACK = "127.0.0.1"
VIRTUAL_JOB_SECONDS = 60.0
TEXT_KINDS = ("runway-lipsync", "aimlapi-pixverse-lipsync", "creatify-lipsync")
BENCH_KINDS = (*TEXT_KINDS, "magichour-lipsync")
CATEGORIES = ("upload", "create", "poll", "download", "other")
FAULTS = {"rate_429": 0.20, "rate_5xx": 0.05}  # the faulted run: 20 % 429s + 5 % 5xx


# -- manifests -----------------------------------------------------------------------------------


def _voice_id(kind: str) -> str:
    if kind == "runway-lipsync":
        return RUNWAY_VOICES[0]
    if kind == "aimlapi-pixverse-lipsync":
        return PIXVERSE_SPEAKER
    return creatify_ids()[1]


def write_manifest(directory: Path, media: Media, jobs: int, *, kind: str = "runway-lipsync",
                   accounts: int = 1, concurrency: int = 5) -> tuple[Path, dict[str, str]]:
    """A manifest of ``jobs`` jobs per account, all on one face clip; returns (path, environ).

    Every job is one script with one ``en`` line whose text (or, for Magic Hour,
    audio file) differs, so no two jobs merge, and the clip is shared: it is the
    one input uploaded (once per account) where the kind uploads at all.
    Several accounts get their own credential variables, so the sandbox sees
    separate provider accounts.
    """
    if kind not in BENCH_KINDS:
        raise ValueError(f"benchmarks build manifests for {', '.join(BENCH_KINDS)}, not {kind}")
    directory.mkdir(parents=True, exist_ok=True)
    names, providers, environ = provider_accounts(kind, accounts, concurrency, var_prefix="BENCH",
                                                  value_prefix="bench")
    clip = {"avatar": creatify_ids()[0]} if kind == "creatify-lipsync" else {"video": str(media.video)}
    data: dict[str, Any] = {"version": 1, "providers": providers, "clips": {"face": clip}}
    if kind in TEXT_KINDS:
        data["voices"] = {"narrator": {kind: _voice_id(kind)}}
    scripts: dict[str, Any] = {}
    job_entries = []
    for index, name in enumerate(names):
        own = []
        for i in range(jobs):
            script = f"{name}_{i:05d}"
            if kind == "magichour-lipsync":
                line: Any = {"audio": str(media.wav(index * jobs + i, seconds=1.0))}
                scripts[script] = {"lines": {"en": line}}
            else:
                scripts[script] = {"voice": "narrator",
                                   "lines": {"en": f"Line {i:05d} of account {name} is spoken here."}}
            own.append(script)
        job_entries.append({"provider": name, "clips": ["face"], "scripts": own, "languages": ["en"],
                            "output": "{provider}/{script}.{lang}.mp4"})
    data["scripts"] = scripts
    data["jobs"] = job_entries
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, environ


# -- the served sandbox --------------------------------------------------------------------------


class ServedSandbox:
    """``lipbatch sandbox`` in a child process on 127.0.0.1, driven through its control routes."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30.0)

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = self.http.post("/_sandbox/config", json=changes)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.http.post("/_sandbox/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.http.get("/_sandbox/stats")
        response.raise_for_status()
        return response.json()

    def publish(self, size: int) -> dict[str, Any]:
        """A synthetic result of ``size`` bytes, generated as it is served."""
        response = self.http.post("/_sandbox/publish", params={"size": size, "filename": "large.bin"})
        response.raise_for_status()
        return response.json()


@contextlib.contextmanager
def served_sandbox(*, real_render: bool = False, **config: Any) -> Iterator[ServedSandbox]:
    """Start a sandbox on a free loopback port, apply ``config`` (SandboxConfig fields), stop it after.

    Without ``real_render`` every result is one pre-rendered clip (see the module docstring).
    """
    command = [sys.executable, "-m", "lipbatch", "sandbox", "--host", LOOPBACK, "--port", "0"]
    if not real_render:
        command = [sys.executable, str(Path(__file__).resolve()), "serve-stub-render"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    sandbox: ServedSandbox | None = None
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith(f"http://{LOOPBACK}:"):
            raise RuntimeError(f"the sandbox did not start on loopback (printed {url!r})")
        sandbox = ServedSandbox(process, url)
        if config:
            sandbox.configure(**config)
        yield sandbox
    finally:
        if sandbox is not None:
            sandbox.http.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- running lipbatch ----------------------------------------------------------------------------


def scaled_options(scale: float, **changes: Any) -> RunOptions:
    """The runner's defaults on the sandbox's clock (``time_scale`` scales poll intervals, backoff,
    the job timeout and the request pace alike)."""
    return dataclasses.replace(RunOptions(sandbox=True, time_scale=scale), **changes)


def project_on(manifest: Path, url: str) -> Project:
    return point_at_sandbox(load_project(manifest), url)


def run_lipbatch(project: Project, options: RunOptions, *, environ: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> tuple[RunSummary, float]:
    """One ``run_project`` under trio; returns the summary and its wall time in seconds."""
    async def main() -> tuple[RunSummary, float]:
        start = time.perf_counter()
        summary = await run_project(project, options, transport=transport, environ=dict(environ or {}))
        return summary, time.perf_counter() - start

    return trio.run(main)


def require_all_done(summary: RunSummary, what: str) -> None:
    """A benchmark figure means nothing unless every job finished."""
    if summary.done + summary.skipped != summary.total:
        raise SystemExit(f"{what}: only {summary.done + summary.skipped} of {summary.total} jobs finished "
                         f"({summary.failed} failed, {summary.not_run} not run): "
                         f"{list(summary.failures.items())[:3]}")


# -- request accounting --------------------------------------------------------------------------


def category(route: str) -> str:
    """upload | create | poll | download | other, from a stats route like ``"POST /v1/lip-sync"``."""
    method, _, path = route.partition(" ")
    if path.startswith("/cdn/"):
        return "download"
    if "upload" in path or "asset" in path:
        return "upload" if method in ("POST", "PUT") else "other"
    if method == "POST":
        return "create"
    if method == "GET":
        return "poll"
    return "other"


class TimingTransport(httpx.AsyncBaseTransport):
    """Client-side latency of every request, by category (to tell the runner's waits from HTTP time)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport(retries=0)
        self.latencies: dict[str, list[float]] = {c: [] for c in CATEGORIES}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        start = time.perf_counter()
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.latencies[category(f"{request.method} {request.url.path}")].append(time.perf_counter() - start)

    def mean_ms(self, what: str) -> float:
        values = self.latencies[what]
        return 1000 * sum(values) / len(values) if values else float("nan")

    async def aclose(self) -> None:
        await self.inner.aclose()


def by_category(stats: Mapping[str, Any]) -> dict[str, int]:
    """Provider requests (the sandbox's stats) summed per category."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for route, n in stats["requests_by_route"].items():
        counts[category(route)] += n
    return counts


# -- output --------------------------------------------------------------------------------------


def ideal_makespan(jobs: int, cap: int, job_seconds: float) -> float:
    """Every slot busy all the time: ``ceil(N/C)`` waves of ``T``."""
    return math.ceil(jobs / cap) * job_seconds


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table: text left, numbers right (floats to 3 significant places)."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) if isinstance(v, str) else c.rjust(w)
                        for c, v, w in zip(cells[i], row, widths, strict=True)).rstrip()
              for i, row in enumerate(rows)]
    return "\n".join(lines)


class _BenchParser(argparse.ArgumentParser):
    """Fills ``--jobs`` from the benchmark's full or quick size when not given."""

    sizes: tuple[int, int] | None = None

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]
        parsed, rest = super().parse_known_args(args, namespace)
        if self.sizes is not None and not parsed.jobs:
            parsed.jobs = self.sizes[1] if parsed.quick else self.sizes[0]
        return parsed, rest


def parser(description: str, *, jobs: tuple[int, int] | None = None, jobs_help: str = "N") -> argparse.ArgumentParser:
    """Every benchmark takes ``--quick`` (under a minute); ``jobs=(full, quick)`` adds ``--jobs``."""
    p = _BenchParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes: finishes in under a minute")
    if jobs is not None:
        p.sizes = jobs
        p.add_argument("--jobs", type=int, help=f"{jobs_help} (default {jobs[0]:,}, --quick {jobs[1]:,})")
    return p


# -- the child process behind served_sandbox() without real renders ----------------------------


def _serve_stub_render() -> None:
    """``lipbatch sandbox`` on 127.0.0.1:0 whose ``Sandbox.render`` returns one pre-rendered clip."""
    from lipbatch.sandbox.app import build_app
    from lipbatch.sandbox.render import render_mp4
    from lipbatch.sandbox.server import serve

    app = build_app()
    clip = render_mp4(tts_text="A pre-rendered result.")

    async def render(**_inputs: Any) -> bytes:
        return clip

    app.state.sandbox.render = render

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(lambda task_status: serve(app, host=LOOPBACK, port=0,
                                                                 task_status=task_status))
            print(url, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)


if __name__ == "__main__" and sys.argv[1:] == ["serve-stub-render"]:
    _serve_stub_render()
