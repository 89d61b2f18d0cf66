"""The run log: a round's lines reach the file together as the round ends; outside a run at once."""

from __future__ import annotations

from pathlib import Path

import trio

from lipbatch.report import RunLog


def _lines(path: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines()]


def test_lines_of_a_round_are_in_the_file_once_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "state.json.log"

    async def main() -> None:
        log = RunLog(path)
        log.write("job_submitted: a")
        log.write("job_submitted: b")
        assert _lines(path) == []  # held for the round's one write
        await trio.lowlevel.checkpoint()
        assert _lines(path) == ["job_submitted: a", "job_submitted: b"]
        log.write("job_done: a")
        assert await trio.to_thread.run_sync(lambda: _lines(path)) == [
            "job_submitted: a", "job_submitted: b", "job_done: a"]  # a later round: written
        log.write("run_finished")
        log.close()
        assert _lines(path)[-1] == "run_finished"
        await trio.lowlevel.checkpoint()  # the closed log's round end is gone

    trio.run(main)


def test_outside_a_trio_run_each_line_is_flushed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "state.json.log"
    log = RunLog(path)
    log.write("summary line")
    assert _lines(path) == ["summary line"]
    log.close()
