"""The HTML report of a smoke-shaped run, opened from the file system in headless Chromium.

Chromium is driven over the DevTools protocol (websockets, which mujoco already installs):
the test fails on console errors, images that did not decode and videos that cannot play,
and leaves a full-page screenshot in its temporary folder.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from contextlib import ExitStack
from itertools import count
from pathlib import Path

import pytest

from evaluation.report import build_report

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900")  # fmt: skip

# what broke on the page: images not decoded, videos in error or without a frame after 10 s
CHECK_MEDIA = """
(async () => {
  const videos = [...document.querySelectorAll('video')];
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline && videos.some(v => !v.error && v.readyState < 2)) {
    await new Promise(r => setTimeout(r, 100));
  }
  return JSON.stringify({
    images: document.images.length,
    brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0)
      .map(i => i.alt || i.src.slice(0, 60)),
    videos: videos.length,
    brokenVideos: videos.filter(v => v.error || v.readyState < 2 || v.videoWidth === 0)
      .map(v => (v.error ? 'error ' + v.error.code : 'readyState ' + v.readyState)),
  });
})()
"""


class Browser:
    """Headless Chromium and one page, over the DevTools protocol."""

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.time() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{CHROMIUM} did not start its DevTools server")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        self.stack = ExitStack()
        self.socket = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
        self.ids = count(1)
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        """Send one command; keep the events that arrive before its answer."""
        call_id = next(self.ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.time() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.time() > deadline:
                raise TimeoutError(f"{url} did not load within 60 s")
            self.events.append(json.loads(self.socket.recv(timeout=60)))

    def media(self) -> dict:
        result = self.call("Runtime.evaluate", expression=CHECK_MEDIA, awaitPromise=True)
        return json.loads(result["result"]["value"])

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads since the page opened."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] == "error":
                out.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                out.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(f"{params['entry']['text']} {params['entry'].get('url', '')}")
        return out

    def screenshot(self, path: Path) -> Path:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self.stack.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (scripts/install.sh installs Debian's chromium)")
    pytest.importorskip("websockets", reason="the DevTools client needs websockets")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("html") / "smoke"
    shutil.copytree(smoke_run, run)
    return build_report(run)["html"]


def test_page_is_self_contained(report: Path) -> None:
    page = report.read_text()
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert {"scaling_openvla.png", "learning_curves.png", "tsne.png"} <= set(pngs)
    assert page.count('src="data:image/png;base64,') == len(pngs)  # every figure, embedded
    assert page.count('src="data:video/webm;base64,') == 8  # 2 per DLR pattern (3) and O2O
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for text in ("Rollouts", "Resolved recipe", "name: smoke", "lerobot", "abc1234"):
        assert text in page


def test_opens_in_chromium(report: Path, browser: Browser, tmp_path: Path) -> None:
    browser.open(report.as_uri())
    media = browser.media()
    shot = browser.screenshot(tmp_path / "report.png")
    print(f"screenshot: {shot}")
    assert browser.errors() == []
    assert media["images"] == len(list(report.parent.glob("*.png")))
    assert media["videos"] == 8
    assert media["brokenImages"] == [] and media["brokenVideos"] == []
    assert shot.stat().st_size > 50_000


def test_chromium_check_finds_broken_media(report: Path, browser: Browser, tmp_path: Path) -> None:
    """The checks above can fail: a missing image and an undecodable video are reported."""
    page = tmp_path / "broken.html"
    page.write_text('<img alt="missing" src="missing.png">'
                    '<video src="data:video/webm;base64,AAAA" muted preload="auto"></video>')  # fmt: skip
    browser.open(page.as_uri())
    media = browser.media()
    assert media["brokenImages"] == ["missing"]
    assert len(media["brokenVideos"]) == 1
    assert any("missing.png" in e for e in browser.errors())
