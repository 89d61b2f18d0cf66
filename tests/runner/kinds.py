"""A small valid manifest (plus media) for each of the five provider kinds.

Every end-to-end runner test is parametrized over ``KINDS``.
Media come from tests/manifest/mediagen.py (tiny, so renders stay fast).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "manifest"))

import mediagen  # noqa: E402

from lipbatch.model import KINDS  # noqa: E402
from lipbatch.providers import MODULES  # noqa: E402
from lipbatch.sandbox import useapi as useapi_emulator  # noqa: E402
from lipbatch.sandbox.core import account_label  # noqa: E402

# The sandbox emulator serving each kind, as ``Sandbox.charge`` names it.
EMULATORS = {"runway-lipsync": "useapi", "runway-act-two-voice": "useapi", "magichour-lipsync": "magichour",
             "aimlapi-pixverse-lipsync": "aimlapi", "creatify-lipsync": "creatify"}

# Kinds whose text lines the sandbox can moderate (Magic Hour takes no text; Act-Two swaps voices only).
TEXT_KINDS = ("runway-lipsync", "aimlapi-pixverse-lipsync", "creatify-lipsync")
MODERATED_WORD = "forbiddenword"

# Valid ids in the emulators' catalogues.
RUNWAY_VOICES = tuple(voice["voiceId"] for voice in useapi_emulator.VOICES)
PIXVERSE_SPEAKER = "Ava"

LANGS = ("en", "de", "fr", "es", "it", "pt", "nl", "sv", "da", "fi", "pl", "cs", "ja", "ko", "tr", "el")
# Words for distinct TTS lines (each line is a different job key).
_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
          "kilo", "lima", "mike", "november", "oscar", "papa")


def sandbox_account(kind: str, env: dict[str, str], prefix: str) -> str:
    """The emulator's account name for the credentials in ``env`` under ``prefix`` (e.g. "ACCT0_")."""
    if kind == "creatify-lipsync":
        return env[prefix + "API_ID"]
    token = env[prefix + "TOKEN"]
    if EMULATORS[kind] == "useapi":
        return f"runway-{useapi_emulator.user_id_for(token)}@example.com"
    return account_label(token)  # bearer-key emulators keep accounts under a digest, never the key


def creatify_ids() -> tuple[str, str]:
    """A stock persona id and a voice accent id the Creatify emulator knows."""
    from lipbatch.sandbox import creatify

    return creatify.PERSONAS[0]["id"], creatify.VOICES[0]["accents"][0]["id"]


@dataclass
class Case:
    """One kind's test project: the manifest path and what a run should produce."""

    kind: str
    manifest: Path
    jobs: int
    account: str = "acct"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def reconcilable(self) -> bool:
        module = importlib.import_module(MODULES[self.kind])
        return bool(module.Client.can_reconcile)


