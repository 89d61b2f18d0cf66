"""The hostile-manifest corpus (issue 10): each case builds a manifest in a project folder and says
where validation must point and what it must say.

A case's text marks its expected line with ``# <-``; generated cases that cannot carry a
comment (bytes, one-line bombs) give the line explicitly. ``secret`` is a value that must
not appear anywhere in the output.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lipbatch.hashing import cache_path_for

Build = Callable[[Path], Path]

HEAD = """version: 1
providers:
  mh: {kind: magichour-lipsync}
  rw: {kind: runway-lipsync}
  px: {kind: aimlapi-pixverse-lipsync}
clips:
  anna: {video: media/anna.mp4}
voices:
  narrator: {runway-lipsync: VOICE, aimlapi-pixverse-lipsync: Ava}
"""
LINES = "scripts:\n  hi: {lines: {en: {audio: media/en.wav}}}\n"
JOB = 'jobs:\n  - {provider: mh, clips: [anna], scripts: [hi], output: "v/{clip}.{lang}.mp4"}\n'
VALID = HEAD + LINES + JOB
SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"


@dataclass
class Case:
    id: str
    build: Build
    path: str
    fragment: str
    line: int | None = None  # None: the line marked "# <-" in the written text
    path_prefix: bool = False  # the JSON path depends on a budget: only its start is fixed
    secret: str | None = None


def text(body: str, *, name: str = "m.yaml", before: Callable[[Path], None] | None = None) -> Build:
    def build(root: Path) -> Path:
        if before:
            before(root)
        manifest = root / name
        manifest.write_text(body, encoding="utf-8")
        return manifest

    build.marked = next((i + 1 for i, line in enumerate(body.splitlines()) if "# <-" in line), None)
    return build


def raw(data: bytes) -> Build:
    def build(root: Path) -> Path:
        (root / "m.yaml").write_bytes(data)
        return root / "m.yaml"

    return build


def with_job(output: str, *, head: str = "", provider: str = "mh", lines: str = LINES, mark: bool = True) -> str:
    """A manifest whose one job writes ``output`` (a YAML scalar as written: quoted unless it starts with a quote)."""
    scalar = output if output.startswith(('"', "'")) else f"'{output}'"
    return (head + HEAD + lines + "jobs:\n"
            f"  - {{provider: {provider}, clips: [anna], scripts: [hi], output: {scalar}}}{'   # <-' * mark}\n")


def provider_line(spec: str) -> str:
    return VALID.replace("  mh: {kind: magichour-lipsync}\n", f"  mh: {spec}   # <-\n")


def one_line_bomb(key: str, leaf: str, levels: int = 9, width: int = 10) -> str:
    """``key: [&a0 [leaf x width], &a1 [*a0 x width], ...]`` on one line: every alias is on that line."""
    items = [f"&a0 [{', '.join([leaf] * width)}]"]
    items += [f"&a{n} [{', '.join([f'*a{n - 1}'] * width)}]" for n in range(1, levels)]
    return f"{key}: [{', '.join(items)}]"


# -------------------------------------------------------------------------- file and encoding


def _folder(root: Path) -> Path:
    (root / "m.yaml").mkdir()
    return root / "m.yaml"


def _fifo(root: Path) -> Path:
    os.mkfifo(root / "m.yaml")
    return root / "m.yaml"


def _link_to(target: str) -> Build:
    def build(root: Path) -> Path:
        (root / "m.yaml").symlink_to(target)
        return root / "m.yaml"

    return build


def _sparse(size: int) -> Build:
    def build(root: Path) -> Path:
        with open(root / "m.yaml", "wb") as fh:
            fh.write(b"version: 1\n")
            fh.truncate(size)
        return root / "m.yaml"

    return build


def _loop(root: Path) -> Path:
    (root / "m.yaml").symlink_to(root / "m.yaml")
    return root / "m.yaml"


FILES = [
    Case("manifest-is-a-folder", _folder, "$", "is a folder, not a YAML file", line=1),
    Case("manifest-is-a-fifo", _fifo, "$", "is a FIFO (named pipe), not a regular file", line=1),
    Case("manifest-is-dev-zero", lambda root: Path("/dev/zero"), "$", "is a character device", line=1),
    Case("manifest-links-to-dev-zero", _link_to("/dev/zero"), "$", "is a character device", line=1),
    Case("manifest-is-dev-null", lambda root: Path("/dev/null"), "$", "is a character device", line=1),
    Case("manifest-symlink-loop", _loop, "$", "cannot read the manifest", line=1),
    Case("manifest-over-10-MiB", _sparse(10 * 2**20 + 1), "$", "manifests of at most 10 MiB", line=1),
    Case("non-utf8-byte", raw(b"version: 1\nproviders:\n  mh: {kind: magichour-lipsync}\nclips: {a\xff: 1}\n"),
         "$", "not UTF-8: byte 0xff", line=4),
    Case("latin1-comment", raw(b"version: 1\n# caf\xe9 au lait\nproviders: {}\n"), "$", "not UTF-8: byte 0xe9",
         line=2),
    Case("utf16-with-bom", raw("version: 1\n".encode("utf-16")), "$", "the manifest is UTF-16", line=1),
    Case("nul-character", raw(b"version: 1\nproviders: {mh: {kind: magic\x00hour}}\n"), "$",
         "does not allow the character U+0000", line=2),
    Case("bell-character", raw(b"version: 1\n\nclips: \x07\n"), "$", "does not allow the character U+0007", line=3),
    Case("empty-file", text(""), "$", "the manifest is empty", line=1),
    Case("only-comments", text("# nothing here\n# at all\n"), "$", "the manifest is empty", line=1),
    Case("two-documents", text("version: 1\n---\nversion: 1\n"), "$", "expected a single document", line=2),
]

# -------------------------------------------------------------------------- YAML structure and budgets

STRUCTURE = [
    Case("billion-laughs", text("version: 1\n" + one_line_bomb("lol", '"lol"') + "\n"), "$.lol", "alias bomb",
         line=2, path_prefix=True),
    Case("billion-laughs-in-languages", text(with_job("v/{clip}.mp4").replace(
        "scripts: [hi],", "scripts: [hi], " + one_line_bomb("languages", "en")[:-1] + "],")),
         "$.jobs[0].languages", "alias bomb", path_prefix=True),
    Case("billion-laughs-of-mappings", text("version: 1\nm: [&m0 {a: 1, b: 2, c: 3}, " + ", ".join(
        f"&m{n} [{', '.join([f'*m{n - 1}'] * 10)}]" for n in range(1, 8)) + "]\n"), "$.m", "alias bomb",
         line=2, path_prefix=True),
    Case("wide-alias", text("version: 1\nbig: &big [" + ", ".join(["x"] * 2000) + "]\nuse:\n  - [" + ", ".join(
        ["*big"] * 50) + "]   # <-\n"), "$.use[0]", "alias bomb", path_prefix=True),
    Case("alias-bomb-in-merge-keys", text("version: 1\nb0: &b0 {k: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\nm: [" + ", ".join(
        f"&b{n} {{<<: *b{n - 1}, " + ", ".join(f"x{j}: *b{n - 1}" for j in range(8)) + "}" for n in range(1, 7))
        + "]   # <-\n"), "$.m", "alias bomb", path_prefix=True),
    Case("alias-refers-to-itself", text("version: 1\nproviders: &p\n  mh: [*p]   # <-\n"), "$.providers.mh[0]",
         "an alias refers to itself"),
    Case("merge-into-itself", text("version: 1\nproviders: &p {<<: *p}   # <-\n"), "$.providers",
         "an alias refers to itself"),
    Case("undefined-alias", text("version: 1\nproviders: *nowhere   # <-\n"), "$", "found undefined alias"),
    Case("duplicate-anchor", text("version: 1\na: &x 1\nb: &x 2   # <-\n"), "$", "found duplicate anchor"),
    Case("deep-flow-nesting", text("version: 1\nclips: " + "[" * 100 + "]" * 100 + "\n"), "$",
         "nested more than 64 levels", line=2),
    Case("deep-block-nesting", text("version: 1\nclips:\n" + "".join(
        "  " * n + f"k{n}:\n" for n in range(80)) + "  " * 80 + "leaf: 1\n"), "$", "nested more than 64 levels",
         line=66),
    Case("deep-alias-chain", text("version: 1\nc: [&c0 [x], " + ", ".join(f"&c{n} [*c{n - 1}]" for n in range(1, 80))
                                  + "]\n"), "$.c", "nested more than 64 levels deep (through aliases)", line=2,
         path_prefix=True),
    Case("too-many-alias-uses", text("version: 1\na: &a x\nclips: [" + ", ".join(["*a"] * 30_000) + "]\n"), "$",
         "more than 20,000 values", line=3),
    Case("too-many-values", text("version: 1\nclips: [" + ", ".join(["a"] * 30_000) + "]\n"), "$",
         "more than 20,000 values", line=2),
    Case("too-many-problems", text(HEAD + LINES + "jobs: [" + ", ".join(["a"] * 80) + "]\n"), "$.jobs",
         "stopped after 50 problems", line=12, path_prefix=True),
    Case("nan-version", text("version: .nan   # <-\n"), "$.version", "'.nan' is not a finite number"),
    Case("inf-concurrency", text(provider_line("{kind: magichour-lipsync, concurrency: .inf}")),
         "$.providers.mh.concurrency", "'.inf' is not a finite number"),
    Case("minus-inf-start", text(VALID.replace("  anna: {video: media/anna.mp4}\n",
                                               "  anna: {video: media/anna.mp4, start: -.INF}   # <-\n")),
         "$.clips.anna.start", "'-.INF' is not a finite number"),
    Case("overflowing-float", text(VALID.replace("  anna: {video: media/anna.mp4}\n",
                                                 "  anna: {video: media/anna.mp4, end: 1.0e+999}   # <-\n")),
         "$.clips.anna.end", "'1.0e+999' is not a finite number"),
    Case("nan-option", text(provider_line("{kind: magichour-lipsync, options: {max_fps_limit: .NaN}}")),
         "$.providers.mh.options.max_fps_limit", "not a finite number"),
    Case("5000-digit-integer", text(provider_line("{kind: magichour-lipsync, concurrency: " + "9" * 5000 + "}")),
         "$.providers.mh.concurrency", "is not a number lipbatch can read"),
    Case("400-digit-integer", text(provider_line("{kind: magichour-lipsync, concurrency: 1" + "0" * 400 + "}")),
         "$.providers.mh.concurrency", "too large for a number"),
    Case("binary-value", text(VALID.replace("  anna: {video: media/anna.mp4}\n",
                                            "  anna: {video: !!binary aGVsbG8=}   # <-\n")),
         "$.clips.anna.video", "binary value is not used in manifests"),
    Case("python-object-tag", text("version: 1\nproviders: !!python/object:os.system {}   # <-\n"), "$.providers",
         "the YAML tag 'tag:yaml.org,2002:python/object:os.system' is not used"),
    Case("python-scalar-tag", text("version: 1\nproviders: !!python/name:os.system x   # <-\n"), "$",
         "could not determine a constructor"),
    Case("set-tag", text("version: 1\nclips: !!set {anna, ben}   # <-\n"), "$.clips", "is not used in manifests"),
    Case("version-is-a-string", text("version: '1'   # <-\n" + VALID.split("\n", 1)[1]), "$.version",
         "got the string '1'"),
    Case("version-is-true", text("version: true   # <-\n" + VALID.split("\n", 1)[1]), "$.version", "got true"),
]

# -------------------------------------------------------------------------- text lines and language tags

TEXT = "scripts:\n  hi:\n    voice: narrator\n    lines:\n      en: {line}   # <-\n"
TAGS = [
    Case("line-over-5000-chars", text(with_job("v/{clip}.mp4", provider="rw", lines=TEXT.format(line="a" * 5001),
                                      mark=False)),
         "$.scripts.hi.lines.en", "5,001 characters long; lipbatch takes lines of at most 5,000"),
    Case("line-mapping-over-5000-chars", text(with_job("v/{clip}.mp4", provider="rw", lines=TEXT.format(
        line="{text: " + "b" * 6000 + "}"), mark=False)),
         "$.scripts.hi.lines.en", "6,000 characters long"),
    Case("pixverse-line-over-200-chars", text(with_job("v/{clip}.mp4", provider="px", lines=TEXT.format(
        line="c" * 201), mark=False)),
         "$.scripts.hi.lines.en", "PixVerse lip sync (AI/ML API) speaks at most 200"),
]
for _tag, _fragment in [("EN", "is written 'en'"), ("pt-br", "is written 'pt-BR'"), ("jp", "did you mean 'ja'"),
                        ("ger", "standard tag is 'de'"), ("eng", "standard tag is 'en'"), ("iw", "standard tag is 'he'"),
                        ("english", "did you mean 'en'"), ("pt_BR", "standard tag is 'pt-BR'"),
                        ("on", "'on' is not a language tag in the IANA registry"),
                        ("xx", "'xx' is not a language tag in the IANA registry: use")]:
    TAGS.append(Case(f"line-tag-{_tag}", text(HEAD + f"scripts:\n  hi:\n    lines:\n      {_tag}: {{audio: media/en.wav}}"
                                              f"   # <-\n" + JOB), f"$.scripts.hi.lines.{_tag}", _fragment))
TAGS += [
    Case("job-language-EN", text(VALID.replace("scripts: [hi],", "scripts: [hi], languages: [EN],").replace(
        'mp4"}\n', 'mp4"}   # <-\n')), "$.jobs[0].languages[0]", "is written 'en'"),
    Case("job-language-cn", text(VALID.replace("scripts: [hi],", "scripts: [hi], languages: [en, cn],").replace(
        'mp4"}\n', 'mp4"}   # <-\n')), "$.jobs[0].languages[1]", "did you mean 'zh'"),
]

# -------------------------------------------------------------------------- special files as inputs


def _socket(root: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "face.mp4"))
    sock.close()


INPUTS = [
    Case("clip-is-a-fifo", text(VALID.replace("media/anna.mp4}", "face.mp4}   # <-"),
                                before=lambda root: os.mkfifo(root / "face.mp4")),
         "$.clips.anna.video", "is a FIFO (named pipe), not a regular file"),
    Case("clip-is-dev-zero", text(VALID.replace("media/anna.mp4}", "/dev/zero}   # <-")), "$.clips.anna.video",
         "'/dev/zero' is a character device, not a regular file"),
    Case("clip-links-to-dev-zero", text(VALID.replace("media/anna.mp4}", "face.mp4}   # <-"),
                                        before=lambda root: (root / "face.mp4").symlink_to("/dev/zero")),
         "$.clips.anna.video", "is a character device, not a regular file"),
    Case("clip-is-a-socket", text(VALID.replace("media/anna.mp4}", "face.mp4}   # <-"), before=_socket),
         "$.clips.anna.video", "is a socket, not a regular file"),
    Case("audio-is-dev-null", text(VALID.replace("{audio: media/en.wav}}}", "{audio: /dev/null}}}   # <-")),
         "$.scripts.hi.lines.en.audio", "is a character device, not a regular file"),
    Case("audio-is-a-fifo", text(VALID.replace("{audio: media/en.wav}}}", "{audio: speech.wav}}}   # <-"),
                                 before=lambda root: os.mkfifo(root / "speech.wav")),
         "$.scripts.hi.lines.en.audio", "is a FIFO"),
    Case("clip-is-a-folder", text(VALID.replace("media/anna.mp4}", "media}   # <-")), "$.clips.anna.video",
         "is a folder, not a file"),
    Case("clip-path-with-nul", text(VALID.replace("media/anna.mp4}", '"media/\\0anna.mp4"}   # <-')),
         "$.clips.anna.video", "has a control character in its name"),
    Case("clip-path-too-long", text(VALID.replace("media/anna.mp4}", "media/" + "n" * 300 + ".mp4}   # <-")),
         "$.clips.anna.video", "File name too long"),
]

# -------------------------------------------------------------------------- output paths


def _file(name: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")

    return make


def _dir_link(name: str, target: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(root / target if target != "/" else target, target_is_directory=True)

    return make


def _fifo_cache(state: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        cache = cache_path_for((root / state).resolve())
        cache.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(cache)

    return make


def _out(setting: str, *, mark: bool = True) -> str:
    return f"output_dir: {setting}{'   # <-' * mark}\n"


LONG_DIR = "/".join(["d" * 200] * 20)
OUTPUTS = [
    Case("folder-name-over-255-bytes", text(with_job("f" * 256 + "/{clip}.mp4")), "$.jobs[0].output",
         "folder name of 256 bytes"),
    Case("file-name-over-236-bytes-utf8", text(with_job("v/" + "é" * 120 + ".mp4")), "$.jobs[0].output",
         "file name of 244 bytes"),
    Case("path-over-4096-bytes", text(with_job("v/{clip}.mp4", head=f"output_dir: {LONG_DIR}\n")),
         "$.jobs[0].output", "paths must stay under 4,096 bytes"),
    Case("template-with-nul", text(with_job('"v/\\0{clip}.mp4"')), "$.jobs[0].output", "control character U+0000"),
    Case("template-with-tab", text(with_job('"v/\\t{clip}.mp4"')), "$.jobs[0].output", "control character U+0009"),
    Case("output-is-a-folder-of-another", text(HEAD + LINES + "jobs:\n  - {provider: mh, clips: [anna], scripts: [hi], "
                                           "output: x.mp4}\n  - {provider: mh, clips: [anna], scripts: [hi], "
                                           "output: 'x.mp4/{clip}.mp4'}   # <-\n"),
         "$.jobs[1].output", "needs a folder 'x.mp4', which jobs[0] writes as a file"),
    Case("output-folder-of-another-by-case", text(HEAD + LINES + "jobs:\n  - {provider: mh, clips: [anna], "
                                              "scripts: [hi], output: X.mp4}\n  - {provider: rw, clips: [anna], "
                                              "scripts: [hi], output: 'x.mp4/{clip}.mp4'}   # <-\n"),
         "$.jobs[1].output", "needs a folder 'X.mp4'"),
    Case("output-under-takes", text(with_job("takes/{clip}.mp4")), "$.jobs[0].output", "reserves for earlier takes"),
    Case("output-under-review", text(with_job("Review/{clip}.mp4")), "$.jobs[0].output", "reserves for the review"),
    Case("output-under-takes-by-field", text(with_job("{clip}/x.mp4").replace(
        "  anna: {video: media/anna.mp4}", "  Takes: {video: media/anna.mp4}").replace("clips: [anna]",
                                                                                     "clips: [Takes]")),
         "$.jobs[0].output", "is under 'Takes/'"),
    Case("output-dir-is-root", text(with_job("v/{clip}.mp4", head=_out("/"))), "$.output_dir", "is the root folder"),
    Case("output-dir-is-manifest-folder", text(with_job("v/{clip}.mp4", head=_out("."))), "$.output_dir",
         "holds the manifest"),
    Case("output-dir-above-manifest", text(with_job("v/{clip}.mp4", head=_out(".."))), "$.output_dir",
         "holds the manifest"),
    Case("output-dir-links-to-manifest-folder", text(with_job("v/{clip}.mp4", head=_out("out")),
                                                     before=_dir_link("out", ".")),
         "$.output_dir", "holds the manifest"),
    Case("output-dir-is-a-file", text(with_job("v/{clip}.mp4", head=_out("out")), before=_file("out")),
         "$.output_dir", "exists and is a file"),
    Case("output-dir-under-a-file", text(with_job("v/{clip}.mp4", head=_out("out/renders")), before=_file("out")),
         "$.output_dir", "cannot be created"),
    Case("output-dir-is-the-manifest", text(with_job("v/{clip}.mp4", head=_out("m.yaml"))), "$.output_dir",
         "exists and is a file"),
    Case("output-overwrites-an-input", text(with_job("en.wav", head=_out("media", mark=False))), "$.jobs[0].output",
         "would overwrite the input file given at $.scripts.hi.lines.en.audio"),
    *[Case(f"output-{name}", text(with_job(f"back/{output}", head=_out("out", mark=False)),
                                  before=_dir_link("out/back", ".")), "$.jobs[0].output", fragment)
      for name, output, fragment in [
          ("overwrites-the-manifest", "m.yaml", "would overwrite the manifest"),
          ("overwrites-the-state", "m.lipbatch-state.json", "would overwrite lipbatch's own 'm.lipbatch-state.json'"),
          ("overwrites-rehearsal-journal", "m.lipbatch-state.sandbox.json.journal",
           "lipbatch's own 'm.lipbatch-state.sandbox.json.journal'"),
          ("overwrites-the-lock", "m.lipbatch-state.json.lock", "lipbatch's own 'm.lipbatch-state.json.lock'"),
          ("inside-state-side-folder", "m.lipbatch-state.json.world/{clip}.mp4",
           "would go inside lipbatch's own 'm.lipbatch-state.json.world'"),
      ]],
    Case("output-dir-holds-the-state", text(with_job("v/{clip}.mp4", head=_out("out") + "state_file: out/s.json\n")),
         "$.output_dir", "holds the state file"),
    Case("output-dir-inside-state-side-folder", text(with_job("v/{clip}.mp4", head=_out(
        "s.json.world/out") + "state_file: s.json\n")), "$.output_dir", "lies inside"),
    Case("output-folder-exists-as-file", text(with_job("de/{clip}.mp4", head=_out("out", mark=False)), before=_file("out/de")),
         "$.jobs[0].output", "needs the folder 'de', which exists in the output folder as a file"),
    Case("output-exists-as-folder", text(with_job("{clip}.mp4", head=_out("out", mark=False)),
                                         before=lambda root: (root / "out" / "anna.mp4").mkdir(parents=True)),
         "$.jobs[0].output", "exists in the output folder as a folder"),
    Case("output-dir-with-nul", text(with_job("v/{clip}.mp4", head='output_dir: "o\\0ut"   # <-\n')),
         "$.output_dir", "control character U+0000"),
    Case("state-file-with-newline", text(with_job("v/{clip}.mp4", head='state_file: "s\\n.json"   # <-\n')),
         "$.state_file", "control character U+000A"),
    Case("state-file-is-the-manifest", text(with_job("v/{clip}.mp4", head="state_file: m.yaml   # <-\n")),
         "$.state_file", "is the manifest: lipbatch would overwrite it"),
    Case("hash-cache-is-a-fifo", text(with_job("v/{clip}.mp4", head="state_file: s.json   # <-\n"),
                                      before=_fifo_cache("s.json")),
         "$.state_file", "is a FIFO (named pipe), not a regular file"),
]

# -------------------------------------------------------------------------- secrets inline


def _creds(body: str, kind: str = "magichour-lipsync") -> str:
    return VALID.replace("  mh: {kind: magichour-lipsync}\n", f"  mh: {{kind: {kind}, credentials: {body}}}   # <-\n")


SECRETS = [
    Case("secret-token", text(_creds(f"{{token: {SECRET}}}")), "$.providers.mh.credentials.token",
         "looks like a secret; name an environment variable", secret=SECRET),
    Case("secret-upper-case-key-id", text(_creds("{token: AKIAIOSFODNN7EXAMPLE}")),
         "$.providers.mh.credentials.token", "looks like a secret", secret="AKIAIOSFODNN7EXAMPLE"),
    Case("secret-upper-hex", text(_creds("{token: 9F86D081884C7D659A2FEAA0C55AD015}")),
         "$.providers.mh.credentials.token", "looks like a secret", secret="9F86D081884C7D659A2FEAA0C55AD015"),
    Case("secret-number", text(_creds("{token: 8675309123}")), "$.providers.mh.credentials.token",
         "looks like a secret", secret="8675309123"),
    Case("secret-lower-case", text(_creds("{token: ghp_abcdefghijklmnop}")), "$.providers.mh.credentials.token",
         "looks like a secret", secret="ghp_abcdefghijklmnop"),
    Case("secret-as-credentials", text(_creds(SECRET)), "$.providers.mh.credentials",
         "credentials map a role to the NAME of an environment variable", secret=SECRET),
    Case("secret-as-role-key", text(_creds(f"{{{SECRET}: TOKEN}}")), "$.providers.mh.credentials",
         "looks like a secret (not shown)", secret=SECRET),
    Case("secret-on-unknown-kind", text(_creds(f"{{token: {SECRET}}}", kind="lipsync-9000")),
         "$.providers.mh.credentials.token", "looks like a secret", secret=SECRET),
    Case("secret-key-on-unknown-kind", text(_creds(f"{{{SECRET}: X}}", kind="lipsync-9000")),
         "$.providers.mh.credentials", "looks like a secret (not shown)", secret=SECRET),
    Case("secret-duplicate-key", text(_creds(f"{{{SECRET}: A, {SECRET}: B}}")), "$.providers.mh.credentials",
         "duplicate key '(not shown)'", secret=SECRET),
    Case("secret-creatify-api-key", text(_creds(f"{{api_id: CREATIFY_ID, api_key: {SECRET}}}",
                                                kind="creatify-lipsync")),
         "$.providers.mh.credentials.api_key", "looks like a secret", secret=SECRET),
]

CASES = [*FILES, *STRUCTURE, *TAGS, *INPUTS, *OUTPUTS, *SECRETS]
