"""Per-account machinery of a run: clients, slots under the account's cap, credentials, pacing.

With a shared state (``lipbatch.state.postgres``) the cap holds across every worker: a
slot is a leased row taken before the local one and never waited for while holding a
local one (``Slots._lease_slot``), and an input is uploaded once per endpoint by
whichever worker gets there first (``SharedUploads``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from lipbatch.errors import MissingCredentialError
from lipbatch.limits import AdaptiveLimiter, TokenBucket
from lipbatch.model import IN_PROCESS, Account, InputRef, Job, Project
from lipbatch.providers import SANDBOX_PREFIXES, client_class
from lipbatch.providers.base import Provider, Upload
from lipbatch.state import JobStatus
from lipbatch.state.backend import Coordinator, live


def point_at_sandbox(project: Project, url: str, *, in_process: bool = False) -> Project:
    """Every account's base URL moved onto a sandbox at ``url`` (``--sandbox``/``--sandbox-url``).

    The accounts remember that they are a rehearsal's, so their records never count for a real
    provider; the in-process sandbox (new port each run, world kept on disk) is one endpoint.
    """
    base = url.rstrip("/")
    accounts = {
        name: dataclasses.replace(account, base_url=base + SANDBOX_PREFIXES[account.kind],
                                  sandbox=IN_PROCESS if in_process else base)
        for name, account in project.accounts.items()
    }
    return dataclasses.replace(project, accounts=accounts)


def credential_names(account: Account) -> Mapping[str, str]:
    """role -> env var name: the manifest's, else the kind's defaults."""
    return account.credentials or client_class(account.kind).credential_defaults


def resolve_secrets(
    accounts: Mapping[str, Account], *, sandbox: bool = False, environ: Mapping[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """account -> role -> value from the environment; every missing variable named in one error."""
    environ = os.environ if environ is None else environ
    resolved: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    for name, account in accounts.items():
        values: dict[str, str] = {}
        for role, variable in credential_names(account).items():
            value = environ.get(variable)
            if not value:
                if not sandbox:
                    missing.append(f"{variable} (the {role} of provider '{name}', kind {account.kind})")
                    continue
                value = f"sandbox-{role}"
            values[role] = value
        resolved[name] = values
    if missing:
        raise MissingCredentialError("environment variable(s) not set: " + "; ".join(missing))
    return resolved


class SharedTransport(httpx.AsyncBaseTransport):
    """One connection pool for every client; optionally paced by an account's token bucket."""

    def __init__(self, inner: httpx.AsyncBaseTransport, bucket: TokenBucket | None = None) -> None:
        self.inner = inner
        self.bucket = bucket

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.bucket is not None:
            await self.bucket.take()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """The pool outlives each client; the runner closes it once."""


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        """Kept from nobody."""


class CookielessClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that keeps no cookie from any answer.

    The providers authenticate by key; a cookie one answer sets (a load balancer's, a CDN's)
    must not ride along on later requests, least of all on the download client every
    account shares. It also skips httpx's per-response cookie parsing (~4 % of the event
    loop in ``benchmarks/overhead.py``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._none = _NoCookies()

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("this client keeps no cookies")


@dataclass
class AccountRun:
    account: Account
    client: Provider
    limiter: AdaptiveLimiter
    uploads: trio.CapacityLimiter
    stopped: str | None = None
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    credits: float = 0.0

    @property
    def endpoint(self) -> str:
        return self.account.endpoint


class SharedUploads:
    """A provider client whose uploads are shared by every worker of a campaign: the first worker
    to claim a file's upload makes it; the others wait for its handle (or take over when it fails)."""

    def __init__(self, client: Provider, leases: Coordinator, account: Account, poll: float) -> None:
        self._client = client
        self._leases = leases
        self._account = account
        self._poll = poll

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    async def upload(self, ref: InputRef) -> Upload:
        sha = ref.sha256 or str(ref.path)
        endpoint, name = self._account.endpoint, self._account.name
        while True:
            stored = self._leases.stored_upload(endpoint, name, sha)
            if stored is not None:
                return Upload(stored.handle, stored.expires_at)
            if self._leases.claim_upload(endpoint, name, sha):
                try:
                    return await self._client.upload(ref)  # the claim goes when the handle is recorded
                except BaseException:
                    self._leases.release_upload(endpoint, name, sha)
                    raise
            await trio.sleep(self._poll)


