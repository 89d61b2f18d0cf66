"""useapi.net emulator's records: accounts, assets and tasks, their ids, snapshot JSON and forgetting.

Kept apart from the endpoints so the world file's shape (``snapshot``/``restore``)
and what ``/_sandbox/forget`` drops are read in one place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lipbatch.sandbox.core import Lifecycle, record_json

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox

PREFIX = "/v1/runwayml"
PROVIDER = "useapi"
STATUSES = ("PENDING", "RUNNING", "THROTTLED", "SUCCEEDED", "FAILED")
DEFAULT_MAX_JOBS = 5
MEDIA_INPUTS = ("video", "image", "audio")  # render_inputs held as sandbox file tokens

ID_RE = re.compile(r"^user:(?P<user>[^-]+)-runwayml:(?P<email>.+)-(?P<kind>asset|task):(?P<uuid>[^:]+)$")


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


class RecordStore:
    """The emulator's accounts, assets and tasks (a mixin of ``useapi.Emulator``)."""

    sandbox: Sandbox

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
