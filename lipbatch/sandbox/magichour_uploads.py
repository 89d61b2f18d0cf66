"""Magic Hour emulator's uploads: presigned PUT URLs on the sandbox, stored files, and inputs.

A mixin of ``magichour.Emulator``: ``/v1/files/upload-urls`` hands out URLs valid 1 virtual hour,
``PUT /api-assets/...`` stores the bytes (kept 7 virtual days), and a create's inputs resolve
to those files or to http(s) URLs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from lipbatch.sandbox.core import accepts, bearer_token, json_body
from lipbatch.sandbox.downloads import xml_error
from lipbatch.sandbox.magichour_requests import EXTENSIONS, Invalid, upload_items
from lipbatch.sandbox.responses import JSONResponse

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox

UPLOAD_URL_TTL = 3600.0
UPLOAD_RETENTION = 7 * 86400.0


@dataclass
class Upload:
    path: str
    url_expires: float
    token: str | None = None  # the stored bytes (a sandbox file), once PUT
    stored_at: float | None = None


class Uploads:
    """Upload URLs, stored files and input resolution (a mixin of ``magichour.Emulator``)."""

    name: str
    sandbox: Sandbox
    uploads: dict[str, Upload]

    error: Callable[..., Response]  # the emulator's error answer

    def _sign(self, path: str, expires: float) -> str:
        return self.sandbox.sign(f"magichour|{path}|{expires:.3f}")

    async def _upload_urls(self, request: Request) -> Response:
        if not accepts(self.sandbox, bearer_token(request) or ""):
            return self.error(401, "Unauthorized")
        body = await json_body(request)
        try:
            items = upload_items(body)
        except Invalid as exc:
            return self.error(exc.status, str(exc))
        now = self.sandbox.now()
        expires = now + UPLOAD_URL_TTL
        base = str(request.base_url).rstrip("/")
        answer = []
        for kind, extension in items:
            path = f"api-assets/{self.sandbox.new_id().replace('-', '')}/{kind}.{extension}"
            self.uploads[path] = Upload(path, expires)
            query = f"X-Amz-Expires={expires:.3f}&X-Amz-Signature={self._sign(path, expires)}"
            answer.append({"upload_url": f"{base}/{path}?{query}", "expires_at": self.sandbox.iso(expires),
                           "file_path": path})
        return JSONResponse({"items": answer})

    async def _put_asset(self, request: Request) -> Response:
        path = f"api-assets/{request.path_params['asset']}/{request.path_params['filename']}"
        upload = self.uploads.get(path)
        try:
            expires = float(request.query_params.get("X-Amz-Expires", ""))
        except ValueError:
            expires = -1.0
        signature = request.query_params.get("X-Amz-Signature", "")
        if upload is None or not hmac.compare_digest(self._sign(path, expires), signature):
            return xml_error(403, "SignatureDoesNotMatch",
                             "The request signature we calculated does not match the signature you provided.")
        if self.sandbox.now() >= upload.url_expires:
            return xml_error(403, "AccessDenied", "Request has expired")
        data = await request.body()
        self.sandbox.drop_file(upload.token)  # a second PUT replaces the object
        upload.token = self.sandbox.publish(data, filename=path.rsplit("/", 1)[-1], provider=self.name,
                                            media_type=request.headers.get("content-type", "application/octet-stream"))
        upload.stored_at = self.sandbox.now()
        return Response(b"", status_code=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def _stored(self, path: str) -> bytes | None:
        upload = self.uploads.get(path)
        if upload is None or upload.token is None or upload.stored_at is None:
            return None
        if self.sandbox.now() >= upload.stored_at + UPLOAD_RETENTION:
            return None
        return self.sandbox.file_bytes(upload.token)

    def _resolve_url(self, url: str) -> bytes | None:
        path = urlsplit(url).path.lstrip("/")
        return self._stored(path) if path.startswith("api-assets/") else None

    def _input(self, value: str, field_name: str, kind: str) -> tuple[bool, bytes | None]:
        """(reachable, bytes) for a file_path or URL input; raises ``Invalid`` for unusable ones."""
        if value.startswith("api-assets/"):
            data = self._stored(value)
            if data is None:
                raise Invalid(f"{field_name}: file {value} not found (not uploaded, or deleted after 7 days)")
            return True, data
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Invalid(f"{field_name}: must be a file_path from /v1/files/upload-urls or an http(s) URL")
        extension = parts.path.rsplit(".", 1)[-1].lower() if "." in parts.path.rsplit("/", 1)[-1] else ""
        if extension not in EXTENSIONS[kind]:
            raise Invalid(f"{field_name}: the URL path must end with one of .{', .'.join(EXTENSIONS[kind])}")
        data = self.sandbox.fetch_input(value)
        return data is not None, data
