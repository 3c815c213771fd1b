"""Open a local HTML page in headless Chromium over the DevTools protocol (pipe transport).

No extra Python package: Chromium is started with ``--remote-debugging-pipe`` and reads
NUL-terminated JSON commands on fd 3 and writes replies/events on fd 4. Used by the report
tests to take a screenshot, list console errors and evaluate JavaScript in the page.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    env = os.environ.get("IRONMAP_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The Chromium binary; skips the calling test with a reason when none is installed."""
    path = find_chromium()
    if path is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    return path


@dataclass
class PageResult:
    """What a page load produced."""

    screenshot_png: bytes
    errors: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    shots: dict[str, bytes] = field(default_factory=dict)  # name -> PNG of an element


class _Pipe:
    def __init__(self, binary: str, profile: Path):
        self._to_r, self._to_w = os.pipe()
        self._from_r, self._from_w = os.pipe()
        # Chromium reads commands on fd 3 and writes on fd 4.
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions",
               "--disable-background-networking", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", "about:blank"]

        def _fds():
            # move out of the way first: the pipe ends themselves may be fds 3 or 4
            os.dup2(self._to_r, 200)
            os.dup2(self._from_w, 201)
            os.dup2(200, 3)
            os.dup2(201, 4)

        # close_fds=False: fds 3/4 are made by dup2 in the child and must survive exec.
        self.proc = subprocess.Popen(cmd, preexec_fn=_fds, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=False)
        os.close(self._to_r)
        os.close(self._from_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        want = self._next_id
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == want:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + timeout
        while True:
            ev = self._read(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_r], [], [], left)
            if ready:
                chunk = os.read(self._from_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - best effort, the process is killed below
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)


def _errors(events: list[dict]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
    return out


def open_page(html: Path, expressions: dict[str, str], tmp_dir: Path, *,
              width: int = 1280, height: int = 1800,
              elements: dict[str, str] | None = None, actions: str = "") -> PageResult:
    """Load ``html`` offline, evaluate ``expressions`` (name -> JS), take a screenshot.

    ``actions``: JavaScript run first (e.g. clicks); ``elements``: name -> CSS selector of an
    element to photograph on its own (``PageResult.shots``).
    """
    binary = require_chromium()
    pipe = _Pipe(binary, tmp_dir / "chromium-profile")
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        pipe.send("Page.navigate", {"url": Path(html).resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired")
        values = {}
        if actions:
            pipe.send("Runtime.evaluate", {"expression": actions, "awaitPromise": True},
                      session=session)
        for name, expr in expressions.items():
            res = pipe.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": True}, session=session)
            if "exceptionDetails" in res:
                raise RuntimeError(f"{name}: {res['exceptionDetails']}")
            values[name] = res["result"].get("value")
        shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
        shots = {}
        for name, selector in (elements or {}).items():
            box = pipe.send("Runtime.evaluate", {"expression": _BOX.replace("SEL", json.dumps(
                selector)), "returnByValue": True}, session=session)["result"].get("value")
            if box:
                img = pipe.send("Page.captureScreenshot", {
                    "format": "png", "captureBeyondViewport": True,
                    "clip": {**box, "scale": 1}}, session=session)
                shots[name] = base64.b64decode(img["data"])
        return PageResult(base64.b64decode(shot["data"]), _errors(pipe.events), values, shots)
    finally:
        pipe.close()


_BOX = ("(() => { const e = document.querySelector(SEL); if (!e) return null; "
        "const r = e.getBoundingClientRect(); return {x: r.left + window.scrollX, "
        "y: r.top + window.scrollY, width: r.width, height: r.height}; })()")

#: JavaScript evaluated in a report page
REPORT_PROBES = {
    "n_images": "document.images.length",
    "broken_images": "Array.from(document.images).filter(i => !i.complete || "
                     "i.naturalWidth === 0).map(i => i.alt)",
    "table2": "Array.from(document.querySelectorAll('#table2 tbody tr')).map(r => "
              "Array.from(r.querySelectorAll('td')).map(c => [c.dataset.columns, "
              "c.textContent]))",
    "text_length": "document.body.innerText.length",
    "title": "document.title",
    # per table: rows of [column, shown text] of every number (data-column elements)
    "numbers": "Object.fromEntries(['table1', 'table2', 'table2-full'].map(id => [id, "
               "Array.from(document.querySelectorAll('#' + CSS.escape(id) + ' tbody tr')).map("
               "r => Array.from(r.querySelectorAll('[data-column]')).map(e => "
               "[e.dataset.column, e.textContent]))]))",
    # figures shown narrower than their natural width (their text would shrink below 9 pt)
    "shrunk_figures": "Array.from(document.querySelectorAll('img[data-width]')).filter(i => "
                      "i.getBoundingClientRect().width < 0.97 * Number(i.dataset.width))"
                      ".map(i => i.alt)",
}

#: JavaScript evaluated in a participant page with the viewer: after its first draw, the
#: canvas's size and pixel statistics (a blank canvas has one grey level), then the same after
#: moving to the coronal view and hiding the overlays
VIEWER_PROBE = """
(async () => {
  if (!window.ironmapViewer) return null;
  await window.ironmapViewer.ready;
  const c = document.getElementById('iv-canvas');
  const stats = () => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0, sum = 0, sq = 0, colored = 0;
    const levels = new Set();
    for (let i = 0; i < d.length; i += 4) {
      const g = (d[i] + d[i + 1] + d[i + 2]) / 3;
      n++; sum += g; sq += g * g; levels.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);
      if (Math.abs(d[i] - d[i + 1]) > 30 || Math.abs(d[i + 1] - d[i + 2]) > 30) colored++;
    }
    const mean = sum / n;
    return {width: c.width, height: c.height, std: Math.sqrt(sq / n - mean * mean),
            levels: levels.size, colored: colored};
  };
  const axial = stats();
  const sel = document.getElementById('iv-plane');
  sel.value = '1'; sel.dispatchEvent(new Event('change'));
  const coronal = stats();
  const lab = document.getElementById('iv-lab');
  const les = document.getElementById('iv-les');
  sel.value = '2'; sel.dispatchEvent(new Event('change'));
  lab.value = 0; lab.dispatchEvent(new Event('input'));
  if (les.type === 'range') { les.value = 0; les.dispatchEvent(new Event('input')); }
  const bare = stats();
  lab.value = 50; lab.dispatchEvent(new Event('input'));
  return {axial, coronal, bare, ready: document.getElementById('iv').dataset.ready};
})()
"""


def screenshot_is_blank(png: bytes) -> bool:
    """True when the screenshot is (almost) one colour."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return img.std() < 5.0 or np.mean(img < 200) < 0.01
