"""Provider clients, one module per kind, looked up by the manifest's ``kind``."""

from __future__ import annotations

import importlib

from lipbatch.providers.base import Provider

MODULES: dict[str, str] = {
    "runway-lipsync": "lipbatch.providers.runway_lipsync",
    "runway-act-two-voice": "lipbatch.providers.runway_act_two",
    "magichour-lipsync": "lipbatch.providers.magichour",
    "aimlapi-pixverse-lipsync": "lipbatch.providers.aimlapi_pixverse",
    "creatify-lipsync": "lipbatch.providers.creatify",
}

# Documented hosts; the only place real provider addresses appear.
DEFAULT_BASE_URLS: dict[str, str] = {
    "runway-lipsync": "https://api.useapi.net/v1/runwayml",
    "runway-act-two-voice": "https://api.useapi.net/v1/runwayml",
    "magichour-lipsync": "https://api.magichour.ai",
    "aimlapi-pixverse-lipsync": "https://api.aimlapi.com",
    "creatify-lipsync": "https://api.creatify.ai",
}

# Path prefix a kind's base_url has beyond the host: how ``--sandbox-url`` maps onto each kind.
SANDBOX_PREFIXES: dict[str, str] = {
    "runway-lipsync": "/v1/runwayml",
    "runway-act-two-voice": "/v1/runwayml",
    "magichour-lipsync": "",
    "aimlapi-pixverse-lipsync": "",
    "creatify-lipsync": "",
}

DEFAULT_CREDENTIALS: dict[str, dict[str, str]] = {
    "runway-lipsync": {"token": "USEAPI_TOKEN"},
    "runway-act-two-voice": {"token": "USEAPI_TOKEN"},
    "magichour-lipsync": {"token": "MAGIC_HOUR_API_KEY"},
    "aimlapi-pixverse-lipsync": {"token": "AIMLAPI_KEY"},
    "creatify-lipsync": {"api_id": "CREATIFY_API_ID", "api_key": "CREATIFY_API_KEY"},
}


def client_class(kind: str) -> type[Provider]:
    """The client class for ``kind`` (modules are imported on first use)."""
    module = importlib.import_module(MODULES[kind])
    return module.Client
