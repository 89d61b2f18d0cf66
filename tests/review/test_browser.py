"""The review page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

On the examples' five-kind campaign rehearsed in the sandbox (one job failed
moderation, one take rejected and redone): every take plays, the grid is
clip × script rows by language columns per account, filters and keys work,
and, served, the buttons write the decisions file while the CLI writes it too.
Screenshots are saved in each test's tmp folder.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from campaigns import REDONE, copy_campaign

from lipbatch.campaign import load_campaign
from lipbatch.errors import EXIT_OK
from lipbatch.review.decisions import decisions_path, read_decisions
from lipbatch.state import JobStatus, read_state

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run",
         "--allow-file-access-from-files"]  # only so the test may read decoded pixels back from a file:// page

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


class Tab:
    """A 1280×800 page that records every request and every script error."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))

    def visible(self, selector: str = ".cell", attribute: str = "key") -> list[str]:
        return self.page.eval_on_selector_all(
            selector, f"els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.{attribute})")

    def current(self) -> dict[str, str]:
        return self.page.eval_on_selector(".cell.current", "cell => ({...cell.dataset})")

    def filter(self, **values: str) -> None:
        for name in ("lang", "account", "status", "decision"):
            self.page.select_option(f"#filter-{name}", values.get(name, ""))


@pytest.fixture
def tab(browser):
    tab = Tab(browser)
    yield tab
    tab.context.close()


def _campaign(localization_master: Path, folder: Path):
    manifest = copy_campaign(localization_master, folder)
    project = load_campaign(manifest, sandbox=True)
    return manifest, project, read_state(project.state_path)


_PLAY_ALL = """async () => {
  const results = [];
  for (const video of document.querySelectorAll("video")) {
    video.muted = true;
    let played = false, brightness = 0;
    try {
      await video.play();
      await new Promise((resolve) => {
        const check = () => (video.currentTime > 0 ? resolve() : setTimeout(check, 20));
        check();
        setTimeout(resolve, 5000);
      });
      played = video.currentTime > 0;
      if (video.requestVideoFrameCallback) {  // a frame handed to the compositor, so drawImage has one
        await new Promise((resolve) => { video.requestVideoFrameCallback(() => resolve()); setTimeout(resolve, 1000); });
      }
      video.pause();
      const canvas = document.createElement("canvas");  // the decoded picture itself, not just a clock
      canvas.width = 16; canvas.height = 12;
      const context = canvas.getContext("2d");
      for (let attempt = 0; attempt < 20 && brightness === 0; attempt++) {  // a busy machine: no frame yet
        if (attempt) await new Promise((resolve) => setTimeout(resolve, 50));
        context.drawImage(video, 0, 0, 16, 12);
        const pixels = context.getImageData(0, 0, 16, 12).data;
        let sum = 0;
        for (let i = 0; i < pixels.length; i += 4) sum += pixels[i] + pixels[i + 1] + pixels[i + 2];
        brightness = sum / (pixels.length / 4) / 3;
      }
    } catch (error) { played = String(error); }
    results.push({src: video.getAttribute("src"), readyState: video.readyState, error: video.error && video.error.code,
                  width: video.videoWidth, duration: video.duration, played, brightness});
  }
  return results;
}"""

_POSTERS = """async () => Promise.all([...document.querySelectorAll("video[poster]")].map((video) => new Promise(
  (resolve) => { const img = new Image(); img.onload = () => resolve(img.naturalWidth);
                 img.onerror = () => resolve(0); img.src = video.poster; })))"""


def _plays_everything(tab: Tab, expected_videos: int) -> None:
    videos = tab.page.evaluate(_PLAY_ALL)
    assert len(videos) == expected_videos
    for video in videos:  # Debian's Chromium decodes the sandbox's H.264/AAC MP4s
        assert video["error"] is None and video["readyState"] >= 2 and video["played"] is True, video
        assert video["width"] > 0 and video["duration"] > 0.5, video
        assert video["brightness"] > 30, video  # the sandbox's faces and gradients, not a black frame
    posters = tab.page.evaluate(_POSTERS)
    assert len(posters) == expected_videos and all(width > 0 for width in posters), posters


