"""The sandbox's knobs (``SandboxConfig``) and their validation for ``POST /_sandbox/config``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SandboxConfig:
    """Every knob of the sandbox; also settable at run time via ``POST /_sandbox/config``."""

    job_seconds: float = 3.0  # virtual seconds a job spends processing (after any queueing)
    time_scale: float = 1.0  # real seconds per virtual second: 0.01 makes everything 100x faster
    max_jobs: int | None = None  # per-account concurrency cap; None = each provider's default
    rate_429: float = 0.0  # fraction of provider requests answered 429 with Retry-After
    rate_5xx: float = 0.0  # fraction answered 500/502/503
    rate_reset: float = 0.0  # fraction whose connection is dropped mid-response
    rate_truncate: float = 0.0  # fraction of result downloads cut short
    download_ttl: float | None = None  # virtual seconds a result URL stays valid; None = forever
    moderate: tuple[str, ...] = ()  # jobs whose text contains one of these words fail moderation
    credits: float | None = None  # credits per account; None = unlimited
    seed: int = 0
    pixverse_success_status: str = "succeeded"  # or "completed": the docs say both
    creatify_aurora_pricing: str = "per_block"  # "per_block" (20/15 s, 10/15 s) or "per_second" (1/s, 0.5/s)
    valid_tokens: tuple[str, ...] = ()  # credentials accepted; empty = any non-empty value
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["moderate"] = list(self.moderate)
        data["valid_tokens"] = list(self.valid_tokens)
        return data


_CHOICES = {
    "pixverse_success_status": ("succeeded", "completed"),
    "creatify_aurora_pricing": ("per_block", "per_second"),
}


def apply_config(config: SandboxConfig, changes: Mapping[str, Any]) -> None:
    """Validate and apply ``changes`` (JSON values) to ``config``; raises ValueError naming the field.

    All fields are checked before any is set, so a bad request changes nothing.
    """
    fields = {f.name: f for f in dataclasses.fields(SandboxConfig)}
    staged: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in fields:
            raise ValueError(f"unknown config field {name!r}")
        staged[name] = _coerce(name, value)
    for name, value in staged.items():
        setattr(config, name, value)


def _coerce(name: str, value: Any) -> Any:
    def number(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{name} must be a number")
        return float(v)

    if name in ("moderate", "valid_tokens"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings")
        return tuple(value)
    if name == "extra":
        if not isinstance(value, dict):
            raise ValueError("extra must be an object")
        return dict(value)
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(_CHOICES[name])}")
        return value
    if name in ("max_jobs", "seed"):
        if value is None and name == "max_jobs":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (name == "max_jobs" and value < 1):
            raise ValueError(f"{name} must be {'a positive' if name == 'max_jobs' else 'an'} integer")
        return value
    if name in ("download_ttl", "credits") and value is None:
        return None
    result = number(value)
    if name.startswith("rate_") and not 0.0 <= result <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    if name == "time_scale" and result <= 0:
        raise ValueError("time_scale must be positive")
    if result < 0:
        raise ValueError(f"{name} must not be negative")
    return result
