"""What a run tells a producer: the closing summary, and the log file beside the state.

The log (``<state>.log``, appended by every run) holds one plain line per event
as it happens, then the closing summary. Slot snapshots (``account``) and poll
progress (``job_progress``) feed only the live display and ``--json``: they would
bury the rest. Events arrive scrubbed of credentials (``Runner.emit``); the
summary's reasons are scrubbed by the runner too.

The summary names the output folder, counts per outcome, what each account was
charged (estimated vs reported, refunds, dollars where a price is documented),
every budget, the elapsed time, and every job not done, grouped by why, with the
command that continues it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from lipbatch import round_end
from lipbatch.budget import Exposure, Ledger
from lipbatch.engine.options import Event, Pending, RunSummary
from lipbatch.pricing import UNITS, dollars, plain, usd
from lipbatch.progress import describe

QUIET = ("account", "job_progress", "job_skipped")  # skipped jobs: counted in run_started
OUTCOME_NAMES = {
    "done": "done", "skipped": "already done", "failed": "failed", "unknown": "unknown",
    "in_flight": "in flight (paid, will be collected on rerun)", "not_run": "not submitted",
    "lost": "output lost", "blocked": "blocked by a file at the output path",
    "over_budget": "waiting for budget", "error_blocked": "blocked by a repeated error",
}
_SHORT_LIST = 8  # up to this many jobs, the continue command names them with --only


def log_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".log")


class RunLog:
    """The run's log file, opened for appending: one line per event.

    Inside a trio run the lines of one scheduling round reach the file together as the round
    ends (``lipbatch.round_end``); elsewhere each line is flushed at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._stop_round_flushes = round_end.call_each_round(self.flush)
        self._dirty = False

    def write(self, text: str, when: float | None = None) -> None:
        if self._file is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when if when is not None else time.time()))
        try:
            self._file.write(f"{stamp} {text}\n")
        except OSError:  # a full disk must not stop a run that is paying for work
            self._file = None
            return
        self._dirty = True
        if self._stop_round_flushes is None:
            self.flush()

    def flush(self) -> None:
        if not self._dirty or self._file is None:
            return
        self._dirty = False
        try:
            self._file.flush()
        except OSError:
            self._file = None

    def event(self, event: Event) -> None:
        if event.type in QUIET:
            return
        self.write(f"{event.type}: {describe(event) or event.message or ''}".rstrip(": "), event.time)

    def close(self) -> None:
        if self._stop_round_flushes is not None:
            self._stop_round_flushes()
            self._stop_round_flushes = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def counts(summary: RunSummary) -> str:
    parts = [f"{summary.done} done", f"{summary.skipped} already done"]
    for outcome in ("failed", "unknown", "lost", "blocked", "over_budget", "error_blocked"):
        if getattr(summary, outcome):
            parts.append(f"{getattr(summary, outcome)} {OUTCOME_NAMES[outcome]}")
    if summary.in_flight:
        parts.append(f"{summary.in_flight} {OUTCOME_NAMES['in_flight']}")
    if summary.not_run - summary.in_flight:
        parts.append(f"{summary.not_run - summary.in_flight} {OUTCOME_NAMES['not_run']}")
    return ", ".join(parts)


def credits_text(entry: dict[str, Any]) -> str:
    """One account's spend this run: ``est. 240 · charged 200, refunded 40 · $0.50``; ``?`` when unknown."""
    def amount(value: float, unknown: bool) -> str:
        return "?" if unknown and not value else plain(value) + ("+?" if unknown else "")

    unknown = entry["unknown"] > 0
    text = f"est. {amount(entry['reserved'], entry['unpriced'] > 0)}"
    text += f" · charged {amount(entry['charged'], unknown)}"
    if entry["estimated"]:
        text += f" (of which {plain(entry['estimated'])} estimated: not reported)"
    if entry["refunded"]:
        text += f", refunded {plain(entry['refunded'])}"
    if entry["held"]:
        text += f", {plain(entry['held'])} reserved for jobs in flight"
    if entry["usd"] is not None:
        text += f" · {dollars(entry['usd'])}" + ("+?" if unknown else "")
    return text


def _groups(pending: Iterable[Pending]) -> dict[tuple[str, str, tuple[str, ...] | None], list[Pending]]:
    groups: dict[tuple[str, str, tuple[str, ...] | None], list[Pending]] = {}
    for item in pending:
        outcome = item.outcome
        groups.setdefault((outcome, item.cause or "", item.flags), []).append(item)
    return groups


