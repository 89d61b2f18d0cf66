"""lipbatch.round_end: callbacks once per scheduling round, until cancelled; none outside a run."""

from __future__ import annotations

import trio

from lipbatch import round_end


def test_a_callback_runs_at_each_rounds_end_until_cancelled() -> None:
    ends: list[int] = []

    async def main() -> None:
        cancel = round_end.call_each_round(lambda: ends.append(1))
        assert cancel is not None
        before = len(ends)
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        assert len(ends) >= before + 2  # one per round at least
        cancel()
        after = len(ends)
        await trio.lowlevel.checkpoint()
        assert len(ends) == after

    trio.run(main)


def test_a_failing_callback_is_dropped_and_the_others_go_on() -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("bug")

    async def main() -> None:
        round_end.call_each_round(broken)
        round_end.call_each_round(lambda: calls.append("fine"))
        for _ in range(3):
            await trio.lowlevel.checkpoint()

    trio.run(main)
    assert calls.count("broken") == 1 and calls.count("fine") >= 3


def test_outside_a_run_nothing_is_registered() -> None:
    assert round_end.call_each_round(lambda: None) is None
