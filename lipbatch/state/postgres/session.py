"""One connection to a campaign's schema that survives a database restart.

Every unit of work runs in one transaction. When the connection is lost (the
server restarted, a network blip), the unit is run again on a new connection for
up to ``patience`` seconds; every unit lipbatch runs is idempotent (it writes whole
records and claims by worker id), so a commit whose answer was lost is harmless to
repeat. After that, ``StateUnavailableError``, and from then on one attempt per
call: a run that lost its database stops quickly instead of waiting again per job.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from lipbatch.errors import LipbatchError
from lipbatch.state.backend import StateUnavailableError
from lipbatch.state.postgres.url import Target, parse_url, schema_name

T = TypeVar("T")
_CONNECT_TIMEOUT = 5  # seconds (libpq's minimum is 2)
_RETRY_PAUSE = (0.1, 2.0)  # first and longest pause between reconnection attempts


class Session:
    def __init__(self, target: Target, campaign: str, *, patience: float, name: str = "lipbatch") -> None:
        self.target = target
        self.campaign = campaign
        self.schema = schema_name(campaign)
        self.where = f"{target.shown} (campaign {campaign})"
        self.patience = patience
        self.name = name
        self._conn: psycopg.Connection | None = None
        self._gave_up = True  # until the first unit succeeds: a wrong URL or password fails at once
        self._reached = False  # a unit ever succeeded (then losing the database is an interruption)

    @classmethod
    def open(cls, url: str, campaign: str, *, patience: float = 0.0) -> Session:
        """A session on a campaign's schema; ``?campaign=NAME`` in the URL wins over ``campaign``."""
        target = parse_url(url)
        return cls(target, target.campaign or campaign, patience=patience)

    def connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.target.conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT,
                                   application_name=self.name)
        except psycopg.Error as exc:
            raise StateUnavailableError(self._reason(exc)) from None
        try:
            conn.execute(f'SET search_path TO "{self.schema}"')
        except psycopg.Error:
            conn.close()
            raise
        return conn

    def run(self, unit: Callable[[psycopg.Cursor], T]) -> T:
        """``unit(cursor)`` in one transaction, again on a new connection if this one was lost."""
        deadline = time.monotonic() + (0.0 if self._gave_up else self.patience)
        pause = _RETRY_PAUSE[0]
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.connect()
                with self._conn.transaction(), self._conn.cursor() as cursor:
                    result = unit(cursor)
                self._gave_up, self._reached = False, True
                return result
            except (psycopg.OperationalError, psycopg.InterfaceError, StateUnavailableError) as exc:
                self._drop()
                if time.monotonic() + pause > deadline:
                    self._gave_up = True
                    message = str(exc) if isinstance(exc, StateUnavailableError) else self._reason(exc)
                    raise StateUnavailableError(message) from None
                time.sleep(pause)
                pause = min(pause * 2, _RETRY_PAUSE[1])
            except psycopg.Error as exc:  # refused by the server (permissions, a damaged schema): no retry
                raise LipbatchError(f"the state database {self.target.shown} refused a request: "
                                    f"{_first_line(exc)}") from None

    def _reason(self, exc: psycopg.Error) -> str:
        if not self._reached:
            return (f"cannot reach the state database {self.target.shown}: {_first_line(exc)}; nothing was "
                    "started: check the server, then run again")
        return (f"the state database {self.target.shown} is unreachable ({_first_line(exc)}); what was recorded "
                "is kept there: run again once it is back and the campaign resumes")

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
