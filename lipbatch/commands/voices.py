"""`lipbatch voices PROVIDER [-m MANIFEST] [--json] [--sandbox | --sandbox-url URL]`.

Lists the voice ids a producer writes into the manifest's ``voices:`` section:
useapi.net's lip-sync voices (both Runway kinds), Creatify's voices with one
row per accent (the accent id is the manifest's Creatify voice id), and
PixVerse's fixed, documented speaker list (no network, no credentials).

PROVIDER is an account name from ``--manifest`` (its kind, base_url and
credential variable names are used) or simply a kind (when no account has
that name: the kind's default host and credential variables). Voices are
looked up while the manifest is still being written, so only its
``providers:`` entry is read; the rest need not be valid yet.

``--sandbox`` answers from an in-process sandbox (no server, any credentials);
``--sandbox-url`` talks to a running ``lipbatch sandbox`` (as ``lipbatch run``).
Also the shared plumbing of ``lipbatch avatars``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from lipbatch.errors import EXIT_OK, UsageError
from lipbatch.manifest import did_you_mean, read_document
from lipbatch.model import KINDS, Account, Project
from lipbatch.providers import DEFAULT_BASE_URLS, DEFAULT_CREDENTIALS, client_class
from lipbatch.providers.aimlapi_pixverse import PIXVERSE_SPEAKERS
from lipbatch.providers.useapi import UseapiClient
from lipbatch.runner import point_at_sandbox, resolve_secrets

HELP = "list the voice ids a provider account offers (for the manifest's voices section)"

SANDBOX_HOST = "http://sandbox.invalid"
Row = dict[str, Any]


def add_catalog_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``voices`` and ``avatars``."""
    parser.add_argument("provider", metavar="PROVIDER",
                        help=f"an account name from --manifest, or a kind ({', '.join(KINDS)})")
    parser.add_argument("-m", "--manifest", type=Path, help="manifest whose providers: section names PROVIDER")
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sandbox", action="store_true", help="ask an in-process sandbox instead of the provider")
    mode.add_argument("--sandbox-url", metavar="URL", help="ask a running `lipbatch sandbox` at URL")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_catalog_arguments(parser)


def load_account(provider: str, manifest: Path | None) -> Account:
    """The account named ``provider`` in the manifest's providers section, else a kind's defaults."""
    spec = _manifest_account(provider, manifest) if manifest is not None else None
    if spec is None:
        if provider not in KINDS:
            raise UsageError(f"{provider!r} is not a kind ({', '.join(KINDS)}){did_you_mean(provider, KINDS)}; "
                             "to use a manifest's account, pass --manifest FILE")
        spec = {"kind": provider}
    kind = spec.get("kind")
    if kind not in KINDS:
        raise UsageError(f"account {provider!r} has unknown kind {kind!r}{did_you_mean(str(kind), KINDS)}")
    credentials = {**DEFAULT_CREDENTIALS[kind], **(spec.get("credentials") or {})}
    return Account(provider, kind, spec.get("base_url") or DEFAULT_BASE_URLS[kind], credentials,
                   int(spec.get("concurrency") or 1), dict(spec.get("options") or {}))


def _manifest_account(provider: str, manifest: Path) -> dict[str, Any] | None:
    """The raw providers entry; None for a kind that is not also an account name."""
    document = read_document(manifest)  # the manifest's limits (aliases, size, file type) apply here too
    providers = document.get("providers") if isinstance(document, dict) else None
    spec = providers.get(provider) if isinstance(providers, dict) else None
    if isinstance(spec, dict):
        return spec
    if provider in KINDS:
        return None
    accounts = list(providers) if isinstance(providers, dict) else []
    raise UsageError(f"{manifest} has no provider account {provider!r}{did_you_mean(provider, accounts)} "
                     f"(accounts: {', '.join(accounts) or 'none'})")


