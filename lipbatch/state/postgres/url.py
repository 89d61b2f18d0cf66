"""A shared state's address: the URL, checked for secrets, and the campaign's schema name.

``postgresql://[user@]host[:port]/database[?campaign=NAME&sslmode=...]``. The password
is never part of it: libpq reads ``PGPASSWORD`` or ``~/.pgpass`` itself. A URL that
carries one (``user:secret@`` or ``?password=``) is refused, and no message here ever
repeats the URL it was given.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lipbatch.errors import LipbatchError

SCHEMA_PREFIX = "lipbatch_"
_MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1


@dataclass(frozen=True)
class Target:
    """Where a campaign's state lives: what to connect to, and how to show it."""

    conninfo: str  # the URL without lipbatch's own parameters
    shown: str  # user@host:port/database, for messages
    campaign: str | None  # ``?campaign=`` when the URL names one


def parse_url(url: str) -> Target:
    try:
        parts = urlsplit(url)
        password = parts.password
        query = parse_qsl(parts.query, keep_blank_values=True)
        host, port, user = parts.hostname, parts.port, parts.username
    except ValueError:
        raise LipbatchError("the state URL is malformed (it is not shown here, as it may hold a secret)") from None
    if password is not None or any(name.lower() == "password" for name, _ in query):
        raise LipbatchError(
            "the state URL carries a password: remove it from the URL and give it in the PGPASSWORD "
            "environment variable or a ~/.pgpass file (the URL is not shown, nor stored)")
    campaign = next((value for name, value in query if name == "campaign"), None)
    rest = [(name, value) for name, value in query if name != "campaign"]
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    socket_dir = next((value for name, value in rest if name == "host"), None)
    where = f"{host or socket_dir or 'localhost'}" + (f":{port}" if port else "")
    shown = f"{user + '@' if user else ''}{where}/{parts.path.lstrip('/')}"
    return Target(conninfo, shown, campaign)


def schema_name(campaign: str) -> str:
    """``lipbatch_<campaign>``, lower case, at most 63 characters (a long name keeps a hash of itself)."""
    clean = re.sub(r"[^a-z0-9_]+", "_", campaign.lower()).strip("_") or "campaign"
    name = SCHEMA_PREFIX + clean
    if len(name) > _MAX_IDENTIFIER:
        digest = hashlib.sha256(clean.encode()).hexdigest()[:10]
        name = f"{name[: _MAX_IDENTIFIER - 11]}_{digest}"
    return name
