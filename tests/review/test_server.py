"""The `--serve` app in-process: the page, the output folder's files, and the decisions endpoint's checks."""

from __future__ import annotations

import json

import httpx
import pytest

from lipbatch.review.decisions import decisions_path, read_decisions
from lipbatch.review.server import ReviewApp
from lipbatch.state import JobStatus, read_state

pytestmark = pytest.mark.anyio


async def test_the_served_page_files_and_decisions(small):
    manifest = small.manifest
    review = ReviewApp(manifest, sandbox=True)
    project = review.project
    records = read_state(project.state_path).jobs
    done = next(job for job in project.jobs if records[job.key].status is JobStatus.DONE)
    failed = next(job for job in project.jobs if records[job.key].status is JobStatus.FAILED)
    sha = records[done.key].output_sha256
    transport = httpx.ASGITransport(app=review.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        page = await client.get("/", follow_redirects=True)
        assert page.status_code == 200 and '<body class="served">' in page.text
        assert page.text.count('class="cell"') == len(project.jobs)
        video = await client.get(f"/{done.output}", headers={"range": "bytes=0-9"})
        assert video.status_code == 206 and len(video.content) == 10  # seeking works
        assert (await client.get("/../" + manifest.name)).status_code == 404  # nothing outside the output folder

        async def post(**body):
            return await client.post("/review/api/decisions", json=body)

        assert (await post(key=done.key, sha256=sha, decision="maybe")).status_code == 400
        body = json.dumps({"key": done.key, "sha256": sha, "decision": "approved"})
        form = await client.post("/review/api/decisions", content=body, headers={"content-type": "text/plain"})
        assert form.status_code == 415  # what a cross-site form could send without asking first
        elsewhere = await client.post("/review/api/decisions", content=body, headers={
            "content-type": "application/json", "origin": "http://evil.test"})
        assert elsewhere.status_code == 403
        rebound = await client.get("/review/", headers={"host": "evil.test"})
        assert rebound.status_code == 400
        assert (await post(key="0" * 64, sha256=sha, decision="approved")).status_code == 404
        stale = await post(key=done.key, sha256="f" * 64, decision="approved")
        assert stale.status_code == 409 and "newer take" in stale.json()["error"]
        no_take = await post(key=failed.key, sha256=None, decision="approved")
        assert no_take.status_code == 409 and failed.output in no_take.json()["error"]
        no_note = await post(key=done.key, sha256=sha, decision="rejected", note="  ")
        assert no_note.status_code == 409 and "note" in no_note.json()["error"]
        assert not decisions_path(manifest, sandbox=True).exists()  # every refusal wrote nothing

        ok = await post(key=done.key, sha256=sha, decision="rejected", note="blink missing")
        assert ok.status_code == 200, ok.text
        assert ok.json()["decision"] == "rejected" and ok.json()["outputs"] == list(done.outputs)
    decisions = read_decisions(decisions_path(manifest, sandbox=True))
    assert {out: (d.decision, d.note, d.sha256) for out, d in decisions.items()
            if out in done.outputs} == {out: ("rejected", "blink missing", sha) for out in done.outputs}
    assert not decisions_path(manifest).exists()
