"""The state lock, with real second processes: refusal naming the pid, stale takeover, no double winners."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lipbatch.errors import StateLockedError
from lipbatch.state import JobStatus, State, journal_path, lock_path, read_jobs

# Opens the state, reports, then holds it until stdin closes (or a line arrives).
# With --wait it first spins on a "go" file, and its staleness check is slowed down so that every
# contender has looked at the stale lock before any of them replaces it (the race window, widened).
HOLDER = """
import sys, time
from pathlib import Path
from lipbatch.state import lock as state_lock_module
from lipbatch.errors import StateLockedError
from lipbatch.state import State
if len(sys.argv) > 3:
    real_check = state_lock_module._pid_alive
    state_lock_module._pid_alive = lambda pid: time.sleep(0.2) or real_check(pid)
go = Path(sys.argv[2])
if len(sys.argv) > 3:
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
try:
    state = State.open(Path(sys.argv[1]))
except StateLockedError as exc:
    print("locked", exc, flush=True)
    sys.exit(0)
state.update("held", account="a", kind="k", outputs=["o.mp4"], status="submitting")
print("won", flush=True)
sys.stdin.readline()
state.close()
"""


def _holder(path: Path, *, wait_for: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, "-c", HOLDER, str(path), str(wait_for or path)]
    if wait_for is not None:
        args.append("--wait")
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _write_lock(path: Path, pid: int, host: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path(path).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": time.time()}))


def test_second_open_while_another_process_holds_it_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    proc = _holder(path)
    try:
        assert proc.stdout.readline().strip() == "won"
        before = _files(tmp_path)
        with pytest.raises(StateLockedError, match=rf"state file .*state\.json is in use by lipbatch pid {proc.pid}\b"):
            State.open(path)
        assert _files(tmp_path) == before
    finally:
        proc.communicate("\n", timeout=10)
    assert proc.returncode == 0
    with State.open(path) as state:  # released on the holder's close
        assert state.job("held").status is JobStatus.SUBMITTING


def test_same_process_cannot_open_twice(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with State.open(path), pytest.raises(StateLockedError, match=f"pid {os.getpid()}"):
        State.open(path)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    dead = _dead_pid()
    _write_lock(path, dead)
    with State.open(path) as state:
        state.update("k", account="a", kind="k", outputs=["o"], status="done")
        assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
    assert not lock_path(path).exists()
    assert set(read_jobs(path)) == {"k"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombie detection reads /proc")
def test_lock_of_an_unreaped_killed_process_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _write_lock(path, proc.pid)
        State.open(path).close()
    finally:
        proc.wait()


def test_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _write_lock(path, _dead_pid(), host="some-other-machine")
    with pytest.raises(StateLockedError, match="on host some-other-machine"):
        State.open(path)


def test_unreadable_lock_is_refused_while_fresh_and_taken_over_once_old(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    lock_path(path).write_bytes(b"")
    with pytest.raises(StateLockedError, match="being written"):
        State.open(path)
    old = time.time() - 60
    os.utime(lock_path(path), (old, old))
    State.open(path).close()


def test_concurrent_takeovers_of_one_stale_lock_have_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _write_lock(path, _dead_pid())
    go = tmp_path / "go"
    procs = [_holder(path, wait_for=go) for _ in range(4)]
    try:
        assert [proc.stdout.readline().strip() for proc in procs] == ["ready"] * 4
        go.touch()
        answers = [proc.stdout.readline().split()[0] for proc in procs]
    finally:
        for proc in procs:
            proc.communicate("\n", timeout=10)
    assert sorted(answers) == ["locked", "locked", "locked", "won"]
    lines = journal_path(path).read_bytes().splitlines()
    assert lines == [] or len(lines) == 1  # one writer only (empty when it compacted on close)
    assert list(read_jobs(path)) == ["held"]
