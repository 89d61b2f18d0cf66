"""The entry point: a manifest file through every pass into a ``Project``, or every problem at once."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lipbatch.budget import cost_problems
from lipbatch.hashing import HashCache, cache_path_for
from lipbatch.manifest.context import Context, mapping
from lipbatch.manifest.expand import Expander, merge
from lipbatch.manifest.inputs import InputFiles
from lipbatch.manifest.load import Positions, parse_yaml, read_manifest
from lipbatch.manifest.outputs import Outputs, control_character
from lipbatch.manifest.problems import Report, TooManyProblems
from lipbatch.manifest.rules import Sections
from lipbatch.manifest.schema import describe, schema_problems
from lipbatch.model import Project
from lipbatch.state.backend import is_postgres_url


def default_paths(manifest: Path, data: Any = None) -> tuple[Path, Path]:
    """(output_dir, state_path) of a manifest: its settings or the defaults beside it.

    A setting that cannot name a file (empty, or with a control character such as NUL) is
    reported by validation; here it falls back to the default so resolving never fails.
    """
    base = manifest.parent
    data = mapping(data)

    def setting(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value and not control_character(value) else None

    out, state = setting("output_dir"), setting("state_file")
    output_dir = base / out if out else base / f"{manifest.stem}-output"
    state_path = base / state if state else base / f"{manifest.stem}.lipbatch-state.json"
    return output_dir.resolve(), state_path.resolve()


def _hash_cache(state_path: Path) -> HashCache:
    """The state's hash cache, or an in-memory one when its file is not a regular file (never read a FIFO)."""
    try:
        mode = os.stat(cache_path_for(state_path)).st_mode
    except (OSError, ValueError):
        return HashCache.for_state(state_path)
    return HashCache.for_state(state_path) if stat.S_ISREG(mode) else HashCache()


def load_project(path: Path, *, hash_cache: HashCache | None = None) -> Project:
    """Validate and expand the manifest at ``path``; raises ``ManifestProblems`` listing every problem."""
    path = Path(path)
    report = Report(str(path))
    try:
        project = _load(path, report, hash_cache)
    except TooManyProblems:
        raise report.error() from None
    if report or project is None:
        raise report.error()
    return project


def _load(path: Path, report: Report, hash_cache: HashCache | None) -> Project | None:
    text = read_manifest(path, report.add)
    if text is None:
        return None
    pos = Positions()
    data, refused = parse_yaml(text, pos, report.add)
    if report and data is None:
        return None
    if not isinstance(data, dict):
        report.add(*pos.at(()), (), f"a manifest is a mapping with version, providers, clips, ...; got "
                                    f"{describe(data)}")
        return None
    broken = set(refused)
    for jpath, at_key, message in schema_problems(data):
        broken.add(jpath)
        if not any(jpath[:n] in refused for n in range(len(jpath) + 1)):  # the reader said it already
            report.add(*pos.at(jpath, key=at_key), jpath, message)
    for setting in ("output_dir", "state_file"):
        value = data.get(setting)
        if isinstance(value, str) and control_character(value):
            broken.add((setting,))
            report.add(*pos.at((setting,)), (setting,), f"{setting} has the control character "
                                                        f"{control_character(value)}: file names cannot hold it")
    output_dir, state_path = default_paths(path, data)
    cache = hash_cache if hash_cache is not None else _hash_cache(state_path)
    ctx = Context(data, pos, broken, report)
    inputs = InputFiles(ctx, path.resolve().parent, cache)
    sections = Sections(ctx, inputs)
    sections.check_all()
    outputs = Outputs(ctx, path, output_dir, state_path, inputs)
    outputs.check_locations()
    cells = Expander(ctx, sections, inputs, outputs).expand_jobs()
    outputs.check_paths(cells)
    jobs = merge(ctx, cells)
    budget_usd = mapping(data.get("budget")).get("usd")
    budget_usd = budget_usd if isinstance(budget_usd, int | float) and not isinstance(budget_usd, bool) else None
    for jpath, message in cost_problems(sections.accounts, jobs, budget_usd):
        ctx.add(jpath, message)
    shared = data.get("state") if isinstance(data.get("state"), str) else None
    if shared is not None and (problem := shared_state_problem(shared)):
        ctx.add(("state",), problem)
    cache.save()
    return Project(manifest_path=path.resolve(), output_dir=output_dir, state_path=state_path,
                   accounts=sections.accounts, jobs=tuple(jobs), budget_usd=budget_usd, state_url=shared)


def shared_state_problem(url: str) -> str | None:
    """What is wrong with a manifest's ``state:`` URL, never quoting it (it might hold a password)."""
    if not is_postgres_url(url):
        return "state takes a postgresql://user@host/database URL (leave it out for the local state file)"
    try:
        has_password = urlsplit(url).password is not None
    except ValueError:
        return "state is not a valid URL"
    if has_password:
        return ("state holds a password, which is a secret: remove it and set PGPASSWORD or use ~/.pgpass "
                "(the value is not shown)")
    return None
