"""`lipbatch state check|repair MANIFEST`: is the state whole, and rebuilding it when it is not.

``check`` reads the state (no lock) and exits 2 when it is damaged, naming the
file and what is wrong (``lipbatch.state``'s damage rules). ``repair`` rebuilds
a damaged state from the snapshot, its backup and the journal
(``lipbatch.state.repair``), keeps the damaged files aside, then looks at the
manifest's output paths: a file whose sha256 some copy of the state recorded
for its job, while the rebuilt record no longer says done, is adopted (the job
is done, nothing is paid again). A file no record describes is listed and left
alone: the engine blocks its job until it is moved away (or ``--force``), unless
``--trust-outputs`` says every playable video at a job's output path is that
job's result (when a journal was cut, the records of finished jobs are gone
and this is the only way not to pay for them again). ``--sandbox``: the
rehearsal's state and outputs.

``push``/``pull`` copy the state to and from a shared PostgreSQL state
(``commands/state_push.py``, added by its ``add_subcommands``).
"""

from __future__ import annotations

import argparse
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lipbatch.campaign import add_campaign_arguments, load_campaign
from lipbatch.commands import state_push
from lipbatch.errors import EXIT_OK
from lipbatch.hashing import HashCache
from lipbatch.media import MediaError, verify_playable
from lipbatch.model import Job, Project
from lipbatch.state import JobStatus, State, StateDamagedError, backup_path, journal_path, read_state
from lipbatch.state.repair import Rebuilt, repair

HELP = ("check the state file for damage, or repair it from its backup and journal; push or pull it to or "
        "from a shared PostgreSQL state")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="say whether the state is whole (exit 2 when damaged)")
    add_campaign_arguments(check, rehearsal_help="check the rehearsal's state")
    fix = actions.add_parser("repair", help="rebuild a damaged state; adopt outputs whose sha256 a record holds")
    add_campaign_arguments(fix, rehearsal_help="repair the rehearsal's state")
    fix.add_argument("--trust-outputs", action="store_true",
                     help="also adopt playable videos no record describes as their job's done output (only if "
                          "you know lipbatch made them for this manifest: their jobs are then never paid again)")
    state_push.add_subcommands(actions)


@dataclass
class Adoption:
    recorded: int = 0  # present and already described by the rebuilt records (or a kept take)
    adopted: list[str] = field(default_factory=list)
    unrecorded: list[Path] = field(default_factory=list)
    absent: int = 0


def adopt_outputs(project: Project, state: State, evidence: dict[str, dict[str, int | None]], *,
                  trust: bool = False) -> Adoption:
    """Mark done every job whose output on disk has a sha256 a copy of the state recorded for it.

    ``trust``: also adopt a playable video no record describes, at the output path of a job not done.
    """
    hashes = HashCache.for_state(project.state_path)
    result = Adoption()
    for job in project.jobs:
        for output in job.outputs:
            path = project.output_dir / output
            try:
                if not stat.S_ISREG(path.lstat().st_mode):
                    raise FileNotFoundError(path)
                sha, size = hashes.sha256(path)
            except OSError:
                result.absent += 1
                continue
            record = state.job(job.key)
            known = {r.output_sha256 for r in state.jobs.values() if output in r.outputs}
            known |= {t.sha256 for t in state.takes_of(output)}
            undone = record is None or record.status is not JobStatus.DONE
            if undone and (sha in evidence.get(job.key, {}) or (trust and sha not in known and _playable(path))):
                _mark_done(state, job, output, sha, size)
                result.adopted.append(output)
            elif sha in known:
                result.recorded += 1
            else:
                result.unrecorded.append(path)
    hashes.save()
    return result


def _playable(path: Path) -> bool:
    try:
        verify_playable(path)
    except MediaError:
        return False
    return True


def _mark_done(state: State, job: Job, output: str, sha: str, size: int) -> None:
    record = state.job(job.key)
    fields = {} if record is not None else {
        "account": job.account, "kind": job.kind, "take": 1 + max((t.take for t in state.takes_of(output)), default=0)}
    state.update(job.key, **fields, status=JobStatus.DONE, output_sha256=sha, output_size=size,
                 outputs=sorted({*(record.outputs if record else job.outputs), output}), error=None, error_kind=None)


def _check(project: Project) -> int:
    loaded = read_state(project.state_path)  # StateDamagedError: the CLI names the file and the repair
    path = project.state_path
    if not loaded.snapshot and not loaded.journal:
        print(f"{path}: no state yet (nothing run)")
        return EXIT_OK
    print(f"{path}: whole: {len(loaded.jobs)} job record(s) up to event {loaded.seq} "
          f"({loaded.journal_events} in {journal_path(path).name}); "
          + (f"backup {backup_path(path).name} present" if backup_path(path).exists() else "no backup yet"))
    return EXIT_OK


def _report(rebuilt: Rebuilt | None, adoption: Adoption, manifest: str) -> None:
    for note in rebuilt.notes if rebuilt else ():
        print(f"  {note}")
    for kept in rebuilt.kept if rebuilt else ():
        print(f"  damaged file kept as {kept}")
    for output in adoption.adopted:
        print(f"adopted: {output} (done: nothing is paid again for it)")
    for path in adoption.unrecorded:
        print(f"no record: {path} (left alone; its job is blocked until you move the file away, or "
              "`run --force` pays for a new one and replaces it; if lipbatch made it for this job, "
              "`state repair --trust-outputs` adopts it)")
    print(f"outputs: {adoption.recorded} recorded, {len(adoption.adopted)} adopted, "
          f"{len(adoption.unrecorded)} without a record, {adoption.absent} not on disk. "
          f"`lipbatch plan {manifest}` shows what the next run pays.")


def main(args: argparse.Namespace) -> int:
    if getattr(args, "_state_main", None) is not None:  # push, pull (commands/state_push.py)
        return args._state_main(args)
    project = load_campaign(args.manifest, sandbox=args.sandbox)
    if args.action == "check":
        return _check(project)
    manifest = args.manifest + (" --sandbox" if args.sandbox else "")
    try:
        read_state(project.state_path)
    except StateDamagedError as exc:
        print(f"repairing {project.state_path}: {exc.problem}")
    else:
        if not args.trust_outputs:
            print(f"{project.state_path} is whole: nothing to repair")
            return EXIT_OK
        with State.open(project.state_path) as state:
            _report(None, adopt_outputs(project, state, {}, trust=True), manifest)
        return EXIT_OK
    known = {job.key: (job.account, job.kind, job.outputs) for job in project.jobs}
    state, rebuilt = repair(project.state_path, known)
    with state:
        adoption = adopt_outputs(project, state, rebuilt.evidence, trust=args.trust_outputs)
    _report(rebuilt, adoption, manifest)
    return EXIT_OK
