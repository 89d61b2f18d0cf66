"""The sandbox's published files: results, uploads and test files served under ``/cdn``.

A file's bytes live in memory until a persistent world writes them once to
``<world>/files/<token>``; from then on they are read from that file (so a
world's memory stays small however many results it holds). Synthetic files
(``publish_synthetic``) are generated on demand from a seed and never stored.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYNTHETIC_BLOCK = 65536


@dataclass
class PublishedFile:
    """A result (or uploaded input) served under ``/cdn``; synthetic ones are generated on demand."""

    provider: str | None
    filename: str
    media_type: str
    data: bytes | None = None  # None: on disk (``path``) or synthetic
    size: int = 0
    seed: int = 0
    path: Path | None = None  # set once a persistent world has written the bytes

    @property
    def synthetic(self) -> bool:
        return self.data is None and self.path is None

    def chunks(self, start: int, end: int, chunk_size: int = SYNTHETIC_BLOCK) -> Iterator[bytes]:
        """Yield bytes [start, end) without materialising synthetic or on-disk content."""
        data, path = self.data, self.path  # a save may move the bytes to disk meanwhile
        if data is not None:
            for pos in range(start, end, chunk_size):
                yield data[pos:min(end, pos + chunk_size)]
            return
        if path is not None:
            with open(path, "rb") as stream:
                stream.seek(start)
                pos = start
                while pos < end and (piece := stream.read(min(chunk_size, end - pos))):
                    yield piece
                    pos += len(piece)
            return
        block = synthetic_block(self.seed)
        pos = start
        while pos < end:
            offset = pos % len(block)
            piece = block[offset:offset + min(end - pos, len(block) - offset)]
            yield piece
            pos += len(piece)

    def read(self) -> bytes:
        data = self.data
        return data if data is not None else b"".join(self.chunks(0, self.size))


def synthetic_block(seed: int) -> bytes:
    """The repeating pattern of a synthetic published file (so tests can check content)."""
    return random.Random(f"synthetic|{seed}").randbytes(SYNTHETIC_BLOCK)


class FileStore:
    """token -> ``PublishedFile``, plus what a persistent world needs: which bytes are not yet
    on disk, and the small JSON description of every file."""

    def __init__(self) -> None:
        self.files: dict[str, PublishedFile] = {}

    def add(self, token: str, entry: PublishedFile) -> str:
        self.files[token] = entry
        return token

    def get(self, token: str) -> PublishedFile | None:
        return self.files.get(token)

    def drop(self, token: str | None) -> bool:
        """Forget a file (its URLs answer 404 from now on); False when unknown."""
        return token is not None and self.files.pop(token, None) is not None

    def unsaved(self) -> list[tuple[str, bytes]]:
        """(token, bytes) of every stored file whose bytes are still only in memory."""
        return [(token, entry.data) for token, entry in self.files.items() if entry.data is not None]

    def saved(self, folder: Path, tokens: list[str]) -> None:
        """The bytes of ``tokens`` are durable in ``folder``: serve them from there, free the memory."""
        for token in tokens:
            entry = self.files.get(token)
            if entry is not None and entry.data is not None:
                entry.path, entry.data = folder / token, None

    def stored_tokens(self) -> set[str]:
        """Tokens whose bytes belong on disk (every non-synthetic file)."""
        return {token for token, entry in self.files.items() if not entry.synthetic}

    def snapshot(self) -> dict[str, list[Any]]:
        return {token: [e.provider, e.filename, e.media_type, e.size, None if not e.synthetic else e.seed]
                for token, e in self.files.items()}

    def restore(self, data: dict[str, list[Any]], folder: Path) -> None:
        """Rebuild from ``snapshot()``; stored bytes must be in ``folder`` (raises ValueError if not)."""
        self.files = {}
        for token, (provider, filename, media_type, size, seed) in data.items():
            entry = PublishedFile(provider, filename, media_type, size=int(size))
            if seed is None:
                path = folder / token
                if not path.is_file() or path.stat().st_size != entry.size:
                    raise ValueError(f"file {path} is missing or has the wrong size")
                entry.path = path
            else:
                entry.seed = int(seed)
            self.files[str(token)] = entry
