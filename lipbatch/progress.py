"""Where run events go: a live table on a terminal, plain log lines otherwise, JSON lines with ``--json``.

Sinks only format ``runner.Event``s, whose text the runner has already scrubbed
of credential values (``State.scrub``), so nothing here needs redaction.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lipbatch.runner import Event, Sink

# Events worth a log line; the rest (progress, slot counts) feed the live table / JSON only.
LOGGED = {
    "run_started": "{to_do} job(s) to run, {skipped} already done",
    "upload": "uploading {role} ({sha256:.12})",
    "job_submitted": "submitted as task {task_id} (attempt {attempt})",
    "job_reconciled": "found earlier task {task_id}",
    "job_busy": "account busy, retrying in {delay}s (slots now {limit})",
    "job_rate_limited": "rate limited, retrying in {delay}s",
    "job_retry": "retrying: {message}",
    "job_url_expired": "result URL expired, fetching a fresh one",
    "job_done": "done ({size} bytes, sha256 {sha256:.12})",
    "job_copied": "already done; copied to {targets}",
    "job_failed": "FAILED: {message}",
    "job_unknown": "UNKNOWN: {message}",
    "job_not_run": "not run: {message}",
    "job_lost": "OUTPUT LOST: {message}",
    "job_blocked": "BLOCKED: {message}",
    "job_new_take": "new take {take} ({reason})",
    "job_reupload": "{message}",
    "account_stopped": "account stopped: {message}",
    "halted": "{message}",
    "worker": "{message}",
    "state_unreachable": "{message}",
    "interrupted": "{message}",
    "run_finished": "finished: {done} done, {skipped} already done, {failed} failed, {unknown} unknown, "
                    "{lost} output(s) lost, {blocked} blocked, {not_run} left for a rerun; outputs in {output_dir}",
}


def describe(event: Event) -> str | None:
    """One human line for an event, or None when it is not worth one."""
    template = LOGGED.get(event.type)
    if template is None:
        return None
    fields: dict[str, Any] = {"message": event.message or "", **event.data}
    try:
        text = template.format(**fields)
    except (KeyError, ValueError, TypeError):
        text = event.message or event.type
    where = " ".join(part for part in (event.account and f"[{event.account}]", event.output) if part)
    return f"{where}: {text}" if where else text


class LogSink:
    """Plain timestamped lines (CI logs, pipes)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        line = describe(event)
        if line is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
            print(f"{stamp} {line}", file=self.stream, flush=True)


class JsonSink:
    """One JSON object per event per line (``--json``)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        print(json.dumps(event.to_json(), default=str, separators=(",", ":")), file=self.stream, flush=True)


class LiveSink:
    """A live table per account (slots in use / cap, done, failed, in flight, credits) over recent lines."""

    REFRESH = 0.1

    def __init__(self, console: Console, *, keep: int = 8) -> None:
        self.console = console
        self.accounts: dict[str, dict[str, Any]] = {}
        self.lines: list[str] = []
        self.keep = keep
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self._last = 0.0

    def __call__(self, event: Event) -> None:
        if event.type == "account" and event.account:
            self.accounts[event.account] = dict(event.data)
        elif event.type in ("job_failed", "job_unknown", "account_stopped", "interrupted", "halted"):
            self.console.print(describe(event) or "", markup=False, highlight=False)
        else:
            line = describe(event)
            if line is not None:
                self.lines = [*self.lines, line][-self.keep:]
        now = time.monotonic()
        if now - self._last >= self.REFRESH or event.type == "run_finished":
            self._last = now
            self.live.update(self.render(), refresh=True)

    def render(self) -> Group:
        table = Table(title="lipbatch run", expand=False)
        for column in ("account", "kind", "slots", "in flight", "done", "failed", "credits", "note"):
            table.add_column(column, justify="right" if column not in ("account", "kind", "note") else "left")
        for name, data in sorted(self.accounts.items()):
            table.add_row(
                name, str(data.get("kind", "")), f"{data.get('in_use', 0)}/{data.get('limit', 0)} (cap {data.get('cap', 0)})",
                str(data.get("in_flight", 0)), str(data.get("done", 0)), str(data.get("failed", 0)),
                f"{data.get('credits', 0):g}", str(data.get("stopped") or ""),
            )
        return Group(table, Text("\n".join(self.lines), overflow="ellipsis", no_wrap=True))


@contextlib.contextmanager
def open_sink(*, json_lines: bool = False, stream: TextIO | None = None) -> Iterator[Sink]:
    """The right sink for the output: JSON when asked, a live table on a TTY, else log lines."""
    stream = stream or sys.stdout
    if json_lines:
        yield JsonSink(stream)
        return
    if not stream.isatty():
        yield LogSink(stream)
        return
    sink = LiveSink(Console(file=stream))
    with sink.live:
        yield sink
