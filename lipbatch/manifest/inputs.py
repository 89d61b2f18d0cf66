"""Input files of a manifest (clips' videos and images, lines' audio): present, regular, readable media.

Local files are probed through ``hashing.HashCache`` (size + mtime keyed, so a
second validate rereads nothing); https URLs are taken as they are, since
validation never touches the network. A path is checked with ``os.stat``
before anything opens it: a FIFO or a device (``/dev/zero``) is "not a regular
file" and is never opened, so nothing blocks or reads forever.
"""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lipbatch.hashing import HashCache
from lipbatch.manifest.context import Context
from lipbatch.manifest.load import file_kind
from lipbatch.manifest.problems import JsonPath, did_you_mean, quote
from lipbatch.media import MediaError, media_type
from lipbatch.model import Account, InputRef
from lipbatch.providers import client_class
from lipbatch.providers.aimlapi_pixverse import DATA_URI_LIMIT_BYTES

KIND_LABEL = {
    "runway-lipsync": "Runway lip sync",
    "runway-act-two-voice": "Runway Act-Two voice swap",
    "magichour-lipsync": "Magic Hour lip sync",
    "aimlapi-pixverse-lipsync": "PixVerse lip sync (AI/ML API)",
    "creatify-lipsync": "Creatify lip sync",
}
_ROLE_MIME = {"video": ("video/",), "image": ("image/",), "audio": ("audio/", "video/webm")}


def _is_url(ref: str) -> bool:
    return ref.startswith("https://")


def _similar_file(file: Path) -> str:
    """Did-you-mean for a missing file: same-stem siblings first (de.mp3 -> de.wav), then any name."""
    try:
        siblings = sorted(p.name for p in file.parent.iterdir() if p.name != file.name) if file.parent.is_dir() else []
    except (OSError, ValueError):
        return ""
    stems = difflib.get_close_matches(file.stem, [Path(n).stem for n in siblings], n=1, cutoff=0.6)
    if stems:
        return f" (did you mean '{next(n for n in siblings if Path(n).stem == stems[0])}'?)"
    return did_you_mean(file.name, siblings)


class InputFiles:
    """Each input reference checked once; remembers every local input's resolved path."""

    def __init__(self, ctx: Context, base: Path, cache: HashCache):
        self.ctx = ctx
        self.base = base
        self.cache = cache
        self.local: dict[Path, JsonPath] = {}  # resolved input file -> where the manifest names it
        self._memo: dict[tuple[str, str], tuple[InputRef | None, Any]] = {}

    def media(self, path: JsonPath, ref: str, role: str) -> tuple[InputRef | None, Any]:
        """(InputRef, probe info or None) for a clip/line file; problems reported at ``path`` once."""
        memo_key = (role, ref)
        if memo_key in self._memo:
            return self._memo[memo_key]
        if _is_url(ref):
            result = (InputRef(role=role, media_type=media_type(urlsplit(ref).path), url=ref), None)
        else:
            result = self._local_media(path, ref, role)
        self._memo[memo_key] = result
        return result

    def _regular_file(self, path: JsonPath, ref: str, role: str) -> Path | None:
        """The normalised path of ``ref`` when it is a regular file; reports what it is otherwise."""
        shown = quote(ref)
        if any(ord(c) < 32 or ord(c) == 127 for c in ref):
            self.ctx.add(path, f"{role} file {shown!r} has a control character in its name")
            return None
        file = Path(os.path.normpath(self.base / ref))  # one cache entry however the path is spelled
        try:
            mode = os.stat(file).st_mode
        except FileNotFoundError:
            self.ctx.add(path, f"{role} file '{shown}' not found{_similar_file(file)} (looked at {quote(str(file))})")
            return None
        except OSError as exc:
            self.ctx.add(path, f"cannot use {role} file '{shown}': {exc.strerror or exc}")
            return None
        if stat.S_ISDIR(mode):
            self.ctx.add(path, f"{role} file '{shown}' is a folder, not a file{_similar_file(file)} "
                               f"(looked at {quote(str(file))})")
            return None
        if not stat.S_ISREG(mode):
            self.ctx.add(path, f"{role} file '{shown}' is {file_kind(mode)}, not a regular file: give a media "
                               f"file (lipbatch never reads from pipes or devices)")
            return None
        self.local.setdefault(file.resolve(), path)
        return file

    def _local_media(self, path: JsonPath, ref: str, role: str) -> tuple[InputRef | None, Any]:
        file = self._regular_file(path, ref, role)
        if file is None:
            return None, None
        shown = quote(ref)
        mime = media_type(file)
        if not mime.startswith(_ROLE_MIME[role]):
            better = next((r for r, prefixes in _ROLE_MIME.items() if mime.startswith(prefixes)), None)
            hint = f": use {better}: for it" if better and better != "audio" else ""
            if role == "audio":
                hint = ": give speech as an audio file (wav, mp3, m4a, ...)"
            self.ctx.add(path, f"'{shown}' is {mime}, not {'a' if role == 'video' else 'an'} {role} file{hint}")
            return None, None
        try:
            sha, size = self.cache.sha256(file)
            info = self.cache.probe(file)
        except OSError as exc:
            self.ctx.add(path, f"cannot read '{shown}': {exc.strerror or exc}")
            return None, None
        except MediaError as exc:
            self.ctx.add(path, f"'{shown}' is not readable media: {str(exc).split(': ', 1)[-1]}")
            return None, None
        if role == "video" and not info.has_video:
            self.ctx.add(path, f"'{shown}' has no video stream")
            return None, None
        if role == "audio" and not info.has_audio:
            self.ctx.add(path, f"'{shown}' has no audio stream")
            return None, None
        duration = round(info.duration, 3) if info.duration else None
        ref_obj = InputRef(role=role, media_type=mime, path=file, sha256=sha, size=size, duration=duration)
        return ref_obj, info

    def check_size(self, path: JsonPath, ref: InputRef, account: str) -> bool:
        if ref.size is not None and ref.size > DATA_URI_LIMIT_BYTES:
            self.ctx.add(path, f"'{ref.path.name if ref.path else ref.url}' is {ref.size / 2**20:.1f} MiB: PixVerse "
                               f"(AI/ML API) gets local files as inline data URIs, capped at "
                               f"{DATA_URI_LIMIT_BYTES // 2**20} MiB per file; host it and give an https URL "
                               f"(account '{account}')", once=("size", ref.path))
            return False
        return True

    def check_uploadable(self, path: JsonPath, ref: InputRef, account: Account) -> bool:
        """Runway (useapi.net) only takes uploaded assets: a URL input cannot be sent."""
        if ref.url is not None and not client_class(account.kind).accepts_input_urls:
            self.ctx.add(path, f"{KIND_LABEL[account.kind]} (useapi.net) takes uploaded files only, not URLs: "
                               f"download it and give the local path (account '{account.name}')",
                         once=("url", path, account.kind))
            return False
        return True
