"""lipbatch.verifier with real child processes: answers matched to requests, crashes, hangs, signals,
a scrubbed environment, the thread/process choice, and runs of the runner with the child verifier.

Nothing here mocks the child: each ``ProcessVerifier`` starts ``python -P -m lipbatch.verifier_child``, and
crashes and hangs are real (SIGKILL, a FIFO nobody writes, so the child's open blocks).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))

from harness import Harness, assert_all_done, fast_options  # noqa: E402
from kinds import Media, mediagen, write_manifest  # noqa: E402

from lipbatch import verifier as verifier_module  # noqa: E402
from lipbatch.errors import EXIT_JOBS_FAILED, EXIT_OK  # noqa: E402
from lipbatch.media import MediaError, MediaInfo, verify_playable  # noqa: E402
from lipbatch.model import Project  # noqa: E402
from lipbatch.sandbox.render import render_mp4  # noqa: E402
from lipbatch.state import JobStatus, read_jobs  # noqa: E402
from lipbatch.verifier import PROCESS_MIN_RESULTS, ProcessVerifier, open_verifier, verify_in_thread  # noqa: E402

pytestmark = pytest.mark.anyio


# -- media ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four real MP4s whose ``MediaInfo`` differ (duration, size), so a swapped answer shows."""
    folder = tmp_path_factory.mktemp("verifier-clips")
    png = mediagen.make_png(folder / "still.png", width=48, height=32).read_bytes()
    made = []
    for name, data in [("half.mp4", render_mp4(seconds=0.5)), ("one.mp4", render_mp4(seconds=1.0)),
                       ("three-halves.mp4", render_mp4(seconds=1.5)),
                       ("still.mp4", render_mp4(image=png, seconds=0.8))]:
        (folder / name).write_bytes(data)
        made.append(folder / name)
    assert len({verify_playable(path) for path in made}) == len(made)
    return made


@pytest.fixture
def good(clips: list[Path]) -> Path:
    return clips[1]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A FIFO nobody writes: a child that opens it blocks (a hang, without FFmpeg's help)."""
    path = tmp_path / "stuck.mp4"
    os.mkfifo(path)
    return path


@contextlib.asynccontextmanager
async def process_verifier(**kwargs) -> AsyncIterator[ProcessVerifier]:
    async with trio.open_nursery() as nursery:
        verifier = ProcessVerifier(nursery, **kwargs)
        try:
            yield verifier
        finally:
            await verifier.aclose()


def _pid(verifier: ProcessVerifier) -> int:
    assert verifier._child is not None
    return verifier._child.process.pid


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.002)


def _unblock(path: Path) -> bool:
    """Open the FIFO's write end and close it: a reader blocked in open gets end of file at once."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody has it open for reading
        return False
    os.close(fd)
    return True


def _process_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (Z: a zombie), None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _verifier_children() -> list[int]:
    """Processes (zombies included) whose parent is this test process and that run lipbatch.verifier."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        if ppid and int(ppid[1]) == os.getpid() and b"lipbatch.verifier" in cmdline:
            found.append(int(entry.name))
    return found


async def _outcome(verify, path: Path) -> MediaInfo | str:
    """The MediaInfo, or the MediaError's message."""
    try:
        return await verify(path)
    except MediaError as exc:
        return f"MediaError: {exc}"


def _expected(path: Path) -> MediaInfo | str:
    try:
        return verify_playable(path)
    except MediaError as exc:
        return f"MediaError: {exc}"


# -- answers ----------------------------------------------------------------------------------


