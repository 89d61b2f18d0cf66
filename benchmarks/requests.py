"""Requests per job: HTTP requests per finished job, by upload / create / poll / download, per kind.

Counts come from the sandbox's own stats (what reached the "provider"), for two
accounts of each kind with 20 jobs each, all 20 on the same face clip. The
clip must be uploaded once per account, not once per job: for kinds that
upload (Runway via useapi.net, Magic Hour) the benchmark checks the state's
upload records (exactly one for the clip per account) and, on the wire, that
the upload requests match one upload per distinct (account, file). AIML sends
inputs inline and Creatify takes URLs/avatars only, so they upload nothing.

A last row repeats Runway with 20 % 429s + 5 % 5xx to show what retries cost.
Poll counts follow the runner's default poll policy on the sandbox's scaled
clock (T = 0.2 s real = 60 s virtual).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import (
    BENCH_KINDS,
    CATEGORIES,
    FAULTS,
    VIRTUAL_JOB_SECONDS,
    Media,
    by_category,
    parser,
    project_on,
    require_all_done,
    run_lipbatch,
    scaled_options,
    served_sandbox,
    table,
    write_manifest,
)

from lipbatch.model import Project
from lipbatch.state import State

ACCOUNTS = 2
JOBS_PER_ACCOUNT = 20


def check_uploads(project: Project, counts: dict[str, int], *, wire: bool) -> tuple[int, str]:
    """Uploads of the shared clip per account (must be 1 where the kind uploads).

    ``wire``: also check that every upload request was a first upload (not in faulted runs, where a
    refused upload request is retried).
    """
    clip = {job.inputs["video"].sha256 for job in project.jobs if "video" in job.inputs}
    with State.open(project.state_path) as state:
        records = list(state.uploads.values())
    per_account = {name: sum(1 for r in records if r.account == name and r.sha256 in clip)
                   for name in project.accounts}
    files = len(records)
    if counts["upload"] == 0:
        if files:
            raise SystemExit(f"requests: {files} uploads recorded but none reached the sandbox")
        return 0, "none (inputs inline or by URL)"
    if any(n != 1 for n in per_account.values()):
        raise SystemExit(f"requests: the clip was recorded as uploaded {per_account} times per account")
    if wire and counts["upload"] % files:
        raise SystemExit(f"requests: {counts['upload']} upload requests for {files} distinct (account, file) "
                         "pairs: some file was uploaded more than once")
    return 1, f"{counts['upload'] / files:.3g} request(s) per file, {files} files"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--job-seconds", type=float, default=0.2, help="T: real seconds per job (default 0.2)")
    args = p.parse_args()
    scale = args.job_seconds / VIRTUAL_JOB_SECONDS
    rows = []
    clip_uploads: dict[str, int] = {}
    runs = [(kind, {}) for kind in BENCH_KINDS] + [("runway-lipsync", FAULTS)]
    with tempfile.TemporaryDirectory(prefix="lipbatch-bench-") as tmp, served_sandbox() as sandbox:
        sandbox.configure(job_seconds=VIRTUAL_JOB_SECONDS, time_scale=scale, max_jobs=5,
                          extra={"runway_capacity": 5, "runway_queue": 0})
        media = Media(Path(tmp) / "media")
        for kind, faults in runs:
            label = "429+5xx" if faults else "clean"
            sandbox.reset()
            sandbox.configure(rate_429=faults.get("rate_429", 0.0), rate_5xx=faults.get("rate_5xx", 0.0))
            manifest, environ = write_manifest(Path(tmp) / f"{kind}-{label}", media, JOBS_PER_ACCOUNT,
                                               kind=kind, accounts=ACCOUNTS)
            project = project_on(manifest, sandbox.url)
            summary, _ = run_lipbatch(project, scaled_options(scale), environ=environ)
            require_all_done(summary, f"requests ({kind})")
            stats = sandbox.stats()
            counts = by_category(stats)
            per_account, note = check_uploads(project, counts, wire=not faults)
            if not faults:
                clip_uploads[kind] = per_account
            done = summary.done
            rows.append([kind, label, done, *(counts[c] / done for c in CATEGORIES),
                         stats["requests"] / done, stats["creates_total"], stats["duplicate_creates"], note])
    print(f"{ACCOUNTS} accounts x {JOBS_PER_ACCOUNT} jobs on one shared clip per kind; requests per finished job")
    print(table(["kind", "run", "done", *CATEGORIES, "total/job", "creates", "dup creates", "uploads"], rows))
    uploading = {kind: n for kind, n in clip_uploads.items() if n}
    print(f"shared clip uploaded {', '.join(f'{n}x per account ({kind})' for kind, n in uploading.items())} "
          f"for {JOBS_PER_ACCOUNT} jobs each; runway-lipsync requests/job: "
          f"{rows[0][-4]:.2f} clean, {rows[-1][-4]:.2f} with faults")


if __name__ == "__main__":
    main()