def at_sandbox(account: Account, url: str) -> Account:
    """``account`` moved onto a sandbox at ``url``, mapped exactly as ``lipbatch run`` maps it."""
    alone = Project(manifest_path=Path(), output_dir=Path(), state_path=Path(), accounts={account.name: account},
                    jobs=())
    return point_at_sandbox(alone, url).accounts[account.name]


@asynccontextmanager
async def open_catalog(args: argparse.Namespace, account: Account) -> AsyncIterator[tuple[Account, httpx.AsyncClient]]:
    """The account (re-pointed at a sandbox when asked) and an HTTP client to reach it."""
    if args.sandbox:
        from lipbatch.sandbox.app import build_app
        from lipbatch.sandbox.core import SandboxConfig

        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=build_app(SandboxConfig()))
    else:
        transport = httpx.AsyncHTTPTransport(retries=2)
    if url := SANDBOX_HOST if args.sandbox else args.sandbox_url:
        account = at_sandbox(account, url)
    async with httpx.AsyncClient(transport=transport, timeout=30, follow_redirects=True) as http:
        yield account, http


def run_catalog(args: argparse.Namespace, account: Account,
                fetch: Callable[[Any], Awaitable[list[Row]]]) -> list[Row]:
    """Build the account's client (sandboxed if asked) and run ``fetch(client)`` under trio."""
    secrets = resolve_secrets({account.name: account}, sandbox=bool(args.sandbox or args.sandbox_url))[account.name]

    async def go() -> list[Row]:
        async with open_catalog(args, account) as (rebased, http):
            return await fetch(client_class(rebased.kind)(rebased, http, secrets))

    return trio.run(go)


def title(account: Account, what: str) -> str:
    return f"{what} of {account.name}" + ("" if account.name == account.kind else f" ({account.kind})")


def print_rows(rows: Sequence[Mapping[str, Any]], *, as_json: bool, title: str) -> None:
    """A rich table (columns from the first row) or a JSON array."""
    if as_json:
        json.dump(list(rows), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    columns = list(rows[0]) if rows else ["id"]
    for column in columns:
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console = Console()
    console.print(title, style="bold")
    console.print(table)


async def useapi_voices(client: UseapiClient) -> list[Row]:
    """useapi.net's lip-sync voice catalogue, one row per voiceId."""
    rows = []
    for voice in await client.list_voices():
        labels = voice.get("labels") if isinstance(voice.get("labels"), dict) else {}
        rows.append({"id": voice.get("voiceId"), "name": voice.get("name"), "gender": labels.get("gender"),
                     "accent": labels.get("accent"), "age": labels.get("age"), "use_case": labels.get("use case"),
                     "description": labels.get("description") or voice.get("description")})
    return rows


async def creatify_voices(client: Any) -> list[Row]:
    """Creatify voices, one row per accent: the accent id is what a manifest voice names."""
    return [
        {"id": accent.get("id"), "voice": voice.get("name"), "gender": voice.get("gender"),
         "accent": accent.get("accent_name"), "preview_url": accent.get("preview_url")}
        for voice in await client.list_voices()
        for accent in voice.get("accents") or []
        if isinstance(accent, dict)
    ]


def pixverse_voices() -> list[Row]:
    return [{"id": speaker} for speaker in PIXVERSE_SPEAKERS]


def main(args: argparse.Namespace) -> int:
    account = load_account(args.provider, args.manifest)
    if account.kind == "aimlapi-pixverse-lipsync":
        rows = pixverse_voices()
    elif account.kind == "creatify-lipsync":
        rows = run_catalog(args, account, creatify_voices)
    elif account.kind in ("runway-lipsync", "runway-act-two-voice"):
        rows = run_catalog(args, account, useapi_voices)
    else:
        raise UsageError(f"{account.kind} has no voices: it lip-syncs to recorded audio only")
    print_rows(rows, as_json=args.json, title=title(account, "voices"))
    return EXIT_OK
