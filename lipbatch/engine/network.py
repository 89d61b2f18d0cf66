"""Network trouble, visible: every wait and retry is an event, and an unreachable host stops its account.

Calls other than create (uploads, polls, lookups) wait on 429 without limit and
retry transient errors a bounded number of times. Each wait is an event naming
the host, the error and when the next attempt goes out, so a stalled run says
why. A connection the host refuses, a name that does not resolve or a connect
timeout is retried quickly (``RunOptions.connect_retry``); when every attempt
on an account has failed that way for ``unreachable_after`` seconds, the account
stops with ``cannot reach <host>: ...`` (other accounts go on; a rerun retries).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from lipbatch.engine.accounts import AccountRun
from lipbatch.engine.control import JobEnded
from lipbatch.errors import ProviderError, RateLimitedError, TransientError
from lipbatch.model import Job

_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)


def host_of(acct: AccountRun) -> str:
    return urlsplit(acct.account.base_url).netloc or acct.account.base_url


class NetworkPhase:
    """Mixin of ``Runner``: retries with events, and the unreachable-host stop."""

    async def _call(self, acct: AccountRun, fn: Callable[[], Any], *, job: Job | None = None) -> Any:
        limited = transient = 0
        while True:
            try:
                result = await fn()
            except RateLimitedError as exc:
                self._reached(acct)
                limited += 1
                error, delay = exc, self.backoff.delay(limited, exc.retry_after)
            except TransientError as exc:
                wait = self._connect_failure(acct, exc)
                if wait is None:
                    transient += 1
                    if transient > self.options.transient_retries:
                        raise
                    wait = self.backoff.delay(transient, exc.retry_after)
                error, delay = exc, wait
            else:
                self._reached(acct)
                return result
            self._retry_event(acct, error, delay, job=job)
            await trio.sleep(delay)

    def _reached(self, acct: AccountRun) -> None:
        """The host answered: connection failures start counting afresh."""
        self._unreachable.pop(acct.account.name, None)

    def _connect_failure(self, acct: AccountRun, exc: TransientError) -> float | None:
        """The wait before the next attempt after a failed connection (None: not a connection failure);
        stops the account once its host has been unreachable for ``unreachable_after`` seconds."""
        if not isinstance(exc.__cause__, _UNREACHABLE):
            self._reached(acct)
            return None
        name = acct.account.name
        now = trio.current_time()
        since, failures = self._unreachable.get(name, (now, 0))
        self._unreachable[name] = (since, failures + 1)
        if acct.stopped or now - since >= self.options.unreachable_after * self.scale:
            self._stop_account(acct, f"cannot reach {host_of(acct)}: {exc.message}")
            raise JobEnded("not_run", f"not submitted: account {name} stopped ({acct.stopped})") from exc
        waits = self.options.connect_retry
        return waits[min(failures, len(waits) - 1)] * self.scale

    def _retry_event(self, acct: AccountRun, exc: ProviderError | None, delay: float, *, job: Job | None = None,
                     event: str = "retry", message: str | None = None, **data: Any) -> None:
        """One event per wait: the host, the error and the time of the next attempt."""
        self.emit(event, job, account=acct.account.name, message=message or str(exc), host=host_of(acct),
                  delay=round(delay, 3), next_attempt=round(time.time() + delay, 3), **data)