class Slots:
    """Slot bookkeeping of ``Runner``: a slot is held from just before a create until the task ends."""

    @property
    def leases(self) -> Coordinator | None:
        """The shared campaign's leases; None with the local state files."""
        return getattr(self.state, "leases", None)

    @property
    def _lease_poll(self) -> float:
        """How often a worker looks again for a slot, an upload or a job another worker holds."""
        return max(0.02, min(1.0, self.options.poll_min * self.scale))

    def _open_accounts(self, work: list[Job]) -> None:
        resumed: dict[str, int] = {}
        for job in work:
            record = self.state.job(job.key)
            if record is not None and record.status is JobStatus.IN_FLIGHT:
                resumed[job.account] = resumed.get(job.account, 0) + 1
        timeout = httpx.Timeout(self.options.http_timeout, connect=min(10.0, self.options.http_timeout))
        for name in sorted({job.account for job in work}):
            account = self.project.accounts[name]
            bucket = None
            if self.options.request_rate:
                bucket = TokenBucket(self.options.request_rate / self.scale, self.options.request_burst)
            http = CookielessClient(transport=SharedTransport(self.transport, bucket), timeout=timeout)
            self._clients.append(http)
            client = client_class(account.kind)(account, http, self.secrets[name])
            cap = max(1, account.concurrency)
            limiter = AdaptiveLimiter(cap, start=max(2, resumed.get(name, 0)))
            if self.leases is not None:  # the shared slot rows are the cap; locally only a busy answer lowers it
                client = SharedUploads(client, self.leases, account, self._lease_poll)  # type: ignore[assignment]
                limiter = AdaptiveLimiter(cap, start=cap)
                self.leases.prepare_slots(name, cap)
            self.accounts[name] = AccountRun(account, client, limiter, trio.CapacityLimiter(max(2, min(cap, 4))))
        self.download_http = CookielessClient(transport=SharedTransport(self.transport), timeout=timeout)
        self._clients.append(self.download_http)

    def _resumed_first(self, work: list[Job]) -> list[Job]:
        """In-flight tasks from an earlier run take their slots before any new submission."""
        def rank(job: Job) -> int:
            record = self.state.job(job.key)
            return 0 if record is not None and record.status is JobStatus.IN_FLIGHT else 1

        ordered = sorted(work, key=rank)
        for job in ordered:
            if rank(job):
                break
            self._take_slot_now(job, self.accounts[job.account])
        return ordered

    def _take_slot_now(self, job: Job, acct: AccountRun) -> None:
        if self.global_slots is not None:
            try:
                self.global_slots.acquire_on_behalf_of_nowait(job.key)
            except trio.WouldBlock:
                return
        if acct.limiter.try_acquire(job.key):
            acct.in_flight += 1
        elif self.global_slots is not None:
            self.global_slots.release_on_behalf_of(job.key)

    async def _take_slot(self, job: Job, acct: AccountRun) -> None:
        if self.leases is not None:
            await self._lease_slot(job, acct)
        else:
            await acct.limiter.acquire(job.key)
        if self.global_slots is not None:
            try:
                await self.global_slots.acquire_on_behalf_of(job.key)
            except BaseException:
                acct.limiter.release(job.key)
                self._unlease_slot(job, acct)
                raise
        acct.in_flight += 1
        self.emit_account(acct)

    async def _lease_slot(self, job: Job, acct: AccountRun) -> None:
        """A slot row of the account (the one this job's live task already has, or a free one), then
        a local slot; never one held while waiting for the other, so workers cannot deadlock."""
        assert self.leases is not None
        name, cap = acct.account.name, acct.limiter.cap
        while True:
            if acct.limiter.in_use < acct.limiter.limit and self.leases.take_slot(name, cap, job.key):
                if acct.limiter.try_acquire(job.key):
                    return
                self.leases.give_slot(name, job.key, live=live(self.state.job(job.key)))
            await trio.sleep(self._lease_poll)

    def _unlease_slot(self, job: Job, acct: AccountRun) -> None:
        if self.leases is not None:
            self.leases.give_slot(acct.account.name, job.key, live=live(self.state.job(job.key)))

    def _give_slot(self, job: Job, acct: AccountRun) -> None:
        if acct.limiter.holds(job.key):
            acct.limiter.release(job.key)
            self._unlease_slot(job, acct)
            if self.global_slots is not None:
                self.global_slots.release_on_behalf_of(job.key)
            acct.in_flight -= 1
            self.emit_account(acct)
