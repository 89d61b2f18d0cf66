"""Claims per second: 3 workers taking jobs through a shared PostgreSQL state, and the local backend.

A claim here is what the state does for one job from "free" to "done", as the run engine does
it. Shared: look whether another worker finished it (then it is only seen), else claim the job (``FOR UPDATE SKIP LOCKED``, its record re-read), take an account slot,
record the intent (fenced by the claim), the task id, the result and DONE, give the slot back,
release the claim. Local: the same four records as journal lines, from the one process that holds
the state file's lock. Both with group commit, as a run uses them: the intent and the task id are
on disk before the next step, the result and DONE ride along with later flushes. No provider and no
HTTP: this is the state layer's ceiling, which the providers' job times (tens of seconds to
minutes per job) leave far above what a campaign needs.

Every worker is offered every job (as every worker of a campaign is), so they also meet each
other's claims. The PostgreSQL server runs in a temp folder (``tests/postgres/pgserver.py``)
with its default durability (fsync on), unless ``--url`` names one. Headline: claims/s with 3
workers and the ratio to the local backend.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path

import trio
from _common import ROOT, parser, table

from lipbatch.state import JobStatus, State
from lipbatch.state.backend import live

ACCOUNT, CAP, WINDOW = "acct", 5, 64
STEPS = ({"status": JobStatus.SUBMITTING, "attempts": 1}, {"status": JobStatus.IN_FLIGHT, "task_id": "t"},
         {"status": JobStatus.SUCCEEDED, "result_url": "https://cdn.example/r.mp4"},
         {"status": JobStatus.DONE, "output_sha256": "ab" * 32, "output_size": 1000})


def keys_for(jobs: int) -> list[str]:
    return [f"{i:064x}" for i in range(jobs)]


def _record(state, key: str, step: dict) -> None:  # noqa: ANN001 - either backend
    first = {"account": ACCOUNT, "kind": "magichour-lipsync", "outputs": [f"{key[-8:]}.mp4"]}
    state.update(key, **(first if state.job(key) is None else {}), **step)


def local_claims(jobs: int) -> float:
    """Seconds for one process to take ``jobs`` jobs through the local backend (group commit, as a run
    uses it: the intent and the task id are flushed before going on, the rest rides along)."""
    async def take_all(state: State) -> float:
        start = time.perf_counter()
        for key in keys_for(jobs):
            for step in STEPS:
                _record(state, key, step)
                await state.flush()
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp, State.open(Path(tmp) / "s.json") as state:
        state.group_commit = True
        return trio.run(take_all, state)


def shared_worker(url: str, jobs: int, go, results) -> None:  # noqa: ANN001 - multiprocessing primitives
    """One worker: claims jobs from the whole list until every job is done (by it or the others)."""
    from lipbatch.state.postgres import PostgresState

    with PostgresState.open(url, "claims", manifest="claims.yaml", worker=True) as state:
        state.group_commit = True  # as a run sets it: only the intent and the task id wait for the disk
        leases = state.leases
        pending = keys_for(jobs)
        leases.enlist(pending)
        leases.prepare_slots(ACCOUNT, CAP)
        go.wait()
        made = observed = 0
        while pending:
            done = set(leases.peek_done(pending[:WINDOW]))  # made by the others: seen without a claim
            if done:
                observed += len(done)
                pending = [key for key in pending if key not in done]
                continue
            got = leases.claim(pending[:WINDOW], 1)
            if not got:  # the window is held by the others: they are on it
                pending = pending[WINDOW:] + pending[:WINDOW]
                time.sleep(0.001)
                continue
            (key,) = got
            pending.remove(key)
            if state.job(key) is not None and state.job(key).status is JobStatus.DONE:
                observed += 1  # finished by another worker between the look and the claim
            else:
                while not leases.take_slot(ACCOUNT, CAP, key):
                    time.sleep(0.001)
                for step in STEPS:
                    _record(state, key, step)
                    if step["status"] is JobStatus.SUCCEEDED:
                        leases.give_slot(ACCOUNT, key, live=live(state.job(key)))
                made += 1
            leases.release(key)
        results.put((made, observed, time.perf_counter()))


def shared_claims(url: str, jobs: int, workers: int) -> tuple[float, list[int]]:
    """Seconds for ``workers`` processes to take ``jobs`` jobs through the shared state; jobs each made."""
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    processes = [context.Process(target=shared_worker, args=(url, jobs, go, results)) for _ in range(workers)]
    for process in processes:
        process.start()
    time.sleep(1.0 + 0.3 * workers)  # every worker connected and enlisted before the start
    start = time.perf_counter()
    go.set()
    ends = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    if sum(made for made, _, _ in ends) != jobs:
        raise SystemExit(f"claims: {sum(made for made, _, _ in ends)} jobs made for {jobs}")
    return max(end for _, _, end in ends) - start, [made for made, _, _ in ends]


def measure(url: str, jobs: int) -> list[list]:
    local = jobs / local_claims(jobs)
    rows = [["local (journal, group commit)", 1, jobs, jobs / local, local, 1.0, ""]]
    for workers in (1, 3):
        campaign = f"{url}{'&' if '?' in url else '?'}campaign=bench_{uuid.uuid4().hex[:8]}"
        seconds, made = shared_claims(campaign, jobs, workers)
        rows.append([f"PostgreSQL, {workers} worker(s)", workers, jobs, seconds, jobs / seconds,
                     jobs / seconds / local, "/".join(map(str, made))])
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0], jobs=(1_500, 300), jobs_help='jobs per measurement')
    p.add_argument("--url", help="a PostgreSQL database to use (default: a temp server)")
    p.add_argument("--no-fsync", action="store_true",
                   help="the temp server without fsync: what the protocol costs, apart from the disk")
    args = p.parse_args()
    jobs = args.jobs
    server = None
    url = args.url
    if url is None:
        sys.path.insert(0, str(ROOT / "tests" / "postgres"))
        from pgserver import PgServer, find_bindir

        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("claims: no PostgreSQL server binaries; install postgresql or pass --url")
        server = PgServer(bindir, fsync=not args.no_fsync).start()
        url = server.url(server.new_database())
    try:
        rows = measure(url, jobs)
    finally:
        if server is not None:
            server.close()
    print(table(["backend", "workers", "jobs", "s", "claims/s", "vs local", "made by each"], rows))
    three = rows[-1]
    print(f"3 workers on PostgreSQL: {three[4]:,.0f} claims/s = {three[5]:.2f} x the local backend "
          f"({rows[0][4]:,.0f}/s)")


if __name__ == "__main__":
    main()
