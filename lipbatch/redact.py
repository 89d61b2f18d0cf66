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

Speed: matching works on UTF-8 bytes. Every 4-byte piece of every form is
indexed once, as an int. A match of 8 characters (at least 8 bytes) holds a
whole 4-byte word of the text at a multiple of 4, so ``scrub`` reads the text
as an array of such words and asks, in C, whether any is indexed: for most texts
that is all it costs. Otherwise each indexed word is extended both ways, byte by
byte, to the whole match.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MIN_SECRET = 4
WINDOW = 8
_WORD = 4  # bytes; 2 * _WORD - 1 <= WINDOW: every run of WINDOW bytes holds a whole word at a multiple of _WORD
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def encoded_forms(secret: str, *, embedded: bool = True) -> set[str]:
    """``secret`` and the encodings of it a provider might echo (see the module docstring).

    ``embedded`` adds the base64 characters fixed by the secret inside a longer encoded string.
    """
    raw = _sent_bytes(secret)
    forms = {secret, raw.hex(), raw.hex().upper()}
    for quoted in (quote(raw, safe=""), quote(raw), quote_plus(raw)):
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


def _sent_bytes(secret: str) -> bytes:
    """The bytes of ``secret``; those of a variable that was not UTF-8 (``os.environ`` escapes them)."""
    try:
        return secret.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return _utf8(secret)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate (JSON "\ud800") is no reason to fail


def _embedded(encode: Callable[[bytes], bytes], raw: bytes, lead: int) -> str:
    """The base64 characters fixed by ``raw`` alone when ``lead`` (mod 3) bytes of anything precede it."""
    text = encode(bytes(lead) + raw).decode()
    first = -(-8 * lead // 6)  # first character whose 6 bits all come from raw
    return text[first:8 * (lead + len(raw)) // 6]


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
        self._forms = [_utf8(form) for form in sorted(windowed)]
        self._grams: dict[int, list[tuple[int, int]]] = {}  # 4-byte word -> (form, offset) of each place in a form
        for index, form in enumerate(self._forms):
            for offset in range(len(form) - _WORD + 1):
                self._grams.setdefault(_word(form, offset), []).append((index, offset))
        self._words = frozenset(self._grams)
        self._whole = [_utf8(form) for form in sorted(whole)]

    def scrub(self, text: str) -> str:
        """``text`` with every match of a secret's forms replaced by ``[redacted]``."""
        if not self._grams and not self._whole:
            return text
        data = _utf8(text)
        words = memoryview(data)[:len(data) // _WORD * _WORD].cast("I").tolist()
        spans: list[tuple[int, int]] = []
        if not self._words.isdisjoint(words):  # in C: most texts stop here
            grams = self._grams
            spans = self._extend(data, [(_WORD * i, word) for i, word in enumerate(words) if word in grams])
        for form in self._whole:
            at = data.find(form)
            while at >= 0:
                spans.append((at, at + len(form)))
                at = data.find(form, at + 1)
        return _replace(data, spans) if spans else text

    def scrub_obj(self, value: Any) -> Any:
        """``value`` with every string in it scrubbed, through dicts (keys too), lists and tuples."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub_obj(key): self.scrub_obj(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_obj(item) for item in value)
        return value

    def _extend(self, data: bytes, hits: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The whole matches of ``WINDOW`` characters or more around the words ``hits`` (ascending)."""
        found: list[tuple[int, int]] = []
        reached: dict[tuple[int, int], int] = {}  # (form, alignment) -> end of the stretch last extended
        for at, word in hits:
            for index, offset in self._grams[word]:
                form, shift = self._forms[index], offset - at  # data[i] faces form[i + shift]
                if at < reached.get((index, shift), -1):
                    continue  # inside a stretch already extended: the same echo, met again further on
                left, right = at, at + _WORD
                while left > 0 and left + shift > 0 and data[left - 1] == form[left - 1 + shift]:
                    left -= 1
                while right < len(data) and right + shift < len(form) and data[right] == form[right + shift]:
                    right += 1
                reached[index, shift] = right
                if right - left >= WINDOW:
                    left, right = _whole_characters(data, left, right)
                    if len(data[left:right].decode("utf-8", "surrogatepass")) >= WINDOW:
                        found.append((left, right))
        return found


def _word(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + _WORD], sys.byteorder)  # as memoryview.cast("I") reads it


def _whole_characters(data: bytes, left: int, right: int) -> tuple[int, int]:
    """``data[left:right]`` narrowed to the characters it holds whole (a match may start or end inside one)."""
    while left < right and data[left] & 0xC0 == 0x80:
        left += 1
    while right > left and right < len(data) and data[right] & 0xC0 == 0x80:
        right -= 1
    return left, right


def _replace(data: bytes, spans: list[tuple[int, int]]) -> str:
    """``data`` decoded, ``spans`` replaced, overlapping or touching ones by a single ``[redacted]``."""
    out, kept = [], 0
    for start, end in sorted(spans):
        if start > kept or not out:
            out += (data[kept:start], REDACTED.encode())
        kept = max(kept, end)
    out.append(data[kept:])
    return b"".join(out).decode("utf-8", "surrogatepass")
