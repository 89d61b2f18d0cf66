"""Every malformed manifest in bad/ exits 2 and reports exactly the expected problems.

Each file declares ``# expect N: <json path> | <message fragment>`` and marks the
offending line with ``# <-N``: the reported line must be the marked line, so the
expectation is written against the source, not copied from the output.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lipbatch.errors import EXIT_INVALID

BAD = Path(__file__).parent / "bad"
_EXPECT = re.compile(r"^# expect (\d+): (.+?) \| (.+)$")


def expectations(path: Path) -> list[tuple[int, str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for text in lines:
        match = _EXPECT.match(text)
        if match:
            number, json_path, fragment = match.groups()
            marked = [i + 1 for i, line in enumerate(lines) if re.search(rf"#.*<-{number}\b", line)]
            assert len(marked) == 1, f"{path.name}: marker <-{number} must appear exactly once"
            found.append((marked[0], json_path, fragment))
    return found


CASES = sorted(BAD.glob("*.yaml"))


def test_corpus_is_big_enough():
    assert len(CASES) >= 25
    assert all(expectations(case) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_manifest(case: Path, project_dir: Path, run_cli):
    manifest = project_dir / case.name
    shutil.copy(case, manifest)
    result = run_cli("validate", str(manifest), "--json")
    assert result.code == EXIT_INVALID
    problems = result.json()["problems"]
    expected = expectations(case)
    report = "\n".join(f"{p['line']}:{p['column']} {p['path']}: {p['message']}" for p in problems)
    for line, json_path, fragment in expected:
        assert any(p["line"] == line and p["path"] == json_path and fragment in p["message"]
                   for p in problems), f"missing {line} {json_path} {fragment!r} in:\n{report}"
    assert len(problems) == len(expected), f"unexpected extra problems:\n{report}"
    assert all(p["file"] == str(manifest) for p in problems)


def test_text_output_format(project_dir: Path, run_cli):
    manifest = project_dir / "m.yaml"
    shutil.copy(BAD / "undefined_clip.yaml", manifest)
    result = run_cli("validate", str(manifest))
    assert result.code == EXIT_INVALID
    assert result.out.splitlines() == [
        f"{manifest}:13:13: $.jobs[0].clips[1]: unknown clip 'ana' (did you mean 'anna'?)"]
    assert result.err == "1 problem found\n"


def test_missing_manifest_file(tmp_path: Path, run_cli):
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.code == EXIT_INVALID
    assert result.out == f"{tmp_path / 'nope.yaml'}:1:1: $: manifest file not found\n"
