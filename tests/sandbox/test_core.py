"""The sandbox core and app: virtual time, capacity, credits, files, faults, callbacks, serving."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from functools import partial

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from sandbox_kit import Emu, fast_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lipbatch import cli
from lipbatch.errors import UsageError
from lipbatch.sandbox import render
from lipbatch.sandbox.core import Sandbox, SandboxConfig
from lipbatch.sandbox.files import synthetic_block
from lipbatch.sandbox.server import serve

pytestmark = pytest.mark.anyio

FROZEN = 1e6  # real seconds per virtual second: time stands still unless advanced


def frozen_sandbox(**changes) -> Sandbox:
    return Sandbox(SandboxConfig(**({"time_scale": FROZEN, "job_seconds": 10.0} | changes)))


# -- virtual time and lifecycles ----------------------------------------------------------------


def test_advance_moves_virtual_time_and_scale_changes_keep_it_continuous():
    sandbox = frozen_sandbox()
    start = sandbox.now()
    sandbox.advance(42.0)
    assert sandbox.now() >= start + 42.0
    before = sandbox.now()
    sandbox.configure({"time_scale": 0.5})
    after = sandbox.now()
    assert before <= after < before + 1.0


def test_a_lifecycle_goes_queued_running_finished():
    sandbox = frozen_sandbox()
    lc = sandbox.lifecycle("p", "acct", delay=1.0)
    assert lc.phase() == "queued" and not lc.waiting_for_capacity()
    assert lc.eta() == pytest.approx(1.0, abs=0.01)
    sandbox.advance(6.0)
    assert lc.phase() == "running"
    assert lc.progress() == pytest.approx(0.5, abs=0.01)
    assert lc.eta() == pytest.approx(5.0, abs=0.01)
    sandbox.advance(5.0)
    assert lc.phase() == "finished" and lc.progress() == 1.0 and lc.eta() == 0.0


def test_capacity_queues_the_third_task_until_a_slot_frees():
    sandbox = frozen_sandbox()
    tasks = [sandbox.lifecycle("p", "acct", capacity=2) for _ in range(3)]
    other = sandbox.lifecycle("p", "other-acct", capacity=2)
    sandbox.advance(0.1)
    assert [t.phase() for t in tasks] == ["running", "running", "queued"]
    assert tasks[2].waiting_for_capacity()
    assert other.phase() == "running"
    assert sandbox.active_tasks("p", "acct") == 3 and sandbox.running_tasks("p", "acct") == 2
    sandbox.advance(10.0)
    assert [t.phase() for t in tasks] == ["finished", "finished", "running"]
    assert sandbox.active_tasks("p", "acct") == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.lists(st.tuples(st.floats(0, 5), st.floats(0.5, 5), st.floats(0, 3)),
                                   min_size=1, max_size=12))
def test_schedules_never_exceed_capacity_and_start_in_order(capacity, jobs):
    sandbox = frozen_sandbox()
    lifecycles = []
    for delay, seconds, gap in jobs:
        lifecycles.append(sandbox.lifecycle("p", "a", capacity=capacity, seconds=seconds, delay=delay))
        sandbox.advance(gap)
    starts = [lc.started_at for lc in lifecycles]
    assert starts == sorted(starts)
    for lc in lifecycles:
        assert lc.created_at <= lc.ready_at <= lc.started_at <= lc.finished_at
        overlapping = [o for o in lifecycles if o.started_at <= lc.started_at < o.finished_at]
        assert len(overlapping) <= capacity


# -- credits, moderation, creates ----------------------------------------------------------------


def test_credits_are_charged_only_when_affordable_and_refunds_restore_them():
    sandbox = frozen_sandbox(credits=10.0)
    assert sandbox.charge("p", "a", 6) and sandbox.credits_left("p", "a") == 4
    assert not sandbox.charge("p", "a", 5)
    assert sandbox.credits_used("p", "a") == 6
    assert sandbox.charge("p", "b", 10)  # per account
    sandbox.refund("p", "a", 6)
    assert sandbox.charge("p", "a", 10)
    assert frozen_sandbox().credits_left("p", "a") is None


def test_moderation_matches_whole_words_case_insensitively():
    sandbox = frozen_sandbox(moderate=("forbidden", "bad word"))
    assert sandbox.is_moderated("This is FORBIDDEN!")
    assert sandbox.is_moderated("a bad word here")
    assert not sandbox.is_moderated("unforbiddenness")
    assert not sandbox.is_moderated(None)
    assert not frozen_sandbox().is_moderated("forbidden")


def test_duplicate_creates_compare_canonical_bodies_per_kind():
    sandbox = frozen_sandbox()
    sandbox.record_create("k1", {"a": 1, "b": [1, 2]})
    sandbox.record_create("k1", {"b": [1, 2], "a": 1})
    sandbox.record_create("k1", {"a": 2})
    sandbox.record_create("k2", {"a": 1, "b": [1, 2]})
    stats = sandbox.stats()
    assert stats["creates"] == {"k1": 3, "k2": 1}
    assert stats["duplicate_creates"] == 1
    assert stats["duplicate_creates_by_kind"] == {"k1": 1}


def test_ids_are_reproducible_under_a_seed_and_differ_after_reset():
    first, second = frozen_sandbox(seed=7), frozen_sandbox(seed=7)
    ids = [first.new_id() for _ in range(3)]
    assert ids == [second.new_id() for _ in range(3)]
    first.reset()
    assert first.new_id() not in ids


# -- inputs ---------------------------------------------------------------------------------------


def test_fetch_input_reads_data_uris_and_own_files_only():
    sandbox = frozen_sandbox()
    assert sandbox.fetch_input("data:text/plain;base64," + base64.b64encode(b"hi there").decode()) == b"hi there"
    assert sandbox.fetch_input("data:,hello%20world") == b"hello world"
    token = sandbox.publish(b"payload", provider="useapi")
    url, _ = sandbox.result_url("http://127.0.0.1:9999", token)
    assert sandbox.fetch_input(url) == b"payload"
    assert sandbox.fetch_input(url.replace("127.0.0.1:9999", "files.example.com")) is None
    assert sandbox.fetch_input("https://cdn.example.com/video.mp4") is None
    sandbox.add_input_resolver(lambda u: b"resolved" if u.endswith("/upload/x") else None)
    assert sandbox.fetch_input("http://localhost:1/upload/x") == b"resolved"


# -- rendering ------------------------------------------------------------------------------------


def _info(data: bytes):
    info = render.probe_bytes(data)
    assert info is not None and info.has_video and info.has_audio
    return info


def test_render_lasts_as_long_as_the_audio_and_is_deterministic():
    from emulator_kit import video_bytes, wav_bytes

    with_audio = render.render_mp4(video=video_bytes(1.0), audio=wav_bytes(2.5))
    assert _info(with_audio).duration == pytest.approx(2.5, abs=0.15)
    assert render.render_mp4(video=video_bytes(1.0), audio=wav_bytes(2.5)) == with_audio
    tts = render.render_mp4(image=None, tts_text="x" * 60)  # 60 chars at 15/s
    assert _info(tts).duration == pytest.approx(4.0, abs=0.15)
    short = render.render_mp4(tts_text="hi")
    assert _info(short).duration == pytest.approx(1.0, abs=0.15)
    window = render.render_mp4(video=video_bytes(4.0), seconds=3.0)
    info = _info(window)
    assert info.duration == pytest.approx(3.0, abs=0.15)
    assert info.width <= render.MAX_WIDTH and info.height <= render.MAX_HEIGHT


def test_render_survives_unreadable_inputs():
    out = render.render_mp4(video=b"not a video", audio=b"not audio", seconds=1.0)
    assert _info(out).duration == pytest.approx(1.0, abs=0.15)


async def test_concurrent_identical_renders_run_once(emu: Emu):
    results = []
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(lambda: _append(results, emu.sandbox.render(tts_text="same text")))
    assert len(results) == 3 and len(set(results)) == 1
    assert len(emu.sandbox._render_cache) == 1


async def _append(results, awaitable):
    results.append(await awaitable)


# -- background: timers and callbacks ------------------------------------------------------------


def _receiver() -> tuple[Starlette, list[dict]]:
    received: list[dict] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])]), received


async def _until(predicate, limit: int = 2000) -> None:
    for _ in range(limit):
        if predicate():
            return
        await trio.sleep(0.002)
    raise AssertionError("condition never became true")


async def test_callbacks_go_to_loopback_only(emu: Emu):
    app, received = _receiver()
    emu.sandbox.callback_transport = httpx.ASGITransport(app=app)
    emu.sandbox.callback("http://127.0.0.1:9/hook", {"n": 1})
    emu.sandbox.callback("http://localhost:9/hook", {"n": 2})
    emu.sandbox.callback("https://webhook.site/abc", {"n": 3})
    emu.sandbox.callback("http://10.0.0.8/hook", {"n": 4})
    await _until(lambda: len(received) == 2)
    assert sorted(item["n"] for item in received) == [1, 2]
    stats = await emu.stats()
    assert stats["callbacks"]["refused"] == 2
    await _until(lambda: emu.sandbox.stats()["callbacks"].get("sent") == 2)


async def test_timers_fire_in_virtual_time_and_not_after_reset(emu: Emu):
    emu.configure(time_scale=FROZEN)
    fired: list[str] = []
    emu.sandbox.call_at(emu.sandbox.now() + 5, lambda: fired.append("kept"))
    await trio.sleep(0.01)
    assert fired == []
    emu.advance(5)
    await _until(lambda: fired == ["kept"])
    emu.sandbox.call_at(emu.sandbox.now() + 5, lambda: fired.append("dropped"))
    emu.sandbox.reset()
    emu.advance(5)
    await trio.sleep(0.05)  # advance() wakes sleeping timers at once
    assert fired == ["kept"]


# -- control routes -------------------------------------------------------------------------------


async def test_config_reads_and_changes_every_field_atomically(emu: Emu):
    config = (await emu.client.get("/_sandbox/config")).json()
    assert set(config) >= {"job_seconds", "time_scale", "max_jobs", "rate_429", "rate_5xx", "rate_reset",
                           "rate_truncate", "download_ttl", "moderate", "credits", "seed",
                           "pixverse_success_status", "creatify_aurora_pricing"}
    answer = await emu.client.post("/_sandbox/config", json={"moderate": ["x"], "credits": 5, "max_jobs": 2})
    assert answer.status_code == 200
    assert emu.sandbox.config.moderate == ("x",) and emu.sandbox.config.credits == 5
    for bad in ({"rate_429": 2}, {"nope": 1}, {"pixverse_success_status": "done"}, {"time_scale": 0},
                {"max_jobs": 0}, {"credits": 1, "rate_5xx": -1}):
        answer = await emu.client.post("/_sandbox/config", json=bad)
        assert answer.status_code == 400, bad
    assert emu.sandbox.config.credits == 5  # the rejected mixed request changed nothing


async def test_reset_clears_stats_and_files(emu: Emu):
    published = (await emu.client.post("/_sandbox/publish", content=b"abc")).json()
    assert (await emu.client.get(published["url"])).status_code == 200
    assert (await emu.stats())["downloads"] == 1
    assert (await emu.client.post("/_sandbox/reset")).status_code == 200
    stats = await emu.stats()
    assert stats["downloads"] == 0 and stats["requests"] == 0
    assert (await emu.client.get(published["url"])).status_code == 404


async def test_published_files_support_ranges_head_and_stream_synthetic_content(emu: Emu):
    size = 300_000
    published = (await emu.client.post(f"/_sandbox/publish?size={size}&provider=useapi")).json()
    url = published["url"]
    block = synthetic_block(emu.sandbox.file(published["token"]).seed)
    full = await emu.client.get(url)
    assert full.status_code == 200 and int(full.headers["content-length"]) == size
    assert full.content == (block * (size // len(block) + 1))[:size]
    part = await emu.client.get(url, headers={"Range": "bytes=70000-70009"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 70000-70009/{size}"
    assert part.content == full.content[70000:70010]
    tail = await emu.client.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == full.content[-5:]
    open_ended = await emu.client.get(url, headers={"Range": f"bytes={size - 3}-"})
    assert open_ended.content == full.content[-3:]
    unsatisfiable = await emu.client.get(url, headers={"Range": f"bytes={size}-"})
    assert unsatisfiable.status_code == 416 and unsatisfiable.headers["content-range"] == f"bytes */{size}"
    head = await emu.client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(size) and head.content == b""


async def test_result_urls_expire_and_tampering_is_refused(emu: Emu):
    emu.configure(download_ttl=10.0, time_scale=FROZEN)
    published = (await emu.client.post("/_sandbox/publish", content=b"video")).json()
    url = published["url"]
    assert published["expires_at"] is not None
    assert (await emu.client.get(url)).content == b"video"
    assert (await emu.client.get(url.replace("exp=", "exp=9"))).status_code == 404
    emu.advance(11)
    expired = await emu.client.get(url)
    assert expired.status_code == 403 and b"AccessDenied" in expired.content
    assert (await emu.stats())["downloads_expired"] == 1
    token = published["token"]
    fresh, _ = emu.sandbox.result_url(emu.url, token)
    assert fresh != url and (await emu.client.get(fresh)).status_code == 200


# -- faults ---------------------------------------------------------------------------------------

USEAPI_AUTH = {"Authorization": "Bearer user:42-token"}


async def test_every_provider_request_can_be_answered_429_with_retry_after(emu: Emu):
    emu.configure(rate_429=1.0, time_scale=1.0)
    answer = await emu.client.get("/v1/runwayml/accounts", headers=USEAPI_AUTH)
    assert answer.status_code == 429
    assert answer.json()["code"] == 429 and "error" in answer.json()
    assert float(answer.headers["retry-after"]) > 0
    control = await emu.client.get("/_sandbox/stats")
    assert control.status_code == 200
    assert control.json()["faults"] == {"429": 1}


async def test_5xx_faults_use_gateway_statuses(emu: Emu):
    emu.configure(rate_5xx=1.0)
    statuses = {(await emu.client.get("/v1/runwayml/accounts", headers=USEAPI_AUTH)).status_code
                for _ in range(20)}
    assert statuses <= {500, 502, 503} and len(statuses) > 1


async def _statuses(seed: int, path: str = "/v1/runwayml/accounts") -> list[int]:
    app = fast_app(seed=seed, rate_429=0.3, rate_5xx=0.3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        return [(await client.get(path, headers=USEAPI_AUTH)).status_code for _ in range(40)]


async def test_faults_are_reproducible_under_a_seed():
    first = await _statuses(3)
    assert first == await _statuses(3)
    assert {200, 429} <= set(first)
    assert first != await _statuses(4)


async def test_in_process_reset_is_a_transport_error_and_truncation_a_short_body(emu: Emu):
    published = (await emu.client.post("/_sandbox/publish", content=b"0123456789" * 100)).json()
    emu.configure(rate_reset=1.0)
    with pytest.raises(httpx.TransportError):
        await emu.client.get(published["url"])
    with pytest.raises(httpx.TransportError):
        await emu.client.get("/v1/runwayml/accounts", headers=USEAPI_AUTH)
    emu.configure(rate_reset=0.0, rate_truncate=1.0)
    short = await emu.client.get(published["url"])
    assert short.headers["content-length"] == "1000" and len(short.content) < 1000
    assert (await emu.client.get("/v1/runwayml/accounts", headers=USEAPI_AUTH)).status_code == 200
    assert (await emu.stats())["faults"] == {"reset": 2, "truncate": 1}


# -- real sockets ---------------------------------------------------------------------------------


async def test_served_faults_drop_real_connections(served: Emu):
    size = 2_000_000
    published = (await served.client.post(f"/_sandbox/publish?size={size}")).json()
    ok = await served.client.get(published["url"])
    assert ok.status_code == 200 and len(ok.content) == size
    served.configure(rate_truncate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        await served.client.get(published["url"])
    served.configure(rate_truncate=0.0, rate_reset=1.0)
    for url in (published["url"], "/v1/runwayml/accounts"):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await served.client.get(url, headers=USEAPI_AUTH)
    served.configure(rate_reset=0.0)
    assert (await served.client.get("/v1/runwayml/accounts", headers=USEAPI_AUTH)).status_code == 200


async def test_serve_refuses_non_loopback_hosts():
    with pytest.raises(UsageError):
        await serve(fast_app(), host="0.0.0.0")


async def test_serve_reports_the_bound_url():
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, fast_app(), host="127.0.0.1", port=0))
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/_sandbox/stats")).status_code == 200
        nursery.cancel_scope.cancel()


@pytest.mark.slow  # idles 6 s on purpose
async def test_an_idle_connection_outlives_the_clients_keep_alive_expiry():
    """httpx drops an idle connection after 5 s; the server must not close it first (or at the same
    moment): a create sent as the server closes loses its answer and its job becomes "unknown"."""
    async with trio.open_nursery() as nursery:
        url = await nursery.start(partial(serve, fast_app(), host="127.0.0.1", port=0))
        host, port = httpx.URL(url).host, httpx.URL(url).port
        stream = await trio.open_tcp_stream(host, port)
        request = f"GET /_sandbox/stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

        async def answer() -> bytes:
            """The status line and headers of one whole response (its body read too)."""
            data = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < length(data):
                    chunk = await stream.receive_some(65536)
                    assert chunk, "the server closed the connection"
                    data += chunk
            return data.partition(b"\r\n\r\n")[0]

        def length(data: bytes) -> int:
            head = data.partition(b"\r\n\r\n")[0].lower()
            return int(head.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in head else 0

        await stream.send_all(request)
        assert (await answer()).startswith(b"HTTP/1.1 200")
        await trio.sleep(httpx.Limits().keepalive_expiry + 1.0)  # 6 s idle: past the client's expiry
        await stream.send_all(request)  # the same connection, still open
        assert (await answer()).startswith(b"HTTP/1.1 200")
        await stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.slow
def test_cli_serves_with_its_flags_and_prints_the_url():
    command = [sys.executable, "-m", "lipbatch", "sandbox", "--port", "0", "--time-scale", "0.01",
               "--moderate", "alpha", "--moderate", "beta", "--credits", "7", "--seed", "9",
               "--pixverse-success-status", "completed", "--download-ttl", "30", "--rate-429", "0.25"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        config = httpx.get(f"{url}/_sandbox/config").json()
        assert config["moderate"] == ["alpha", "beta"] and config["credits"] == 7 and config["seed"] == 9
        assert config["pixverse_success_status"] == "completed" and config["download_ttl"] == 30
        assert config["rate_429"] == 0.25 and config["time_scale"] == 0.01
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("args", [["sandbox", "--port", "70000"], ["sandbox", "--port", "-1"],
                                  ["review", "x.yaml", "--port", "65536"], ["sandbox", "--rate-429", "2"],
                                  ["run", "x.yaml", "--jobs", "0"]])
def test_out_of_range_numbers_are_usage_errors_not_tracebacks(args, capsys):
    with pytest.raises(SystemExit) as exited:  # argparse refuses before anything starts
        cli.main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"argument {args[-2]}: must be" in err and "Traceback" not in err
