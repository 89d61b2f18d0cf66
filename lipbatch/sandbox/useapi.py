"""Emulator of useapi.net's Runway API (``/v1/runwayml``): accounts, assets, voices, tasks.

The two create endpoints live in ``runway_lipsync.py`` (``POST /lipsync/create``)
and ``runway_act_two.py`` (``POST /gen4/act-two-voice``); everything they share
(auth, assets, the task store and its lifecycle, 429/412 answers, callbacks,
artifacts) is here. Contract: ../shared/providers/runway-*.md and the seeds.

Assumptions where the docs are silent (each a plausible reading, not a fact):

- Every bearer token is its own useapi.net user with one linked Runway account
  whose email is derived from the token (``runway-<user_id>@example.com``;
  ``user_id`` is the number in a ``user:1234-…`` token, else a hash). More
  accounts can be linked with ``POST /accounts/{email}``; then uploads and
  listings need ``email``. Tokens never see each other's assets or tasks.
  Accounts are kept under the token's ``account_label`` (never the token).
- Capacity: useapi's own queue holds ``maxJobs`` unfinished tasks per account
  (request ``maxJobs`` > account ``maxJobs`` > ``config.max_jobs`` > 5); one more
  gets the "busy" 429 listing ``runningTasks``. Behind it Runway runs
  ``extra["runway_capacity"]`` (default 2) tasks at once, holds
  ``extra["runway_queue"]`` (default 1) more as THROTTLED, and refuses further
  tasks with its own "too many tasks" 429. So with the default maxJobs a client
  meets the Runway variant; with maxJobs <= 2 (or ``--max-jobs``) the busy one.
  Neither 429 carries ``Retry-After`` (none is documented).
- Lifecycle: PENDING for the first 10% of ``job_seconds`` (pickup), THROTTLED
  while waiting for a Runway slot, RUNNING for ``job_seconds`` with
  ``progressRatio`` 0→1 (a number for lip sync as its model says, a string for
  Act-Two as its example shows), then SUCCEEDED or FAILED. Durations told to
  clients (``estimatedTimeToStartSeconds``) are real seconds (scaled).
- Moderation: a task whose ``voice_text`` or input asset name contains a
  moderated word is accepted, runs briefly and ends FAILED with
  ``error.moderation_category``; its credits are refunded when it ends (or at
  its first poll after a reload of a persistent world, whose timers are gone).
- Credits: ``ceil(output seconds) * extra["runway_credits_per_second"]`` (default
  1) charged at create, refunded on failure; ``exploreMode`` is free. Without
  ``--credits`` the plan shows 1,000,000 permitted credits. Out of credits:
  412 ``{"error": "You do not have enough credits to run this task."}``.
- ``GET /tasks/{taskId}`` returns the task flat for both task types (the generic
  tasks page shows a flat object). ``replyUrl``/``replyRef`` are echoed on
  every task view when they were given. Callbacks (the task view) are POSTed
  when a task starts running and when it ends.
- Artifacts: rendered when first seen finished, stored as a Runway asset of the
  same account; every poll (and ``GET /assets/{id}``) mints a fresh URL, which
  expires after ``download_ttl`` with a CloudFront-style 403. A task refers to
  its inputs' files, which outlive the deletion of their assets until it has
  rendered (the task was accepted with them). A deleted asset's URL answers 404.
- Forgetting (``/_sandbox/forget``): forgotten uploads are unknown assets
  (``GET /assets/{id}`` 404 ``"Not found."``; creates naming them 404 ``"Unable
  to retrieve assetId <uuid> (Not found.)"``), tasks already accepted still
  finish. Forgotten tasks poll 404 ``"Not found."``; their artifacts stay
  assets. Forgotten results delete the generated assets and purge the
  finished tasks that made them (a task listing an artifact that no longer
  exists is nowhere documented).
- Upload: any listed Content-Type (case-insensitive, parameters ignored); an
  empty body is a 400; media are probed for ``metadata`` (query ``duration``
  etc. fill in when probing fails). ``DELETE /assets/{id}`` answers 204.
- ``GET /tasks/`` and ``GET /assets/`` require ``offset`` and ``limit`` as the
  REST pages say (400 otherwise) and list newest first.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from lipbatch.sandbox.core import (
    Lifecycle,
    Sandbox,
    accepts,
    account_label,
    bearer_token,
    probe_input,
    record_json,
)

PREFIX = "/v1/runwayml"
PROVIDER = "useapi"
STATUSES = ("PENDING", "RUNNING", "THROTTLED", "SUCCEEDED", "FAILED")
DEFAULT_MAX_JOBS = 5
TOO_MANY_TASKS = ("You have too many tasks running or pending. "
                  "Please wait for some of them to finish before starting more.")
NO_CREDITS = "You do not have enough credits to run this task."
UNLIMITED_PLAN_CREDITS = 1_000_000
MEDIA_INPUTS = ("video", "image", "audio")  # render_inputs held as sandbox file tokens

CONTENT_TYPES: dict[str, tuple[str, str]] = {
    "image/png": ("image", "png"), "image/jpeg": ("image", "jpeg"), "image/gif": ("image", "gif"),
    "image/webp": ("image", "webp"), "image/mpo": ("image", "mpo"),
    "video/mp4": ("video", "mp4"), "video/quicktime": ("video", "mov"), "video/3gpp": ("video", "3gp"),
    "video/x-matroska": ("video", "mkv"), "video/x-flv": ("video", "flv"), "video/mpeg": ("video", "mpeg"),
    "video/mp2t": ("video", "ts"), "video/x-msvideo": ("video", "avi"),
    "video/x-motion-jpeg": ("video", "mjpeg"), "video/webm": ("video", "webm"), "video/ogg": ("video", "ogv"),
    "audio/wav": ("audio", "wav"), "audio/wave": ("audio", "wav"), "audio/mpeg": ("audio", "mp3"),
    "audio/flac": ("audio", "flac"), "audio/ogg": ("audio", "ogg"), "audio/webm": ("audio", "webm"),
}

VOICES: tuple[dict[str, Any], ...] = (
    {"voiceId": "pNInz6obpgDQGcFmaJgB", "name": "Benjamin", "accent": "american", "gender": "male",
     "age": "middle aged", "description": "deep", "use case": "narration"},
    {"voiceId": "EXAVITQu4vr4xnSDxMaL", "name": "Sarah", "accent": "american", "gender": "female",
     "age": "young", "description": "soft", "use case": "news"},
    {"voiceId": "TxGEqnHWrfWFTfGW9XjX", "name": "Josh", "accent": "american", "gender": "male",
     "age": "young", "description": "deep", "use case": "narration"},
    {"voiceId": "XB0fDUnXU5powFXDhCwa", "name": "Charlotte", "accent": "swedish", "gender": "female",
     "age": "young", "description": "seductive", "use case": "video games"},
    {"voiceId": "onwK4e9ZLuTAKqWW03F9", "name": "Daniel", "accent": "british", "gender": "male",
     "age": "middle aged", "description": "deep", "use case": "news presenter"},
    {"voiceId": "XrExE9yKIg1WjnnlVkGX", "name": "Matilda", "accent": "american", "gender": "female",
     "age": "young", "description": "warm", "use case": "audiobook"},
)
VOICE_IDS = {voice["voiceId"]: voice for voice in VOICES}

_ID_RE = re.compile(r"^user:(?P<user>[^-]+)-runwayml:(?P<email>.+)-(?P<kind>asset|task):(?P<uuid>[^:]+)$")


def user_id_for(token: str) -> int:
    match = re.match(r"user:(\d+)-", token)
    if match:
        return int(match[1])
    return int(hashlib.sha256(token.encode()).hexdigest()[:8], 16) % 10_000_000


@dataclass
class Account:
    email: str
    user_id: int
    max_jobs: int | None = None  # None: config.max_jobs or the default
    owner: str = ""  # account_label of the token that linked it
    unfinished: list[Task] = field(default_factory=list)  # pruned on each create: no scan of every task


@dataclass
class Asset:
    uuid: str
    account: Account
    name: str
    media_type: str  # image | video | audio
    ext: str
    file_token: str
    size: int
    created: float
    metadata: dict[str, Any] | None
    duration: float | None = None
    is_user_upload: bool = True
    task_id: str | None = None

    @property
    def asset_id(self) -> str:
        return f"user:{self.account.user_id}-runwayml:{self.account.email}-asset:{self.uuid}"


@dataclass
class Task:
    uuid: str
    account: Account
    task_type: str  # "lipsync" | "workflow_s2s_video"
    name: str
    options: dict[str, Any]
    lifecycle: Lifecycle
    base_url: str
    render_inputs: dict[str, Any]  # Sandbox.render keywords; media as sandbox file tokens (MEDIA_INPUTS)
    credits: float
    moderated: bool
    progress_as_string: bool
    reply_url: str | None = None
    reply_ref: str | None = None
    artifact: Asset | None = None
    extra_fields: dict[str, Any] = field(default_factory=dict)
    refunded: bool = False

    @property
    def task_id(self) -> str:
        return f"user:{self.account.user_id}-runwayml:{self.account.email}-task:{self.uuid}"


class BadRequest(Exception):
    """A 400 with useapi's ``{"error", "code"}`` body."""


