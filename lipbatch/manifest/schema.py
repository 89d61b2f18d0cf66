"""The manifest's JSON Schema (schemas/manifest.schema.json) and its errors in plain words.

Each error is mapped to the node it is about; a subschema's ``errorMessage``
(an extension the schema carries for editors and for us) overrides the generic
wording. Values are quoted back shortened, and never under ``credentials``:
there a wrong value may be the secret itself.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema

from lipbatch.manifest.credentials import ROLE, ROLE_MESSAGE, SECRET_MESSAGE, in_credentials
from lipbatch.manifest.languages import tag_problem
from lipbatch.manifest.problems import QUOTE_CHARS, JsonPath, did_you_mean, quote

_SCHEMA_CANDIDATES = (
    Path(__file__).parent.parent / "schemas" / "manifest.schema.json",
    Path(__file__).parent.parent.parent / "schemas" / "manifest.schema.json",
)
_TYPE_WORDS = {"string": "a string", "object": "a mapping", "array": "a list", "integer": "a whole number",
               "number": "a number", "boolean": "true or false", "null": "nothing"}
_SCALAR_VALIDATORS = {"type", "enum", "const", "pattern", "minimum", "maximum", "exclusiveMinimum",
                      "exclusiveMaximum", "minLength", "maxLength"}


@functools.cache
def schema() -> dict[str, Any]:
    """The manifest JSON Schema (draft 2020-12)."""
    for candidate in _SCHEMA_CANDIDATES:
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    raise FileNotFoundError("manifest.schema.json is not installed with lipbatch")


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def pixverse_speakers() -> tuple[str, ...]:
    """PixVerse's documented TTS speakers (the schema holds the list)."""
    return tuple(schema()["$defs"]["voice"]["properties"]["aimlapi-pixverse-lipsync"]["enum"])


def describe(value: Any, *, show: bool = True) -> str:
    """What a value is, for "got ..." (with the value itself unless ``show`` is false)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})" if show else "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})" if show else "a number"
    if isinstance(value, str):
        return f"a string ({quote(value)!r})" if show else "a string"
    return "a list" if isinstance(value, list) else "a mapping"


def _got(value: Any) -> str:
    """The value as a reader would name it: the string '1', the number 1, true."""
    if isinstance(value, str):
        return f"the string {quote(value)!r}"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "nothing (null)"}[value]
    return str(value) if isinstance(value, int | float) else describe(value)


def _fill(template: str, **values: Any) -> str:
    """``{name}`` placeholders of a schema errorMessage (other braces are literal text)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def schema_problems(data: Any) -> Iterator[tuple[JsonPath, bool, str]]:
    """(path, point-at-key?, message) for every schema error, lazily (the report may stop early)."""
    lang = schema()["$defs"]["lang"]
    for err in _validator().iter_errors(data):
        path: JsonPath = tuple(err.absolute_path)
        sub = err.schema if isinstance(err.schema, dict) else {}
        custom = sub.get("errorMessage", {})
        template = custom.get(err.validator) if isinstance(custom, dict) else None
        instance = err.instance
        if "propertyNames" in err.schema_path:
            message = (_language(instance, template) if sub == lang
                       else _fill(template, instance=quote(instance)) if template
                       else f"'{quote(instance)}' is not a valid name")
            yield (*path, instance), True, message
        elif err.validator == "additionalProperties":
            allowed = list(sub.get("properties", {}))
            for extra in [k for k in instance if k not in sub.get("properties", {})]:
                if in_credentials(path) and not ROLE.match(extra):
                    yield path, True, ROLE_MESSAGE
                    continue
                if template:
                    message = _fill(template, key=quote(extra))
                else:
                    message = f"unknown key '{quote(extra)}'" + (
                        did_you_mean(extra, allowed) or f"; expected one of: {', '.join(allowed)}")
                yield (*path, extra), True, message
        else:
            at_key = err.validator not in _SCALAR_VALIDATORS or isinstance(instance, dict | list)
            if in_credentials(path):
                yield path, at_key, _credential_message(path, err.validator, instance)
            elif sub == lang and isinstance(instance, str):
                yield path, at_key, _language(instance, template)
            else:
                yield path, at_key, _message(err, template)


def _language(tag: str, template: str | None) -> str:
    return tag_problem(tag) or _fill(template or "'{instance}' is not a language tag", instance=quote(tag))


def _credential_message(path: JsonPath, validator: str, instance: Any) -> str:
    if len(path) > 3:
        return SECRET_MESSAGE
    if validator == "type":
        return (f"credentials map a role to the NAME of an environment variable ({{token: USEAPI_TOKEN}}); "
                f"got {describe(instance, show=False)}")
    return f"credentials: {validator} check failed (the value is not shown)"


def _message(err: jsonschema.ValidationError, template: str | None) -> str:
    instance, limit = err.instance, err.validator_value
    if template:
        return _fill(template, instance=quote(instance) if isinstance(instance, str) else instance,
                     got=_got(instance), limit=limit)
    shown = (f"{quote(instance)!r}" if isinstance(instance, str)
             else describe(instance) if isinstance(instance, list | dict) else repr(instance))
    simple = {
        "const": lambda: f"must be {limit!r}, got {_got(instance)}",
        "minimum": lambda: f"must be at least {limit}, got {instance}",
        "maximum": lambda: f"must be at most {limit}, got {instance}",
        "exclusiveMinimum": lambda: f"must be greater than {limit}, got {instance}",
        "minLength": lambda: "must not be empty",
        "maxLength": lambda: f"is {len(instance):,} characters long; the limit is {limit:,}",
        "minItems": lambda: "must list at least one entry",
        "minProperties": lambda: "must list at least one entry",
        "pattern": lambda: f"{shown} does not match {limit}",
    }
    if err.validator in simple:
        return simple[err.validator]()
    if err.validator == "required":
        match = re.match(r"^'(.+)' is a required property$", err.message)
        return f"missing required key '{match.group(1)}'" if match else err.message
    if err.validator == "type":
        wanted = limit if isinstance(limit, list) else [limit]
        return f"expected {' or '.join(_TYPE_WORDS.get(t, t) for t in wanted)}, got {describe(instance)}"
    if err.validator == "enum":
        choices = [str(c) for c in limit]
        hint = did_you_mean(instance, choices) if isinstance(instance, str) else ""
        return f"{shown} is not one of: {', '.join(choices)}{hint}"
    if err.validator == "uniqueItems":
        seen: set[str] = set()
        dups = [x for x in instance if isinstance(x, str) and (x in seen or seen.add(x))]
        return f"lists '{quote(dups[0])}' more than once" if dups else "lists an entry more than once"
    return err.message if len(err.message) <= 2 * QUOTE_CHARS else f"does not satisfy the schema's {err.validator}"
