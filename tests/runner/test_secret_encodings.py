"""A provider echoing the caller's key in an error, in any encoding, leaks none of it anywhere.

The sandbox serves the run, except that every create is refused (400) with an
error quoting the key a different way: exact, URL-encoded, base64 (also as a
Basic credential after ``user:``), hex, inside a JSON-escaped body, and split in
two halves around other text. Neither the state's snapshot and journal (read as
the run goes), the ``--json`` events, the log, the summary nor ``lipbatch status
--json`` may then hold 8 characters in a row of the key or of any encoding of it.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
from harness import fast_options
from kinds import write_manifest

from lipbatch import cli
from lipbatch.errors import EXIT_OK
from lipbatch.progress import JsonSink, LogSink
from lipbatch.providers.creatify import LIPSYNCS_PATH
from lipbatch.redact import REDACTED
from lipbatch.runner import Event, run_project
from lipbatch.state import JobStatus, journal_path, read_jobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "state"))

from test_redact import leaks  # noqa: E402

pytestmark = pytest.mark.anyio

KEY = 'k3y_live/S3cr3t+Key=w1th:odd"chars&more~end'
API_ID = "id-0f9e8d7c-6b5a-4321-8aaa-bbbbccccdddd"
CREATES = {"magichour-lipsync": "/v1/lip-sync", "creatify-lipsync": LIPSYNCS_PATH}
ENVIRON = {"magichour-lipsync": {"MAGIC_HOUR_API_KEY": KEY},
           "creatify-lipsync": {"CREATIFY_API_ID": API_ID, "CREATIFY_API_KEY": KEY}}

ECHOES: dict[str, Callable[[str], str]] = {
    "exact": lambda key: f"invalid api key {key}",
    "url": lambda key: f"GET /v1/lip-sync?api_key={quote(key, safe='')}&v=2 refused",
    "url-plus": lambda key: f"form api_key={quote_plus(key)} refused",
    "base64": lambda key: f"token {base64.b64encode(key.encode()).decode()} unknown",
    "basic": lambda key: f"Authorization: Basic {base64.b64encode(f'user:{key}'.encode()).decode()} rejected",
    "hex": lambda key: f"key digest input {key.encode().hex()}",
    "json": lambda key: f"bad request body {json.dumps({'api_key': key, 'path': '/v1/x'})}",
    "split": lambda key: f"key {key[:len(key) // 2]} <- first half, second half -> {key[len(key) // 2:]}",
}


class EchoingProvider(httpx.AsyncBaseTransport):
    """The sandbox, but each create is refused with an error echoing the caller's key the next way in ECHOES."""

    def __init__(self, inner: httpx.AsyncBaseTransport, create_path: str) -> None:
        self.inner = inner
        self.create_path = create_path
        self.echoed: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith(self.create_path):
            return await self.inner.handle_async_request(request)
        key = request.headers.get("x-api-key") or request.headers["authorization"].removeprefix("Bearer ")
        name = list(ECHOES)[len(self.echoed) % len(ECHOES)]
        self.echoed.append(name)
        message = f"{name}: {ECHOES[name](key)}"
        return httpx.Response(400, json={"message": message, "error": message})


@pytest.mark.parametrize("kind", sorted(CREATES))
async def test_a_key_echoed_in_any_encoding_reaches_no_file_event_log_or_status(kind, tmp_path, media, harness,
                                                                                 capsys):
    case = write_manifest(kind, tmp_path, media, jobs=len(ECHOES), concurrency=2)
    h = harness()
    project = h.project(case.manifest)
    transport = EchoingProvider(httpx.ASGITransport(app=h.app), CREATES[kind])
    json_out, log_out = io.StringIO(), io.StringIO()
    sinks = (JsonSink(json_out), LogSink(log_out))
    state_files: list[str] = []  # the journal as the run goes: it is compacted into the snapshot on close

    def sink(event: Event) -> None:
        for write in sinks:
            write(event)
        if journal_path(project.state_path).exists():
            state_files.append(journal_path(project.state_path).read_text())

    summary = await run_project(project, fast_options(), transport=transport, sink=sink, environ=ENVIRON[kind])
    assert cli.main(["status", str(case.manifest), "--sandbox", "--json"]) == EXIT_OK  # the harness rehearses
    status = capsys.readouterr().out

    assert sorted(transport.echoed) == sorted(ECHOES)  # one create per job, each refused with its own echo
    records = read_jobs(project.state_path)
    assert all(record.status is JobStatus.FAILED for record in records.values())
    errors = [record.error for record in records.values()]
    assert sorted(error.split(": ")[1] for error in errors) == sorted(ECHOES)  # every echo was reported...
    assert all(REDACTED in error for error in errors)  # ...without the key
    assert summary.failed == len(ECHOES)
    assert all(json.dumps(error) in json_out.getvalue() and json.dumps(error) in status for error in errors)
    assert any(all(json.dumps(error) in text for error in errors) for text in state_files)  # the journal held them
    state_files += [project.state_path.read_text(), journal_path(project.state_path).read_text()]
    texts = [*state_files, status, json_out.getvalue(), log_out.getvalue(), json.dumps(summary.to_json())]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".mp4"]
    for text in texts:
        assert not leaks(text, list(ENVIRON[kind].values()))
