"""``lipbatch review --serve``: the review page on loopback, with approve / reject buttons that work.

The output folder is served at the root, so the page's relative paths to
videos, takes and thumbnails are the same as from file://. The page is built
afresh on every load (the state may have moved on); a decision is checked
against the take the state holds now, so a page showing an older take cannot
judge the newer one. Only this page may post decisions: the server answers
only to loopback host names (no DNS rebinding) and takes only JSON bodies from
its own origin (a cross-site form or script cannot post one). Building the page and writing decisions block (PyAV, the
decisions file's lock), so they run in worker threads.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from html import escape
from json import JSONDecodeError
from pathlib import Path

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lipbatch.campaign import load_campaign
from lipbatch.errors import LipbatchError, UsageError
from lipbatch.model import Job, Project
from lipbatch.paths import REVIEW_DIR
from lipbatch.review.decisions import DECISIONS, Decision
from lipbatch.review.judging import Verdict, current_take, decide
from lipbatch.review.page import load_grid, render_page
from lipbatch.state.backend import read_backend


class ReviewApp:
    """One campaign's review: the page, the decisions endpoint and the output folder's files."""

    def __init__(self, manifest: Path, *, sandbox: bool, url: str | None = None) -> None:
        self.manifest = manifest
        self.sandbox = sandbox
        self.url = url  # a shared state, read afresh (never claimed: decisions go to the file)
        self.project: Project = load_campaign(manifest, sandbox=sandbox)

    def app(self) -> Starlette:
        self.project.output_dir.mkdir(parents=True, exist_ok=True)
        return Starlette(middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])],
                         routes=[
            Route("/", lambda request: RedirectResponse(f"/{REVIEW_DIR}/")),
            Route(f"/{REVIEW_DIR}/", self.page),
            Route(f"/{REVIEW_DIR}/index.html", self.page),
            Route(f"/{REVIEW_DIR}/api/decisions", self.post_decision, methods=["POST"]),
            Mount("/", StaticFiles(directory=self.project.output_dir, check_dir=False)),
        ])

    async def page(self, request: Request) -> Response:
        try:
            html = await trio.to_thread.run_sync(self._build)
        except LipbatchError as exc:
            return HTMLResponse(f"<!doctype html><title>lipbatch review</title><pre>{escape(str(exc))}</pre>", 500)
        return HTMLResponse(html, headers={"cache-control": "no-store"})

    def _build(self) -> str:
        self.project = load_campaign(self.manifest, sandbox=self.sandbox)  # the manifest may have changed
        return render_page(load_grid(self.project, sandbox=self.sandbox, url=self.url), served=True)

    async def post_decision(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "expected a JSON body (content-type: application/json)")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return _error(403, "decisions are taken from the review page itself only")
        try:
            body = await request.json()
        except (JSONDecodeError, UnicodeDecodeError):
            return _error(400, "expected a JSON body")
        if not isinstance(body, dict) or body.get("decision") not in DECISIONS:
            return _error(400, f"expected {{key, sha256, decision: {' | '.join(DECISIONS)}, note}}")
        job = next((j for j in self.project.jobs if j.key == body.get("key")), None)
        if job is None:
            return _error(404, "no such job in the manifest (it may have changed: reload the page)")
        note = str(body.get("note") or "")
        try:
            written = await trio.to_thread.run_sync(self._decide, job, body.get("sha256"), body["decision"], note)
        except LipbatchError as exc:
            return _error(409, str(exc))
        entry = written[job.output]
        return JSONResponse({"output": job.output, "outputs": list(job.outputs), "decision": entry.decision,
                             "note": entry.note, "by": entry.by, "at": entry.at, "sha256": entry.sha256})

    def _decide(self, job: Job, sha256: object, decision: str, note: str) -> dict[str, Decision]:
        records = read_backend(self.project, self.url).loaded.jobs  # read once: the check and the decision
        if current_take(records.get(job.key)) not in (None, sha256):
            raise LipbatchError(f"{job.output} has a newer take than this page shows: reload the page")
        return decide(self.project, [Verdict(job, decision, note)], sandbox=self.sandbox, records=records)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def serve_review(review: ReviewApp, *, port: int = 0, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM; ``announce(url)`` once listening. Returns normally when stopped."""
    from lipbatch.sandbox.server import serve

    try:
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                url = await nursery.start(lambda task_status: serve(review.app(), port=port, task_status=task_status))
                announce(f"{url}/{REVIEW_DIR}/")
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()
    except* OSError as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {error}") from None
