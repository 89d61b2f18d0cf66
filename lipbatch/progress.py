"""Where run events go: a live display on a terminal, plain log lines otherwise, JSON lines with ``--json``.

Sinks only format ``Event``s, whose text the runner has already scrubbed of
credential values (``State.scrub``), so nothing here needs redaction. Numbers
are plain (``4,000,000``, never ``4e+06``); a cost nobody knows is ``?``, never 0.
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
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from lipbatch.engine.options import Event, Sink
from lipbatch.pricing import plain

# Events worth a log line; the rest (progress, slot counts) feed the live display / JSON only.
LOGGED = {
    "run_started": "{to_do} job(s) to run, {skipped} already done",
    "upload": "uploading {role} ({sha256:.12})",
    "job_submitted": "submitted as task {task_id} (attempt {attempt})",
    "job_reconciled": "found earlier task {task_id}",
    "job_succeeded": "finished at the provider (task {task_id})",
    "job_busy": "{host}: account busy, next attempt in {delay}s at {at} (slots now {limit})",
    "job_rate_limited": "{host}: rate limited ({message}), next attempt in {delay}s at {at}",
    "job_retry": "{host}: {message}; next attempt in {delay}s at {at}",
    "retry": "{host}: {message}; next attempt in {delay}s at {at}",
    "job_url_expired": "result URL expired, fetching a fresh one",
    "job_done": "done ({size} bytes, sha256 {sha256:.12})",
    "job_copied": "already done; copied to {targets}",
    "job_failed": "FAILED: {message}",
    "job_unknown": "UNKNOWN: {message}",
    "job_not_run": "not run: {message}",
    "job_lost": "OUTPUT LOST: {message}",
    "job_blocked": "BLOCKED: {message}",
    "job_over_budget": "WAITING FOR BUDGET: {message}",
    "job_waiting_budget": "{message}",
    "job_new_take": "new take {take} ({reason})",
    "job_reupload": "{message}",
    "breaker": "STOPPED REPEATING: {refusals} creates refused alike: {message}; jobs using it are not submitted",
    "account_stopped": "account stopped: {message}",
    "halted": "{message}",
    "worker": "{message}",
    "state_unreachable": "{message}",
    "interrupted": "{message}",
    "run_finished": "finished: {done} done, {skipped} already done, {failed} failed, {unknown} unknown, "
                    "{lost} output(s) lost, {blocked} blocked, {over_budget} waiting for budget, {error_blocked} "
                    "blocked by a repeated error, {not_run} left for a rerun; outputs in {output_dir}",
}
# shown above the live display as they happen (the rest scroll in its recent lines)
LOUD = ("job_failed", "job_unknown", "account_stopped", "interrupted", "halted", "breaker")
ENDED = ("job_done", "job_skipped", "job_copied", "job_failed", "job_unknown", "job_not_run", "job_lost",
         "job_blocked", "job_over_budget", "job_error_blocked")


def describe(event: Event) -> str | None:
    """One human line for an event, or None when it is not worth one."""
    template = LOGGED.get(event.type)
    if template is None:
        return None
    fields: dict[str, Any] = {"message": event.message or "", **event.data}
    if "next_attempt" in fields:
        fields["at"] = time.strftime("%H:%M:%S", time.localtime(fields["next_attempt"]))
    try:
        text = template.format(**fields)
    except (KeyError, ValueError, TypeError):
        text = event.message or event.type
    where = " ".join(part for part in (event.account and f"[{event.account}]", event.output) if part)
    return f"{where}: {text}" if where else text


def credits_cell(data: dict[str, Any]) -> str:
    """An account's credits: ``charged 120 · est. 60`` (reserved for jobs in flight); ``?`` when unknown."""
    charged, held = data.get("charged"), data.get("held") or 0.0
    unknown = data.get("unknown", 0) > 0
    parts = []
    if charged is not None and (charged or not unknown):
        parts.append(f"charged {plain(charged)}" + ("+?" if unknown else ""))
    elif unknown:
        parts.append("charged ?")
    if held:
        parts.append(f"est. {plain(held)}")
    return " · ".join(parts) or "-"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


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
    """Overall progress (bar, done/total, elapsed, ETA), one line per account, and recent events."""

    REFRESH = 0.1

    def __init__(self, console: Console, *, keep: int = 8) -> None:
        self.console = console
        self.accounts: dict[str, dict[str, Any]] = {}
        self.lines: list[str] = []
        self.keep = keep
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self.total = self.done = self.ended = self.ended_before = 0
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, event: Event) -> None:
        if event.type == "account" and event.account:
            self.accounts[event.account] = dict(event.data)
        elif event.type == "run_started":  # after lost/blocked jobs the pre-pass settled, before the rest
            self.total = int(event.data.get("jobs", 0))
            self.done = int(event.data.get("skipped", 0))
            self.ended += self.done
            self.ended_before = self.ended
        if event.type in ENDED and event.type not in ("job_skipped", "job_copied"):
            self.ended += 1
            self.done += event.type == "job_done"
        if event.type in LOUD:
            self.console.print(describe(event) or "", markup=False, highlight=False)
        elif (line := describe(event)) is not None:
            self.lines = [*self.lines, line][-self.keep:]
        now = time.monotonic()
        if now - self._last >= self.REFRESH or event.type == "run_finished":
            self._last = now
            self.live.update(self.render(), refresh=True)

    def eta(self, elapsed: float) -> str:
        finished = self.ended - self.ended_before
        left = self.total - self.ended
        if finished <= 0 or left <= 0:
            return "-" if left else "0:00"
        return clock(elapsed / finished * left)

    def render(self) -> Group:
        elapsed = time.monotonic() - self.started
        bar = ProgressBar(total=max(1, self.total), completed=self.ended, width=30)
        head = Table.grid(padding=(0, 1))
        head.add_row(bar, Text(f"{plain(self.done)}/{plain(self.total)} done  elapsed {clock(elapsed)}  "
                               f"ETA {self.eta(elapsed)}"))
        table = Table(expand=False, box=None, padding=(0, 1))
        for column in ("account", "in flight/cap", "done", "failed", "credits", "note"):
            table.add_column(column, justify="right" if column in ("done", "failed") else "left")
        for name, data in sorted(self.accounts.items()):
            table.add_row(name, f"{data.get('in_flight', 0)}/{data.get('cap', 0)}", plain(data.get("done", 0)),
                          plain(data.get("failed", 0)), credits_cell(data), str(data.get("stopped") or ""))
        return Group(head, table, Text("\n".join(self.lines), overflow="ellipsis", no_wrap=True))


@contextlib.contextmanager
def open_sink(*, json_lines: bool = False, stream: TextIO | None = None) -> Iterator[Sink]:
    """The right sink for the output: JSON when asked, a live display on a TTY, else log lines."""
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
