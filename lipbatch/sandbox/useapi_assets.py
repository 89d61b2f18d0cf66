"""useapi.net emulator's Runway assets: uploads (probed for ``metadata``), listing, lookup and deletion.

Task artifacts are assets too (``store`` with a ``task_id``); creates resolve
their input assets here, in the documented 404/400 shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from lipbatch.sandbox.core import probe_input
from lipbatch.sandbox.responses import JSONResponse
from lipbatch.sandbox.useapi_records import ID_RE, PROVIDER, Account, Asset
from lipbatch.sandbox.useapi_requests import CONTENT_TYPES, BadRequest, json_error, paging

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox


class Assets:
    """Assets and their endpoints (a mixin of ``useapi.Emulator``)."""

    sandbox: Sandbox
    assets: dict[str, Asset]

    def find_asset(self, token: str, asset_id: str) -> Asset | None:
        match = ID_RE.match(asset_id)
        uuid = match["uuid"] if match and match["kind"] == "asset" else asset_id
        asset = self.assets.get(uuid)
        if asset is None or asset.account.email not in self.accounts_of(token):
            return None
        if match and (match["email"] != asset.account.email or match["user"] != str(asset.account.user_id)):
            return None
        return asset

    def asset_url(self, asset: Asset, base: Request | str) -> str:
        return self.sandbox.result_url(base, asset.file_token)[0]

    def asset_json(self, asset: Asset, base: Request | str) -> dict[str, Any]:
        return {
            "assetId": asset.asset_id, "id": asset.uuid,
            "createdAt": self.sandbox.iso(asset.created), "updatedAt": self.sandbox.iso(asset.created),
            "name": asset.name, "url": self.asset_url(asset, base), "previewUrls": [],
            "mediaType": asset.media_type, "mediaSubtype": None, "fileCount": 1, "fileSize": asset.size,
            "fileExtStandardized": asset.ext, "isUserUpload": asset.is_user_upload, "metadata": asset.metadata,
            "username": f"runway-{asset.account.user_id}", "userPicture": None,
            "userId": asset.account.user_id, "createdBy": asset.account.user_id,
            "private": True, "privateInTeam": True, "parentAssetGroupId": None,
            **({"taskId": asset.task_id} if asset.task_id else {}), "favorite": False,
        }

    def _user_json(self, account: Account) -> dict[str, Any]:
        return {"id": account.user_id, "username": f"runway-{account.user_id}", "firstName": "Sandbox",
                "lastName": "User", "picture": None, "teamName": "sandbox", "teamPicture": None}

    async def assets_root(self, request: Request) -> Response:
        return await (self.upload(request) if request.method == "POST" else self.list_assets(request))

    async def upload(self, request: Request) -> Response:
        params = request.query_params
        name = params.get("name")
        if not name:
            raise BadRequest("Parameter name is required")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in CONTENT_TYPES:
            raise BadRequest(f"Unsupported Content-Type {content_type or '(none)'}; "
                             f"supported: {', '.join(sorted(CONTENT_TYPES))}")
        numbers = {}
        for key in ("duration", "width", "height"):
            if params.get(key) is not None:
                try:
                    numbers[key] = float(params[key])
                except ValueError:
                    raise BadRequest(f"Parameter {key} must be a number") from None
        account = self.pick_account(request)
        data = await request.body()
        if not data:
            raise BadRequest("Request body is empty, provide the file content as binary data")
        media_type, ext = CONTENT_TYPES[content_type]
        asset = await self.store_asset(account, name, media_type, ext, data, content_type, numbers)
        user = self._user_json(account)
        return JSONResponse({
            "assetId": asset.asset_id, "id": asset.uuid, "user": user,
            "createdAt": self.sandbox.iso(asset.created), "updatedAt": self.sandbox.iso(asset.created),
            "name": asset.name, "description": "",
            "type": {"name": media_type, "type": media_type, "isDirectory": False},
            "size": asset.size, "url": self.asset_url(asset, request), "previewUrls": [], "fileCount": 1,
            "private": True, "permissions": {"read": True, "write": True, "admin": True},
            "annotated": False, "isUserUpload": True, "sourceApplication": "web", "createdBy": user,
            "favorite": False,
        })

    async def store_asset(self, account: Account, name: str, media_type: str, ext: str, data: bytes,
                          content_type: str, hints: Mapping[str, float] | None = None) -> Asset:
        """A user upload: probed, published and listed."""
        metadata, duration = await self._metadata(media_type, ext, data, hints or {})
        token = self.sandbox.publish(data, filename=f"{self.sandbox.new_id()}.{ext}", provider=PROVIDER,
                                     media_type=content_type)
        return self._add_asset(account, name, media_type, ext, token, len(data), metadata, duration)

    def _add_asset(self, account: Account, name: str, media_type: str, ext: str, token: str, size: int,
                   metadata: dict[str, Any] | None, duration: float | None, task_id: str | None = None) -> Asset:
        asset = Asset(self.sandbox.new_id(), account, name, media_type, ext, token, size,
                      self.sandbox.now(), metadata, duration, is_user_upload=task_id is None, task_id=task_id)
        self.assets[asset.uuid] = asset
        return asset

    @staticmethod
    async def _metadata(media_type: str, ext: str, data: bytes, hints: Mapping[str, float]
                        ) -> tuple[dict[str, Any] | None, float | None]:
        """Runway's ``metadata`` for an asset (probed; the upload's query hints fill gaps) and its duration."""
        info = None
        if media_type in ("video", "audio"):
            info = await probe_input(data, f".{ext}")
        duration = info.duration if info and info.duration else hints.get("duration")
        metadata: dict[str, Any] | None = None
        if media_type == "video":
            width = info.width if info and info.width else hints.get("width")
            height = info.height if info and info.height else hints.get("height")
            metadata = {"frameRate": info.fps if info else None, "duration": duration,
                        "dimensions": [width, height], "size": {"width": width, "height": height}}
        elif media_type == "audio":
            metadata = {"duration": duration}
        return metadata, duration

    async def list_assets(self, request: Request) -> Response:
        offset, limit = paging(request, limit_max=50)
        media = request.query_params.get("mediaType")
        if media is not None and media not in ("video", "image", "audio"):
            raise BadRequest("Parameter mediaType must be one of video, image, audio")
        account = self.pick_account(request)
        found = [a for a in self.assets.values()
                 if a.account is account and (media is None or a.media_type == media)]
        found.sort(key=lambda a: a.created, reverse=True)
        return JSONResponse([self.asset_json(a, request) for a in found[offset:offset + limit]])

    async def one_asset(self, request: Request) -> Response:
        asset = self.find_asset(request.state.token, request.path_params["asset_id"])
        if asset is None:
            return json_error(404, "Not found.")
        if request.method == "DELETE":
            del self.assets[asset.uuid]
            self._release(asset.file_token)
            return Response(status_code=204)
        return JSONResponse(self.asset_json(asset, request))

    def resolve_asset(self, request: Request, asset_id: Any, field_name: str, media_type: str) -> Asset | Response:
        """The asset behind ``asset_id`` (404 in the documented shape), of the expected media type."""
        if not isinstance(asset_id, str) or not asset_id:
            raise BadRequest(f"Parameter {field_name} must be a non-empty string")
        asset = self.find_asset(request.state.token, asset_id)
        if asset is None:
            match = ID_RE.match(asset_id)
            return json_error(404, f"Unable to retrieve assetId {match['uuid'] if match else asset_id} (Not found.)")
        if asset.media_type != media_type:
            raise BadRequest(f"Parameter {field_name} must reference a {media_type} asset, "
                             f"{asset_id} is {asset.media_type}")
        return asset

    def asset_bytes(self, asset: Asset) -> bytes | None:
        return self.sandbox.file_bytes(asset.file_token)