def test_the_page_from_a_file(localization_master, tmp_path, tab, run_cli):
    manifest, project, loaded = _campaign(localization_master, tmp_path / "c")
    jobs = {job.key: job for job in project.jobs}
    done = [job for job in project.jobs if loaded.jobs[job.key].status is JobStatus.DONE]
    [failed] = [job for job in project.jobs if loaded.jobs[job.key].status is JobStatus.FAILED]
    assert run_cli("review", str(manifest), "--sandbox", "--approve", "provider=magichour", "lang=de").code == EXIT_OK
    assert run_cli("review", str(manifest), "--sandbox", "--reject", "provider=creatify", "lang=ja",
                   "--note", "too quiet").code == EXIT_OK
    written = run_cli("review", str(manifest), "--sandbox")
    assert written.code == EXIT_OK, written.err
    tab.page.goto(Path(written.out.strip()).as_uri())

    # the grid: per account (in the manifest's order), one row per clip × script/voice, one column per language
    sections = tab.page.eval_on_selector_all("section.group", """sections => sections.map(s => ({
        account: s.dataset.account,
        columns: [...s.querySelectorAll("thead th[data-column]")].map(th => th.dataset.column),
        rows: [...s.querySelectorAll("tbody tr")].map(tr => [...tr.querySelectorAll("td")].map(
            td => td.querySelector(".cell") ? td.querySelector(".cell").dataset.key : null))}))""")
    assert [s["account"] for s in sections] == list(project.accounts)
    for section in sections:
        mine = [job for job in project.jobs if job.account == section["account"]]
        assert section["columns"] == sorted({job.lang or "—" for job in mine})
        assert len(section["rows"]) == len({(job.clip, job.script or job.voice) for job in mine})
        for row in section["rows"]:
            assert len(row) == len(section["columns"])
            cells = [jobs[key] for key in row if key]
            assert len({(job.clip, job.script or job.voice) for job in cells}) == 1
            assert [job.lang or "—" for job in cells] == [c for c, key in zip(section["columns"], row, strict=True)
                                                         if key]
    assert sorted(key for s in sections for row in s["rows"] for key in row if key) == sorted(jobs)

    # every take plays (15 current takes + the kept take 1 of the redone output), posters load
    _plays_everything(tab, len(done) + 1)
    assert all(url.startswith("file://") for url in tab.requests), [u for u in tab.requests if "file://" not in u]

    # the failed cell shows the provider's reason; the redone one its earlier take beside the current
    failed_cell = tab.page.locator(f'.cell[data-key="{failed.key}"]')
    assert "moderation" in failed_cell.locator(".error").inner_text().lower()
    assert failed_cell.locator("video").count() == 0
    [redone] = [job for job in project.jobs if (job.clip, job.lang, job.account) == tuple(REDONE.values())]
    boxes = [tab.page.locator(f'.cell[data-key="{redone.key}"] figure.take.{which}').bounding_box()
             for which in ("current", "earlier")]
    assert boxes[1]["x"] >= boxes[0]["x"] + boxes[0]["width"] and abs(boxes[1]["y"] - boxes[0]["y"]) < 2
    earlier = tab.page.locator(f'.cell[data-key="{redone.key}"] figure.take.earlier figcaption').inner_text()
    assert "take 1" in earlier and "rejected" in earlier

    # filters
    tab.filter(lang="de")
    assert sorted(tab.visible()) == sorted(job.key for job in project.jobs if job.lang == "de")
    assert set(tab.visible("thead th[data-column]", "column")) == {"de"}
    tab.filter(lang="de", account="magichour")
    assert sorted(tab.visible()) == sorted(j.key for j in project.jobs if j.lang == "de" and j.account == "magichour")
    assert tab.visible("section.group", "account") == ["magichour"]
    tab.filter(status="failed")
    assert tab.visible() == [failed.key]
    tab.filter(decision="approved")
    assert sorted(tab.visible()) == sorted(j.key for j in done if j.account == "magichour" and j.lang == "de")
    tab.filter(decision="rejected")
    assert tab.visible() == [j.key for j in done if j.account == "creatify" and j.lang == "ja"]
    tab.filter(decision="undecided")
    assert len(tab.visible()) == len(done) - 3
    tab.filter(decision="no take")
    assert tab.visible() == [failed.key]
    tab.filter()
    tab.page.click('[data-status-chip="failed"]')
    assert tab.visible() == [failed.key]
    tab.page.click('[data-status-chip="failed"]')
    assert len(tab.visible()) == len(jobs)

    # keyboard: on load, the first cell is runway's first row (anna), first language (de)
    tab.page.reload()
    first = tab.current()
    assert (first["account"], first["clip"], first["lang"]) == ("runway", "anna", "de")
    tab.page.keyboard.press("j")
    assert (tab.current()["clip"], tab.current()["lang"]) == ("anna", "en")
    tab.page.keyboard.press("ArrowDown")
    assert (tab.current()["clip"], tab.current()["lang"]) == ("portrait", "en")
    tab.page.keyboard.press("ArrowUp")
    tab.page.keyboard.press("ArrowRight")
    assert (tab.current()["clip"], tab.current()["lang"]) == ("anna", "fr")
    tab.page.keyboard.press("k")
    tab.page.keyboard.press("ArrowLeft")
    assert tab.current()["key"] == first["key"]
    video = tab.page.locator(".cell.current figure.take.current video")
    tab.page.keyboard.press(" ")
    tab.page.wait_for_function("() => !document.querySelector('.cell.current figure.current video').paused")
    tab.page.keyboard.press(" ")
    assert video.evaluate("v => v.paused") is True
    tab.page.keyboard.press("a")  # from a file, the page says how to record the decision
    toast = tab.page.locator("#toast")
    assert toast.is_visible() and f"--approve key={first['key'][:12]}" in toast.inner_text()
    tab.page.screenshot(path=str(tmp_path / "review-file.png"))
    assert tab.errors == []


