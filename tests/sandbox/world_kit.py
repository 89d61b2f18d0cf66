"""One small request script per emulator, for the persistence and forgetting tests (``world_kit``).

Each ``Script`` uploads its inputs (where the provider has uploads), creates a task (``n`` varies
the body, so creates are not duplicates unless asked), polls it and reads its status and result
URL, in the provider's documented shapes. ``not_found`` is the documented answer to polling an
unknown task.
"""

from __future__ import annotations

from typing import Any

import httpx
from emulator_kit import data_uri, video_bytes, wav_bytes
from sandbox_kit import fast_app
from starlette.applications import Starlette

from lipbatch.sandbox import creatify

FROZEN = 1e6  # real seconds per virtual second: time stands still unless advanced
BASE_URL = "http://127.0.0.1:8765"


def world_app(folder, **changes: Any) -> Starlette:
    """A sandbox keeping its world in ``folder``, with the clock frozen (tests advance it)."""
    return fast_app(**({"time_scale": FROZEN} | changes), world=folder)


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


class Script:
    name = ""
    auth: dict[str, str] = {}
    secret = ""  # the credential that must never be written down
    done = ""
    not_found: tuple[int, dict[str, Any]] = (404, {})

    async def inputs(self, client: httpx.AsyncClient) -> Any:
        return None

    async def create(self, client: httpx.AsyncClient, inputs: Any, n: int = 0) -> str:
        raise NotImplementedError

    async def poll(self, client: httpx.AsyncClient, task_id: str) -> httpx.Response:
        raise NotImplementedError

    def status(self, body: dict[str, Any]) -> str:
        return body["status"]

    def result(self, body: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def same_task(self, body: dict[str, Any]) -> dict[str, Any]:
        """The view minus what legitimately changes between polls: fresh URLs, and wall-clock stamps
        and estimates (a reloaded clock maps virtual to wall time within microseconds, which can
        flip a millisecond digit)."""
        volatile = {"artifacts", "output", "downloads", "download", "video", "createdAt", "updatedAt",
                    "created_at", "updated_at", "requestId", "timestamp", "estimatedTimeToStartSeconds"}
        return {k: v for k, v in body.items() if k not in volatile}


class Useapi(Script):
    name = "useapi"
    auth = {"Authorization": "Bearer user:1234-abcdef"}
    secret = "user:1234-abcdef"
    done = "SUCCEEDED"
    not_found = (404, {"error": "Not found.", "code": 404})
    api = "/v1/runwayml"

    async def upload(self, client: httpx.AsyncClient, data: bytes, content_type: str, name: str) -> str:
        answer = await client.post(f"{self.api}/assets/", params={"name": name}, content=data,
                                   headers=self.auth | {"Content-Type": content_type})
        assert answer.status_code == 200, answer.text
        return answer.json()["assetId"]

    async def inputs(self, client: httpx.AsyncClient) -> Any:
        return (await self.upload(client, video_bytes(), "video/mp4", "clip.mp4"),
                await self.upload(client, wav_bytes(), "audio/wav", "speech.wav"))

    async def create_answer(self, client: httpx.AsyncClient, inputs: Any, n: int = 0) -> httpx.Response:
        video, audio = inputs
        return await client.post(f"{self.api}/lipsync/create", headers=self.auth,
                                 json={"video_assetId": video, "audio_assetId": audio, "replyRef": f"job-{n}"})

    async def create(self, client: httpx.AsyncClient, inputs: Any, n: int = 0) -> str:
        answer = await self.create_answer(client, inputs, n)
        assert answer.status_code == 200, answer.text
        return answer.json()["taskId"]

    async def poll(self, client: httpx.AsyncClient, task_id: str) -> httpx.Response:
        return await client.get(f"{self.api}/tasks/{task_id}", headers=self.auth)

    def result(self, body: dict[str, Any]) -> str | None:
        return body["artifacts"][0]["url"] if body["artifacts"] else None


class MagicHour(Script):
    name = "magichour"
    auth = {"Authorization": "Bearer mhk_live_test"}
    secret = "mhk_live_test"
    done = "complete"
    not_found = (404, {"message": "Not Found"})

    async def upload(self, client: httpx.AsyncClient, data: bytes, kind: str, extension: str) -> str:
        answer = await client.post("/v1/files/upload-urls", headers=self.auth,
                                   json={"items": [{"type": kind, "extension": extension}]})
        assert answer.status_code == 200, answer.text
        item = answer.json()["items"][0]
        put = await client.put(httpx.URL(item["upload_url"]), content=data)
        assert put.status_code == 200, put.text
        return item["file_path"]

    async def inputs(self, client: httpx.AsyncClient) -> Any:
        return {"video_source": "file", "video_file_path": await self.upload(client, video_bytes(), "video", "mp4"),
                "audio_file_path": await self.upload(client, wav_bytes(), "audio", "wav")}

    async def create_answer(self, client: httpx.AsyncClient, inputs: Any, n: int = 0) -> httpx.Response:
        return await client.post("/v1/lip-sync", headers=self.auth, json={
            "name": f"job-{n}", "start_seconds": 0, "end_seconds": 1.0, "assets": inputs})

    async def create(self, client: httpx.AsyncClient, inputs: Any, n: int = 0) -> str:
        answer = await self.create_answer(client, inputs, n)
        assert answer.status_code == 200, answer.text
        return answer.json()["id"]

    async def poll(self, client: httpx.AsyncClient, task_id: str) -> httpx.Response:
        return await client.get(f"/v1/video-projects/{task_id}", headers=self.auth)

    def result(self, body: dict[str, Any]) -> str | None:
        return body["downloads"][0]["url"] if body["downloads"] else None


class Pixverse(Script):
    name = "aimlapi"
    auth = {"Authorization": "Bearer aiml-test-key"}
    secret = "aiml-test-key"
    done = "succeeded"
    not_found = (404, {"message": "Generation not found", "path": "/v2/video/generations", "statusCode": 404})
    path = "/v2/video/generations"

    async def create(self, client: httpx.AsyncClient, inputs: Any, n: int = 0) -> str:
        answer = await client.post(self.path, headers=self.auth, json={
            "model": "pixverse/lip-sync", "video_url": data_uri(video_bytes(), "video/mp4"),
            "lip_sync_tts_content": f"Take number {n}, rolling.", "lip_sync_tts_speaker": "Oliver"})
        assert answer.status_code == 200, answer.text
        return answer.json()["id"]

    async def poll(self, client: httpx.AsyncClient, task_id: str) -> httpx.Response:
        return await client.get(self.path, headers=self.auth, params={"generation_id": task_id})

    def result(self, body: dict[str, Any]) -> str | None:
        return body["video"]["url"] if body["video"] else None


class Creatify(Script):
    name = "creatify"
    auth = {"X-API-ID": "api-id-1", "X-API-KEY": "api-key-1"}
    secret = "api-key-1"  # the X-API-ID names the account (stats show it too)
    done = "done"
    not_found = (404, {"detail": "Not found."})
    path = "/api/lipsyncs_v2/"

    async def create(self, client: httpx.AsyncClient, inputs: Any, n: int = 0) -> str:
        voice = {"type": "text", "input_text": f"Take number {n}, rolling.",
                 "voice_id": creatify.VOICES[0]["accents"][0]["id"]}
        answer = await client.post(self.path, headers=self.auth, json={"video_inputs": [
            {"character": {"type": "avatar", "avatar_id": creatify.PERSONAS[0]["id"]}, "voice": voice}]})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    async def poll(self, client: httpx.AsyncClient, task_id: str) -> httpx.Response:
        return await client.get(f"{self.path}{task_id}/", headers=self.auth)

    def result(self, body: dict[str, Any]) -> str | None:
        return body["output"]


SCRIPTS = [Useapi(), MagicHour(), Pixverse(), Creatify()]


def partial_match(body: dict[str, Any], expected: dict[str, Any]) -> bool:
    """``body`` carries every key of ``expected`` with the same value."""
    return all(body.get(key) == value for key, value in expected.items())
