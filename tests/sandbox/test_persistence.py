"""A persistent sandbox world: a new app on the same folder continues where the last one stopped."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from emulator_kit import download, video_bytes
from starlette.applications import Starlette
from world_kit import SCRIPTS, Creatify, MagicHour, Useapi, client_for, world_app

from lipbatch import cli
from lipbatch.errors import UsageError
from lipbatch.sandbox import world as world_module

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def opened(folder, **changes: Any) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """An app on the world in ``folder`` and a client for it; the world is closed (saved) after."""
    app = world_app(folder, **changes)
    try:
        async with client_for(app) as client:
            yield app, client
    finally:
        app.state.world.close()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
async def test_a_reloaded_world_continues_inputs_tasks_credits_and_stats(script, tmp_path):
    async with opened(tmp_path, credits=1e9) as (app, client):
        inputs = await script.inputs(client)
        task_id = await script.create(client, inputs, 1)
        before = await script.poll(client, task_id)
        stats_before = app.state.sandbox.stats()
    assert before.status_code == 200 and script.status(before.json()) != script.done

    async with opened(tmp_path, credits=1e9) as (app, client):
        sandbox = app.state.sandbox
        again = await script.poll(client, task_id)
        assert again.status_code == 200, again.text
        assert script.same_task(again.json()) == script.same_task(before.json())
        stats = sandbox.stats()
        assert stats["credits_used"] == stats_before["credits_used"] and stats["credits_used"]
        assert stats["creates_total"] == 1 and stats["requests"] == stats_before["requests"] + 1

        sandbox.advance(60.0)
        done = (await script.poll(client, task_id)).json()
        assert script.status(done) == script.done
        result = await download(client, script.result(done))
        assert result.status_code == 200 and result.content

        second = await script.create(client, inputs, 2)  # the uploaded inputs are still there
        await script.create(client, inputs, 1)  # the same body as before the restart
        stats = sandbox.stats()
        assert second != task_id
        assert stats["duplicate_creates"] == 1 and stats["creates_total"] == 3
    for name in ("world.json", "stats.json"):  # no secret is ever written down
        assert script.secret not in (tmp_path / name).read_text()


async def test_result_urls_handed_out_before_a_restart_still_download_from_the_files_folder(tmp_path):
    script = Creatify()
    async with opened(tmp_path) as (app, client):
        task_id = await script.create(client, None)
        app.state.sandbox.advance(60.0)
        url = script.result((await script.poll(client, task_id)).json())
        first = (await download(client, url)).content
    on_disk = [path.read_bytes() for path in (tmp_path / "files").iterdir()]
    assert first in on_disk
    assert first not in (tmp_path / "world.json").read_bytes()

    async with opened(tmp_path) as (app, client):
        again = await download(client, url)
        assert again.status_code == 200 and again.content == first
        ranged = await client.get(httpx.URL(url), headers={"Range": "bytes=2-9"})
        assert ranged.status_code == 206 and ranged.content == first[2:10]


async def test_the_clock_continues_by_the_wall_time_since_the_save_at_the_new_scale(tmp_path, monkeypatch):
    script = Creatify()
    async with opened(tmp_path, job_seconds=10.0) as (app, client):
        app.state.sandbox.advance(100.0)
        task_id = await script.create(client, None)
    async with opened(tmp_path) as (app, client):  # no wall time to speak of: the clock is continuous
        assert 100.0 <= app.state.sandbox.now() < 100.5
        assert script.status((await script.poll(client, task_id)).json()) == "pending"

    monkeypatch.setattr(world_module, "wall_clock", lambda: time.time() + 40.0)
    async with opened(tmp_path, time_scale=0.5) as (app, client):  # 40 wall s = 80 virtual s
        now = app.state.sandbox.now()
        assert 180.0 <= now < 181.0
        assert script.status((await script.poll(client, task_id)).json()) == script.done


async def test_a_moderated_task_is_refunded_at_its_first_poll_after_a_reload(tmp_path):
    script = Useapi()
    async with opened(tmp_path, credits=100.0, moderate=("forbidden",)) as (app, client):
        video = await script.upload(client, video_bytes(), "video/mp4", "forbidden take.mp4")
        _, audio = await script.inputs(client)
        task_id = await script.create(client, (video, audio))
        assert app.state.sandbox.stats()["credits_used"]["useapi/runway-1234@example.com"] > 0
    async with opened(tmp_path, credits=100.0, moderate=("forbidden",)) as (app, client):
        app.state.sandbox.advance(60.0)  # the refund timer of the first process is gone
        assert (await script.poll(client, task_id)).json()["status"] == "FAILED"
        assert app.state.sandbox.stats()["credits_used"]["useapi/runway-1234@example.com"] == 0


async def test_every_request_saves_and_only_changed_records_rewrite_the_world_file(tmp_path):
    script = Useapi()  # no timers (no replyUrl, no moderation): every change comes from a request
    async with opened(tmp_path) as (app, client):
        world = app.state.world
        task_id = await script.create(client, await script.inputs(client))
        saves, durable = world.saves, world.durable_saves
        assert durable >= 1
        for _ in range(3):  # polls of a queued task change only counters: stats.json
            await script.poll(client, task_id)
        assert (world.saves, world.durable_saves) == (saves + 3, durable)
        await client.get("/_sandbox/stats")
        await client.get("/_sandbox/config")
        assert world.saves == saves + 3
        await client.post("/_sandbox/advance", json={"seconds": 60})  # the task leaves the schedule
        assert (world.saves, world.durable_saves) == (saves + 4, durable + 1)
        await script.poll(client, task_id)  # lists the result as an asset
        assert (world.saves, world.durable_saves) == (saves + 5, durable + 2)
        requests = app.state.sandbox.stats()["requests"]
    async with opened(tmp_path) as (app, _):
        assert app.state.sandbox.stats()["requests"] == requests == 7


async def test_a_torn_or_stale_stats_file_falls_back_to_the_world_file(tmp_path):
    script = Creatify()
    async with opened(tmp_path) as (app, client):
        task_id = await script.create(client, None)
    for _ in range(2):
        async with opened(tmp_path) as (app, client):
            await script.poll(client, task_id)
    stats_file = tmp_path / "stats.json"
    stale = stats_file.read_bytes()
    async with opened(tmp_path) as (app, _):
        assert app.state.sandbox.stats()["requests"] == 3
    stats_file.write_bytes(stale[:len(stale) // 2])
    async with opened(tmp_path) as (app, _):
        assert app.state.sandbox.stats()["requests"] == 1  # as of the last world.json: the create
    async with opened(tmp_path) as (app, client):
        await client.post("/_sandbox/forget", json={"tasks": True})  # a new world.json...
    stats_file.write_bytes(stale)  # ... that an older stats.json does not extend
    async with opened(tmp_path) as (app, _):
        assert app.state.sandbox.stats()["requests"] == 1


async def test_concurrent_saves_share_one_write(tmp_path):
    world = world_app(tmp_path).state.world
    gate = threading.Event()
    write = world._write

    def held_write(*args: Any) -> Any:
        gate.wait(timeout=30)
        return write(*args)

    world._write = held_write
    saves = world.saves
    async with trio.open_nursery() as nursery:
        nursery.start_soon(world.save)
        await trio.testing.wait_all_tasks_blocked()  # the new world's first save: writing, in a thread
        for _ in range(5):
            nursery.start_soon(world.save)
        await trio.testing.wait_all_tasks_blocked()  # five more wait behind it
        gate.set()
    assert world.saves == saves + 2  # the first, then one for the five
    world.close()


async def test_strays_of_a_crash_are_ignored_and_removed(tmp_path):
    script = Creatify()
    async with opened(tmp_path) as (_, client):
        task_id = await script.create(client, None)
    (tmp_path / "world.json.tmp").write_bytes(b'{"format": "lipbatch-sandbox-wor')  # a save cut short
    (tmp_path / "files" / "0123abcd").write_bytes(b"bytes written before a crash")
    (tmp_path / "files" / "0123abcd.tmp").write_bytes(b"half")
    async with opened(tmp_path) as (_, client):
        assert (await script.poll(client, task_id)).status_code == 200
        assert not (tmp_path / "files" / "0123abcd").exists()
        assert not (tmp_path / "files" / "0123abcd.tmp").exists()


async def test_forgotten_and_reset_files_leave_the_disk_and_stay_gone_after_a_reload(tmp_path):
    script = MagicHour()
    async with opened(tmp_path) as (app, client):
        inputs = await script.inputs(client)
        await script.create(client, inputs)
        assert len(list((tmp_path / "files").iterdir())) == 3  # two uploads, one result
        forgotten = await client.post("/_sandbox/forget", json={"uploads": True})
        assert forgotten.json()["uploads"] == 2
        assert len(list((tmp_path / "files").iterdir())) == 1
    async with opened(tmp_path) as (app, client):
        answer = await script.create_answer(client, inputs)
        assert answer.status_code == 400 and "not found" in answer.json()["message"]
        await client.post("/_sandbox/reset")
        assert list((tmp_path / "files").iterdir()) == []
    async with opened(tmp_path) as (app, _):
        assert app.state.sandbox.stats()["requests"] == 0


def test_a_world_in_use_is_refused_until_its_app_closes(tmp_path):
    app = world_app(tmp_path)
    with pytest.raises(UsageError, match="in use"):
        world_app(tmp_path)
    app.state.world.close()
    world_app(tmp_path).state.world.close()


def _without_files(document: dict) -> None:
    document["records"]["sandbox"]["files"] = {"ab12": ["creatify", "output.mp4", "video/mp4", 10, None]}


@pytest.mark.parametrize("damage,message", [
    (lambda raw, doc: b"\x00garbage", "is corrupt"),
    (lambda raw, doc: raw[:len(raw) // 2], "is corrupt"),
    (lambda raw, doc: json.dumps(doc | {"version": 99}).encode(), "incompatible lipbatch"),
    (lambda raw, doc: json.dumps(doc | {"format": "something-else"}).encode(), "not a lipbatch sandbox world"),
    (lambda raw, doc: json.dumps(doc | {"records": {"sandbox": doc["records"]["sandbox"]}}).encode(), "is corrupt"),
    (lambda raw, doc: (_without_files(doc), json.dumps(doc).encode())[1], "is corrupt"),
], ids=["garbage", "truncated", "version", "format", "missing-part", "missing-file"])
def test_a_damaged_world_is_a_clear_usage_error_exit_2(damage, message, tmp_path, capsys):
    world_app(tmp_path).state.world.close()
    raw = (tmp_path / "world.json").read_bytes()
    (tmp_path / "world.json").write_bytes(damage(raw, json.loads(raw)))

    assert cli.main(["sandbox", "--world", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and str(tmp_path) in error and "Traceback" not in error
