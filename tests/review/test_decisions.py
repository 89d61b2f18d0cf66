"""The decisions file: round trips, deterministic bytes, damage reported, concurrent writers lose nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipbatch.errors import LipbatchError
from lipbatch.review.decisions import (
    Decision,
    decisions_path,
    dump_decisions,
    read_decisions,
    record_decisions,
)

_SHA = st.text("0123456789abcdef", min_size=64, max_size=64)
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
_OUTPUT = st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                           min_size=1, max_size=12), min_size=1, max_size=3).map("/".join)
_DECISION = st.builds(Decision, st.sampled_from(["approved", "rejected"]), _SHA, st.integers(1, 99), _TEXT, _TEXT,
                      st.just("2026-11-29T20:06:50Z"))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(_OUTPUT, _DECISION, max_size=8), st.randoms())
def test_decisions_round_trip_to_the_same_bytes_in_any_order(tmp_path_factory, decisions, rnd):
    path = tmp_path_factory.mktemp("d") / "c.review.yaml"
    data = dump_decisions(decisions, "c.yaml")
    shuffled = list(decisions.items())
    rnd.shuffle(shuffled)
    assert dump_decisions(dict(shuffled), "c.yaml") == data
    path.write_bytes(data)
    assert read_decisions(path) == decisions
    assert dump_decisions(read_decisions(path), "c.yaml") == data


def test_the_file_is_sorted_with_fields_in_a_fixed_order(tmp_path):
    path = tmp_path / "c.review.yaml"
    record_decisions(path, {"fr/b.mp4": Decision("rejected", "b" * 64, 2, "too: fast", "Ann", "T2")},
                     manifest_name="c.yaml")
    record_decisions(path, {"de/a.mp4": Decision("approved", "a" * 64, 1, "", "Ben", "T1")}, manifest_name="c.yaml")
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["version: 1", "outputs:",
                     "  de/a.mp4:", "    decision: approved", "    note: ''", "    take: 1", f"    sha256: {'a' * 64}",
                     "    by: Ben", "    at: T1",
                     "  fr/b.mp4:", "    decision: rejected", "    note: 'too: fast'", "    take: 2",
                     f"    sha256: {'b' * 64}", "    by: Ann", "    at: T2"]


def test_paths_beside_the_manifest_and_apart_for_the_rehearsal():
    manifest = Path("/w/spring.yaml")
    assert decisions_path(manifest) == Path("/w/spring.review.yaml")
    assert decisions_path(manifest, sandbox=True) == Path("/w/spring.review.sandbox.yaml")


@pytest.mark.parametrize(("text", "says"), [
    ("version: 1\noutputs:\n<<<<<<< HEAD\n  a.mp4: {}\n=======\n>>>>>>> x\n", "merge conflict"),
    ("version: 1\noutputs:\n  a.mp4: {decision: maybe, sha256: " + "a" * 64 + ", take: 1}\n", "decision must be"),
    ("version: 1\noutputs:\n  a.mp4: {decision: approved, sha256: abc, take: 1}\n", "sha256 must be"),
    ("version: 1\noutputs:\n  a.mp4: {decision: approved, sha256: " + "a" * 64 + "}\n", "take must be"),
    ("version: 1\noutputs:\n  a.mp4: {decision: approved, sha256: " + "a" * 64 + ", take: 1, ok: 1}\n", "fields"),
    ("version: 7\noutputs: {}\n", "not a lipbatch review file"),
    ("outputs: [\n", "not valid YAML"),
])
def test_a_damaged_file_is_a_clear_error_naming_it(tmp_path, text, says):
    path = tmp_path / "c.review.yaml"
    path.write_text(text)
    with pytest.raises(LipbatchError, match=says) as caught:
        read_decisions(path)
    assert str(path) in str(caught.value)


def test_concurrent_writers_lose_no_decision(tmp_path):
    """Threads each open the file themselves, so their flocks contend as separate processes' would
    (the served page and the CLI at once are tested end to end in test_browser.py)."""
    path = tmp_path / "m.review.yaml"
    writers, each = 4, 10

    def write(who: str) -> None:
        for i in range(each):
            record_decisions(path, {f"{who}/{i}.mp4": Decision("approved", f"{i:064x}", 1, "", who, "T")},
                             manifest_name="m")

    threads = [threading.Thread(target=write, args=(f"w{n}",)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    decisions = read_decisions(path)
    assert len(decisions) == writers * each
    assert {out.split("/")[0] for out in decisions} == {f"w{n}" for n in range(writers)}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp or lock files left behind