def json_error(status: int, message: str, *, code: bool = True, headers: Mapping[str, str] | None = None,
               **fields: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message, **fields}
    if code:
        body["code"] = status
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


class Emulator:
    """useapi.net's ``/v1/runwayml`` API (Runway lip sync and Act-Two voice swap)."""

    name = PROVIDER
    prefixes: tuple[str, ...] = (PREFIX,)

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.reset()

    def reset(self) -> None:
        self.accounts: dict[str, dict[str, Account]] = {}  # account_label(token) -> email -> account
        self.assets: dict[str, Asset] = {}  # asset uuid -> asset
        self.tasks: dict[str, Task] = {}  # task uuid -> task

    def forget(self, *, uploads: bool, tasks: bool, results: bool) -> dict[str, int]:
        """Uploads: user-uploaded assets are gone (404 "Not found.", and creates naming them 404
        "Unable to retrieve assetId ..."). Tasks: polls 404 "Not found.". Results: the generated
        assets are deleted and every succeeded task purged (rendered or not)."""
        counts = {"uploads": 0, "tasks": 0, "results": 0}
        purged = [task for task in self.tasks.values() if tasks or (
            results and not task.moderated and task.lifecycle.phase() == "finished")]
        for task in purged:
            del self.tasks[task.uuid]
        counts["tasks"] = len(purged)
        for asset in list(self.assets.values()):
            if (uploads and asset.is_user_upload) or (results and not asset.is_user_upload):
                del self.assets[asset.uuid]
                self._release(asset.file_token)
                counts["uploads" if asset.is_user_upload else "results"] += 1
        for task in purged:
            for name in MEDIA_INPUTS:
                self._release(task.render_inputs.get(name))
        for accounts in self.accounts.values():
            for account in accounts.values():
                account.unfinished = [t for t in account.unfinished if self.tasks.get(t.uuid) is t]
        return counts

    def _release(self, token: str | None) -> None:
        """Drop a file once no asset lists it and no task still to render needs it."""
        if token is None or any(asset.file_token == token for asset in self.assets.values()):
            return
        if any(task.artifact is None and task.render_inputs.get(name) == token
               for task in self.tasks.values() for name in MEDIA_INPUTS):
            return
        self.sandbox.drop_file(token)

    def snapshot(self) -> dict[str, Any]:
        def asset(a: Asset) -> dict[str, Any]:
            return record_json(a, account=[a.account.owner, a.account.email])

        def artifact(a: Asset | None) -> Any:
            return a.uuid if a is None or self.assets.get(a.uuid) is a else asset(a)

        return {
            "accounts": [[a.owner, a.email, a.user_id, a.max_jobs]
                         for accounts in self.accounts.values() for a in accounts.values()],
            "assets": [asset(a) for a in self.assets.values()],
            "tasks": [record_json(t, account=[t.account.owner, t.account.email], lifecycle=t.lifecycle.to_json(),
                                  artifact=None if t.artifact is None else artifact(t.artifact))
                      for t in self.tasks.values()],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        self.reset()
        for owner, email, user_id, max_jobs in data["accounts"]:
            self.accounts.setdefault(owner, {})[email] = Account(email, int(user_id), max_jobs, owner)

        def asset(record: dict[str, Any]) -> Asset:
            owner, email = record["account"]
            return Asset(**(record | {"account": self.accounts[owner][email]}))

        self.assets = {record["uuid"]: asset(record) for record in data["assets"]}
        for record in data["tasks"]:
            owner, email = record["account"]
            account = self.accounts[owner][email]
            made = record["artifact"]
            task = Task(**(record | {
                "account": account,
                "lifecycle": self.sandbox.lifecycle_from_json(PROVIDER, email, record["lifecycle"]),
                "artifact": None if made is None else self.assets[made] if isinstance(made, str) else asset(made),
            }))
            self.tasks[task.uuid] = task
            if task.lifecycle.phase() != "finished":
                account.unfinished.append(task)

    def error(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return json_error(status, message, headers=headers)

    def routes(self) -> list[BaseRoute]:
        from lipbatch.sandbox import runway_act_two, runway_lipsync

        endpoints: list[tuple[str, Any, list[str]]] = [
            ("/accounts", self.list_accounts, ["GET"]),
            ("/accounts/{email}", self.account, ["GET", "POST"]),
            ("/assets", self.assets_root, ["GET", "POST"]),
            ("/assets/", self.assets_root, ["GET", "POST"]),
            ("/assets/{asset_id:path}", self.one_asset, ["GET", "DELETE"]),
            ("/lipsync/voices", self.voices, ["GET"]),
            ("/lipsync/voices/", self.voices, ["GET"]),
            ("/tasks", self.list_tasks, ["GET"]),
            ("/tasks/", self.list_tasks, ["GET"]),
            ("/tasks/{task_id:path}", self.get_task, ["GET"]),
            ("/lipsync/create", lambda request: runway_lipsync.create(self, request), ["POST"]),
            ("/gen4/act-two-voice", lambda request: runway_act_two.create(self, request), ["POST"]),
        ]
        return [Route(PREFIX + path, self._guarded(endpoint), methods=methods)
                for path, endpoint, methods in endpoints]

    def _guarded(self, endpoint: Any) -> Any:
        """Auth first, then the endpoint; a ``BadRequest`` anywhere becomes the documented 400."""
        async def handler(request: Request) -> Response:
            token = self.token(request)
            if token is None:
                return json_error(401, "Unauthorized")
            request.state.token = token
            try:
                return await endpoint(request)
            except BadRequest as exc:
                return json_error(400, str(exc))
        return handler

    # -- auth and accounts ----------------------------------------------------------------------

    def token(self, request: Request) -> str | None:
        token = bearer_token(request)
        return token if token and accepts(self.sandbox, token) else None

    def accounts_of(self, token: str) -> dict[str, Account]:
        owner = account_label(token)
        accounts = self.accounts.get(owner)
        if accounts is None:
            uid = user_id_for(token)
            default = Account(f"runway-{uid}@example.com", uid, owner=owner)
            accounts = self.accounts[owner] = {default.email: default}
        return accounts

    def pick_account(self, request: Request) -> Account:
        """The account named by ``?email=``, or the only one; 400 when ambiguous or unknown."""
        accounts = self.accounts_of(request.state.token)
        email = request.query_params.get("email")
        if email:
            if email not in accounts:
                raise BadRequest(f"Runway account {email} is not configured, use POST /accounts/{email}")
            return accounts[email]
        if len(accounts) > 1:
            raise BadRequest("Parameter email is required when multiple Runway accounts are configured")
        return next(iter(accounts.values()))

    def max_jobs(self, account: Account) -> int:
        return account.max_jobs or self.sandbox.config.max_jobs or DEFAULT_MAX_JOBS

    def _account_json(self, account: Account) -> dict[str, Any]:
        return {"email": account.email, "password": "********", "maxJobs": self.max_jobs(account),
                "jwt": {"token": "<sandbox>", "exp": self.sandbox.epoch() + 30 * 86400,
                        "iat": self.sandbox.epoch(), "id": account.user_id}}

    async def list_accounts(self, request: Request) -> Response:
        accounts = self.accounts_of(request.state.token)
        return JSONResponse({email: self._account_json(acc) for email, acc in accounts.items()})

    async def account(self, request: Request) -> Response:
        accounts = self.accounts_of(request.state.token)
        email = request.path_params["email"]
        if request.method == "GET":
            if email not in accounts:
                return json_error(404, "Configuration not found. To create configuration use POST /accounts/email.")
            return JSONResponse(self._account_json(accounts[email]))
        body = await read_body(request)
        for name in ("email", "password", "maxJobs"):
            if body.get(name) in (None, ""):
                raise BadRequest(f"Parameter {name} is required")
        if body["email"] != email:
            raise BadRequest("Parameter email must match the email in the URL path")
        max_jobs = check_max_jobs(body)
        uid = user_id_for(request.state.token)
        accounts[email] = Account(email, uid, max_jobs, account_label(request.state.token))
        return JSONResponse(self._account_json(accounts[email]))

    # -- assets ---------------------------------------------------------------------------------

    def find_asset(self, token: str, asset_id: str) -> Asset | None:
        match = _ID_RE.match(asset_id)
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

    async def voices(self, request: Request) -> Response:
        self.pick_account(request)
        stamp = self.sandbox.iso(0.0)
        return JSONResponse([
            {"voiceId": v["voiceId"], "createdAt": stamp, "updatedAt": stamp, "name": v["name"],
             "description": f"{v['description']} {v['gender']} voice",
             "labels": {k: v[k] for k in ("accent", "description", "age", "gender", "use case")},
             "privateInTeam": False, "createdBy": None,
             "sample": f"{str(request.base_url).rstrip('/')}/samples/{v['voiceId']}.mp3"}
            for v in VOICES
        ])

    # -- tasks ----------------------------------------------------------------------------------

    def find_task(self, token: str, task_id: str) -> Task | None:
        match = _ID_RE.match(task_id)
        if not match or match["kind"] != "task":
            return None
        task = self.tasks.get(match["uuid"])
        if task is None or task.task_id != task_id or task.account.email not in self.accounts_of(token):
            return None
        return task

    async def get_task(self, request: Request) -> Response:
        task = self.find_task(request.state.token, request.path_params["task_id"])
        if task is None:
            return json_error(404, "Not found.")
        return JSONResponse(await self.task_view(task, request))

    async def list_tasks(self, request: Request) -> Response:
        offset, limit = paging(request, limit_max=1000)
        wanted = request.query_params.get("statuses")
        statuses = None
        if wanted:
            statuses = {s.strip() for s in wanted.split(",") if s.strip()}
            unknown = statuses - set(STATUSES)
            if unknown:
                raise BadRequest(f"Parameter statuses has unsupported values {', '.join(sorted(unknown))}; "
                                 f"supported: {', '.join(STATUSES)}")
        account = self.pick_account(request)
        tasks = sorted((t for t in self.tasks.values() if t.account is account),
                       key=lambda t: t.lifecycle.created_at, reverse=True)
        if statuses is not None:
            tasks = [t for t in tasks if self.status(t) in statuses]
        return JSONResponse([await self.task_view(t, request) for t in tasks[offset:offset + limit]])

    def status(self, task: Task) -> str:
        lc = task.lifecycle
        phase = lc.phase()
        if phase == "finished":
            return "FAILED" if task.moderated else "SUCCEEDED"
        if phase == "running":
            return "RUNNING"
        return "THROTTLED" if lc.waiting_for_capacity() else "PENDING"

    def _ratio(self, task: Task, value: float | None) -> Any:
        if value is None:
            return "0" if task.progress_as_string else None
        value = round(value, 3)
        if task.progress_as_string:
            return "1" if value >= 1 else ("0" if value <= 0 else str(value))
        return value

    async def ensure_artifact(self, task: Task) -> Asset:
        """Render and store the task's output once (as a Runway asset of the same account)."""
        if task.artifact is None:
            inputs = {name: self.sandbox.file_bytes(value) if name in MEDIA_INPUTS else value
                      for name, value in task.render_inputs.items()}
            data = await self.sandbox.render(**inputs)
            metadata, duration = await self._metadata("video", "mp4", data, {})
            if task.artifact is None:
                filename = task.name if task.name.lower().endswith(".mp4") else f"{task.name}.mp4"
                token = self.sandbox.publish(data, filename=f"{self.sandbox.new_id()}.mp4", provider=PROVIDER)
                task.artifact = self._add_asset(task.account, filename, "video", "mp4", token, len(data),
                                                metadata, duration, task_id=task.task_id)
                for name in MEDIA_INPUTS:
                    self._release(task.render_inputs.get(name))
        return task.artifact

    def _settle(self, task: Task) -> None:
        """A moderated task's credits come back once it has failed (at its end, or at the first
        look after a reload: timers do not survive one)."""
        if task.moderated and not task.refunded and task.lifecycle.phase() == "finished":
            task.refunded = True
            self.sandbox.refund(PROVIDER, task.account.email, task.credits)

    async def task_view(self, task: Task, base: Request | str, *, initial: bool = False) -> dict[str, Any]:
        """The task object as ``GET /tasks/{taskId}`` shows it now (fresh artifact URLs).

        ``initial``: as the create response shows it, PENDING, whatever time has passed since.
        """
        lc = task.lifecycle
        self._settle(task)
        status = "PENDING" if initial else self.status(task)
        now = lc.created_at if initial else self.sandbox.now()
        updated = max(t for t in (lc.created_at, lc.ready_at, lc.started_at, lc.finished_at) if t <= now)
        error = None
        artifacts: list[dict[str, Any]] = []
        eta: float | None = 0
        ratio = self._ratio(task, None)
        if status in ("PENDING", "THROTTLED"):
            eta = round(max(0.0, lc.started_at - now) * self.sandbox.config.time_scale, 1)
        elif status == "RUNNING":
            ratio = self._ratio(task, lc.progress())
        elif status == "FAILED":
            eta = None
            error = {
                "errorMessage": "This content may violate our Terms of Use and was flagged by our moderation system.",
                "reason": "SAFETY.INPUT.TEXT" if task.task_type == "lipsync" else "SAFETY.INPUT.VIDEO",
                "message": "Task failed moderation",
                "moderation_category": "HARASSMENT",
                "tally_asimov": True,
            }
        else:
            eta = None
            ratio = self._ratio(task, 1.0)
            artifacts = [self.artifact_json(await self.ensure_artifact(task), base)]
        view: dict[str, Any] = {
            "taskId": task.task_id, "id": task.uuid, "name": task.name, "image": None,
            "createdAt": self.sandbox.iso(lc.created_at), "updatedAt": self.sandbox.iso(updated),
            "taskType": task.task_type, "options": task.options, "status": status, "error": error,
            "progressText": None, "progressRatio": ratio, "estimatedTimeToStartSeconds": eta,
            "artifacts": artifacts, "sharedAsset": None, **task.extra_fields,
        }
        if task.reply_url is not None:
            view["replyUrl"] = task.reply_url
        if task.reply_ref is not None:
            view["replyRef"] = task.reply_ref
        return view

    def artifact_json(self, asset: Asset, base: Request | str) -> dict[str, Any]:
        meta = asset.metadata or {}
        return {
            "assetId": asset.asset_id, "id": asset.uuid,
            "createdAt": self.sandbox.iso(asset.created), "updatedAt": self.sandbox.iso(asset.created),
            "userId": asset.account.user_id, "createdBy": asset.account.user_id, "taskId": asset.task_id,
            "parentAssetGroupId": None, "filename": asset.name, "url": self.asset_url(asset, base),
            "fileSize": str(asset.size), "isDirectory": False, "previewUrls": [], "private": True,
            "privateInTeam": True, "deleted": False, "reported": False,
            "metadata": {"frameRate": meta.get("frameRate"), "duration": meta.get("duration"),
                         "dimensions": meta.get("dimensions"), "size": meta.get("size")},
            "favorite": False,
        }

    def features(self, account: Account) -> dict[str, Any]:
        credits = self.sandbox.config.credits
        return {"storageGB": 500,
                "numPlanCredits_permitted": UNLIMITED_PLAN_CREDITS if credits is None else int(credits),
                "numPlanCredits_used": math.ceil(self.sandbox.credits_used(PROVIDER, account.email))}

    async def submit(self, request: Request, *, kind: str, body: Mapping[str, Any], assets: list[Asset],
                     task_type: str, name: str, options: dict[str, Any], render_inputs: dict[str, Any],
                     output_seconds: float, moderated: bool, progress_as_string: bool,
                     extra_fields: Mapping[str, Any] | None = None) -> Task | Response:
        """Everything after validation: account, both 429s, credits, the task and its callbacks."""
        accounts = {a.account.email for a in assets}
        if len(accounts) > 1:
            raise BadRequest("All assets must belong to the same Runway account")
        account = assets[0].account
        cfg = self.sandbox.config
        max_jobs = check_max_jobs(body) or self.max_jobs(account)
        active = account.unfinished = [t for t in account.unfinished if t.lifecycle.phase() != "finished"]
        if len(active) >= max_jobs:
            running = [{"email": account.email, "taskId": t.task_id, "id": t.uuid,
                        **({"replyUrl": t.reply_url} if t.reply_url is not None else {}),
                        **({"replyRef": t.reply_ref} if t.reply_ref is not None else {})}
                       for t in sorted(active, key=lambda t: t.lifecycle.created_at)]
            return json_error(429, f"Account {account.email} is busy executing {max_jobs} tasks",
                              runningTasks={account.email: running})
        capacity = max(1, int(cfg.extra.get("runway_capacity", 2)))
        if len(active) >= capacity + max(0, int(cfg.extra.get("runway_queue", 1))):
            return json_error(429, TOO_MANY_TASKS, code=False)
        explore = bool(body.get("exploreMode", False))
        credits = 0.0 if explore else (
            math.ceil(max(output_seconds, 1e-9) - 1e-9) * float(cfg.extra.get("runway_credits_per_second", 1.0)))
        if not self.sandbox.charge(PROVIDER, account.email, credits):
            return json_error(412, NO_CREDITS, code=False)
        self.sandbox.record_create(kind, body)
        seconds = cfg.job_seconds * (0.2 if moderated else 1.0)
        lifecycle = self.sandbox.lifecycle(PROVIDER, account.email, capacity=capacity, seconds=seconds,
                                           delay=0.1 * cfg.job_seconds)
        task = Task(self.sandbox.new_id(), account, task_type, name, options, lifecycle,
                    str(request.base_url), render_inputs, credits, moderated, progress_as_string,
                    reply_url=body.get("replyUrl"), reply_ref=body.get("replyRef"),
                    extra_fields=dict(extra_fields or {}))
        self.tasks[task.uuid] = task
        account.unfinished.append(task)
        if moderated:
            self.sandbox.call_at(lifecycle.finished_at, lambda: self._settle(task))
        if task.reply_url:
            for when in (lifecycle.started_at, lifecycle.finished_at):
                self.sandbox.call_at(when, lambda t=task: self._notify(t))
        return task

    async def _notify(self, task: Task) -> None:
        if self.tasks.get(task.uuid) is task and task.reply_url:
            self.sandbox.callback(task.reply_url, await self.task_view(task, task.base_url))

    def resolve_asset(self, request: Request, asset_id: Any, field_name: str, media_type: str) -> Asset | Response:
        """The asset behind ``asset_id`` (404 in the documented shape), of the expected media type."""
        if not isinstance(asset_id, str) or not asset_id:
            raise BadRequest(f"Parameter {field_name} must be a non-empty string")
        asset = self.find_asset(request.state.token, asset_id)
        if asset is None:
            match = _ID_RE.match(asset_id)
            return json_error(404, f"Unable to retrieve assetId {match['uuid'] if match else asset_id} (Not found.)")
        if asset.media_type != media_type:
            raise BadRequest(f"Parameter {field_name} must reference a {media_type} asset, "
                             f"{asset_id} is {asset.media_type}")
        return asset

    def asset_bytes(self, asset: Asset) -> bytes | None:
        return self.sandbox.file_bytes(asset.file_token)


# -- request helpers shared by the create endpoints ---------------------------------------------


async def read_body(request: Request) -> dict[str, Any]:
    """The JSON (or multipart/form-data) body as a dict; a 400 otherwise."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        body: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise BadRequest(f"Field {key} must be a value, not a file")
            body[key] = {"true": True, "false": False}.get(value, value)
        for key in ("maxJobs",):
            if isinstance(body.get(key), str) and body[key].strip().lstrip("-").isdigit():
                body[key] = int(body[key])
        return body
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    return body


def check_max_jobs(body: Mapping[str, Any]) -> int | None:
    value = body.get("maxJobs")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise BadRequest("Parameter maxJobs must be a number between 1 and 10")
    return value


def check_common(body: Mapping[str, Any]) -> None:
    """exploreMode, replyUrl, replyRef and maxJobs, shared by both create endpoints."""
    if "exploreMode" in body and not isinstance(body["exploreMode"], bool):
        raise BadRequest("Parameter exploreMode must be true or false")
    for name in ("replyUrl", "replyRef"):
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 1024):
            raise BadRequest(f"Parameter {name} must be a string of at most 1024 characters")
    check_max_jobs(body)


def check_voice(body: Mapping[str, Any]) -> dict[str, Any]:
    voice_id = body.get("voiceId")
    if not isinstance(voice_id, str) or voice_id not in VOICE_IDS:
        raise BadRequest(f"Parameter voiceId {voice_id!r} is not a valid voice, see GET /lipsync/voices")
    return VOICE_IDS[voice_id]


def paging(request: Request, *, limit_max: int) -> tuple[int, int]:
    values = []
    for name, low, high in (("offset", 0, 1000), ("limit", 1, limit_max)):
        raw = request.query_params.get(name)
        if raw is None:
            raise BadRequest(f"Parameter {name} is required")
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"Parameter {name} must be a number") from None
        if not low <= value <= high:
            raise BadRequest(f"Parameter {name} must be between {low} and {high}")
        values.append(value)
    return values[0], values[1]

