"""Tiny synthetic media for tests and the committed examples (PyAV, no numpy).

A "face" is a skin-coloured oval with eyes and a mouth that opens and closes,
so lip-sync emulators have something face-shaped to work on.
"""

from __future__ import annotations

import math
import struct
import wave
from array import array
from pathlib import Path

import av

_BG = (70, 90, 120)
_SKIN = (224, 172, 140)
_DARK = (40, 30, 30)
_LIP = (150, 60, 60)


def face_rgb(width: int, height: int, mouth_open: float = 0.3, skin: tuple[int, int, int] = _SKIN) -> bytes:
    """rgb24 bytes of a cartoon face; ``mouth_open`` 0..1."""
    cx, cy, rx, ry = width / 2, height / 2, width * 0.28, height * 0.4
    eyes = [(cx - rx * 0.4, cy - ry * 0.25), (cx + rx * 0.4, cy - ry * 0.25)]
    eye_r = max(1.0, min(width, height) * 0.04)
    mouth_w, mouth_h = rx * 0.45, max(1.0, ry * 0.25 * mouth_open)
    mouth_y = cy + ry * 0.45
    out = bytearray()
    for y in range(height):
        for x in range(width):
            colour = _BG
            if ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1:
                colour = skin
                if any((x - ex) ** 2 + (y - ey) ** 2 <= eye_r**2 for ex, ey in eyes):
                    colour = _DARK
                elif abs(x - cx) <= mouth_w and abs(y - mouth_y) <= mouth_h:
                    colour = _LIP
            out += bytes(colour)
    return bytes(out)


def make_video(path: Path, seconds: float, *, width: int = 160, height: int = 120, fps: int = 12,
               audio: bool = False, skin: tuple[int, int, int] = _SKIN) -> Path:
    """An H.264 mp4 of a talking cartoon face (optionally with a quiet AAC tone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = {k: face_rgb(width, height, k / 3, skin) for k in range(4)}
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "32", "preset": "veryslow"}
        astream = None
        if audio:
            astream = container.add_stream("aac", rate=16000)
            astream.layout = "mono"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame(width, height, "rgb24")
            frame.planes[0].update(frames[(i // 2) % 4])
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            samples = speech_samples(seconds, 16000, amplitude=0.05)
            for start in range(0, len(samples), 1024):
                chunk = array("f", (s / 32768 for s in samples[start:start + 1024]))
                chunk.extend([0.0] * (1024 - len(chunk)))
                aframe = av.AudioFrame(format="fltp", layout="mono", samples=1024)
                aframe.planes[0].update(chunk.tobytes())
                aframe.sample_rate = 16000
                aframe.pts = start
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def speech_samples(seconds: float, rate: int, *, pitch: float = 180.0, amplitude: float = 0.4) -> list[int]:
    """s16 samples of a voiced tone with ~4 Hz syllable modulation."""
    n = round(seconds * rate)
    return [round(32767 * amplitude * max(0.0, math.sin(math.pi * 4 * t / rate)) *
                  math.sin(2 * math.pi * pitch * t / rate)) for t in range(n)]


def make_wav(path: Path, seconds: float, *, rate: int = 16000, pitch: float = 180.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack(f"<{round(seconds * rate)}h", *speech_samples(seconds, rate, pitch=pitch)))
    return path


def make_png(path: Path, *, width: int = 160, height: int = 120, skin: tuple[int, int, int] = _SKIN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        frame = av.VideoFrame(width, height, "rgb24")
        frame.planes[0].update(face_rgb(width, height, skin=skin))
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_big_wav(path: Path, size: int) -> Path:
    """A valid (silent) wav of ``size`` bytes, written sparsely: for size-limit checks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = size - 44
    header = (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " +
              struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16) + b"data" + struct.pack("<I", data))
    with open(path, "wb") as out:
        out.write(header)
        out.truncate(size)
    return path
