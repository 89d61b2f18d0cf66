"""Fault injection: ASGI middleware on provider routes and downloads only (never on ``/_sandbox``).

A faulted API request gets the emulator's own
error shape before it is processed (429 with ``Retry-After``, or 500/502/503);
a reset lets the request be processed, then sends half of the response and
drops the connection (the "did my create go through?" case). Downloads can be
reset or truncated (half the declared body, then the stream ends). Under
hypercorn both close the socket (httpx raises ``RemoteProtocolError``);
in-process a reset raises ``ConnectionDropped`` (an ``httpx.ReadError``)
straight out of ``ASGITransport``, and a truncation yields a short body.

It also counts every provider request and the route that answered it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lipbatch.sandbox.core import CONTROL_PREFIX, FILES_PREFIX, Emulator, Sandbox


class ConnectionDropped(httpx.ReadError):
    """Raised out of the app to drop a connection; in-process httpx sees a transport error."""


class _Stop(Exception):
    """Stops the inner app once a fault has cut its response."""


class FaultMiddleware:
    """Counts provider requests and injects the configured faults (never on ``/_sandbox``)."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox, routes: list[BaseRoute]) -> None:
        self.app = app
        self.sandbox = sandbox
        self.routes = routes
        self._route_ids = {id(route) for route in routes}

    def _route_name(self, scope: Scope) -> str:
        route = scope.get("route")  # the router's choice, once it has routed
        if id(route) in self._route_ids:
            return getattr(route, "path", "?")
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return getattr(route, "path", "?")
        return "(unmatched)"

    def _provider(self, path: str) -> tuple[Emulator | None, bool]:
        if path.startswith(FILES_PREFIX + "/"):
            return self.sandbox.emulators.get(path.split("/")[2]), True
        best: tuple[int, Emulator | None] = (0, None)
        for emulator in self.sandbox.emulators.values():
            for prefix in emulator.prefixes:
                if path.startswith(prefix) and len(prefix) > best[0]:
                    best = (len(prefix), emulator)
        return best[1], False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        self.sandbox.note_host(headers.get(b"host", b"").decode("latin-1"))
        method, path = scope["method"], scope["path"]
        emulator, download = self._provider(path)
        self.sandbox.record_request(emulator.name if emulator else None)
        if emulator is None and not download:
            await self._routed(scope, receive, send)
            return
        fault = self.sandbox.draw_fault(method, path, download=download)
        if fault is None:
            await self._routed(scope, receive, send)
            return
        self.sandbox.record_route(f"{method} {self._route_name(scope)}")
        self.sandbox.record_fault(fault if fault in ("429", "reset", "truncate") else "5xx")
        if fault not in ("reset", "truncate"):
            assert emulator is not None
            if fault == "429":
                response = emulator.error(429, "Too many requests",
                                          headers={"Retry-After": str(self.sandbox.retry_after())})
            else:
                response = emulator.error(int(fault), "Service temporarily unavailable")
            await response(scope, receive, send)
            return
        await self._cut(scope, receive, send, truncate=fault == "truncate")

    async def _routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app answers; the request's route is counted as the answer starts (the router has chosen
        it by then), or when the app ends without answering."""
        counted = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                self.sandbox.record_route(f"{scope['method']} {self._route_name(scope)}")

        async def send_counted(message: Message) -> None:
            count()
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            count()

    async def _cut(self, scope: Scope, receive: Receive, send: Send, *, truncate: bool) -> None:
        """Let the app answer, but deliver only half the body, then end (truncate) or drop (reset)."""
        state: dict[str, Any] = {"sent": 0, "limit": None, "stopped": False}

        async def cutting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-length":
                        state["limit"] = int(value) // 2
                await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = message.get("body", b"")
            room = state["limit"] - state["sent"] if state["limit"] is not None else len(body) // 2
            if len(body) < room and message.get("more_body", False):
                state["sent"] += len(body)
                await send(message)
                return
            piece = body[:max(0, room)]
            if piece:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            state["stopped"] = True
            if truncate:
                # under hypercorn h11 refuses (too little data) and closes the connection
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            raise _Stop

        try:
            await self.app(scope, receive, cutting_send)
        except Exception:
            if not state["stopped"]:
                raise
        if not truncate:
            raise ConnectionDropped("connection dropped by sandbox fault injection")
