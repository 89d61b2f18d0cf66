"""The sandbox's result downloads: published files behind signed, expiring URLs, with ``Range``.

``GET|HEAD /cdn/<provider>/<token>/<filename>`` serves one single byte range at most (RFC 9110
lets a server ignore multiple or malformed ranges), ``Content-Length`` always, and answers an
expired URL the way the emulator's provider does (default: S3/CloudFront's 403 XML).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from lipbatch.sandbox.core import FILES_PREFIX, Emulator, Sandbox

_S3_ERROR = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'


def xml_error(status: int, code: str, message: str) -> Response:
    """An S3-style XML error (what the object stores behind result and upload URLs answer)."""
    return Response(_S3_ERROR.format(code=code, message=message), status_code=status,
                    media_type="application/xml")


def expired_response(emulator: Emulator | None) -> Response:
    """What an expired result URL answers: the emulator's choice, else S3/CloudFront's 403."""
    custom = getattr(emulator, "expired_response", None)
    if callable(custom):
        return custom()
    return xml_error(403, "AccessDenied", "Request has expired")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end_exclusive) for one satisfiable byte range; None to serve everything; 'bad' for 416."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or not (match[1] or match[2]):
        return None  # multiple or malformed ranges: RFC 9110 lets us ignore the header
    if match[1]:
        start = int(match[1])
        end = min(size, int(match[2]) + 1) if match[2] else size
        if start >= size or end <= start:
            return "bad"
        return start, end
    suffix = int(match[2])
    if suffix == 0:
        return "bad"
    return max(0, size - suffix), size


_WHOLE_BODY = 1 << 20  # files up to this size are served in one body, larger ones streamed


def file_route(sandbox: Sandbox) -> BaseRoute:
    async def serve_file(request: Request) -> Response:
        provider = request.path_params["provider"]
        token = request.path_params["token"]
        emulator = sandbox.emulators.get(provider)
        verdict = sandbox.check_file_url(token, request.query_params)
        if verdict == "unknown":
            return xml_error(404, "NoSuchKey", "The specified key does not exist.")
        if verdict == "expired":
            sandbox.record_download(expired=True)
            return expired_response(emulator)
        entry = sandbox.file(token)
        assert entry is not None
        headers = {"Accept-Ranges": "bytes", "Content-Type": entry.media_type}
        wanted = _parse_range(request.headers.get("range"), entry.size)
        if wanted == "bad":
            return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{entry.size}"})
        status, (start, end) = (200, (0, entry.size)) if wanted is None else (206, wanted)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
        headers["Content-Length"] = str(end - start)
        sandbox.record_download()
        if request.method == "HEAD":
            return Response(b"", status_code=status, headers=headers)

        if end - start <= _WHOLE_BODY:  # a typical result: one body, no streaming machinery
            return Response(b"".join(entry.chunks(start, end)), status_code=status, headers=headers)

        async def body():
            for chunk in entry.chunks(start, end):
                yield chunk

        return StreamingResponse(body(), status_code=status, headers=headers)

    return Route(f"{FILES_PREFIX}/{{provider}}/{{token}}/{{filename:path}}", serve_file, methods=["GET", "HEAD"])
