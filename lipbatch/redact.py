"""Credential values, and the ways a provider may echo them, replaced by ``[redacted]``.

A provider's error may carry a key not only as sent but URL-encoded (a query
string), base64 (a Basic auth header, after ``user:``), hex, JSON-escaped,
truncated or split around other text. So a ``Redactor`` built from a run's
credential values redacts:

* the secret and each of its *forms*: URL-encoded (``quote`` with and without
  ``/`` safe, ``quote_plus``; upper- and lower-case escapes), base64 (standard
  and URL-safe alphabets, with and without padding, and the characters that
  depend only on the secret when it sits at any of the 3 byte alignments inside
  a longer encoded string), hex (lower and upper case) and JSON string escapes
  (``\\uXXXX`` for non-ASCII or not, ``/`` as ``\\/`` or not);
* for a secret of ``WINDOW`` (8) characters or more, every run of ``WINDOW`` or
  more consecutive characters of any form, so a cut or split echo never keeps
  8 characters of one. Shorter secrets (4 to 7 characters) are matched only as
  whole forms, without the base64 of them inside longer strings: a few
  characters of them would redact ordinary words;
* nothing for values under ``MIN_SECRET`` (4) characters: they cannot be
  credentials, and redacting ``k1`` would mangle every path holding it.

Overlapping matches merge into one ``[redacted]``. Mixed-case percent escapes
(``%2f%3A``) and doubly encoded forms are not recognised.

Speed: forms are indexed once by their 4-character grams. ``scrub`` marks the
characters some form uses (one ``str.translate``) and finds the runs of 8 or
more of them (one regex scan); in each run it looks up the gram at every 5th
position (every 8-character match holds one) and extends a hit both ways to the
whole match. Ordinary prose, whose words are short, costs little more than the
scan; 10 KB of base64, one long run, costs 2,000 dictionary lookups.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MIN_SECRET = 4
WINDOW = 8
_GRAM, _STRIDE = 4, 5  # _GRAM + _STRIDE - 1 <= WINDOW: every run of WINDOW characters holds a sampled gram
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def encoded_forms(secret: str, *, embedded: bool = True) -> set[str]:
    """``secret`` and the encodings of it a provider might echo (see the module docstring).

    ``embedded`` adds the base64 characters fixed by the secret inside a longer encoded string.
    """
    raw = secret.encode()
    forms = {secret, raw.hex(), raw.hex().upper()}
    for quoted in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        forms |= {quoted, _PERCENT.sub(lambda m: m.group().lower(), quoted)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms |= {whole, whole.rstrip("=")}
        if embedded:
            forms |= {_embedded(encode, raw, lead) for lead in range(3)}
    for ascii_only in (True, False):
        escaped = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
    return forms


def _embedded(encode: Callable[[bytes], bytes], raw: bytes, lead: int) -> str:
    """The base64 characters fixed by ``raw`` alone when ``lead`` (mod 3) bytes of anything precede it."""
    text = encode(bytes(lead) + raw).decode()
    first = -(-8 * lead // 6)  # first character whose 6 bits all come from raw
    return text[first:8 * (lead + len(raw)) // 6]


class _Marks(dict):
    """A ``str.translate`` table: characters some form uses become "x", all others " " (learnt on first sight)."""

    def __init__(self, alphabet: set[str]) -> None:
        super().__init__({code: "x" if chr(code) in alphabet else " " for code in range(128)})
        self.alphabet = alphabet

    def __missing__(self, code: int) -> str:
        self[code] = mark = "x" if chr(code) in self.alphabet else " "
        return mark


class Redactor:
    """Built once per run from its credential values; ``scrub`` is called on every stored or shown string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        windowed: set[str] = set()  # matched by any WINDOW characters
        whole: set[str] = set()  # matched whole
        for secret in {s for s in secrets if s and len(s) >= MIN_SECRET}:
            if len(secret) >= WINDOW:
                windowed |= encoded_forms(secret)
            else:
                whole |= encoded_forms(secret, embedded=False)
        self._forms = sorted(windowed)
        self._grams: dict[str, list[tuple[int, int]]] = {}
        for index, form in enumerate(self._forms):
            for offset in range(len(form) - _GRAM + 1):
                self._grams.setdefault(form[offset:offset + _GRAM], []).append((index, offset))
        self._whole = _alternation(whole)
        self._marks = _Marks(set("".join(windowed | whole)))
        self._runs = re.compile(f"x{{{min(map(len, whole), default=WINDOW)},}}") if windowed or whole else None

    def scrub(self, text: str) -> str:
        """``text`` with every match of a secret's forms replaced by ``[redacted]``."""
        if self._runs is None:
            return text
        runs = [run.span() for run in self._runs.finditer(text.translate(self._marks))]
        if not runs:
            return text
        grams = self._grams
        hits = [at for start, end in runs for at in range(start, end - _GRAM + 1, _STRIDE)
                if text[at:at + _GRAM] in grams]
        spans = self._extend(text, hits)
        if self._whole:
            spans += [match.span() for start, end in runs for match in self._whole.finditer(text, start, end)]
        return _replace(text, spans)

    def scrub_obj(self, value: Any) -> Any:
        """``value`` with every string in it scrubbed, through dicts (keys too), lists and tuples."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub_obj(key): self.scrub_obj(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_obj(item) for item in value)
        return value

    def _extend(self, text: str, hits: list[int]) -> list[tuple[int, int]]:
        """The whole matches around sampled grams ``hits``, those of ``WINDOW`` characters or more."""
        found: list[tuple[int, int]] = []
        reached: dict[tuple[int, int], int] = {}  # (form, alignment) -> end of the stretch last extended
        for at in hits:
            for index, offset in self._grams[text[at:at + _GRAM]]:
                form, shift = self._forms[index], offset - at  # text[i] faces form[i + shift]
                if at < reached.get((index, shift), -1):
                    continue  # inside a stretch already extended: the same echo, met again further on
                left, right = at, at + _GRAM
                while left > 0 and left + shift > 0 and text[left - 1] == form[left - 1 + shift]:
                    left -= 1
                while right < len(text) and right + shift < len(form) and text[right] == form[right + shift]:
                    right += 1
                reached[index, shift] = right
                if right - left >= WINDOW:
                    found.append((left, right))
        return found


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with ``spans`` replaced, overlapping or touching ones by a single ``[redacted]``."""
    if not spans:
        return text
    out, kept = [], 0
    for start, end in sorted(spans):
        if start > kept or not out:
            out += (text[kept:start], REDACTED)
        kept = max(kept, end)
    out.append(text[kept:])
    return "".join(out)


def _alternation(forms: set[str]) -> re.Pattern[str] | None:
    """One regex for ``forms``, longest first so a form is never cut at a shorter one it starts with."""
    if not forms:
        return None
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=lambda f: (-len(f), f))))
