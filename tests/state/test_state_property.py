"""Property: a crash tears at most the last journal line and loses nothing acknowledged; any deeper cut is refused."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipbatch.state import JobRecord, JobStatus, State, StateDamagedError, journal_path, lock_path, read_jobs
from lipbatch.state.replay import HEAD_WIDTH

KEYS = ["job-a", "job-b", "job-c"]
DEFAULTS = {f.name: f.default for f in dataclasses.fields(JobRecord) if f.default is not dataclasses.MISSING}
FAR_FUTURE = 4_000_000_000.0

optional_text = st.none() | st.text(max_size=12)
job_fields = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(list(JobStatus)),
        "task_id": optional_text,
        "attempts": st.integers(0, 3),
        "credits": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "result_url": optional_text,
        "error": optional_text,
        "error_kind": st.none() | st.sampled_from(["moderation", "permanent", "transient"]),
        "output_size": st.none() | st.integers(0, 2**40),
    },
)
job_event = st.tuples(st.just("job"), st.sampled_from(KEYS), job_fields, st.integers(1, 4))
upload_event = st.tuples(
    st.just("upload"), st.sampled_from(["acct1", "acct2"]), st.sampled_from(["aa", "bb"]),
    st.text(min_size=1, max_size=8), st.none() | st.just(FAR_FUTURE),
)
events = st.lists(st.one_of(job_event, upload_event), max_size=25)


def _apply(model: dict, event: tuple) -> None:
    """The reference semantics, independent of lipbatch.state."""
    if event[0] == "job":
        _, key, fields, stamp = event
        if key not in model["jobs"]:
            model["jobs"][key] = {**DEFAULTS, "key": key, "account": "acct1", "kind": "runway-lipsync",
                                  "outputs": [f"out/{key}.mp4"], "status": "submitting"}
        model["jobs"][key].update({k: str(v) if k == "status" else v for k, v in fields.items()}, updated_at=stamp)
    else:
        _, account, sha, handle, expires = event
        model["uploads"][(account, sha)] = (handle, expires)


def _drive(state: State, known: set, event: tuple) -> None:
    if event[0] == "job":
        _, key, fields, stamp = event
        if key not in known:
            fields = {"account": "acct1", "kind": "runway-lipsync", "outputs": [f"out/{key}.mp4"],
                      "status": "submitting", **fields}
            known.add(key)
        state.update(key, **fields, updated_at=stamp)
    else:
        state.record_upload(f"E {event[1]}", *event[1:])


def _observed(path: Path) -> dict:
    jobs = {k: {**dataclasses.asdict(r), "status": str(r.status)} for k, r in read_jobs(path).items()}
    with State.open(path) as state:
        uploads = {(u.account, u.sha256): (u.handle, u.expires_at) for u in state.uploads.values()}
    return {"jobs": jobs, "uploads": uploads}


@settings(max_examples=80, deadline=None)
@given(
    evs=events,
    compact_every=st.sampled_from([3, 7, 1000]),
    cut=st.integers(min_value=0),
    snap=st.sampled_from(["anywhere", "at a line end", "just before a newline", "in the last line"]),
    extra=st.text(max_size=5),
)
def test_a_cut_journal_replays_its_complete_events_or_is_refused(evs, compact_every, cut, snap, extra) -> None:
    """A kill -9 tears at most the line being written: such a journal replays to its complete events.
    A journal missing more than that (cut by anything else) is refused, never loaded short."""
    with tempfile.TemporaryDirectory() as tmp:
        live, crashed = Path(tmp, "live", "state.json"), Path(tmp, "crashed", "state.json")
        crashed.parent.mkdir()
        # models[i]: the state after the i-th event that changed something (= journal seq i)
        models, model, known = [{"jobs": {}, "uploads": {}}], {"jobs": {}, "uploads": {}}, set()
        state = State.open(live, compact_every=compact_every)
        for event in evs:
            _drive(state, known, event)
            before = copy.deepcopy(model)
            _apply(model, event)
            if model != before:
                models.append(copy.deepcopy(model))
        journal = journal_path(live).read_bytes()
        head = json.loads(journal[:HEAD_WIDTH])
        ends = [i + 1 for i, byte in enumerate(journal) if byte == ord("\n") and i >= HEAD_WIDTH]
        if snap == "anywhere" or not ends:
            size = cut % (len(journal) + 1)
        elif snap == "in the last line":
            start = ends[-2] if len(ends) > 1 else HEAD_WIDTH
            size = start + cut % (ends[-1] - start + 1)
        else:
            end = ends[cut % len(ends)]
            size = end if snap == "at a line end" else end - 1
        shutil.copy(live, crashed)
        journal_path(crashed).write_bytes(journal[:size])
        os.close(state._fd)  # abandon the live state without compacting
        state._fd = None
        lock_path(live).unlink()

        kept = journal[HEAD_WIDTH:size].count(b"\n")
        if size < HEAD_WIDTH or kept < head["acked"] - head["base"] - 1:  # no crash cuts the head or 2 lines
            with pytest.raises(StateDamagedError):
                read_jobs(crashed)
            return
        expected = models[head["base"] + kept]
        assert _observed(crashed) == expected

        # the resumed state keeps working: a new event lands after the cut, cleanly
        with State.open(crashed, compact_every=compact_every) as resumed:
            resumed.update("job-new", account="acct2", kind="k", outputs=["n.mp4"], status="failed", error=extra)
            assert read_jobs(crashed)["job-new"].error == extra  # replayed from the journal
        assert read_jobs(crashed)["job-new"].error == extra  # and from the snapshot
        after = _observed(crashed)
        del after["jobs"]["job-new"]
        assert after == expected
