"""Fault injection: which provider requests and downloads fail, reproducibly under the seed.

Faults are drawn from ``random.Random(f"{seed}|{kind}|{method}|{path}|{n}")``
where ``n`` counts earlier requests with the same method and path: the k-th
request to a URL gets the same fault under the same seed, whatever the
interleaving of concurrent requests to other URLs.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from lipbatch.sandbox.config import SandboxConfig


class Faults:
    """Draws faults at the configured rates; counts requests per (kind, method, path)."""

    def __init__(self, config: SandboxConfig, rng: Callable[..., random.Random]) -> None:
        self.config = config
        self.rng = rng  # ``Sandbox.rng``: a generator seeded from the config's seed and a key
        self.counts: Counter[str] = Counter()

    def draw(self, method: str, path: str, *, download: bool = False) -> str | None:
        """The fault for this request, if any: '429', '500'/'502'/'503', 'reset' or 'truncate'."""
        cfg = self.config
        kind = "download" if download else "api"
        counter_key = f"{kind}|{method}|{path}"
        n = self.counts[counter_key]
        self.counts[counter_key] += 1
        rates = (
            [("reset", cfg.rate_reset), ("truncate", cfg.rate_truncate)] if download
            else [("429", cfg.rate_429), ("5xx", cfg.rate_5xx), ("reset", cfg.rate_reset)]
        )
        if not any(rate for _, rate in rates):
            return None
        rng = self.rng(counter_key, n)
        draw = rng.random()
        for name, rate in rates:
            if draw < rate:
                return rng.choice(("500", "502", "503")) if name == "5xx" else name
            draw -= rate
        return None

    def retry_after(self) -> int:
        """Retry-After seconds for a faulted 429: ``extra["retry_after"]`` virtual s (default 5), scaled."""
        return max(0, round(float(self.config.extra.get("retry_after", 5.0)) * self.config.time_scale))
