"""`lipbatch validate MANIFEST`: every problem at once, or a one-line summary. Exit 0 valid, 2 invalid."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lipbatch.errors import EXIT_INVALID, EXIT_OK, ManifestError
from lipbatch.manifest import ManifestProblems, load_project

HELP = "check a manifest (schema, references, files, media limits, output paths) without touching the network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="the manifest YAML file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def report_problems(err: ManifestError, *, as_json: bool) -> int:
    """Print every problem on stdout (one per line, like a linter, or as JSON); returns the invalid exit code."""
    if as_json:
        details = ([p.as_dict() for p in err.details] if isinstance(err, ManifestProblems)
                   else [{"message": m} for m in err.problems])
        print(json.dumps({"valid": False, "problems": details}, indent=2, ensure_ascii=False))
    else:
        for problem in err.problems:
            print(problem)
        count = len(err.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
    return EXIT_INVALID


def main(args: argparse.Namespace) -> int:
    try:
        project = load_project(args.manifest)
    except ManifestError as err:
        return report_problems(err, as_json=args.json)
    accounts = sorted({job.account for job in project.jobs})
    outputs = sum(len(job.outputs) for job in project.jobs)
    if args.json:
        print(json.dumps({"valid": True, "problems": [], "jobs": len(project.jobs), "outputs": outputs,
                          "accounts": accounts, "output_dir": str(project.output_dir),
                          "state_file": str(project.state_path)}, indent=2, ensure_ascii=False))
    else:
        extra = f" ({outputs} outputs)" if outputs != len(project.jobs) else ""
        print(f"{args.manifest}: valid: {len(project.jobs)} job{'s' if len(project.jobs) != 1 else ''}{extra} "
              f"on {len(accounts)} account{'s' if len(accounts) != 1 else ''}")
    return EXIT_OK
