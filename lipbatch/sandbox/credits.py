"""Credits each (provider, account) has spent, against ``config.credits`` per account."""

from __future__ import annotations

from lipbatch.sandbox.config import SandboxConfig


class Credits:
    """Spent credits per account; ``config.credits`` None means every account can always pay."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.used_by: dict[tuple[str, str], float] = {}

    def charge(self, provider: str, account: str, credits: float) -> bool:
        """Deduct credits; False (and nothing deducted) when the account cannot pay."""
        used = self.used_by.get((provider, account), 0.0)
        if self.config.credits is not None and used + credits > self.config.credits + 1e-9:
            return False
        self.used_by[(provider, account)] = used + credits
        return True

    def refund(self, provider: str, account: str, credits: float) -> None:
        used = self.used_by.get((provider, account), 0.0)
        self.used_by[(provider, account)] = max(0.0, used - credits)

    def used(self, provider: str, account: str) -> float:
        return self.used_by.get((provider, account), 0.0)

    def left(self, provider: str, account: str) -> float | None:
        """Remaining credits, or None when unlimited."""
        if self.config.credits is None:
            return None
        return max(0.0, self.config.credits - self.used(provider, account))

    def to_json(self) -> list[list[object]]:
        return [[p, a, used] for (p, a), used in self.used_by.items()]

    def restore(self, rows: list[list[object]]) -> None:
        """Load ``to_json`` output."""
        self.used_by = {(p, a): float(used) for p, a, used in rows}
