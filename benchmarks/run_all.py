"""Run every benchmark (each in its own process) and print one summary table of their headlines.

Each benchmark prints its own table as it finishes; the summary's "headline"
is the benchmark's last line. ``--quick`` passes ``--quick`` on (the whole set
then takes a few minutes; each benchmark stays under one).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from _common import parser, table

BENCHMARKS = ("slots", "naive", "requests", "rerun", "overhead", "download", "notice")
HERE = Path(__file__).resolve().parent
LIMIT = 30 * 60  # seconds per benchmark: the full sizes take a few minutes at most


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    rows = []
    for name in BENCHMARKS:
        command = [sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if args.quick else [])]
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=LIMIT)
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
        seconds = time.perf_counter() - start
        print(out, end="", flush=True)
        if code != 0:
            print(err[-2000:], file=sys.stderr)
        lines = [line for line in out.splitlines() if line.strip()]
        headline = lines[-1] if code == 0 and lines else (err.strip().splitlines() or ["(no output)"])[-1]
        rows.append([name, "ok" if code == 0 else f"FAILED ({code})", seconds, headline])
    print("== summary" + (" (--quick)" if args.quick else ""))
    print(table(["benchmark", "status", "s", "headline (last line)"], rows))
    failed = [row[0] for row in rows if row[1] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} benchmarks ran" + (f"; failed: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
