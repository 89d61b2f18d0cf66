"""Poster frames and durations of takes, read with PyAV (blocking: call from a thread under trio).

A poster is a JPEG of the frame about a third of a second into the take (the
first frame is often black or mid-fade), at most ``WIDTH`` pixels wide, named
for the take's sha256 so a page rebuilt later reuses it and two pages never
disagree about which take a picture shows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from lipbatch.media import MediaError, probe
from lipbatch.state import atomic_write_bytes

WIDTH = 320
POSTER_AT = 0.3  # fraction of the duration, at most POSTER_MAX seconds in
POSTER_MAX = 1.0


@dataclass(frozen=True)
class Preview:
    duration: float | None  # seconds; None when unreadable
    poster: str | None  # file name in the thumbnails folder; None when no frame could be read


def poster_name(sha256: str) -> str:
    return f"{sha256[:20]}.jpg"


def preview(video: Path, sha256: str | None, thumbs: Path) -> Preview:
    """Duration of ``video`` and its poster in ``thumbs`` (made once per sha256)."""
    try:
        duration = probe(video).duration
    except MediaError:
        return Preview(None, None)
    if sha256 is None:
        return Preview(duration, None)
    name = poster_name(sha256)
    target = thumbs / name
    if not target.is_file():
        data = _poster_jpeg(video, min(POSTER_MAX, (duration or 0.0) * POSTER_AT))
        if data is None:
            return Preview(duration, None)
        thumbs.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    return Preview(duration, name)


def _poster_jpeg(video: Path, at: float) -> bytes | None:
    frame = None
    with contextlib.suppress(av.error.FFmpegError, OSError, StopIteration), av.open(str(video)) as container:
        if not container.streams.video:
            return None
        for frame in container.decode(container.streams.video[0]):
            if frame.time is None or frame.time >= at:
                break
    if frame is None:
        return None
    width = min(WIDTH, frame.width) // 2 * 2 or 2
    height = max(2, round(frame.height * width / frame.width) // 2 * 2)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qscale": "4"}
    picture = frame.reformat(width=width, height=height, format="yuvj420p")
    try:
        packets = [*codec.encode(picture), *codec.encode(None)]
    except av.error.FFmpegError:
        return None
    return b"".join(bytes(packet) for packet in packets) or None