def test_the_folder_can_be_zipped_and_sent(localization_master, tmp_path, tab, run_cli):
    manifest, project, loaded = _campaign(localization_master, tmp_path / "c")
    page = Path(run_cli("review", str(manifest), "--sandbox").out.strip())
    sent = tmp_path / "client" / "unzipped"
    shutil.copytree(project.output_dir, sent)
    shutil.rmtree(project.output_dir)  # nothing may still point at the original folder
    tab.page.goto((sent / page.relative_to(project.output_dir)).as_uri())
    done = sum(record.status is JobStatus.DONE for record in loaded.jobs.values())
    _plays_everything(tab, done + 1)
    assert all(url.startswith(sent.as_uri() + "/") for url in tab.requests), tab.requests
    tab.page.screenshot(path=str(tmp_path / "review-sent.png"), full_page=True)


class Server:
    """``lipbatch review --serve`` as a real process on loopback."""

    def __init__(self, manifest: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lipbatch.cli", "review", str(manifest), "--sandbox",
                                      "--serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:") and self.url.endswith("/review/"), self.proc.stderr.read()

    def post(self, **body) -> dict:
        request = urllib.request.Request(self.url + "api/decisions", data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        return code, self.proc.stderr.read()


def test_served_buttons_and_keys_write_decisions_alongside_the_cli(localization_master, tmp_path, tab):
    manifest, project, loaded = _campaign(localization_master, tmp_path / "c")
    records = loaded.jobs
    done = [job for job in project.jobs if records[job.key].status is JobStatus.DONE]
    path = decisions_path(manifest, sandbox=True)
    server = Server(manifest)
    try:
        tab.page.goto(server.url)
        first, second = tab.current()["key"], None

        def decided(key: str, decision: str) -> None:
            tab.page.wait_for_selector(f'.cell[data-key="{key}"][data-decision="{decision}"]', timeout=10000)

        tab.page.click(f'.cell[data-key="{first}"] button.approve')
        decided(first, "approved")
        second = tab.current()["key"]  # a decision moves on to the next take
        assert second != first
        tab.page.keyboard.press("r")
        tab.page.wait_for_selector("#reject-dialog[open]")
        tab.page.keyboard.press("Escape")  # cancelled: nothing written
        tab.page.keyboard.press("r")
        tab.page.fill("#reject-note", "the smile comes too late")
        tab.page.keyboard.press("Enter")
        decided(second, "rejected")
        third = tab.current()["key"]
        tab.page.keyboard.press("a")
        decided(third, "approved")
        decisions = read_decisions(path)
        for key, decision, note in ((first, "approved", ""), (second, "rejected", "the smile comes too late"),
                                    (third, "approved", "")):
            job = next(job for job in project.jobs if job.key == key)
            entry = decisions[job.output]
            assert (entry.decision, entry.note, entry.sha256, entry.take) == (
                decision, note, records[key].output_sha256, records[key].take)
        assert len(decisions) == 3

        # the page and the command line at once: nothing is lost
        rest = [job for job in done if job.key not in (first, second, third)]
        by_http, by_cli = rest[::2], rest[1::2]
        threads = [threading.Thread(target=server.post, kwargs={
            "key": job.key, "sha256": records[job.key].output_sha256, "decision": "approved"}) for job in by_http]
        procs = [subprocess.Popen([sys.executable, "-m", "lipbatch.cli", "review", str(manifest), "--sandbox",
                                   "--reject", "key=" + ",".join(job.key[:16] for job in share), "--note", f"cli {i}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for i, share in enumerate((by_cli[::2], by_cli[1::2]))]  # two processes: CLI start-up is slow
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [proc.wait(60) for proc in procs] == [0] * len(procs)
        decisions = read_decisions(path)
        assert len(decisions) == 3 + len(rest)
        assert all(decisions[job.output].decision == "approved" for job in by_http)
        assert all(decisions[job.output].decision == "rejected" for job in by_cli)

        tab.page.reload()  # the page is rebuilt from the state and the decisions file
        assert sorted(tab.visible(".cell[data-decision='rejected']")) == sorted([second, *(j.key for j in by_cli)])
        tab.page.screenshot(path=str(tmp_path / "review-served.png"))
        assert all(url.startswith(server.url.split("/review/")[0]) for url in tab.requests), tab.requests
        assert tab.errors == []
    finally:
        code, err = server.stop()
    assert code == EXIT_OK and "Traceback" not in err, err
