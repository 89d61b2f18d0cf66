"""``plan --check-remote``: the manifest's voice, accent and avatar ids against the providers' catalogues.

Opt-in (it needs the network and the credentials), read-only (catalogue
endpoints cost nothing), and before any spend: an id the provider does not
list is reported where the manifest sets it, with the closest id or name the
catalogue has. Runway kinds are checked against useapi.net's lip-sync voices,
Creatify against its voices (accent ids) and personas; PixVerse speakers are a
fixed list validation already checks, and Magic Hour takes no ids.
"""

from __future__ import annotations

import difflib
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lipbatch.commands.voices import creatify_voices, run_catalog, useapi_voices
from lipbatch.model import Account, Project
from lipbatch.positions import find, value_paths

# kind -> param -> catalogue reader (rows with "id" and a label)
_CATALOGUES = {
    "runway-lipsync": {"voice_id": "voices"},
    "runway-act-two-voice": {"voice_id": "voices"},
    "creatify-lipsync": {"voice_id": "voices", "avatar_id": "avatars"},
}
_WHAT = {"voice_id": "voice id", "avatar_id": "avatar (persona) id"}


async def _rows(client: Any, kind: str, which: str) -> list[dict[str, Any]]:
    if which == "avatars":
        return [{"id": p.get("id"), "label": p.get("creator_name")} for p in await client.list_avatars()]
    if kind == "creatify-lipsync":
        return [{"id": row["id"], "label": f"{row['voice']}, {row['accent']}"} for row in await creatify_voices(client)]
    return [{"id": row["id"], "label": row["name"]} for row in await useapi_voices(client)]


def catalogue(account: Account, target: Namespace) -> dict[str, dict[str, str]]:
    """param -> {id: label} the provider lists for ``account``."""
    wanted = _CATALOGUES[account.kind]

    async def fetch(client: Any) -> list[dict[str, Any]]:
        return [{"param": param, **row} for param, which in wanted.items()
                for row in await _rows(client, account.kind, which)]

    found: dict[str, dict[str, str]] = {param: {} for param in wanted}
    for row in run_catalog(target, account, fetch):
        if row.get("id"):
            found[row["param"]][str(row["id"])] = str(row.get("label") or "")
    return found


def suggestion(value: str, known: Mapping[str, str]) -> str:
    """`` (did you mean 'ID' (label)?)`` by id, or by name when the manifest holds a name, else ''."""
    by_label = {label.split(",")[0].casefold(): vid for vid, label in known.items()}
    match = by_label.get(value.casefold())
    if match is None:
        close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
        match = close[0] if close else None
    return f" (did you mean '{match}' ({known[match]})?)" if match else ""


def check_remote(project: Project, *, sandbox: bool = False, sandbox_url: str | None = None) -> tuple[int, list[str]]:
    """(ids checked, problems as ``file:line:col: $.path: message``) for every account that has a catalogue."""
    target = Namespace(sandbox=sandbox, sandbox_url=sandbox_url)
    wanted: dict[str, dict[tuple[str, str], tuple[str | None, str]]] = {}
    for job in project.jobs:
        for param in _CATALOGUES.get(job.kind, {}):
            if param in job.params:
                wanted.setdefault(job.account, {}).setdefault((param, str(job.params[param])), (job.voice, job.clip))
    problems, checked = [], 0
    for name, values in sorted(wanted.items()):
        account = project.accounts[name]
        known = catalogue(account, target)
        for (param, value), (voice, clip) in sorted(values.items()):
            checked += 1
            if value in known[param]:
                continue
            where = find(project.manifest_path, value_paths(voice, clip, name, account.kind, param))
            at = f"{where[0]}: {where[1]}: " if where else f"{project.manifest_path}: "
            problems.append(f"{at}{_WHAT[param]} '{value}' is not in {name}'s catalogue ({account.kind})"
                            f"{suggestion(value, known[param])}")
    return checked, problems
