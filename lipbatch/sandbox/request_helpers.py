"""Reading provider requests, shared by the emulators: credentials, JSON bodies, loopback hosts."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

if TYPE_CHECKING:
    from lipbatch.sandbox.core import Sandbox


def bearer_token(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, else None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def accepts(sandbox: Sandbox, *credentials: str) -> bool:
    """Credentials are accepted when non-empty and (no allow-list, or the secret, i.e. the last
    credential, or all of them joined by ``:`` is on it)."""
    if not all(credentials):
        return False
    valid = sandbox.config.valid_tokens
    return not valid or credentials[-1] in valid or ":".join(credentials) in valid


async def json_body(request: Request) -> Any:
    """The decoded JSON body; None when the body is empty or not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return await request.json()
    except ValueError:
        return None


def is_loopback_host(host: str | None) -> bool:
    """localhost names and loopback addresses: the only hosts the sandbox calls back or fetches from."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
