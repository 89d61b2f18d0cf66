"""Spend control: budgets, the reservation made before each create, and what was charged.

Pools. An account with ``budget:`` (its provider's credits; ``run --max-credits
ACCOUNT=N`` replaces it for one run) is one pool; a campaign's ``budget: {usd: N}``
is another, over every account whose credits have a documented dollar price
(``pricing.PRICE_TABLE``). A budget is the campaign's total across runs: what the
state already records as charged counts, so a rerun after a stop (or a kill -9)
never gets the allowance again.

Reservations. Right before a create the runner asks ``Ledger.shortfall`` whether
the job's ``Estimate.reserve`` fits what every pool has left, and writes it as
``JobRecord.reserved`` in the same journal line as the SUBMITTING intent, so a
crash can never lose a reservation. What a record counts for (``exposure``) is
derived from its status alone:

- SUBMITTING / UNKNOWN: the reservation is held (the POST may have gone out),
  unless the create was refused (nothing created: released).
- IN_FLIGHT (and a FAILED task still alive): the provider's reported credits,
  and whatever of the reservation they do not cover yet.
- SUCCEEDED / DONE / FAILED: the reported credits; the rest of the reservation
  is refunded. A failure the provider does not bill (``Price.failures_free``) or
  a create refused for good costs nothing. A finished job with no report keeps
  its reservation as an *estimated* charge.
- Superseded takes keep their cost in ``TakeRecord.credits``.

Unknown costs. A job without a documented price reserves nothing; under a
budget its account needs ``allow_unknown_cost: true`` (else ``cost_problems``
makes it a validation error, positioned on the budget). Such jobs still stop
once a pool is used up, and what the provider reports counts when it does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lipbatch.model import Account, Job, Project
from lipbatch.pricing import PRICE_TABLE, UNITS, dollars, estimate, plain, usd
from lipbatch.state import JobRecord, JobStatus, TakeRecord

CAMPAIGN = "campaign"
_SETTLED = (JobStatus.SUCCEEDED, JobStatus.DONE)
_LIVE_FAILURES = ("timeout", "transient")  # a task that failed *for this run* only: still at the provider


@dataclass
class Exposure:
    """What records count for, in one account's credits."""

    charged: float = 0.0  # reported by the provider (final, or provisional while in flight)
    estimated: float = 0.0  # part of ``charged`` that is our estimate: the provider never said
    held: float = 0.0  # reserved and not covered by a report yet
    refunded: float = 0.0  # reserved, then released
    unknown: int = 0  # jobs that may have cost an amount nobody reported

    @property
    def used(self) -> float:
        return self.charged + self.held

    def __add__(self, other: Exposure) -> Exposure:
        return Exposure(self.charged + other.charged, self.estimated + other.estimated, self.held + other.held,
                        self.refunded + other.refunded, self.unknown + other.unknown)

    def __sub__(self, other: Exposure) -> Exposure:
        return Exposure(self.charged - other.charged, self.estimated - other.estimated, self.held - other.held,
                        self.refunded - other.refunded, self.unknown - other.unknown)


def exposure(record: JobRecord) -> Exposure:
    """What ``record``'s current take counts for (see the module docstring)."""
    reserved = record.reserved or 0.0
    credits = record.credits
    status = record.status
    if status in (JobStatus.SUBMITTING, JobStatus.UNKNOWN):
        if record.no_task_exists:
            return Exposure(refunded=reserved)
        return Exposure(held=reserved, unknown=int(record.reserved is None))
    alive = status is JobStatus.IN_FLIGHT or (status is JobStatus.FAILED and record.task_id is not None
                                              and record.error_kind in _LIVE_FAILURES)
    if alive:
        charged = credits or 0.0
        return Exposure(charged=charged, held=max(0.0, reserved - charged),
                        unknown=int(credits is None and record.reserved is None))
    if status is JobStatus.FAILED and (record.task_id is None or PRICE_TABLE[record.kind].failures_free):
        return Exposure(refunded=reserved)  # nothing was created, or the provider does not bill failures
    if credits is not None:
        return Exposure(charged=credits, refunded=max(0.0, reserved - credits))
    if status in _SETTLED or status is JobStatus.FAILED:
        return Exposure(charged=reserved, estimated=reserved, unknown=int(record.reserved is None))
    return Exposure()


def take_account(take: TakeRecord, records: Mapping[str, JobRecord]) -> str | None:
    """The account a superseded take was paid by (its endpoint is ``"<kind> <account> <where>"``)."""
    if take.endpoint:
        parts = take.endpoint.split(" ")
        if len(parts) > 1:
            return parts[1]
    record = records.get(take.key)
    return record.account if record is not None else None


@dataclass(frozen=True)
class Pool:
    """One budget: an account's credits, or the campaign's dollars over several accounts."""

    name: str  # the account, or ``CAMPAIGN``
    limit: float
    unit: str
    accounts: frozenset[str]
    money: bool = False

    def amount(self, kind: str, credits: float) -> float | None:
        return usd(kind, credits) if self.money else credits

    def show(self, value: float, *, unit: bool = True) -> str:
        if self.money:
            return dollars(value)
        return f"{plain(value)} {self.unit}" if unit else plain(value)


@dataclass(frozen=True)
class Short:
    """A reservation that does not fit: what the pool has left and what the job needs."""

    pool: Pool
    left: float
    need: float