async def test_forty_concurrent_requests_each_get_their_own_answer(clips: list[Path], tmp_path: Path) -> None:
    """Good copies of four different clips and twelve bad files, asked at once of one child: every answer is
    what ``verify_playable`` says in-process about that very file (a MediaInfo, or the error naming its path)."""
    rng = random.Random(3)
    paths: list[Path] = []
    for index in range(28):  # good copies of four different clips; one name needs escaping on the pipe
        name = f"good {index}.mp4" if index != 5 else "odd\nname é \"quoted\".mp4"
        (tmp_path / name).write_bytes(clips[index % len(clips)].read_bytes())
        paths.append(tmp_path / name)
    for index in range(3):
        (tmp_path / f"random{index}.mp4").write_bytes(rng.randbytes(4000 + 1000 * index))
        (tmp_path / f"truncated{index}.mp4").write_bytes(clips[index].read_bytes()[: len(clips[index].read_bytes()) // 2])
        (tmp_path / f"empty{index}.mp4").write_bytes(b"")
        paths += [tmp_path / f"random{index}.mp4", tmp_path / f"truncated{index}.mp4", tmp_path / f"empty{index}.mp4",
                  tmp_path / f"missing{index}.mp4"]
    assert len(paths) == 40
    rng.shuffle(paths)
    expected = {path: _expected(path) for path in paths}
    bad = [path for path, outcome in expected.items() if isinstance(outcome, str)]
    assert len(bad) == 12 and all(str(expected[path]).startswith(f"MediaError: {path}:") for path in bad)

    got: dict[Path, MediaInfo | str] = {}
    async with process_verifier() as verifier:

        async def ask(path: Path) -> None:
            got[path] = await _outcome(verifier, path)

        async with trio.open_nursery() as nursery:
            for path in paths:
                nursery.start_soon(ask, path)
            # the child is still importing PyAV: all forty are in its pipe at once, answered in order
            await _until(lambda: verifier._child is not None and len(verifier._child.waiting) == len(paths))
        assert verifier.started == 1
        assert not verifier._child.waiting
        assert got == expected  # good ones: their own clip's MediaInfo; bad ones: the error naming their own path

        one = clips[1]  # and a single request, after the crowd, in the same child
        info = await verifier(one)
        assert info == verify_playable(one) == await verify_in_thread(one)
        assert isinstance(info, MediaInfo) and info.has_video and info.duration == 1.0
        assert verifier.started == 1


# -- crashes ----------------------------------------------------------------------------------


async def test_a_killed_child_is_restarted_for_waiting_and_later_requests(clips: list[Path]) -> None:
    paths = [clips[index % len(clips)] for index in range(10)]
    async with process_verifier() as verifier:
        got: dict[int, MediaInfo | str] = {}

        async def ask(index: int) -> None:
            got[index] = await _outcome(verifier, paths[index])

        async with trio.open_nursery() as nursery:
            for index in range(len(paths)):
                nursery.start_soon(ask, index)
            await _until(lambda: verifier._child is not None and len(verifier._child.waiting) == len(paths))
            first = verifier._child
            os.kill(first.process.pid, signal.SIGKILL)  # before it answered any: all ten wait for it
        assert got == {index: verify_playable(path) for index, path in enumerate(paths)}
        assert verifier.started == 2
        await _until(lambda: first.process.returncode is not None)
        assert first.gone and first.process.returncode == -signal.SIGKILL

        # killed between requests: the next request starts a third child
        second = verifier._child
        os.kill(second.process.pid, signal.SIGKILL)
        await _until(lambda: second.gone)
        assert await verifier(clips[3]) == verify_playable(clips[3])
        assert verifier.started == 3
    for child in (first, second):
        assert _process_state(child.process.pid) is None  # reaped, no zombie


async def test_a_file_whose_child_dies_twice_is_not_playable(fifo: Path) -> None:
    async with process_verifier() as verifier:
        outcome: list[MediaInfo | str] = []

        async def ask() -> None:
            outcome.append(await _outcome(verifier, fifo))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            for started in (1, 2):  # the request is worked on in the first child, then in its replacement
                await _until(lambda started=started: verifier.started == started and verifier._child.ready
                             and bool(verifier._child.waiting))
                os.kill(_pid(verifier), signal.SIGKILL)
        assert outcome == [f"MediaError: {fifo}: the verifier process exited twice while checking it"]
        assert verifier.started == 2
    assert not _unblock(fifo)  # no child left blocked on it


async def test_where_no_child_can_start_results_are_decoded_in_a_thread(
        good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refused() -> trio.Process:
        raise BlockingIOError(11, "Resource temporarily unavailable")  # fork refused: too many processes

    monkeypatch.setattr(verifier_module, "_spawn", refused)
    async with process_verifier() as verifier:
        assert await verifier(good) == verify_playable(good)
        assert verifier.in_thread and verifier.started == 0


async def test_children_that_exit_before_they_are_ready_leave_the_run_to_a_thread(
        good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment where the child cannot even import PyAV: paid results are still checked, not refused."""
    async def broken() -> trio.Process:
        return await trio.lowlevel.open_process([sys.executable, "-c", "raise SystemExit(3)"],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    monkeypatch.setattr(verifier_module, "_spawn", broken)
    async with process_verifier() as verifier:
        assert await verifier(good) == verify_playable(good)
        assert verifier.in_thread and verifier.started == 2  # two tries in a row, then the thread
        with pytest.raises(MediaError, match="not playable|not readable"):
            await verifier(good.with_name("missing.mp4"))
        assert verifier.started == 2


# -- hangs ------------------------------------------------------------------------------------


@pytest.mark.slow  # real timeouts / whole runs
async def test_a_hanging_file_times_out_and_the_hung_child_is_killed(fifo: Path, good: Path) -> None:
    async with process_verifier(timeout=0.8) as verifier:
        started = time.monotonic()
        with pytest.raises(MediaError) as caught:
            await verifier(fifo)
        waited = time.monotonic() - started
        hung = verifier._child
        assert str(caught.value) == f"{fifo}: not checked within 0.8 s (the verifier was stopped)"
        assert 0.8 <= waited < 3.0
        assert hung.gone
        await _until(lambda: hung.process.returncode is not None)
        assert hung.process.returncode == -signal.SIGKILL
        assert not _unblock(fifo)  # nobody reads the FIFO any more: the blocked open died with the child
        assert await verifier(good) == verify_playable(good)
        assert verifier.started == 2 and verifier._child is not hung  # within 0.8 s, start-up included


@pytest.mark.slow  # real timeouts / whole runs
async def test_time_spent_waiting_behind_another_file_does_not_count(tmp_path: Path) -> None:
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    os.mkfifo(first)
    os.mkfifo(second)
    async with process_verifier(timeout=0.4) as verifier:
        await _outcome(verifier, tmp_path / "missing.mp4")  # the child runs, PyAV imported
        outcomes: dict[str, MediaInfo | str] = {}

        async def ask(path: Path) -> None:
            outcomes[path.name] = await _outcome(verifier, path)

        async def release(path: Path, at: float) -> None:
            await trio.sleep_until(at)
            _unblock(path)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, first)
            await _until(lambda: len(verifier._child.waiting) == 1)
            nursery.start_soon(ask, second)
            await _until(lambda: len(verifier._child.waiting) == 2)
            now = trio.current_time()
            nursery.start_soon(release, first, now + 0.2)  # the first file takes 0.2 s in the child
            nursery.start_soon(release, second, now + 0.5)  # the second then 0.3 s: each within 0.4 s
        # each answer is the child's own (an empty stream is not playable), nobody was stopped
        assert "not checked within" not in str(outcomes["second.mp4"])
        assert "not checked within" not in str(outcomes["first.mp4"])
        assert verifier.started == 1


# -- choosing thread or process; the child's signals, exit and environment -------------------------


async def test_open_verifier_chooses_a_thread_for_small_runs_and_a_process_for_big_ones() -> None:
    assert PROCESS_MIN_RESULTS == 32
    for results, mode in [(0, "auto"), (5, "auto"), (31, "auto"), (1000, "thread")]:
        async with open_verifier(results, mode) as verify:
            assert verify is verify_in_thread
    for results, mode in [(32, "auto"), (500, "auto"), (1, "process")]:
        async with open_verifier(results, mode) as verify:
            assert isinstance(verify, ProcessVerifier)
        assert verify.started <= 1  # started with the run (a run this short may end first)
    assert _verifier_children() == []
    async with open_verifier(32) as verify:
        with trio.fail_after(30):  # started with the run, before any result is asked about
            while not verify.started:
                await trio.sleep(0.01)
        assert verify.started == 1 and len(_verifier_children()) == 1
    assert _verifier_children() == []


_PARENT = """
import sys, trio
from pathlib import Path
from lipbatch.verifier import ProcessVerifier

async def main():
    async with trio.open_nursery() as nursery:
        verifier = ProcessVerifier(nursery)
        await verifier(Path(sys.argv[1]))
        print(verifier._child.process.pid, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


@pytest.fixture
def doomed_parent(good: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """Another Python process with a ProcessVerifier; it prints its child's pid once that child answered."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(good)], cwd=tmp_path, stdout=subprocess.PIPE,
                              text=True)
    yield parent
    parent.kill()
    parent.wait()
    parent.stdout.close()


async def test_the_child_has_no_credential_ignores_sigint_and_exits_at_end_of_input(
        good: Path, monkeypatch: pytest.MonkeyPatch, doomed_parent: subprocess.Popen) -> None:
    """The child ``open_verifier(1, "process")`` starts: the parent's credentials are not in its environment
    (PATH is), SIGINT does not stop it, it runs in its own session, and it exits by itself when its stdin
    closes: at the end of the block, and also when its parent is killed."""
    monkeypatch.setenv("LIPBATCH_TEST_API_KEY", "secret-value")
    monkeypatch.setenv("MAGICHOUR_API_KEY", "mh-secret-value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    async with open_verifier(1, "process") as verify:
        assert isinstance(verify, ProcessVerifier)
        assert await verify(good) == verify_playable(good)
        child = verify._child
        pid = child.process.pid

        raw = Path(f"/proc/{pid}/environ").read_bytes()
        environ = dict(item.split(b"=", 1) for item in raw.split(b"\0") if item)
        assert b"secret-value" not in raw
        assert not {b"LIPBATCH_TEST_API_KEY", b"MAGICHOUR_API_KEY", b"AWS_SECRET_ACCESS_KEY"} & environ.keys()
        assert environ[b"PATH"] == os.environb[b"PATH"]
        kept = {name.encode() for name in verifier_module._CHILD_ENV} | {b"PYTHONPATH"}
        assert environ.keys() <= kept, environ.keys() - kept
        package_parent = str(Path(verifier_module.__file__).resolve().parents[1]).encode()
        assert environ[b"PYTHONPATH"].split(os.pathsep.encode())[0] == package_parent

        assert os.getsid(pid) == pid != os.getsid(0)  # its own session: a terminal's Ctrl-C does not reach it
        os.kill(pid, signal.SIGINT)
        await trio.sleep(0.05)
        assert child.process.returncode is None
        assert await verify(good) == verify_playable(good)  # the same child, still answering
        assert verify.started == 1 and not child.gone
        closing = time.monotonic()
    assert time.monotonic() - closing < 4.0  # it left at end of input, not killed after close's 5 s of grace
    assert child.process.returncode == 0
    assert _process_state(pid) is None  # reaped: no zombie

    # also when its parent is killed (a SIGKILL: no aclose): the pipe closes, the orphan leaves on its own
    orphan = int(await trio.to_thread.run_sync(doomed_parent.stdout.readline))
    assert _process_state(orphan) in ("S", "R")
    doomed_parent.kill()
    await _until(lambda: _process_state(orphan) in (None, "Z"))  # a zombie only until init reaps the orphan


async def test_a_module_in_the_working_folder_is_not_imported_by_the_child(
        good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    async with process_verifier() as verifier:
        outcome = await _outcome(verifier, good)
    assert not marker.exists(), "the child executed json.py from the working folder"
    assert outcome == verify_playable(good)


# -- the runner with the child verifier ----------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("verifier-runner-media"))


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[trio.Process]:
    """Every verifier child started, recorded (the real ``_spawn`` starts each)."""
    processes: list[trio.Process] = []
    real = verifier_module._spawn

    async def spawn() -> trio.Process:
        process = await real()
        processes.append(process)
        return process

    monkeypatch.setattr(verifier_module, "_spawn", spawn)
    return processes


KIND = "magichour-lipsync"


async def _run(directory: Path, media: Media, mode: str, *, corrupt: bool) -> tuple[dict, Project, list[str]]:
    """A 3-job campaign on its own in-process sandbox, run with ``RunOptions(verifier=mode)``; with
    ``corrupt`` the sandbox serves junk bytes (complete, with the right length) as the first job's result.
    Returns the summary as JSON, the project and the kinds of events the run emitted."""
    case = write_manifest(KIND, directory, media, jobs=3)
    h = Harness()
    real_publish = h.sandbox.publish
    results: list[int] = []

    def publish(data: bytes, **kwargs) -> str:
        if corrupt and kwargs.get("filename") == "output.mp4":  # a result (uploads are published too)
            results.append(len(data))
            if len(results) == 1:
                data = random.Random(5).randbytes(500)
        return real_publish(data, **kwargs)

    h.sandbox.publish = publish
    project = h.project(case.manifest)
    summary = await h.run(project, fast_options(verifier=mode), environ=case.env)
    return summary.to_json(), project, [event.type for event in h.events]


def _normalized(summary: dict, directory: Path) -> dict:
    """The summary without what differs between two runs: folders, timing, which job got the junk."""
    pending = []
    for entry in summary["pending"]:
        reason = entry["reason"].replace(str(directory), "<dir>")
        reason = re.sub(r"\.(\w+)\.mp4\.[0-9a-f]+\.part", ".<lang>.mp4.<tmp>.part", reason)
        reason = re.sub(r"/cdn/(\w+)/[0-9a-f]+/", r"/cdn/\1/<token>/", reason)
        reason = re.sub(r"task \w+", "task <id>", reason)
        pending.append({**entry, "reason": reason, "output": "<output>", "key": "<key>"})
    ignored = {"elapsed", "output_dir", "log_file", "rerun", "pending"}
    return {**{k: v for k, v in summary.items() if k not in ignored}, "pending": pending}


@pytest.mark.slow  # real timeouts / whole runs
async def test_runs_with_the_process_verifier(tmp_path: Path, media: Media, spawned: list[trio.Process]) -> None:
    """Three campaigns side by side (each its own sandbox): all good with ``verifier="process"``; and one
    corrupt result with ``"process"`` and with ``"thread"``, which must end the same way."""
    runs: dict[str, tuple[dict, Project, list[str]]] = {}

    async def run(name: str, mode: str, corrupt: bool) -> None:
        runs[name] = await _run(tmp_path / name, media, mode, corrupt=corrupt)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "good", "process", False)
        nursery.start_soon(run, "corrupt-process", "process", True)
        nursery.start_soon(run, "corrupt-thread", "thread", True)
    assert len(spawned) == 2  # one child per process-verified run; the thread verifier starts none
    for child in spawned:
        assert child.returncode == 0  # it exited at end of input when its run closed it
        assert _process_state(child.pid) is None  # and was reaped
    assert _verifier_children() == []

    summary, project, _ = runs["good"]
    assert summary["exit_code"] == EXIT_OK and summary["done"] == 3, summary["pending"]
    assert_all_done(project, read_jobs(project.state_path))
    for job in project.jobs:
        assert verify_playable(project.output_dir / job.output).has_video

    (by_process, project_p, events_p), (by_thread, project_t, events_t) = runs["corrupt-process"], runs["corrupt-thread"]
    assert by_process["exit_code"] == EXIT_JOBS_FAILED
    assert by_process["done"] == 2 and by_process["not_run"] == 1 and by_process["in_flight"] == 1
    [pending] = by_process["pending"]
    assert "bytes that are not a playable video" in pending["reason"] and "not playable (" in pending["reason"]
    assert _normalized(by_process, tmp_path / "corrupt-process") == _normalized(by_thread, tmp_path / "corrupt-thread")
    statuses = [sorted(record.status.value for record in read_jobs(p.state_path).values())
                for p in (project_p, project_t)]
    assert statuses[0] == statuses[1] == sorted([JobStatus.DONE.value] * 2 + [JobStatus.SUCCEEDED.value])
    assert events_p.count("job_retry") == events_t.count("job_retry") > 0  # the same re-downloads


async def test_a_decode_hanging_in_a_thread_times_out_and_blocks_no_other_thread_work(
        good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small runs decode in a worker thread: a file the decoder never finishes counts as not
    playable, and the abandoned threads hold only the decoding slots."""
    import threading

    release = threading.Event()

    def hang(path: Path) -> MediaInfo:
        release.wait(30)
        return verify_playable(path)

    monkeypatch.setattr(verifier_module, "verify_playable", hang)
    try:
        for _ in range(5):  # more than its four slots: the last times out waiting for one
            with pytest.raises(MediaError, match="not checked within"):
                await verify_in_thread(good, timeout=0.05)
        assert await trio.to_thread.run_sync(lambda: 42) == 42  # the run's other thread work goes on
    finally:
        release.set()
    monkeypatch.undo()
    assert (await verify_in_thread(good)).has_video  # the slots come back once the threads end
