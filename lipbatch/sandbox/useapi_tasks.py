"""useapi.net emulator's tasks: both 429s, credits, the task view through its lifecycle, artifacts, callbacks.

``submit`` is everything a create does after validating its own parameters
(``runway_lipsync.py``, ``runway_act_two.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from lipbatch.sandbox.responses import JSONResponse
from lipbatch.sandbox.useapi_records import ID_RE, MEDIA_INPUTS, PROVIDER, STATUSES, Asset, Task
from lipbatch.sandbox.useapi_requests import BadRequest, check_max_jobs, json_error, paging

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox

TOO_MANY_TASKS = ("You have too many tasks running or pending. "
                  "Please wait for some of them to finish before starting more.")
NO_CREDITS = "You do not have enough credits to run this task."


class Tasks:
    """Tasks and their endpoints (a mixin of ``useapi.Emulator``)."""

    sandbox: Sandbox
    tasks: dict[str, Task]

    def find_task(self, token: str, task_id: str) -> Task | None:
        match = ID_RE.match(task_id)
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
