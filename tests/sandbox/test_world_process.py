"""``lipbatch sandbox --world DIR`` as a real process: killed with SIGKILL mid-burst, restarted on the
same folder, it still has everything it acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from emulator_kit import wav_bytes
from world_kit import Creatify, Useapi

from lipbatch.sandbox import creatify

pytestmark = pytest.mark.slow

USEAPI, CREATIFY = Useapi(), Creatify()
ACKNOWLEDGED_BEFORE_KILL = 40


def start(world: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "lipbatch", "sandbox", "--port", "0", "--time-scale", "1e6",
               "--world", str(world)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ.copy())
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), process.stderr.read()
    return process, url


def burst(url: str, worker: int, acknowledged: list[tuple[str, str]], enough: threading.Event) -> None:
    """Upload assets and create Creatify tasks until the server goes away; record every 2xx answer."""
    audio = wav_bytes(0.5)
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(10_000):
            try:
                if n % 2:
                    answer = client.post(f"{USEAPI.api}/assets/", params={"name": f"w{worker}-{n}.wav"},
                                         content=audio, headers=USEAPI.auth | {"Content-Type": "audio/wav"})
                    kind, key = "asset", "assetId"
                else:
                    answer = client.post(CREATIFY.path, headers=CREATIFY.auth,
                                         json=creatify_body(f"Worker {worker} take {n}."))
                    kind, key = "task", "id"
            except httpx.HTTPError:
                return
            assert answer.is_success, answer.text
            acknowledged.append((kind, answer.json()[key]))
            if len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                enough.set()


def creatify_body(text: str) -> dict:
    voice = {"type": "text", "input_text": text, "voice_id": creatify.VOICES[0]["accents"][0]["id"]}
    return {"video_inputs": [{"character": {"type": "avatar", "avatar_id": creatify.PERSONAS[0]["id"]},
                              "voice": voice}]}


def test_a_killed_sandbox_keeps_everything_it_acknowledged(tmp_path):
    process, url = start(tmp_path)
    acknowledged: list[tuple[str, str]] = []
    enough = threading.Event()
    workers = [threading.Thread(target=burst, args=(url, n, acknowledged, enough)) for n in range(4)]
    try:
        for worker in workers:
            worker.start()
        assert enough.wait(timeout=60)
        process.send_signal(signal.SIGKILL)  # while the workers' requests are in flight
        process.wait(timeout=10)
    finally:
        process.kill()
        for worker in workers:
            worker.join(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL

    process, url = start(tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for kind, ident in acknowledged:
                if kind == "asset":
                    answer = client.get(f"{USEAPI.api}/assets/{ident}", headers=USEAPI.auth)
                else:
                    answer = client.get(f"{CREATIFY.path}{ident}/", headers=CREATIFY.auth)
                assert answer.status_code == 200, (kind, ident, answer.text)
            stats = client.get("/_sandbox/stats").json()
            tasks = sum(1 for kind, _ in acknowledged if kind == "task")
            assert tasks <= stats["creates_total"] <= tasks + 4  # plus at most one unanswered per worker
            assert stats["duplicate_creates"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert "sandbox stopped" in process.stderr.read()


def test_a_damaged_world_exits_2_with_a_clear_message(tmp_path):
    (tmp_path / "world.json").write_text('{"format": "lipbatch-sandbox-world", "version": 1, "now"')
    done = subprocess.run([sys.executable, "-m", "lipbatch", "sandbox", "--world", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 2 and done.stdout == ""
    assert "is corrupt" in done.stderr and "Traceback" not in done.stderr
