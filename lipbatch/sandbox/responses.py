"""The emulators' JSON response: starlette's, with its encoder built once instead of per answer."""

from __future__ import annotations

import json
from typing import Any

from starlette import responses

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


class JSONResponse(responses.JSONResponse):
    """Byte for byte what ``starlette.responses.JSONResponse`` renders."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")
