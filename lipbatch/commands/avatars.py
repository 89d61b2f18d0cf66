"""`lipbatch avatars PROVIDER [-m MANIFEST] [--json] [--sandbox | --sandbox-url URL]`.

Lists Creatify personas (``GET /api/personas/``) so a producer can fill a
clip's ``avatar:`` id. Same arguments and account resolution as ``voices``.
"""

from __future__ import annotations

import argparse
from typing import Any

from lipbatch.commands.voices import Row, add_catalog_arguments, load_account, print_rows, run_catalog, title
from lipbatch.errors import EXIT_OK, UsageError

HELP = "list Creatify avatar (persona) ids for the manifest's clips"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_catalog_arguments(parser)


async def creatify_avatars(client: Any) -> list[Row]:
    return [
        {"id": p.get("id"), "name": p.get("creator_name"), "gender": p.get("gender"),
         "age_range": p.get("age_range"), "style": p.get("style"), "location": p.get("location"),
         "active": p.get("is_active")}
        for p in await client.list_avatars()
    ]


def main(args: argparse.Namespace) -> int:
    account = load_account(args.provider, args.manifest)
    if account.kind != "creatify-lipsync":
        raise UsageError(f"avatars are Creatify personas; {account.name!r} is {account.kind}")
    rows = run_catalog(args, account, creatify_avatars)
    print_rows(rows, as_json=args.json, title=title(account, "Creatify personas"))
    return EXIT_OK
