"""Where outputs go: templates, rendered paths, and the output folder, checked before anything is paid for.

An output the platform cannot create, or one that would overwrite something that
is not an output, is refused at validation, at the job's ``output`` (or at
``output_dir``):

- Template fields are ``TEMPLATE_FIELDS``; no ``\\``, absolute paths, ``..``,
  empty segments or control characters (NUL included).
- A folder name may have ``NAME_MAX`` (255) bytes of UTF-8 (Linux and macOS
  file systems). A file name may have 19 fewer: downloads stream to
  ``.<name>.<12 hex>.part`` beside the output (``download.py``), which must fit
  too. The whole path, output folder included, plus those 19 bytes must stay
  under ``PATH_MAX`` (4,096 bytes with its terminating NUL).
- No output may be a folder of another (``x.mp4`` and ``x.mp4/y.mp4``), sit
  under ``takes/`` or ``review/`` (``paths.TAKES_DIR``, where earlier takes are
  kept, and ``paths.REVIEW_DIR``), or be, or lie inside, the manifest, an
  input file, the state file or a file lipbatch keeps beside it
  (``paths.campaign_files``, and the hash cache wherever it lives).
- The output folder may not be ``/``, the user's home folder (or above it),
  the manifest's folder (or above it), a folder that holds the state file, or
  a folder inside one of lipbatch's side files; it may not exist as a file,
  nor may anything on the way to an output.

Paths are compared after resolving symlinks and case-insensitively (macOS and
Windows file systems would make ``A.mp4`` and ``a.mp4`` one file). An output
folder that is a symlink is allowed wherever it points (a link to a larger
disk is common); because comparisons use resolved paths, a link cannot hide a
collision with the manifest, an input or the state.
"""

from __future__ import annotations

import os
import re
import stat
import string
from pathlib import Path
from typing import TYPE_CHECKING

from lipbatch.hashing import cache_path_for
from lipbatch.manifest.context import Context
from lipbatch.manifest.inputs import InputFiles
from lipbatch.manifest.load import file_kind
from lipbatch.manifest.problems import JsonPath, did_you_mean, format_path, quote
from lipbatch.paths import REVIEW_DIR, TAKES_DIR, campaign_files

if TYPE_CHECKING:
    from lipbatch.manifest.expand import Cell

TEMPLATE_FIELDS = ("clip", "script", "lang", "voice", "provider")
NAME_MAX = 255
PATH_MAX = 4096
PART_EXTRA = len(".") + len(".") + 12 + len(".part")  # download.py's ".<name>.<token_hex(6)>.part"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RESERVED = {TAKES_DIR: "earlier takes of replaced outputs", REVIEW_DIR: "the review page (`lipbatch review`)"}


def control_character(text: str) -> str | None:
    """'U+0000' for the first control character in ``text``, else None."""
    match = _CONTROL.search(text)
    return f"U+{ord(match.group()):04X}" if match else None


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (RuntimeError, KeyError, OSError):
        return None


