"""Emulator of useapi.net's Runway API (``/v1/runwayml``): accounts, assets, voices, tasks.

The two create endpoints live in ``runway_lipsync.py`` (``POST /lipsync/create``)
and ``runway_act_two.py`` (``POST /gen4/act-two-voice``); everything they share
(auth, assets, the task store and its lifecycle, 429/412 answers, callbacks,
artifacts) is ``Emulator`` here, made of one mixin per concern: ``useapi_records.py``
(records, snapshot, forgetting), ``useapi_accounts.py``, ``useapi_assets.py`` and
``useapi_tasks.py``; ``useapi_requests.py`` reads requests. Contract:
../shared/providers/runway-*.md and the seeds.

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

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from lipbatch.sandbox.core import Sandbox
from lipbatch.sandbox.responses import JSONResponse
from lipbatch.sandbox.useapi_accounts import Accounts
from lipbatch.sandbox.useapi_assets import Assets
from lipbatch.sandbox.useapi_records import PREFIX, PROVIDER, RecordStore, user_id_for
from lipbatch.sandbox.useapi_requests import (
    VOICES,
    BadRequest,
    check_common,
    check_voice,
    json_error,
    read_body,
)
from lipbatch.sandbox.useapi_tasks import Tasks

__all__ = ["VOICES", "BadRequest", "Emulator", "check_common", "check_voice", "read_body", "user_id_for"]  # used elsewhere


class Emulator(Tasks, Assets, Accounts, RecordStore):
    """useapi.net's ``/v1/runwayml`` API (Runway lip sync and Act-Two voice swap).

    Its parts are mixins, one concern each: records (``useapi_records.py``), accounts,
    assets and tasks; this class wires the routes and auth.
    """

    name = PROVIDER
    prefixes: tuple[str, ...] = (PREFIX,)

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.reset()

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
