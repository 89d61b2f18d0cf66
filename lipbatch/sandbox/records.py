"""Helpers for the emulators' task records: account names, snapshots, forgetting.

Accounts named by a bearer key (Magic Hour, AI/ML API, useapi.net tokens) are
kept under ``account_label(key)``, a digest: no key is ever written to a world
folder or shown in stats. Creatify accounts are the ``X-API-ID``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox


def record_json(obj: Any, **references: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict for a snapshot, with its non-JSON fields (references) replaced."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__} | references


def account_label(credential: str) -> str:
    """The account name under which an emulator keeps a bearer key's tasks and credits (and the
    ``provider/account`` of stats): a digest, so no key is ever written to a world or shown."""
    return "key-" + hashlib.sha256(credential.encode()).hexdigest()[:16]


def forget_tasks(sandbox: Sandbox, records: dict[str, Any], *, tasks: bool, results: bool) -> dict[str, int]:
    """Purge task records (objects with ``lifecycle`` and ``token``, the result file) from ``records``.

    ``tasks``: every record goes; the result files of finished ones stay reachable unless
    ``results`` too (a CDN object outlives the API's record of it). ``results``: finished
    records holding a result go with their file (a task whose media is gone cannot be polled
    into a working URL). Unfinished records keep their pending output unless purged.
    """
    counts = {"tasks": 0, "results": 0}
    for key, record in list(records.items()):
        has_result = record.token is not None and record.lifecycle.phase() == "finished"
        if not (tasks or (results and has_result)):
            continue
        del records[key]
        counts["tasks"] += 1
        if (results or not has_result) and sandbox.drop_file(record.token):
            counts["results"] += has_result
    return counts
