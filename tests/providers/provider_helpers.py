"""Helpers for client tests (imported as ``provider_helpers``): jobs and accounts built like the manifest expansion builds them,
and an httpx client whose transport records every request."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from lipbatch.model import Account, InputRef, Job
from lipbatch.providers import DEFAULT_BASE_URLS, DEFAULT_CREDENTIALS


def make_account(kind: str, base_url: str | None = None, **options: Any) -> Account:
    return Account(
        name=f"test-{kind}",
        kind=kind,
        base_url=base_url or DEFAULT_BASE_URLS[kind],
        credentials=DEFAULT_CREDENTIALS[kind],
        concurrency=2,
        options=options,
    )


def local_ref(path: Path, role: str, media_type: str) -> InputRef:
    data = path.read_bytes()
    return InputRef(role=role, media_type=media_type, path=path, sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data))


def url_ref(url: str, role: str, media_type: str) -> InputRef:
    return InputRef(role=role, media_type=media_type, url=url)


def make_job(kind: str, inputs: Mapping[str, InputRef], params: Mapping[str, Any], key: str = "k" * 64) -> Job:
    return Job(key=key, account=f"test-{kind}", kind=kind, clip="clip", script="welcome", lang="en",
               voice="narrator", outputs=("out.mp4",), inputs=dict(inputs), params=dict(params))


class Recorder:
    """A MockTransport answering from a handler and keeping every request (with its JSON body)."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


def answer(status: int = 200, body: Any = None, headers: Mapping[str, str] | None = None) -> Callable:
    """A handler giving the same JSON answer to every request."""
    return lambda request: httpx.Response(status, json=body, headers=dict(headers or {}))


SANDBOX_URL = "http://127.0.0.1:8765"
POLL_LIMIT = 200  # polls before a test gives up (a count, not a clock)


async def until_terminal(client: Any, task_id: str, advance: Callable[[float], None]) -> Any:
    """Poll a task, jumping the sandbox's virtual clock between polls, until it ends."""
    from lipbatch.providers.base import Phase

    seen = []
    for _ in range(POLL_LIMIT):
        state = await client.poll(task_id)
        seen.append(state.phase)
        if state.phase in (Phase.SUCCEEDED, Phase.FAILED):
            return state, seen
        advance(1.0)
    raise AssertionError(f"task {task_id} never ended: {seen[-5:]}")
