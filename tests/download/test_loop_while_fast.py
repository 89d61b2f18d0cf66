"""Short file calls on the loop while they are fast: where each runs, what it follows, how it backs off."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from lipbatch import confined, download, round_end
from lipbatch.loop_while_fast import LoopWhileFast

pytestmark = pytest.mark.anyio


def _clock(seconds: list[float]):
    """A clock that makes each call on the loop take the next of ``seconds``."""
    ticks = iter([tick for spent in seconds for tick in (0.0, spent)])
    return lambda: next(ticks)


async def test_a_slow_call_sends_a_doubling_stretch_to_worker_threads() -> None:
    loop = threading.get_ident()
    where: list[str] = []
    runner = LoopWhileFast(0.002, clock=_clock([0.001, 0.005, 0.005, 0.001, 0.001]))

    def call() -> None:
        where.append("loop" if threading.get_ident() == loop else "thread")

    for _ in range(1 + 1 + 8 + 1 + 16 + 1 + 1):
        await runner.run(call)
    assert where == ["loop", "loop"] + ["thread"] * 8 + ["loop"] + ["thread"] * 16 + ["loop", "loop"]
    assert runner.on_loop == 5


async def test_a_call_on_the_loop_follows_this_rounds_writes_and_its_error_reaches_the_caller() -> None:
    written: list[str] = []
    pending: list[str] = []

    def write_round() -> None:
        written.extend(pending)
        pending.clear()

    stop = round_end.call_each_round(write_round)
    assert stop is not None
    runner = LoopWhileFast()
    pending.append("sha256 of the result")  # recorded in this round, as the runner does before a rename

    def rename() -> None:
        assert written == ["sha256 of the result"]
        raise OSError("cross-device link")

    with pytest.raises(OSError, match="cross-device"):
        await runner.run(rename)
    assert runner.on_loop == 1
    stop()


async def test_a_download_renames_on_the_loop_while_renames_are_fast(origin, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "out"
    loop = threading.get_ident()
    renamed_on: list[bool] = []
    real = confined.publish

    def publish(folder: int, temp: str, name: str) -> None:
        renamed_on.append(threading.get_ident() == loop)
        real(folder, temp, name)

    monkeypatch.setattr(download.confined, "publish", publish)
    renames = LoopWhileFast()
    async with httpx.AsyncClient(timeout=10) as http:
        for name in ("a.mp4", "b.mp4"):
            await download.download(http, origin.url, root / "de" / name, root=root, retry_delay=0, verify=None,
                                    renames=renames)
        await download.download(http, origin.url, root / "de" / "c.mp4", root=root, retry_delay=0, verify=None)
    assert renamed_on == [True, True, False]  # the last without ``renames``: in a worker-thread hop
    assert renames.on_loop == 2 and (root / "de" / "c.mp4").read_bytes() == origin.body
