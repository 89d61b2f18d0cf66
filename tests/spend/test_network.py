"""Network trouble is visible: retries are events naming the host, and an unreachable host stops its account.

Real loopback sockets (no in-process transport): a closed port, and a name a patched resolver refuses.
"""

from __future__ import annotations

import dataclasses
import socket
from functools import partial

import pytest
import trio
import yaml
from harness import FAST_SANDBOX, Harness, fast_options
from kinds import write_manifest
from spendkit import creatify_manifest, magichour_manifest

from lipbatch.campaign import load_campaign
from lipbatch.engine.accounts import point_at_sandbox
from lipbatch.errors import EXIT_JOBS_FAILED
from lipbatch.progress import describe
from lipbatch.report import summary_lines
from lipbatch.runner import run_project
from lipbatch.sandbox.app import build_app
from lipbatch.sandbox.core import SandboxConfig
from lipbatch.sandbox.server import serve

pytestmark = pytest.mark.anyio

NOWHERE = "lipbatch-unreachable.invalid"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Resolver(trio.abc.HostnameResolver):
    """Every name resolves as usual except ``NOWHERE``, which does not exist."""

    def __init__(self) -> None:
        self.refused = 0

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name == NOWHERE:
            self.refused += 1
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await trio.to_thread.run_sync(socket.getaddrinfo, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags):
        return await trio.to_thread.run_sync(socket.getnameinfo, sockaddr, flags)


def retries(events, host: str) -> list:
    return [e for e in events if e.type in ("retry", "job_retry")]


async def test_a_closed_port_stops_its_account_within_its_retry_budget(tmp_path, media):
    port = closed_port()
    manifest = magichour_manifest(tmp_path, media, [0.5, 1.0, 1.5], concurrency=2)
    project = point_at_sandbox(load_campaign(manifest, sandbox=True), f"http://127.0.0.1:{port}")
    events = []
    summary = await run_project(project, fast_options(), sink=events.append, environ={})

    host = f"127.0.0.1:{port}"
    assert summary.exit_code == EXIT_JOBS_FAILED and summary.not_run == 3
    stopped = [e for e in events if e.type == "account_stopped"]
    assert len(stopped) == 1 and stopped[0].message.startswith(f"cannot reach {host}: ")
    waits = retries(events, host)
    assert waits and all(e.data["host"] == host and e.data["next_attempt"] > e.time for e in waits)
    assert all("Connect" in e.message for e in waits)
    # 8 s of refused connections at this time scale, waits of 0.5, 1, 2, 2, ... s: a bounded number of tries
    assert len(waits) <= 3 * 8
    text = "\n".join(summary_lines(summary))
    assert f"cannot reach {host}" in text and "not submitted (3)" in text


async def test_a_name_that_does_not_resolve_stops_only_its_account(tmp_path, media):
    resolver = Resolver()
    trio.socket.set_custom_hostname_resolver(resolver)
    creatify = creatify_manifest(tmp_path / "c", [5, 5])
    mh = yaml.safe_load(magichour_manifest(tmp_path / "m", media, [0.5, 1.0]).read_text())
    data = yaml.safe_load(creatify.read_text())
    data["providers"]["mh"] = mh["providers"]["mh"]
    data["clips"].update(mh["clips"])
    data["scripts"].update(mh["scripts"])
    data["jobs"] += mh["jobs"]
    creatify.write_text(yaml.safe_dump(data))

    app = build_app(SandboxConfig(**FAST_SANDBOX))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, app))
        project = point_at_sandbox(load_campaign(creatify, sandbox=True), url)
        lost = dataclasses.replace(project.accounts["creatify"], base_url=f"http://{NOWHERE}/api")
        project = dataclasses.replace(project, accounts={**project.accounts, "creatify": lost})
        events = []
        summary = await run_project(project, fast_options(), sink=events.append, environ={})
        nursery.cancel_scope.cancel()

    assert resolver.refused >= 1
    assert (summary.done, summary.not_run) == (2, 2)  # Magic Hour went on
    stopped = [e for e in events if e.type == "account_stopped"]
    assert [e.account for e in stopped] == ["creatify"]
    assert stopped[0].message.startswith(f"cannot reach {NOWHERE}: ")
    waits = [e for e in events if e.type == "job_retry" and e.account == "creatify"]
    assert waits and all(e.data["host"] == NOWHERE for e in waits)


async def test_download_retries_name_the_host_of_the_result(tmp_path, media):
    case = write_manifest("creatify-lipsync", tmp_path, media, jobs=1)
    h = Harness(rate_truncate=1.0)  # every result download is cut short
    project = h.project(case.manifest)
    summary = await h.run(project, environ=case.env)
    assert summary.done == 0
    waits = [e for e in h.events if e.type == "job_retry" and "download" in (e.message or "")]
    assert waits and all(e.data["host"] for e in waits)
    line = describe(waits[0])
    assert line is not None and f"{waits[0].data['host']}: download:" in line and "next attempt in 0.0s" in line