def _continue(summary: RunSummary, outcome: str, flags: tuple[str, ...] | None, jobs: list[Pending]) -> str:
    command = summary.rerun
    if flags is None:
        return "none: moderation failures are never retried (change the content)"
    if outcome == "error_blocked":
        return f"fix the value where the manifest sets it (above), then: {command}"
    if outcome == "over_budget":
        return f"raise the budget (the manifest's budget: or --max-credits ACCOUNT=N, see above), then: {command}"
    if flags:
        command += " " + " ".join(flags)
        if len(jobs) <= _SHORT_LIST:
            command += " --only " + " ".join(item.key[:12] for item in jobs)
    return command


def spend_report(ledger: Ledger, reserved: dict[str, float], unpriced: dict[str, int],
                 pending: Iterable[Pending]) -> dict[str, Any]:
    """Per account this run (reserved, charged, refunded, held, dollars) and every budget's state."""
    accounts: dict[str, Any] = {}
    for name, account in sorted(ledger.project.accounts.items()):
        now, start = ledger.account(name), ledger.start.get(name, Exposure())
        delta = now - start
        if not (reserved.get(name) or unpriced.get(name) or delta.charged or delta.held or delta.refunded):
            continue
        accounts[name] = {"kind": account.kind, "unit": UNITS[account.kind], "reserved": reserved.get(name, 0.0),
                          "unpriced": unpriced.get(name, 0), "charged": delta.charged,
                          "estimated": delta.estimated, "refunded": delta.refunded, "held": now.held,
                          "unknown": max(0, delta.unknown), "usd": usd(account.kind, delta.charged),
                          "total_charged": now.charged}
    waiting = [item for item in pending if item.outcome == "over_budget"]
    budgets = []
    for pool in ledger.pools:
        used = ledger.used(pool)
        left = max(0.0, pool.limit - used)
        jobs = [item for item in waiting if item.cause == pool.name]
        need = sum(pool.amount(ledger.project.accounts[item.account].kind, item.needs or 0.0) or 0.0
                   for item in jobs)
        more = max(0.0, need - left)
        budgets.append({"name": pool.name, "unit": pool.unit, "limit": pool.limit, "used": used, "left": left,
                        "waiting": len(jobs), "needs": need, "more": more,
                        "suggest": None if pool.money or not jobs else math.ceil(pool.limit + more)})
    return {"accounts": accounts, "budgets": budgets}


def summary_lines(summary: RunSummary) -> list[str]:
    """The closing summary, plain text, one line each."""
    head = "Interrupted" if summary.interrupted else "Finished"
    lines = [f"{head} after {duration(summary.elapsed)}: {summary.total} jobs: {counts(summary)}",
             f"Outputs: {summary.output_dir}"]
    accounts = summary.spend.get("accounts", {})
    if accounts:
        lines.append("Credits this run:")
        width = max(len(name) for name in accounts)
        lines += [f"  {name:<{width}}  {entry['unit']}: {credits_text(entry)}" for name, entry in accounts.items()]
    for pool in summary.spend.get("budgets", []):
        def show(value: float, unit: bool = False, pool: dict[str, Any] = pool) -> str:
            if pool["unit"] == "USD":
                return dollars(value)
            return f"{plain(value)} {pool['unit']}" if unit else plain(value)

        line = f"Budget {pool['name']}: {show(pool['used'])} of {show(pool['limit'], True)} used, " \
               f"{show(pool['left'])} left"
        if pool["waiting"]:
            line += (f"; {pool['waiting']} job(s) wait for it, needing {show(pool['more'])} more"
                     + (f" (--max-credits {pool['name']}={pool['suggest']})" if pool["suggest"] else
                        " (raise budget.usd in the manifest)"))
        lines.append(line)
    if summary.pending:
        lines.append(f"Not done ({len(summary.pending)}):")
    for (outcome, cause, flags), jobs in _groups(summary.pending).items():
        same = len({item.reason for item in jobs}) == 1
        title = OUTCOME_NAMES.get(outcome, outcome)
        what = (f"the {cause} budget" if outcome == "over_budget" else cause) or (jobs[0].reason if same else "")
        what = what.removeprefix(f"{title}: ")
        lines.append(f"  {title} ({len(jobs)}): {what}".rstrip(": "))
        for item in jobs:
            extra = "" if same or cause else f": {item.reason}"
            lines.append(f"    {item.output} [{item.key[:12]}] ({item.account}){extra}")
        lines.append(f"    continue: {_continue(summary, outcome, flags, jobs)}")
    if summary.log_file:
        lines.append(f"Log: {summary.log_file}")
    return lines
