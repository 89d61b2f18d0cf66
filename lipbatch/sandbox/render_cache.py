"""Rendered results remembered by content, so repeated and concurrent renders run once."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import trio

from lipbatch.sandbox.render import render_mp4

RENDER_CACHE_SIZE = 64


class RenderCache:
    """The latest ``RENDER_CACHE_SIZE`` renders (bounded: results are published anyway)."""

    def __init__(self) -> None:
        self.results: OrderedDict[str, bytes] = OrderedDict()
        self.inflight: dict[str, trio.Event] = {}

    async def render(self, *, video: bytes | None = None, image: bytes | None = None,
                     audio: bytes | None = None, tts_text: str | None = None,
                     seconds: float | None = None, start: float = 0.0) -> bytes:
        """A playable MP4: the video (or the image held still, or a generated picture) with the
        audio (or a tone whose length follows ``tts_text``) muxed in, lasting as long as the audio.

        ``seconds``, when given, sets the duration outright and ``start`` where the input video
        starts (a trim window). Results are
        cached by content, and concurrent renders of the same inputs run once.
        """
        digest = hashlib.sha256()
        for part in (video, image, audio, repr(tts_text).encode(), repr((seconds, start)).encode()):
            digest.update(hashlib.sha256(part or b"").digest())
        key = digest.hexdigest()
        while key not in self.results:
            if key in self.inflight:
                await self.inflight[key].wait()
                continue
            done = self.inflight[key] = trio.Event()
            try:
                result = await trio.to_thread.run_sync(
                    lambda: render_mp4(video=video, image=image, audio=audio,
                                       tts_text=tts_text, seconds=seconds, start=start))
                self.results[key] = result
                while len(self.results) > RENDER_CACHE_SIZE:
                    self.results.popitem(last=False)
                return result
            finally:
                del self.inflight[key]
                done.set()
        self.results.move_to_end(key)
        return self.results[key]
