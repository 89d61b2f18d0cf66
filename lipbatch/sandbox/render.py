"""Real, small, deterministic MP4 results for the emulators, made with PyAV.

Everything here blocks; the sandbox calls it through ``trio.to_thread.run_sync``.
Outputs are deliberately tiny (at most 160x120, 12 fps, x264 ultrafast, mono
AAC at 24 kHz) so tests stay fast, while still being real, playable files whose
duration is the job's audio duration.

Inputs that PyAV cannot decode are not an error here: the picture falls back
to a generated one and the audio to a tone, as a provider's renderer would
still produce *something* the emulator can judge separately.
"""

from __future__ import annotations

import io
import math
import struct
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from lipbatch.media import MediaError, MediaInfo, probe

MAX_WIDTH, MAX_HEIGHT = 160, 120
FPS = 12
SAMPLE_RATE = 24000
TTS_CHARS_PER_SECOND = 15.0
DEFAULT_SECONDS = 3.0
_TONE_HZ = 400  # divides SAMPLE_RATE, so one period repeats exactly


def tts_seconds(text: str | None) -> float:
    """Length of synthetic speech for ``text``: ~15 characters per second, at least 1 s."""
    return max(1.0, len((text or "").strip()) / TTS_CHARS_PER_SECOND)


def probe_bytes(data: bytes, suffix: str = ".mp4") -> MediaInfo | None:
    """``media.probe`` for in-memory bytes (None when not media)."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return probe(Path(tmp.name))
        except MediaError:
            return None


def _fit(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_WIDTH / width, MAX_HEIGHT / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _decode_pictures(data: bytes | None, limit_seconds: float | None, start: float = 0.0) -> list[av.VideoFrame]:
    """Frames of an input video from ``start`` (sampled at FPS) or the single frame of an image;
    [] if unreadable."""
    if not data:
        return []
    frames: list[av.VideoFrame] = []
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                return []
            stream = container.streams.video[0]
            size: tuple[int, int] | None = None
            next_time = start
            for frame in container.decode(stream):
                if size is None:
                    size = _fit(frame.width, frame.height)
                when = float(frame.time) if frame.time is not None else next_time
                if when + 1e-6 < next_time and (frames or start > 0):
                    continue
                frames.append(frame.reformat(width=size[0], height=size[1], format="yuv420p"))
                next_time = when + 1.0 / FPS
                if limit_seconds is not None and next_time > start + limit_seconds + 1.0:
                    break
    except (av.error.FFmpegError, OSError, ValueError):
        return frames
    return frames


def _generated_picture() -> av.VideoFrame:
    """A fixed gradient (deterministic) for jobs without a readable picture."""
    rows = []
    for y in range(MAX_HEIGHT):
        rows.append(bytes(
            channel
            for x in range(MAX_WIDTH)
            for channel in (x * 255 // MAX_WIDTH, y * 255 // MAX_HEIGHT, 128, 255)
        ))
    rgb = av.VideoFrame.from_bytes(b"".join(rows), MAX_WIDTH, MAX_HEIGHT, format="rgba")
    return rgb.reformat(format="yuv420p")


def _decode_audio(data: bytes | None) -> bytes | None:
    """Input audio as s16 mono PCM at SAMPLE_RATE; None when there is none or it is unreadable."""
    if not data:
        return None
    pcm = bytearray()
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                return None
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    pcm += bytes(out.planes[0])[: out.samples * 2]
            for out in resampler.resample(None):
                pcm += bytes(out.planes[0])[: out.samples * 2]
    except (av.error.FFmpegError, OSError, ValueError):
        return bytes(pcm) or None
    return bytes(pcm) or None


def _tone(seconds: float) -> bytes:
    period = SAMPLE_RATE // _TONE_HZ
    wave = b"".join(
        struct.pack("<h", int(6000 * math.sin(2 * math.pi * i / period))) for i in range(period)
    )
    samples = round(seconds * SAMPLE_RATE)
    return (wave * (samples // period + 1))[: samples * 2]


def _pcm_frames(pcm: bytes, chunk: int = 1024) -> Iterator[av.AudioFrame]:
    for pos in range(0, len(pcm), chunk * 2):
        piece = pcm[pos:pos + chunk * 2]
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(piece) // 2)
        frame.planes[0].update(piece)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pos // 2
        frame.time_base = Fraction(1, SAMPLE_RATE)
        yield frame


def _duration(pcm: bytes | None, *, video: bytes | None, tts_text: str | None, seconds: float | None) -> float:
    if seconds is not None:
        return max(0.1, seconds)
    if pcm:
        return len(pcm) / 2 / SAMPLE_RATE
    if tts_text is not None:
        return tts_seconds(tts_text)
    info = probe_bytes(video) if video else None
    return info.duration if info and info.duration else DEFAULT_SECONDS


def output_seconds(*, video: bytes | None = None, audio: bytes | None = None,
                   tts_text: str | None = None, seconds: float | None = None) -> float:
    """The duration ``render_mp4`` gives these inputs (without rendering)."""
    return _duration(_decode_audio(audio), video=video, tts_text=tts_text, seconds=seconds)


def render_mp4(*, video: bytes | None = None, image: bytes | None = None, audio: bytes | None = None,
               tts_text: str | None = None, seconds: float | None = None, start: float = 0.0) -> bytes:
    """Mux the picture (video from ``start``, looped/trimmed; image held; or generated) with the
    audio (input, or a tone for TTS/voice swap) into an MP4 lasting ``seconds``, else the audio's length."""
    pcm = _decode_audio(audio)
    duration = _duration(pcm, video=video, tts_text=tts_text, seconds=seconds)
    if not pcm:
        pcm = _tone(duration)
    wanted = round(duration * SAMPLE_RATE) * 2
    pcm = pcm[:wanted] + bytes(max(0, wanted - len(pcm)))

    pictures = _decode_pictures(video, duration, start) or _decode_pictures(image, None)[:1]
    if not pictures:
        pictures = [_generated_picture()]
    width, height = pictures[0].width, pictures[0].height

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        vstream = container.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"preset": "ultrafast", "crf": "30"}
        astream = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for index in range(max(1, round(duration * FPS))):
            frame = pictures[index % len(pictures)]
            frame = av.VideoFrame.reformat(frame)  # a fresh frame object per pts
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        for frame in _pcm_frames(pcm):
            container.mux(astream.encode(frame))
        container.mux(astream.encode(None))
    return out.getvalue()
