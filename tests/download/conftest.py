"""A tiny MP4 and a misbehaving origin server for the download tests, served over real loopback.

``Origin`` serves one file at ``/video.mp4`` with Starlette under hypercorn's trio
worker. ``faults`` is consumed one entry per request, so a test scripts exactly
what each attempt sees:

* ``"ok"`` - the normal answer (206 for a ``Range`` request when ``ranges`` is on)
* ``"drop:N"`` - headers announce the full length, N bytes follow, then the connection dies
* ``"stall:N"`` - N bytes, then nothing (until the client gives up or is cancelled)
* ``"short:N"`` - a lying server: Content-Length N and the first N bytes (truncation nobody can see)
* ``"junk"`` - as many random bytes as the file has
* ``"badrange:D"`` - a 206 that starts D bytes after (or before, D < 0) what was asked
* ``"unsatisfiable"`` - 416 for a ``Range`` request
* ``"chunked"`` - the body without Content-Length
* an integer - that HTTP status, with a body saying "Request has expired" for 400/403
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def _make_mp4(path: Path) -> None:
    rng = random.Random(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(20):
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(rng.randbytes(plane.buffer_size))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="session")
def mp4_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("media") / "tiny.mp4"
    _make_mp4(path)
    return path.read_bytes()


@dataclass
class Origin:
    body: bytes
    ranges: bool = True
    etag: str = '"v1"'
    faults: list[str | int] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)  # headers of every request, in order
    stalled: trio.Event = field(default_factory=trio.Event)
    url: str = ""
    next_version: tuple[bytes, str] | None = None  # (body, etag) the file changes to after the first request

    def range_starts(self) -> list[int | None]:
        """The byte offset each request asked to resume from (None: the whole file)."""
        starts = []
        for headers in self.requests:
            match = re.fullmatch(r"bytes=(\d+)-", headers.get("range", ""))
            starts.append(int(match[1]) if match else None)
        return starts

    async def endpoint(self, request: Request) -> Response:
        if self.requests and self.next_version:
            (self.body, self.etag), self.next_version = self.next_version, None
        self.requests.append(dict(request.headers))
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "unsatisfiable":
            return Response(status_code=416, headers={"content-range": f"bytes */{len(self.body)}"})
        if isinstance(fault, int):
            text = "Request has expired" if fault in (400, 403) else "nope"
            return Response(text, status_code=fault, headers={"retry-after": "0"})
        kind, _, arg = fault.partition(":")
        body, start = self.body, 0
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", ""))
        status = 200
        headers = {"etag": self.etag, "content-type": "video/mp4", "accept-ranges": "bytes" if self.ranges else "none"}
        if match and self.ranges and kind != "junk":
            start = int(match[1]) + (int(arg) if kind == "badrange" else 0)
            status = 206
            headers["content-range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        if kind == "junk":
            body = random.Random(7).randbytes(len(body))
        payload = body[start:]
        if kind == "short":
            payload = payload[: int(arg)]
        if kind != "chunked":
            headers["content-length"] = str(len(payload))

        async def stream() -> AsyncIterator[bytes]:
            if kind in ("drop", "stall"):
                yield payload[: int(arg)]
                if kind == "stall":
                    self.stalled.set()
                    await trio.sleep_forever()
                raise ConnectionResetError("origin drops the connection (test fault)")
            for offset in range(0, len(payload), 4096):
                yield payload[offset : offset + 4096]

        return StreamingResponse(stream(), status_code=status, headers=headers)


@pytest.fixture
async def origin(mp4_bytes: bytes) -> AsyncIterator[Origin]:
    origin = Origin(body=mp4_bytes)
    app = Starlette(routes=[Route("/video.mp4", origin.endpoint)])
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None  # the dropped connections are on purpose
    config.graceful_timeout = 0
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        origin.url = f"{binds[0]}/video.mp4"
        yield origin
        nursery.cancel_scope.cancel()
