"""The published schema, and the examples that must validate against it and the semantic checks."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from lipbatch.errors import EXIT_OK
from lipbatch.model import KINDS
from lipbatch.providers import DEFAULT_BASE_URLS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "manifests_examples"
SCHEMA_FILE = REPO / "schemas" / "manifest.schema.json"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml")) + sorted((EXAMPLES / "minimal").glob("*.yaml"))


def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_schema_is_valid_draft_2020_12_with_an_id():
    doc = schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith("/manifest.schema.json")


def _walk(node, where=""):
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}/{i}")


def test_every_property_has_a_description():
    missing = [f"{where}/{name}" for where, node in _walk(schema()) if isinstance(node.get("properties"), dict)
               and where.split("/")[-1] != "properties"
               for name, sub in node["properties"].items() if "description" not in sub
               and not where.endswith("/if")]
    assert missing == []


def test_kind_enum_matches_the_model_and_providers():
    kinds = schema()["$defs"]["provider"]["properties"]["kind"]["enum"]
    assert tuple(kinds) == KINDS
    assert set(kinds) == set(DEFAULT_BASE_URLS)


def test_closed_objects_reject_typos():
    validator = jsonschema.Draft202012Validator(schema())
    base = yaml.safe_load((EXAMPLES / "localization.yaml").read_text())
    assert not list(validator.iter_errors(base))
    for path in (["providers", "runway"], ["providers", "runway", "options"], ["providers", "creatify", "options"],
                 ["providers", "magichour", "options"], ["clips", "anna"], ["scripts", "welcome"], ["jobs", 0], []):
        doc = json.loads(json.dumps(base))
        target = doc
        for step in path:
            target = target[step]
        target["typo_key"] = 1
        errors = list(validator.iter_errors(doc))
        assert [e.validator for e in errors] == ["additionalProperties"], path


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=[p.relative_to(EXAMPLES).as_posix() for p in EXAMPLE_FILES])
def test_examples_validate(example: Path, examples: Path, run_cli):
    copy = examples / example.relative_to(EXAMPLES)
    first = copy.read_text(encoding="utf-8").splitlines()[0]
    target = (copy.parent / first.split("$schema=", 1)[1]).resolve()
    assert first.startswith("# yaml-language-server: $schema=") and target.name == "manifest.schema.json"
    assert (example.parent / first.split("$schema=", 1)[1]).resolve() == SCHEMA_FILE
    result = run_cli("validate", str(copy))
    assert result.code == EXIT_OK, result.err
    assert "valid:" in result.out and result.err == ""


def test_localization_uses_every_kind_and_minimal_has_one_per_kind(examples: Path, run_cli):
    data = yaml.safe_load((EXAMPLES / "localization.yaml").read_text())
    assert {p["kind"] for p in data["providers"].values()} == set(KINDS)
    assert {p.stem for p in (EXAMPLES / "minimal").glob("*.yaml")} == set(KINDS)
    summary = run_cli("validate", str(examples / "localization.yaml"), "--json").json()
    assert summary["valid"] and summary["jobs"] == 16 and len(summary["accounts"]) == 5


def test_example_media_is_small():
    media = list((EXAMPLES / "media").iterdir())
    assert media and all(p.stat().st_size < 100_000 for p in media)