class Media:
    """Tiny inputs, generated once per session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.video = mediagen.make_video(root / "face.mp4", 2.0, width=32, height=24, fps=6)
        self.clip = mediagen.make_video(root / "clip.mp4", 3.5, width=32, height=24, fps=6, audio=True)
        self.image = mediagen.make_png(root / "face.png", width=32, height=24)
        self._wavs: dict[int, Path] = {}

    def wav(self, index: int, seconds: float = 2.0) -> Path:
        """Distinct audio files (different pitch = different bytes = different job)."""
        if index not in self._wavs:
            self._wavs[index] = mediagen.make_wav(self.root / f"line{index}.wav", seconds,
                                                  pitch=140.0 + 10 * index)
        return self._wavs[index]


def _text(index: int, moderated: bool) -> str:
    words = f"Line {_WORDS[index % len(_WORDS)]} number {index} is spoken here"
    return f"{words} {MODERATED_WORD}" if moderated else words


def _lines(kind: str, media: Media, jobs: int, moderated: set[int]) -> dict[str, object]:
    lines: dict[str, object] = {}
    for i in range(jobs):
        lang = LANGS[i]
        audio_only = kind == "magichour-lipsync"
        use_audio = audio_only or (kind in ("runway-lipsync", "aimlapi-pixverse-lipsync") and i % 3 == 2
                                   and i not in moderated)
        lines[lang] = {"audio": str(media.wav(i))} if use_audio else _text(i, i in moderated)
    return lines


def provider_accounts(kind: str, accounts: int, concurrency: int, *, var_prefix: str = "ACCT",
                      value_prefix: str = "sandbox") -> tuple[list[str], dict[str, dict], dict[str, str]]:
    """(account names, the manifest's providers section, environ) for ``accounts`` accounts of ``kind``.

    With several accounts each gets its own credential variables (``<var_prefix><i>_...``),
    so the sandbox sees them as separate provider accounts.
    """
    names = ["acct"] if accounts == 1 else [f"acct{i}" for i in range(accounts)]
    providers: dict[str, dict] = {}
    env: dict[str, str] = {}
    for index, name in enumerate(names):
        entry: dict[str, object] = {"kind": kind, "concurrency": concurrency}
        if accounts > 1:
            roles = ("api_id", "api_key") if kind == "creatify-lipsync" else ("token",)
            creds = {role: f"{var_prefix}{index}_{role.upper()}" for role in roles}
            entry["credentials"] = creds
            env.update({var: f"{value_prefix}-{name}-{role}" for role, var in creds.items()})
        providers[name] = entry
    return names, providers, env


def write_manifest(kind: str, directory: Path, media: Media, *, jobs: int = 3, concurrency: int = 3,
                   moderated: set[int] | None = None, accounts: int = 1,
                   output: str = "{provider}/{clip}/{script}.{lang}.mp4") -> Case:
    """A manifest for ``kind`` with ``jobs`` jobs per account on ``accounts`` accounts.

    With several accounts each gets its own credential variables (``ACCT<i>_...``),
    so the sandbox sees them as separate provider accounts.
    """
    moderated = moderated or set()
    directory.mkdir(parents=True, exist_ok=True)
    names, providers, env = provider_accounts(kind, accounts, concurrency)

    persona, accent = creatify_ids()
    clip: dict[str, object] = {"video": str(media.video)}
    if kind == "creatify-lipsync":
        clip = {"avatar": persona}
    elif kind == "runway-act-two-voice":
        clip = {"video": str(media.clip)}
    voices = {"narrator": {"runway-lipsync": RUNWAY_VOICES[0], "aimlapi-pixverse-lipsync": PIXVERSE_SPEAKER,
                           "creatify-lipsync": accent}}
    data: dict[str, object] = {"version": 1, "providers": providers, "clips": {"face": clip}}
    job_entries = []
    if kind == "runway-act-two-voice":
        # each account swaps in its own voices, so keys do not merge across accounts
        voices = {f"v{i}": {kind: RUNWAY_VOICES[i % len(RUNWAY_VOICES)]} for i in range(jobs * len(names))}
        for index, name in enumerate(names):
            job_entries.append({"provider": name, "clips": ["face"],
                                "voices": [f"v{i}" for i in range(index * jobs, (index + 1) * jobs)],
                                "output": output.replace("{script}.{lang}", "swap.{voice}")})
    else:
        for name in names:
            script = f"s_{name}"
            data.setdefault("scripts", {})[script] = {  # type: ignore[index]
                "voice": "narrator", "lines": _lines(kind, media, jobs, moderated)}
            if accounts > 1:  # each account's lines differ, so keys do not merge across accounts
                for lang, line in data["scripts"][script]["lines"].items():  # type: ignore[index]
                    if isinstance(line, str):
                        data["scripts"][script]["lines"][lang] = f"{line} for {name}"  # type: ignore[index]
            job_entries.append({"provider": name, "clips": ["face"], "scripts": [script], "output": output})
    data["voices"] = voices
    data["jobs"] = job_entries
    if kind == "magichour-lipsync" and accounts > 1:
        # audio lines are shared by content: give each account different audio files
        for index, name in enumerate(names):
            for i, lang in enumerate(data["scripts"][f"s_{name}"]["lines"]):  # type: ignore[index]
                data["scripts"][f"s_{name}"]["lines"][lang] = {"audio": str(media.wav(100 * index + i))}  # type: ignore[index]
    path = directory / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Case(kind, path, jobs * len(names), names[0], env)


__all__ = ["KINDS", "TEXT_KINDS", "Case", "Media", "write_manifest", "provider_accounts", "MODERATED_WORD"]
