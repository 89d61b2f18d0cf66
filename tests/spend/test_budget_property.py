"""Property: whatever the job costs and failures, charged + reserved never exceeds a budget at any
journal line (the state a kill -9 at that instant would leave), and the provider's own books agree."""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

import pytest
import trio
from harness import Harness, fast_options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kinds import Media
from spendkit import create_posts, journal_prefixes, magichour_manifest, used

from lipbatch.state.local import State

MEDIA = Media(Path(tempfile.mkdtemp(prefix="spend-property-")))

# windows of 0.5, 1 and 1.5 s: 15, 30 and 45 credits held while queued, 3, 6 and 9 charged
jobs = st.lists(st.sampled_from([0.5, 1.0, 1.5]), min_size=2, max_size=6)
faults = st.fixed_dictionaries({"rate_5xx": st.sampled_from([0.0, 0.3]), "rate_429": st.sampled_from([0.0, 0.3]),
                                "rate_reset": st.sampled_from([0.0, 0.2]), "seed": st.integers(0, 999)})


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windows=jobs, budget=st.integers(0, 120), concurrency=st.integers(1, 3), fault=faults)
def test_charged_plus_reserved_never_exceeds_the_budget(windows, budget, concurrency, fault):
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(State, "compact", lambda self: None):
        manifest = magichour_manifest(Path(tmp), MEDIA, windows, budget=budget, concurrency=concurrency)
        harness = Harness(**fault)
        summary = trio.run(harness.run, manifest, fast_options(transient_retries=2))
        project = harness.project(manifest)
        prefixes = journal_prefixes(project.state_path)
        assert prefixes or create_posts(harness.stats()) == 0  # every create follows its durable intent
        assert max((used(records, "mh") for records in prefixes), default=0.0) <= budget
        assert sum(harness.stats()["credits_used"].values()) <= budget  # the provider's own books
        ended = summary.done + summary.failed + summary.over_budget + summary.not_run + summary.unknown
        assert ended == len(windows)