class Outputs:
    """The output folder, each job's template, and every rendered output path."""

    def __init__(self, ctx: Context, manifest: Path, output_dir: Path, state_path: Path, inputs: InputFiles):
        self.ctx = ctx
        self.manifest = manifest.resolve()
        self.output_dir = output_dir
        self.state_path = state_path
        self.inputs = inputs
        self.dir_usable = True
        self._dir_bytes = len(os.fsencode(output_dir))
        self._kinds: dict[str, int | None] = {}  # output-relative folder -> st_mode (None: absent)
        self._resolved: dict[str, str] = {}

    # -- the folder

    def check_locations(self) -> None:
        """output_dir and state_file against the manifest, home, the state's own files and the disk."""
        where: JsonPath = ("output_dir",)
        odir = self.output_dir
        named = "output_dir" if "output_dir" in self.ctx.data else "the default output folder"
        shown = quote(str(odir))
        home = _home()
        side = {*campaign_files(self.state_path), cache_path_for(self.state_path)}
        if odir.parent == odir:
            self.refuse(where, f"{named} is the root folder {shown}: give outputs a folder of their own")
        elif home is not None and (odir == home or odir in home.parents):
            self.refuse(where, f"{named} {shown} is your home folder or above it: give outputs a folder of their own")
        elif odir in self.manifest.parents:
            self.refuse(where, f"{named} {shown} holds the manifest: outputs would mix with it and its inputs; "
                               f"give outputs a folder of their own (e.g. 'out')")
        elif odir in self.state_path.parents:
            self.refuse(where, f"{named} {shown} holds the state file {quote(str(self.state_path))}: keep the state "
                               f"beside the outputs, not among them")
        elif owner := next((f for f in side if f == odir or f in odir.parents), None):
            self.refuse(where, f"{named} {shown} lies inside {quote(str(owner))}, which lipbatch keeps beside the "
                               f"state file")
        blocker = self._blocker(odir)
        if blocker:
            self.refuse(where, f"{named} {shown} cannot be created: {blocker}")
        self._check_state()

    def _check_state(self) -> None:
        state = self.state_path
        if state == self.manifest or state in self.inputs.local:
            self.ctx.add(("state_file",), f"state_file {quote(str(state))} is "
                                          f"{'the manifest' if state == self.manifest else 'an input file'}: "
                                          f"lipbatch would overwrite it")
        for file in (state, cache_path_for(state)):
            try:
                mode = os.stat(file).st_mode
            except OSError:
                continue
            if not stat.S_ISREG(mode):
                self.ctx.add(("state_file",), f"{quote(str(file))} exists and is {file_kind(mode)}, not a regular "
                                              f"file: lipbatch keeps its state (or its hash cache) there")

    def refuse(self, where: JsonPath, message: str) -> None:
        self.dir_usable = False
        self.ctx.add(where, message)

    @staticmethod
    def _blocker(folder: Path) -> str | None:
        """Why ``folder`` cannot be a folder: it, or an ancestor, exists as something else."""
        for candidate in (folder, *folder.parents):
            try:
                mode = os.stat(candidate).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                return f"{quote(str(candidate))}: {exc.strerror or exc}"
            if stat.S_ISDIR(mode):
                return None
            what = "exists and is a file" if stat.S_ISREG(mode) else "exists and is not a folder"
            return f"{quote(str(candidate))} {what}"
        return None

    # -- templates

    def check_template(self, jpath: JsonPath, template: str, kind: str) -> bool:
        opath = (*jpath, "output")
        shown = quote(template)
        control = control_character(template)
        if control:
            self.ctx.add(opath, f"output template has the control character {control}: file names cannot hold "
                                f"control characters")
            return False
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            self.ctx.add(opath, f"output template {shown!r} is malformed ({exc}); write fields as {{clip}}")
            return False
        usable = [f for f in TEMPLATE_FIELDS if not (kind == "runway-act-two-voice" and f in ("script", "lang"))]
        ok = True
        for _, field, spec, conv in parsed:
            if field is None:
                continue
            if field not in TEMPLATE_FIELDS:
                self.ctx.add(opath, f"unknown field {{{quote(field)}}} in output template"
                                    f"{did_you_mean(field, usable)}; fields: {' '.join('{' + f + '}' for f in usable)}")
                ok = False
            elif field not in usable:
                self.ctx.add(opath, f"{{{field}}} is not available for runway-act-two-voice jobs "
                                    f"(clips x voices, no scripts); use {{voice}}")
                ok = False
            if spec or conv:
                self.ctx.add(opath, f"output field {{{quote(field)}}} takes no format spec or conversion")
                ok = False
        segments = template.split("/")
        if "\\" in template:
            self.ctx.add(opath, "output template uses '\\': separate folders with '/'")
        elif template.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", template):
            self.ctx.add(opath, f"output template {shown!r} is absolute: outputs must stay inside output_dir")
        elif ".." in segments:
            self.ctx.add(opath, f"output template {shown!r} escapes output_dir with '..'")
        elif any(part in ("", ".") for part in segments):
            self.ctx.add(opath, f"output template {shown!r} has an empty or '.' path segment")
        else:
            return ok
        return False

    def render(self, jpath: JsonPath, template: str, cell: Cell) -> bool:
        if "{voice}" in template and cell.voice is None:
            self.ctx.add((*jpath, "output"),
                         f"output uses {{voice}}, but script '{cell.script}' line '{cell.lang}' is recorded audio "
                         f"with no voice", once=("novoice", jpath, cell.script, cell.lang))
            return False
        cell.output = template.format(clip=cell.clip, script=cell.script, lang=cell.lang, voice=cell.voice,
                                      provider=cell.account.name)
        return True

    # -- rendered paths

    def check_paths(self, cells: list[Cell]) -> None:
        """Every distinct output path: creatable, not nested in another, not on a file that is not an output."""
        first: dict[str, Cell] = {}
        for cell in cells:
            first.setdefault(cell.output, cell)
        folded = {output.casefold(): cell for output, cell in reversed(first.items())}
        protected = self._protected() if self.dir_usable else {}
        for output, cell in first.items():
            problem = (self._shape(output) or self._nesting(output, folded)
                       or (self._on_disk(output, protected) if self.dir_usable else None))
            if problem:
                what, message = problem
                self.ctx.add(("jobs", cell.job_index, "output"), f"output '{quote(output)}' ({cell.describe()}) "
                                                                 f"{message}", once=(what, cell.job_index))

    def _shape(self, output: str) -> tuple[str, str] | None:
        parts = output.split("/")
        control = control_character(output)
        if control:
            return "control", f"has the control character {control}: file names cannot hold control characters"
        if parts[0].casefold() in _RESERVED:
            return "reserved", (f"is under '{parts[0]}/', which lipbatch reserves for "
                                f"{_RESERVED[parts[0].casefold()]}: start the template with another folder")
        for part in parts[:-1]:
            if len(part.encode()) > NAME_MAX:
                return "name", (f"has a folder name of {len(part.encode())} bytes; file systems take at most "
                                f"{NAME_MAX}")
        name = len(parts[-1].encode())
        if name + PART_EXTRA > NAME_MAX:
            return "name", (f"has a file name of {name} bytes; file systems take {NAME_MAX}, and the download's "
                            f"temporary name adds {PART_EXTRA}: at most {NAME_MAX - PART_EXTRA}")
        full = self._dir_bytes + 1 + len(output.encode())
        if full + PART_EXTRA >= PATH_MAX:
            return "long", (f"makes a path of {full:,} bytes with output_dir; paths must stay under {PATH_MAX:,} "
                            f"bytes (with {PART_EXTRA} for the download's temporary name)")
        return None

    @staticmethod
    def _nesting(output: str, folded: dict[str, Cell]) -> tuple[str, str] | None:
        parts = output.casefold().split("/")
        for k in range(1, len(parts)):
            other = folded.get("/".join(parts[:k]))
            if other is not None:
                return "nested", (f"needs a folder '{quote(other.output)}', which jobs[{other.job_index}] writes as "
                                  f"a file ({other.describe()})")
        return None

    def _protected(self) -> dict[str, str]:
        """Case-folded resolved path -> what it is, for every file an output must not land on or in."""
        found = {str(self.manifest).casefold(): "the manifest"}
        for file, where in self.inputs.local.items():
            found.setdefault(str(file).casefold(), f"the input file given at {format_path(where)}")
        for file in (*campaign_files(self.state_path), cache_path_for(self.state_path)):
            found.setdefault(str(file).casefold(), f"lipbatch's own '{quote(file.name)}'")
        return found

    def _on_disk(self, output: str, protected: dict[str, str]) -> tuple[str, str] | None:
        folder, _, name = output.rpartition("/")
        target = candidate = os.path.join(self._resolve(folder), name)
        top = str(self.output_dir)
        while True:  # the output, then each folder up to output_dir (strings: this runs once per output)
            what = protected.get(candidate.casefold())
            if what:
                verb = "would overwrite" if candidate == target else "would go inside"
                return "collides", f"{verb} {what} ({quote(candidate)})"
            if len(candidate) <= len(top):
                break
            candidate = os.path.dirname(candidate)
        parts = output.split("/")
        for k in range(1, len(parts) + 1):
            mode = self._mode("/".join(parts[:k]))
            if mode is None:
                return None
            if k < len(parts) and not stat.S_ISDIR(mode):
                return "blocked", (f"needs the folder '{quote('/'.join(parts[:k]))}', which exists in the output "
                                   f"folder as a file")
            if k == len(parts) and stat.S_ISDIR(mode):
                return "blocked", "exists in the output folder as a folder"
        return None

    def _resolve(self, folder: str) -> str:
        if folder not in self._resolved:
            self._resolved[folder] = str((self.output_dir / folder).resolve())
        return self._resolved[folder]

    def _mode(self, relative: str) -> int | None:
        if relative not in self._kinds:
            try:
                self._kinds[relative] = os.stat(os.path.join(self.output_dir, relative)).st_mode
            except OSError:
                self._kinds[relative] = None
        return self._kinds[relative]
