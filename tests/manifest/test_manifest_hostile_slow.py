"""The worst hostile manifests against the real limits, as `python -m lipbatch validate` in a subprocess
capped at 1 GiB of address space (RLIMIT_AS). The timeout is a hang guard, not a speed assertion.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import VALID, one_line_bomb

from lipbatch.errors import EXIT_INVALID

MEMORY_CAP = 2**30
HANG_GUARD_SECONDS = 300


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _write(text: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        (root / "m.yaml").write_text(text, encoding="utf-8")
        return root / "m.yaml"

    return build


def _huge(root: Path) -> Path:
    with open(root / "m.yaml", "w") as fh:
        fh.write("version: 1\n")
        line = "# " + "x" * 1022 + "\n"
        for _ in range(11 * 1024):
            fh.write(line)
    return root / "m.yaml"


def _fifo(root: Path) -> Path:
    os.mkfifo(root / "m.yaml")
    return root / "m.yaml"


def _fifo_clip(root: Path) -> Path:
    os.mkfifo(root / "face.mp4")
    return _write(VALID.replace("media/anna.mp4", "face.mp4"))(root)


WORST = {
    "billion-laughs": (_write("version: 1\n" + one_line_bomb("lol", '"lol"') + "\n"),
                       ":2:", "aliases expand to more than 100,000 values"),
    "billion-laughs-in-languages": (_write(VALID.replace("scripts: [hi],", "scripts: [hi], " + one_line_bomb(
        "languages", "en") + ",")), ":13:", "$.jobs[0].languages"),
    "wide-alias": (_write("version: 1\nbig: &big [" + ", ".join(["x"] * 2000) + "]\nuse: [" + ", ".join(
        ["*big"] * 60) + "]\n"), ":3:", "aliases expand to more than 100,000 values"),
    "200k-values": (_write("version: 1\nclips: [" + ", ".join(["a"] * 250_000) + "]\n"), ":2:",
                    "more than 200,000 values"),
    "2-million-alias-uses": (_write("version: 1\na: &a x\nclips: [" + ", ".join(["*a"] * 2_000_000) + "]\n"),
                             ":3:", "more than 200,000 values"),
    "11-MiB-file": (_huge, ":1:1:", "manifests of at most 10 MiB"),
    "dev-zero": (lambda root: Path("/dev/zero"), ":1:1:", "is a character device"),
    "fifo": (_fifo, ":1:1:", "is a FIFO (named pipe)"),
    "fifo-as-clip": (_fifo_clip, ":7:", "is a FIFO (named pipe), not a regular file"),
    "deep-nesting": (_write("version: 1\nclips: " + "[" * 5000 + "]" * 5000 + "\n"), ":2:", "nest"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WORST))
def test_worst_cases_in_a_memory_capped_process(name: str, project_dir: Path):
    build, position, fragment = WORST[name]
    manifest = build(project_dir)
    done = subprocess.run([sys.executable, "-m", "lipbatch", "validate", str(manifest)], capture_output=True,
                          text=True, timeout=HANG_GUARD_SECONDS, preexec_fn=_cap_memory, cwd=project_dir)
    assert done.returncode == EXIT_INVALID, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert any(line.startswith(f"{manifest}{position}") and fragment in line
               for line in done.stdout.splitlines()), done.stdout
