"""Redactor: a credential echoed exact, URL-encoded, base64, hex, JSON-escaped, cut or split never survives.

The encodings are computed here on their own (``echoes``): the base64 of a secret
inside a longer string is read off as the characters that stay the same whatever
bytes surround it, not with the module's bit arithmetic.
"""

from __future__ import annotations

import base64
import json
import re
import string
from pathlib import Path
from urllib.parse import quote, quote_plus

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lipbatch.redact import REDACTED, Redactor
from lipbatch.state import State, journal_path

WINDOW = 8
SECRET_ALPHABET = string.ascii_letters + string.digits + "-_.~+/=:!$&*@%\"\\é"


def _lower_escapes(text: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), text)


def _inside(encode, raw: bytes, lead: int) -> str:
    """The characters of ``encode(? * lead + raw + ??)`` that no surrounding byte changes."""
    zeros = encode(b"\x00" * lead + raw + b"\x00\x00").decode()
    ones = encode(b"\xff" * lead + raw + b"\xff\xff").decode()
    return "".join(a for a, b in zip(zeros, ones, strict=True) if a == b and a != "=")


def echoes(secret: str) -> dict[str, str]:
    """Every documented way of echoing ``secret``, by name."""
    raw = secret.encode()
    forms = {"exact": secret, "hex": raw.hex(), "HEX": raw.hex().upper()}
    for name, quoted in (("quote", quote(secret, safe="")), ("quote/", quote(secret)), ("quote+", quote_plus(secret))):
        forms[name], forms[name + "-lower"] = quoted, _lower_escapes(quoted)
    for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
        forms[name] = encode(raw).decode()
        forms[name + "-nopad"] = forms[name].rstrip("=")
        for lead in range(3):
            forms[f"{name}-inside-{lead}"] = _inside(encode, raw, lead)
    for name, ascii_only in (("json", True), ("json-utf8", False)):
        forms[name] = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        forms[name + "-slash"] = forms[name].replace("/", "\\/")
    return forms


def windows(secret: str) -> set[str]:
    """Every run of WINDOW characters of the secret or of any of its encodings."""
    return {form[i:i + WINDOW] for form in echoes(secret).values() for i in range(len(form) - WINDOW + 1)}


def leaks(text: str, secrets: list[str]) -> set[str]:
    """The windows of ``secrets`` left in ``text`` outside its ``[redacted]`` marks."""
    pieces = text.split(REDACTED)
    return {w for secret in secrets for w in windows(secret) if any(w in piece for piece in pieces)}


secrets = st.text(SECRET_ALPHABET, min_size=8, max_size=64) | st.text("0a/", min_size=8, max_size=64)  # or repetitive
context = st.text(string.printable + "éü€", max_size=120)


@st.composite
def echoed(draw: st.DrawFn, secret: str) -> str:
    """``secret`` echoed some way: whole, inside other bytes and then base64, cut short, or split."""
    how = draw(st.sampled_from(["form", "inside", "cut", "split"]))
    forms = echoes(secret)
    if how == "inside":  # e.g. "Basic " + b64("user:" + secret)
        encode = draw(st.sampled_from([base64.b64encode, base64.urlsafe_b64encode]))
        return encode(draw(st.binary(max_size=8)) + secret.encode() + draw(st.binary(max_size=8))).decode()
    form = forms[draw(st.sampled_from(sorted(forms)))]
    if how == "form":
        return form
    if how == "cut":
        start = draw(st.integers(0, len(form) - WINDOW))
        return form[start:draw(st.integers(start + WINDOW, len(form)))]
    cut = draw(st.integers(0, len(form)))
    return form[:cut] + draw(context) + form[cut:]


@settings(max_examples=200, deadline=None)
@given(st.data(), secrets, context, context)
def test_no_window_of_an_echoed_secret_survives(data, secret: str, before: str, after: str) -> None:
    echo = data.draw(echoed(secret))
    text = before + echo + after

    scrubbed = Redactor([secret]).scrub(text)

    assert not leaks(scrubbed, [secret])
    if leaks(text, [secret]):
        assert REDACTED in scrubbed


@settings(max_examples=100, deadline=None)
@given(st.lists(secrets, min_size=1, max_size=3), st.lists(st.integers(0, 2), min_size=1, max_size=6), context)
def test_several_secrets_echoed_side_by_side_all_go(secret_list, order, glue) -> None:
    chosen = [secret_list[i % len(secret_list)] for i in order]
    text = glue.join(echoes(secret)["b64"] if i % 2 else secret for i, secret in enumerate(chosen))

    assert not leaks(Redactor(secret_list).scrub(text), secret_list)


@settings(max_examples=300, deadline=None)
@given(secrets, st.lists(st.integers(0, 63), max_size=12), st.sampled_from(["exact", "b64", "hex", "quote", "json"]),
       st.text(" \n,;()[]{}<>|#^`'?", min_size=1, max_size=3), context)
def test_text_without_any_window_of_the_secret_is_unchanged(secret, starts, form_name, gap, prose) -> None:
    form = echoes(secret)[form_name]
    fragments = [form[start % len(form):][:WINDOW - 1] for start in starts]  # 7 characters at most each
    text = prose + gap + gap.join(fragments)
    assume(not leaks(text, [secret]))

    assert Redactor([secret]).scrub(text) == text


@given(context)
def test_text_is_unchanged_without_secrets(text) -> None:
    assert Redactor([]).scrub(text) == text
    assert Redactor(["", "k1", "mp4"]).scrub(text) == text  # too short to be credentials


