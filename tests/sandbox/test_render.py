"""render_mp4's trim window: the picture starts at ``start``, not at the input's first frame."""

from __future__ import annotations

import io
from fractions import Fraction

import av

from lipbatch.sandbox.render import render_mp4


def _two_tone_video() -> bytes:
    """1 s of black then 1 s of white, 10 fps."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(20):
            level = 0 if index < 10 else 255
            frame = av.VideoFrame.from_bytes(bytes([level, level, level, 255]) * 64 * 48, 64, 48, format="rgba")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def _first_luma(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        plane = bytes(frame.planes[0])
        return sum(plane) / len(plane)


def test_render_starts_the_picture_at_the_window_start() -> None:
    video = _two_tone_video()
    from_zero = _first_luma(render_mp4(video=video, seconds=0.5))
    from_one = _first_luma(render_mp4(video=video, seconds=0.5, start=1.2))
    assert from_one > from_zero + 50  # white (window from 1.2 s) against black (from 0 s)
