"""``POST /_sandbox/forget``: providers that lost uploads, tasks or result files answer as documented."""

from __future__ import annotations

import httpx
import pytest
from emulator_kit import download
from sandbox_kit import fast_app
from world_kit import FROZEN, SCRIPTS, MagicHour, Script, Useapi, client_for, partial_match

pytestmark = pytest.mark.anyio

NO_SUCH_KEY = b"<Code>NoSuchKey</Code>"


@pytest.fixture
def app():
    return fast_app(time_scale=FROZEN)


@pytest.fixture
async def client(app):
    async with client_for(app) as client:
        yield client


async def forget(client: httpx.AsyncClient, **body) -> dict:
    answer = await client.post("/_sandbox/forget", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def finished(client: httpx.AsyncClient, script: Script, n: int = 0) -> tuple[str, str]:
    """A finished task of ``script`` and a result URL it handed out."""
    task_id = await script.create(client, await script.inputs(client), n)
    await client.post("/_sandbox/advance", json={"seconds": 60})
    body = (await script.poll(client, task_id)).json()
    assert script.status(body) == script.done
    return task_id, script.result(body)


def assert_not_found(script: Script, answer: httpx.Response) -> None:
    status, expected = script.not_found
    assert answer.status_code == status and partial_match(answer.json(), expected), answer.text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
async def test_forgotten_tasks_poll_not_found_while_their_results_stay(script, client):
    task_id, url = await finished(client, script)
    counts = await forget(client, tasks=True, provider=script.name)
    assert counts == {"uploads": 0, "tasks": 1, "results": 0,
                      "by_provider": {script.name: {"uploads": 0, "tasks": 1, "results": 0}}}
    assert_not_found(script, await script.poll(client, task_id))
    assert (await download(client, url)).status_code == 200  # the CDN object outlives the record


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
async def test_forgotten_results_never_download_again_and_leave_tasks_in_flight_alone(script, client):
    task_id, url = await finished(client, script)
    inputs = await script.inputs(client)
    in_flight = await script.create(client, inputs, 1)

    counts = await forget(client, results=True)
    assert counts["results"] == 1 and counts["by_provider"][script.name]["results"] == 1
    gone = await download(client, url)
    assert gone.status_code == 404 and NO_SUCH_KEY in gone.content
    again = await script.poll(client, task_id)
    if isinstance(script, MagicHour):  # the docs' deleted project: enabled false, nothing to download
        body = again.json()
        assert again.status_code == 200 and body["enabled"] is False
        assert body["downloads"] == [] and body["download"] is None
    else:  # the task whose media is gone is purged
        assert_not_found(script, again)
        assert counts["tasks"] == 1

    await client.post("/_sandbox/advance", json={"seconds": 60})
    later = (await script.poll(client, in_flight)).json()
    assert script.status(later) == script.done
    assert (await download(client, script.result(later))).status_code == 200


async def test_forgotten_useapi_assets_answer_like_unknown_ones(client):
    script = Useapi()
    video, audio = await script.inputs(client)
    before = await script.create(client, (video, audio))
    counts = await forget(client, uploads=True, provider="useapi")
    assert counts["uploads"] == 2 and counts["tasks"] == 0

    answer = await script.create_answer(client, (video, audio), 1)
    assert answer.status_code == 404
    assert answer.json() == {"error": f"Unable to retrieve assetId {video.rsplit(':', 1)[1]} (Not found.)",
                             "code": 404}
    asset = await client.get(f"{script.api}/assets/{video}", headers=script.auth)
    assert asset.status_code == 404 and asset.json() == {"error": "Not found.", "code": 404}
    await client.post("/_sandbox/advance", json={"seconds": 60})
    done = (await script.poll(client, before)).json()  # accepted before: its inputs were taken then
    assert done["status"] == "SUCCEEDED" and (await download(client, script.result(done))).status_code == 200


async def test_forgotten_magic_hour_uploads_are_the_documented_missing_file_path(client):
    script = MagicHour()
    inputs = await script.inputs(client)
    counts = await forget(client, uploads=True)
    assert counts["uploads"] == 2 and counts["by_provider"]["magichour"]["uploads"] == 2
    answer = await script.create_answer(client, inputs)
    assert answer.status_code == 400
    assert answer.json() == {"message": f"assets.video_file_path: file {inputs['video_file_path']} not found "
                                        "(not uploaded, or deleted after 7 days)"}


async def test_forgetting_one_provider_leaves_the_others(client):
    made = {script.name: await script.create(client, await script.inputs(client)) for script in SCRIPTS}
    counts = await forget(client, tasks=True, uploads=True, results=True, provider="magichour")
    assert counts["tasks"] == 1 and counts["uploads"] == 2 and list(counts["by_provider"]) == ["magichour"]
    for script in SCRIPTS:
        answer = await script.poll(client, made[script.name])
        assert answer.status_code == (404 if script.name == "magichour" else 200)


async def test_the_python_method_matches_the_route(app, client):
    sandbox = app.state.sandbox
    script = SCRIPTS[2]
    await script.create(client, None)
    assert sandbox.forget(tasks=True) == {"uploads": 0, "tasks": 1, "results": 0, "by_provider": {
        name: {"uploads": 0, "tasks": int(name == script.name), "results": 0} for name in sandbox.emulators}}
    assert sandbox.forget(uploads=True, tasks=True, results=True)["tasks"] == 0


async def test_bad_forget_bodies_are_400_and_forget_nothing(client):
    script = SCRIPTS[3]
    task_id = await script.create(client, None)
    for body in ([], {"tasks": "yes"}, {"uploads": 1}, {"provider": "runway"}, {"provider": 3},
                 {"everything": True, "tasks": True}):
        answer = await client.post("/_sandbox/forget", json=body)
        assert answer.status_code == 400 and answer.json()["error"], body
    empty = await client.post("/_sandbox/forget", content=b"")
    assert empty.status_code == 400 and empty.json()["error"]
    assert (await script.poll(client, task_id)).status_code == 200
