"""Hostile manifests (issue 10): every case exits 2 with ``file:line:col: <json path>: message``, no traceback.

In-process and fast: the alias, value and problem budgets are lowered here so a bomb is
refused after thousands of values, not a hundred thousand (the mechanism is the same;
test_manifest_hostile_slow.py runs the worst cases against the real limits in a
memory-capped subprocess).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hostile import CASES, SECRET, VALID, Case, one_line_bomb

from lipbatch.errors import EXIT_INVALID
from lipbatch.manifest import ManifestProblems, expand, load, problems, read_document


@pytest.fixture(autouse=True)
def small_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "MAX_ALIAS_NODES", 10_000)
    monkeypatch.setattr(load, "MAX_NODES", 20_000)
    monkeypatch.setattr(problems, "MAX_PROBLEMS", 50)


def test_corpus_is_big_enough():
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)
    assert all(case.line is not None or getattr(case.build, "marked", None) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_manifest(case: Case, project_dir: Path, run_cli):
    manifest = case.build(project_dir)
    result = run_cli("validate", str(manifest), "--json")
    assert result.code == EXIT_INVALID
    assert "Traceback" not in result.out + result.err
    found = result.json()["problems"]
    line = case.line if case.line is not None else case.build.marked
    report = "\n".join(f"{p['line']}:{p['column']} {p['path']}: {p['message']}" for p in found)
    assert any(p["line"] == line and case.fragment in p["message"]
               and (p["path"].startswith(case.path) if case.path_prefix else p["path"] == case.path)
               for p in found), f"missing {line} {case.path} {case.fragment!r} in:\n{report}"
    assert all(p["file"] == str(manifest) and p["column"] >= 1 for p in found)
    if case.secret:
        text = run_cli("validate", str(manifest))
        assert case.secret not in result.out + result.err + text.out + text.err


def test_text_format_of_a_refused_file(project_dir: Path, run_cli):
    (project_dir / "m.yaml").write_bytes(b"version: 1\nclips:\n  caf\xc3\xa9\xff: 1\n")
    result = run_cli("validate", str(project_dir / "m.yaml"))
    assert result.code == EXIT_INVALID
    assert result.out == f"{project_dir / 'm.yaml'}:3:7: $: not UTF-8: byte 0xff cannot be decoded; save the " \
                         f"manifest as UTF-8\n"


def test_matrix_budget(project_dir: Path, run_cli, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(expand, "MAX_OUTPUTS", 3)
    (project_dir / "m.yaml").write_text(VALID.replace(
        "  hi: {lines: {en: {audio: media/en.wav}}}",
        "  hi: {lines: {en: {audio: media/en.wav}, de: {audio: media/de.wav}}}") + "  - {provider: rw, clips: "
        "[anna], scripts: [hi], output: 'w/{clip}.{lang}.mp4'}\n")
    result = run_cli("validate", str(project_dir / "m.yaml"), "--json")
    assert [(p["line"], p["path"], p["message"]) for p in result.json()["problems"]] == [
        (14, "$.jobs[1]", "this job makes 2 outputs, 4 so far: lipbatch makes at most 3 per manifest; split the "
                          "campaign into several manifests")]


# -------------------------------------------------------------------------- what must stay valid


@pytest.mark.parametrize("change", [
    ("{kind: magichour-lipsync}", "{kind: magichour-lipsync, credentials: {token: MY_MAGIC_HOUR_KEY_2}}"),
    ("{kind: magichour-lipsync}", "{kind: magichour-lipsync, credentials: {token: PRODUCTIONACCOUNTKEY}}"),
    ("{en: {audio: media/en.wav}}", "{no: {audio: media/en.wav}, pt-BR: {audio: media/de.wav}}"),
    ("{en: {audio: media/en.wav}}", "{zh-Hans-CN: {audio: media/en.wav}, es-419: {audio: media/de.wav}}"),
    ("version: 1\n", "version: 1\noutput_dir: renders/spring\n"),
    ("version: 1\n", f"version: 1\noutput_dir: {'d' * 255}\n"),
    ("v/{clip}.{lang}.mp4", "v/" + "é" * 100 + "{clip}.mp4"),
    ("v/{clip}.{lang}.mp4", "{clip}.mp4/{lang}.mp4"),
    ("v/{clip}.{lang}.mp4", "mistakes/{clip}.{lang}.mp4"),
], ids=["env-name-with-digit", "long-env-name", "norwegian-and-pt-BR", "script-and-region", "nested-output-dir",
        "255-byte-output-dir", "236-byte-file-name", "dotted-folder", "takes-lookalike"])
def test_near_misses_stay_valid(project_dir: Path, run_cli, change: tuple[str, str]):
    (project_dir / "m.yaml").write_text(VALID.replace(*change))
    result = run_cli("validate", str(project_dir / "m.yaml"))
    assert result.code == 0, result.out


def test_pixverse_line_of_200_characters_is_fine(project_dir: Path, run_cli):
    (project_dir / "m.yaml").write_text(VALID.replace("clips: [anna], scripts: [hi]", "clips: [anna], scripts: [s]")
                                        .replace("provider: mh", "provider: px").replace(
        "scripts:\n", f"scripts:\n  s: {{voice: narrator, lines: {{en: '{'c' * 200}'}}}}\n"))
    result = run_cli("validate", str(project_dir / "m.yaml"))
    assert result.code == 0, result.out


def test_output_dir_symlink_elsewhere_is_allowed(project_dir: Path, run_cli, tmp_path_factory):
    disk = tmp_path_factory.mktemp("bigdisk")
    (project_dir / "renders").symlink_to(disk, target_is_directory=True)
    (project_dir / "m.yaml").write_text("version: 1\noutput_dir: renders\n" + VALID.split("\n", 1)[1])
    result = run_cli("validate", str(project_dir / "m.yaml"), "--json")
    assert result.code == 0, result.out
    assert result.json()["output_dir"] == str(disk)


def test_home_folder_is_refused(project_dir: Path, run_cli, monkeypatch: pytest.MonkeyPatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    (project_dir / "m.yaml").write_text(f"version: 1\noutput_dir: {home}\n" + VALID.split("\n", 1)[1])
    result = run_cli("validate", str(project_dir / "m.yaml"), "--json")
    assert [(p["line"], p["path"]) for p in result.json()["problems"]] == [(2, "$.output_dir")]
    assert "is your home folder" in result.json()["problems"][0]["message"]


def test_secret_never_reaches_the_problems(project_dir: Path, run_cli):
    shutil.rmtree(project_dir / "media", ignore_errors=True)
    (project_dir / "m.yaml").write_text(VALID.replace("{kind: magichour-lipsync}",
                                                      f"{{kind: magichour-lipsync, credentials: {{token: {SECRET}}}}}"))
    for args in (("validate", str(project_dir / "m.yaml")), ("validate", str(project_dir / "m.yaml"), "--json")):
        result = run_cli(*args)
        assert result.code == EXIT_INVALID
        assert SECRET not in result.out + result.err
        assert SECRET[:12] not in result.out + result.err


def test_read_document_has_the_same_limits(project_dir: Path):
    (project_dir / "m.yaml").write_text(VALID)
    assert read_document(project_dir / "m.yaml")["providers"]["mh"] == {"kind": "magichour-lipsync"}
    (project_dir / "b.yaml").write_text("version: 1\n" + one_line_bomb("lol", "x") + "\n")
    with pytest.raises(ManifestProblems) as bomb:
        read_document(project_dir / "b.yaml")
    assert [(p.line, p.message[:30]) for p in bomb.value.details] == [(2, "aliases expand to more than 10")]
    with pytest.raises(ManifestProblems, match="is a character device"):
        read_document(Path("/dev/zero"))
