"""Helpers shared by the provider-emulator contract tests (imported as ``emulator_kit``).

Tiny real media for inputs, data URIs, polling a status until it is terminal, and
downloading + probing a result. Only the docs' contracts are encoded in the tests;
this module holds plumbing.
"""

from __future__ import annotations

import base64
import fractions
import functools
import io
import json
import math
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import av
import httpx
import trio

from lipbatch.media import MediaInfo, probe, verify_playable

POLL_LIMIT = 4000  # polls before a test gives up (a count, not a clock)


@functools.cache
def video_bytes(seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small silent MP4 whose frames change, lasting ``seconds``."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame(size[0], size[1], "yuv420p")
            for plane_index, plane in enumerate(frame.planes):
                value = (index * 9 + 60) % 256 if plane_index == 0 else 128
                plane.update(bytes([value]) * plane.buffer_size)
            frame.pts = index
            frame.time_base = fractions.Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@functools.cache
def wav_bytes(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV tone lasting ``seconds``."""
    out = io.BytesIO()
    with av.open(out, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        total = round(seconds * rate)
        samples = b"".join(
            int(8000 * math.sin(2 * math.pi * 440 * n / rate)).to_bytes(2, "little", signed=True)
            for n in range(total)
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=total)
        frame.planes[0].update(samples)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


async def probe_bytes(data: bytes, tmp_path: Path, name: str = "result.mp4") -> MediaInfo:
    """Write ``data`` and require it to be a playable MP4 (PyAV in a worker thread)."""
    path = tmp_path / name
    await trio.Path(path).write_bytes(data)
    await trio.to_thread.run_sync(verify_playable, path)
    return await trio.to_thread.run_sync(probe, path)


async def download(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET a result URL verbatim, with no provider credentials."""
    return await client.get(httpx.URL(url), headers={"authorization": ""})


async def follow(fetch: Callable[[], Awaitable[dict[str, Any]]], terminal: Iterable[str],
                 *, key: str = "status", pause: float = 0.002) -> tuple[list[str], dict[str, Any]]:
    """Poll until ``body[key]`` is terminal; the distinct statuses seen, in order, and the last body."""
    terminal = set(terminal)
    seen: list[str] = []
    for _ in range(POLL_LIMIT):
        body = await fetch()
        status = body[key]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in terminal:
            return seen, body
        await trio.sleep(pause)
    raise AssertionError(f"never reached {sorted(terminal)}; saw {seen}")


def in_order(seen: list[str], lifecycle: list[str]) -> bool:
    """True when ``seen`` only moves forward through ``lifecycle`` (states may be skipped)."""
    positions = [lifecycle.index(status) for status in seen]
    return positions == sorted(positions) and len(set(positions)) == len(positions)


async def host(emu: Any, data: bytes, filename: str) -> str:
    """Publish ``data`` on the sandbox itself: a URL the emulators can fetch as an input."""
    answer = await emu.client.post("/_sandbox/publish", params={"filename": filename}, content=data)
    answer.raise_for_status()
    return answer.json()["url"]


class WebhookReceiver:
    """A loopback webhook endpoint: an ASGI app reached through the sandbox's callback transport
    (in-process) or served on a real socket (``url`` is then set to its address)."""

    url = "http://127.0.0.1:9/hook"

    def __init__(self) -> None:
        self.posts: list[Any] = []
        self._arrived = trio.Event()

    async def app(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.posts.append(json.loads(body))
        self._arrived.set()
        self._arrived = trio.Event()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    async def wait(self, count: int) -> list[Any]:
        """The first ``count`` posts, waiting for them (bounded by the number of arrivals)."""
        with trio.fail_after(10):  # a hang guard only; nothing asserts on time
            while len(self.posts) < count:
                await self._arrived.wait()
        return self.posts[:count]
