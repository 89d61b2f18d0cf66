"""Serve the sandbox app over a real socket with hypercorn's trio worker (loopback by default)."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from starlette.types import ASGIApp

from lipbatch.errors import UsageError
from lipbatch.sandbox.core import is_loopback_host
from lipbatch.sandbox.fault_middleware import ConnectionDropped


class _DropInjectedFaults(logging.Filter):
    """Hypercorn logs every app exception; injected connection drops are not errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


_FILTER = _DropInjectedFaults()
KEEP_ALIVE_SECONDS = 75.0


def check_host(host: str, allow_remote: bool = False) -> None:
    """Refuse non-loopback binds unless asked: the emulators accept any token."""
    if not allow_remote and not is_loopback_host(host):
        raise UsageError(f"refusing to serve the sandbox on non-loopback host {host!r} (see --allow-remote)")


async def serve(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
                task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until cancelled; ``task_status.started(url)`` reports the bound base URL.

    Port 0 picks a free port. Non-loopback hosts are refused unless ``allow_remote``.
    """
    check_host(host, allow_remote)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    # hypercorn closes idle connections after 5 s by default, exactly httpx's keep-alive expiry: a
    # create sent on a connection idle for ~5 s could meet the server's close and lose its answer
    # (an "unknown" job). Providers' front ends keep idle connections far longer (60 s and up).
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.loglevel = "WARNING"
    logging.getLogger("hypercorn.error").addFilter(_FILTER)

    class _Relay:
        """hypercorn reports a list of binds; callers want the one base URL."""

        def started(self, value: list[str]) -> None:
            task_status.started(value[0])

    await hypercorn_serve(app, config, task_status=_Relay())  # type: ignore[arg-type]
