"""`lipbatch plan`: statuses from the state file, estimates and totals, table and --json."""

from __future__ import annotations

from pathlib import Path

from lipbatch.errors import EXIT_INVALID, EXIT_OK
from lipbatch.manifest import load_project
from lipbatch.state import JobStatus, State


def test_plan_of_a_fresh_project_is_all_new(examples: Path, run_cli):
    result = run_cli("plan", str(examples / "quickstart.yaml"), "--json")
    assert result.code == EXIT_OK
    plan = result.json()
    assert len(plan["jobs"]) == 8
    assert {j["status"] for j in plan["jobs"]} == {"new"}
    magichour = [j for j in plan["jobs"] if j["kind"] == "magichour-lipsync"]
    # 2 s window x min(12 fps probed, max_fps_limit 12) x 1 credit (lite)
    assert {j["estimate"]["amount"] for j in magichour} == {24}
    runway = [j for j in plan["jobs"] if j["kind"] == "runway-lipsync"]
    assert {j["estimate"]["amount"] for j in runway} == {None}
    totals = plan["totals"]
    assert totals["magichour"]["estimated"] == 96 and totals["magichour"]["jobs"] == 4
    assert totals["runway"]["unknown_estimates"] == 4
    assert plan["state_file"] == str(examples / "quickstart.lipbatch-state.json")
    assert plan["stale"] == []


def test_plan_reads_statuses_from_the_state(examples: Path, run_cli):
    manifest = examples / "quickstart.yaml"
    project = load_project(manifest)
    jobs = {j.output: j for j in project.jobs}
    done, flying, failed, lost, changed = (jobs[out] for out in (
        "magichour/anna/hello.en.mp4", "magichour/anna/hello.de.mp4", "runway/anna/hello.en.mp4",
        "runway/anna/hello.de.mp4", "runway/ben/hello.en.mp4"))
    with State.open(project.state_path) as state:
        state.update(done.key, account=done.account, kind=done.kind, outputs=list(done.outputs),
                     status=JobStatus.DONE, credits=24)
        state.update(flying.key, account=flying.account, kind=flying.kind, outputs=list(flying.outputs),
                     status=JobStatus.IN_FLIGHT, task_id="t1")
        state.update(failed.key, account=failed.account, kind=failed.kind, outputs=list(failed.outputs),
                     status=JobStatus.FAILED, error="moderated", error_kind="moderation")
        state.update(lost.key, account=lost.account, kind=lost.kind, outputs=list(lost.outputs),
                     status=JobStatus.UNKNOWN)
        # the same output made earlier from a different request (e.g. the audio was re-recorded since)
        state.update("f" * 64, account=changed.account, kind=changed.kind, outputs=list(changed.outputs),
                     status=JobStatus.DONE, credits=3)

    result = run_cli("plan", str(manifest), "--json")
    assert result.code == EXIT_OK
    plan = result.json()
    status = {j["outputs"][0]: j["status"] for j in plan["jobs"]}
    assert status[done.output] == "done"
    assert status[flying.output] == "in flight"
    assert status[failed.output] == "failed"
    assert status[lost.output] == "unknown"
    assert status[changed.output] == "changed"
    assert list(status.values()).count("new") == 3
    charged = {j["outputs"][0]: j["credits_charged"] for j in plan["jobs"]}
    assert charged[done.output] == 24 and charged[changed.output] is None
    assert next(j for j in plan["jobs"] if j["key"] == failed.key)["error"] == "moderated"
    assert plan["stale"] == [{"output": changed.output, "old_key": "f" * 64, "new_key": changed.key}]
    assert plan["totals"]["magichour"]["charged"] == 24
    assert plan["totals"]["runway"]["statuses"] == {"failed": 1, "unknown": 1, "changed": 1, "new": 1}

    table = run_cli("plan", str(manifest))
    assert table.code == EXIT_OK
    for word in ("done", "in flight", "failed", "unknown", "changed", "Totals per provider account",
                 done.key[:12], "magichour/anna/hello.en.mp4", "stale:"):
        assert word in table.out


def test_plan_of_an_invalid_manifest_exits_2(tmp_path: Path, run_cli):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("version: 1\nproviders: {}\n")
    result = run_cli("plan", str(manifest), "--json")
    assert result.code == EXIT_INVALID
    assert {p["path"] for p in result.json()["problems"]} >= {"$", "$.providers"}
