"""Learned job durations on a shared state: every worker's runs add to one record (``meta``)."""

from __future__ import annotations

import pytest
from pgserver import connect

from lipbatch.polling import CompletionModel, load_completion_times, save_completion_times
from lipbatch.state import State
from lipbatch.state.postgres import PostgresState


def open_state(url: str, campaign: str = "summer") -> PostgresState:
    return PostgresState.open(url, campaign, manifest="summer.yaml")


@pytest.mark.parametrize("backend", ["local", "postgres"])
def test_two_runs_that_loaded_the_same_record_both_add_their_durations(tmp_path, pg_url, backend):
    def opened():
        return State.open(tmp_path / "s.json") if backend == "local" else open_state(pg_url)

    with opened() as state:
        first = load_completion_times(state)
        assert first.predict("acct", "magichour-lipsync") is None  # nothing learned yet
        first.record("acct", "magichour-lipsync", 20.0, 21.0)
        save_completion_times(state, first)
    with opened() as a:
        worker_a = load_completion_times(a)
    with opened() as b:
        worker_b = load_completion_times(b)  # loaded before A saves: A's sample must not be lost
    worker_a.record("acct", "magichour-lipsync", 22.0, 23.0)
    worker_b.record("acct", "magichour-lipsync", 24.0, 25.0, input_seconds=3.0)
    with opened() as a:
        save_completion_times(a, worker_a)
    with opened() as b:
        save_completion_times(b, worker_b)
    with opened() as state:
        samples = load_completion_times(state).samples("acct", "magichour-lipsync")
    assert [(s.low, s.high) for s in samples] == [(20.0, 21.0), (22.0, 23.0), (24.0, 25.0)]
    assert samples[2].input_seconds == 3.0
    assert (tmp_path / "s.json.timings").exists() == (backend == "local")  # the local state's side file, as before


def test_a_damaged_record_is_only_a_lost_head_start(pg_url):
    with open_state(pg_url, "autumn") as state:
        save_completion_times(state, _with_one_sample())
        schema = state.session.schema
    with connect(pg_url) as conn:
        conn.execute(f'UPDATE "{schema}".meta SET value = %s WHERE name = %s', ("{not json", "learned:timings"))
    with open_state(pg_url, "autumn") as state:
        assert load_completion_times(state).samples("acct", "k") == ()
        save_completion_times(state, _with_one_sample())  # starts over from what this run learned
        assert state.learned("timings")["series"][0]["samples"] == [[1.0, 2.0, None]]


def _with_one_sample() -> CompletionModel:
    model = CompletionModel()
    model.record("acct", "k", 1.0, 2.0)
    return model