def pools(project: Project, overrides: Mapping[str, float] | None = None) -> list[Pool]:
    """Every budget of ``project``; ``overrides`` (``--max-credits``) replaces account budgets."""
    out = []
    for name, account in sorted(project.accounts.items()):
        limit = (overrides or {}).get(name, account.budget)
        if limit is not None:
            out.append(Pool(name, float(limit), UNITS[account.kind], frozenset({name})))
    if project.budget_usd is not None:
        priced = frozenset(name for name, account in project.accounts.items()
                           if PRICE_TABLE[account.kind].usd_per_credit is not None)
        out.append(Pool(CAMPAIGN, float(project.budget_usd), "USD", priced, money=True))
    return out


def cost_problems(accounts: Mapping[str, Account], jobs: Iterable[Job],
                  budget_usd: float | None) -> list[tuple[tuple[str, ...], str]]:
    """(manifest path, message) for jobs of unknown cost under a budget their account does not allow."""
    unknown: dict[str, int] = {}
    for job in jobs:
        if estimate(job).amount is None:
            unknown[job.account] = unknown.get(job.account, 0) + 1
    problems = []
    for name, account in sorted(accounts.items()):
        if account.allow_unknown_cost:
            continue
        if account.budget is not None and unknown.get(name):
            problems.append((("providers", name, "budget"),
                             f"account '{name}' has a budget, but {unknown[name]} of its jobs have no documented "
                             f"price ({account.kind}: {PRICE_TABLE[account.kind].per_video}), so nothing can be "
                             f"reserved for them: add 'allow_unknown_cost: true' to this account to run them anyway"))
        if budget_usd is not None and PRICE_TABLE[account.kind].usd_per_credit is None:
            problems.append((("budget", "usd"),
                             f"the campaign budget is in dollars, but {account.kind} credits have no documented "
                             f"dollar price (account '{name}'): add 'allow_unknown_cost: true' to "
                             f"providers.{name} to run it outside the dollar budget"))
    return problems


def unknown_cost_refusals(project: Project, overrides: Mapping[str, float]) -> list[str]:
    """``--max-credits`` on an account whose jobs have no documented price (and no allow_unknown_cost)."""
    accounts = {name: dataclasses.replace(account, budget=overrides[name])
                for name, account in project.accounts.items() if name in overrides}
    return [message.replace("has a budget", "has a budget (--max-credits)") for _path, message
            in cost_problems(accounts, [job for job in project.jobs if job.account in overrides], None)]


@dataclass
class Ledger:
    """Reservations and charges per account, kept current from the state without rescanning it.

    ``jobs`` and ``takes`` are the state's own collections (``State.jobs``, ``State.takes``, or
    a read-only ``Loaded``), which the state changes in place. Records of jobs a run is working
    on are ``track``ed (recomputed on every question), the rest are folded into per-account
    totals once; questions cost O(jobs in flight).
    """

    jobs: Mapping[str, JobRecord]
    takes: list[TakeRecord]
    project: Project
    overrides: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pools = pools(self.project, self.overrides)
        self._base: dict[str, Exposure] = {}
        self._live: set[str] = set()
        for record in self.jobs.values():
            self._add(record.account, exposure(record))
        current = {(r.key, r.take) for r in self.jobs.values()}
        for take in self.takes:
            if (take.key, take.take) not in current:
                self.keep_take(take_account(take, self.jobs), take.credits)
        self.start = {name: self.account(name) for name in self.project.accounts}

    def _add(self, account: str | None, amount: Exposure, sign: int = 1) -> None:
        if account is None:
            return
        base = self._base.get(account, Exposure())
        self._base[account] = base + amount if sign > 0 else base - amount

    def keep_take(self, account: str | None, credits: float | None) -> None:
        """A superseded take keeps what it cost."""
        self._add(account, Exposure(charged=credits or 0.0, unknown=int(credits is None)))

    def track(self, key: str) -> None:
        """``key``'s record is about to change: recompute it on every question until ``untrack``."""
        if key in self._live:
            return
        record = self.jobs.get(key)
        if record is not None:
            self._add(record.account, exposure(record), -1)
        self._live.add(key)

    def untrack(self, key: str) -> None:
        if key not in self._live:
            return
        self._live.discard(key)
        record = self.jobs.get(key)
        if record is not None:
            self._add(record.account, exposure(record))

    def _live_records(self, accounts: frozenset[str]) -> Iterable[JobRecord]:
        for key in self._live:
            record = self.jobs.get(key)
            if record is not None and record.account in accounts:
                yield record

    def account(self, name: str) -> Exposure:
        total = self._base.get(name, Exposure())
        for record in self._live_records(frozenset({name})):
            total = total + exposure(record)
        return total

    def used(self, pool: Pool) -> float:
        total = 0.0
        for name in pool.accounts:
            kind = self.project.accounts[name].kind
            total += pool.amount(kind, self.account(name).used) or 0.0
        return total

    def shortfall(self, job: Job, reserve: float | None) -> Short | None:
        """The first pool the job's reservation does not fit, or None."""
        kind = self.project.accounts[job.account].kind
        for pool in self.pools:
            if job.account not in pool.accounts:
                continue
            need = pool.amount(kind, reserve or 0.0) or 0.0
            used = self.used(pool)
            if used + need > pool.limit + 1e-9:
                return Short(pool, max(0.0, pool.limit - used), need)
        return None

    def may_free(self, pool: Pool) -> bool:
        """Something this run is working on may still release part of the pool (a refund, a settlement)."""
        return any(exposure(record).held > 0 or record.status is JobStatus.IN_FLIGHT
                   for record in self._live_records(pool.accounts))
