"""Language tags: BCP 47, checked against the IANA subtag registry (via ``langcodes``).

A tag must be valid *and* in its standard form, the one ``langcodes.standardize_tag``
gives (IANA preferred values, CLDR aliases, BCP 47 case): ``EN`` is written
``en``, ``pt-br`` ``pt-BR``, ``eng`` and ``ger`` are ``en`` and ``de``, ``iw`` is
``he``. Requiring one spelling (rather than normalising silently) keeps
``{lang}`` in output paths and the languages of a job matrix unambiguous: ``en``
and ``EN`` would otherwise be two lines and two files.

Did-you-mean for invalid tags: a country code used as a language (``jp``,
``cn``, ``ua``) suggests that country's main language; a language's name
(``english``, ``Deutsch``) suggests its tag.
"""

from __future__ import annotations

import functools

import langcodes

from lipbatch.manifest.problems import quote

_EXAMPLES = "en, de, pt-BR, zh-Hans"


@functools.lru_cache(maxsize=4096)
def tag_problem(tag: str) -> str | None:
    """None for a valid tag in standard form, else why not, with the tag to use when there is one."""
    if langcodes.tag_is_valid(tag):
        try:
            standard = langcodes.standardize_tag(tag)
        except ValueError:
            standard = tag
        if standard == tag:
            return None
        if standard.lower() == tag.lower():
            return f"language tag '{tag}' is written '{standard}' (BCP 47 letter case)"
        return (f"'{tag}' is {_name(standard)}, whose standard tag is '{standard}': write '{standard}' "
                f"(one spelling per language keeps lines and outputs apart)")
    guess = _guess(tag)
    if guess == tag or (guess is not None and not langcodes.tag_is_valid(guess)):
        guess = None
    hint = f" (did you mean '{guess}', {_name(guess)}?)" if guess else ""
    return (f"'{quote(tag)}' is not a language tag in the IANA registry{hint}: use a BCP 47 tag such as "
            f"{_EXAMPLES}")


def _guess(tag: str) -> str | None:
    head = tag.replace("_", "-").split("-")[0]
    if len(head) == 2 and head.isalpha():
        region = langcodes.Language.get(f"und-{head.upper()}")
        name = region.territory_name()
        if not name.startswith(("Unknown", "Private")):
            language = region.maximize().language
            if language and language != "und":
                return language
    if len(tag) <= 40:
        try:
            return langcodes.standardize_tag(tag)
        except ValueError:
            pass
        try:
            return str(langcodes.find(tag))
        except LookupError:
            pass
    return None


def _name(tag: str) -> str:
    try:
        return langcodes.Language.get(tag).display_name()
    except ValueError:
        return tag