def test_each_encoding_of_a_key_full_of_escapes_is_redacted_whole() -> None:
    key = '/ÿ+/~?/ÿ:/"é/% ~/=ÿ/\\/&~ÿ'  # every encoding of it has runs no other encoding has
    redactor = Redactor([key])
    for name, form in echoes(key).items():
        assert redactor.scrub(f"<{form}>") == f"<{REDACTED}>", name


def test_short_secrets_are_redacted_only_whole() -> None:
    secret = "pw/4!"  # 5 bytes: its base64 has padding
    redactor = Redactor([secret])
    forms = echoes(secret)
    for name in ("exact", "quote", "quote-lower", "b64", "b64url-nopad", "hex", "HEX", "json-slash"):
        assert redactor.scrub(f"key={forms[name]};") == f"key={REDACTED};", name
    assert redactor.scrub("pw/4 and w/4!") == "pw/4 and w/4!"  # cut: four characters are no credential
    b64_inside = base64.b64encode(b"user:" + secret.encode()).decode()
    assert redactor.scrub(b64_inside) == b64_inside  # a few base64 characters would redact ordinary words


def test_a_second_stretch_on_the_same_alignment_is_found() -> None:
    # "0000" at 0 faces the key's "0000" at 4 but stops at "1"; "00000001" at 5 is on that same alignment
    assert Redactor(["00000000000000001"]).scrub("0000100000001") == f"00001{REDACTED}"


def test_a_neighbour_sharing_utf8_bytes_with_the_key_is_kept_whole() -> None:
    # "©" (c2 a9) ends like "é" (c3 a9); "è" (c3 a8) starts like it: the bytes match, the characters do not
    assert Redactor(["xyzé12345678abc"]).scrub("©12345678abc!") == f"©{REDACTED}!"
    assert Redactor(["12345678abcé"]).scrub("12345678abcè!") == f"{REDACTED}è!"


def test_lone_surrogates_in_a_key_or_a_text_are_no_failure() -> None:
    key = "sk-live-\udcff-not-utf8"  # how os.environ holds a byte that is not UTF-8
    redactor = Redactor([key])
    assert redactor.scrub(f"\ud800 bad key {key}") == f"\ud800 bad key {REDACTED}"
    assert redactor.scrub(f"hex {b'sk-live-'.hex()}ff2d6e6f") == f"hex {REDACTED}"  # the byte as sent


def test_overlapping_and_touching_matches_become_one_mark() -> None:
    first, second = "abcdefgh12345678", "12345678zyxwvuts"
    redactor = Redactor([first, second])
    assert redactor.scrub(f"<{first[:-8]}{second}>") == f"<{REDACTED}>"  # the two overlap on "12345678"
    assert redactor.scrub(f"<{first}{quote(first)}{first.encode().hex()}>") == f"<{REDACTED}>"
    assert redactor.scrub(f"<{first} {second}>") == f"<{REDACTED} {REDACTED}>"


def test_the_example_encodings_of_a_realistic_key() -> None:
    key = "mhk_live/S3cr3t+Key=with:odd\"chars&more"
    redactor = Redactor([key])
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    # "user:" is 5 bytes: its base64 keeps 7 characters free of the key's bits
    assert redactor.scrub(f"Authorization: Basic {basic}").startswith(f"Authorization: Basic {basic[:7]}{REDACTED}")
    assert not leaks(redactor.scrub(f"Authorization: Basic {basic}"), [key])
    assert redactor.scrub(json.dumps({"detail": f"bad key {key}"})) == '{"detail": "bad key [redacted]"}'
    assert redactor.scrub(f"GET /v1?api_key={quote_plus(key)}&x=1") == "GET /v1?api_key=[redacted]&x=1"
    assert redactor.scrub(f"key {key[:9]}... is invalid") == "key [redacted]... is invalid"
    assert redactor.scrub(f"key {key[:7]}... is invalid") == f"key {key[:7]}... is invalid"


def test_scrub_obj_reaches_every_string_of_a_nested_value() -> None:
    key = "sk-live-7f3a9c1e5b"
    value = {"error": {"message": f"bad {key}", key: [1, None, (f"{quote(key)}", 2.5)]}, "n": 3}

    scrubbed = Redactor([key]).scrub_obj(value)

    assert scrubbed == {"error": {"message": f"bad {REDACTED}", REDACTED: [1, None, (REDACTED, 2.5)]}, "n": 3}
    assert Redactor([]).scrub_obj(value) == value


def test_state_stores_no_encoded_secret(tmp_path: Path) -> None:
    key = "sk-live-7f3a9c1e5b/Zq"
    path = tmp_path / "state.json"
    errors = [f"echo {i}: {form}" for i, form in enumerate(echoes(key).values())]
    with State.open(path, redact=[key]) as state:
        state.update("k1", account="acct", kind="magichour-lipsync", outputs=["out/k1.mp4"], status="submitting")
        for error in errors:
            state.update("k1", error=error)
        assert state.job("k1").error == f"echo {len(errors) - 1}: {REDACTED}"
        assert state.scrub(errors[0]) == f"echo 0: {REDACTED}"
        journal = journal_path(path).read_bytes().decode()
    files = path.read_text() + journal
    assert journal.count(REDACTED) == len(errors)
    assert not leaks(files, [key])
    assert not leaks(files.replace("\\\\", "\\"), [key])  # nor once the JSON files' own escapes are undone
