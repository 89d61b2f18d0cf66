"""Credentials in a manifest are names of environment variables; anything else is treated as a secret.

A value is accepted when it is an upper-case name (``^[A-Z_][A-Z0-9_]*$``, the
POSIX convention for environment variables) and none of its ``_``-separated
parts looks random: 16 or more characters that mix letters and digits
(``AKIAIOSFODNN7EXAMPLE``), or that carry 3.6 bits of entropy per character or
more (upper-case hex and base32 keys; English words stay below it:
``PRODUCTIONACCOUNTKEY`` has 3.55). Messages about a refused value never
quote it, not even shortened: it may be the secret itself.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
#: a credential role as the schema names them (token, api_id, api_key); any other key is not echoed
ROLE = re.compile(r"^[a-z_]{1,32}$")
SECRET_MESSAGE = ("looks like a secret; name an environment variable (NAME_LIKE_THIS: capitals, digits, _) "
                  "and put the secret in it (the value is not shown)")
ROLE_MESSAGE = ("has a key that is not a credential role and looks like a secret (not shown): roles are "
                "'token', or 'api_id' and 'api_key' for Creatify, each naming an environment variable")
_RANDOM_RUN = 16
_RANDOM_BITS = 3.6


def in_credentials(path: tuple) -> bool:
    """True for ``providers.<name>.credentials`` and anything below it."""
    return len(path) >= 3 and path[0] == "providers" and path[2] == "credentials"


def looks_like_secret(value: Any) -> bool:
    """True unless ``value`` is a plausible environment variable name."""
    if not isinstance(value, str) or not ENV_NAME.match(value):
        return True
    return any(_random(part) for part in value.split("_"))


def _random(part: str) -> bool:
    if len(part) < _RANDOM_RUN:
        return False
    if re.search(r"\d", part) and re.search(r"[A-Z]", part):
        return True
    counts = Counter(part).values()
    bits = -sum(n / len(part) * math.log2(n / len(part)) for n in counts)
    return bits >= _RANDOM_BITS
