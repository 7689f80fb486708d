"""A minimal Chrome DevTools Protocol client over a pipe, to drive a headless Chromium.

The end-to-end test of the page and the README screenshots use it. Why not Playwright
or Selenium: both are large dependencies (Playwright also wants to download its own
browsers), while what is needed here (open a page, send real mouse and key events,
evaluate a script, take a screenshot) is a few protocol commands. Chromium's
``--remote-debugging-pipe`` speaks the protocol as NUL-terminated JSON over file
descriptors 3 (commands in) and 4 (replies and events out): no port, no WebSocket, no
library.

    with Chromium() as browser:
        page = browser.new_page(1280, 800)
        page.goto(url)
        page.wait_for("window.dmsps && window.dmsps.ready")
        page.mouse_drag([(100, 100), (150, 120)])
        png = page.screenshot()
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dmsps.io.atomic import atomic_path

#: Flags that keep a headless Chromium off the network and out of the user's profile.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # A tab the browser thinks is hidden gets no frames, and input waits for frames.
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-background-timer-throttling",
)

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """The browser could not start, or a command failed or timed out."""


def find_chromium() -> str | None:
    """A Chromium (or Chrome) executable: ``$DMSPS_CHROMIUM``, else one on PATH."""
    given = os.environ.get("DMSPS_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


def _high_pipe() -> tuple[int, int]:
    """A pipe whose two ends are file descriptors of at least 100."""
    import fcntl

    r, w = os.pipe()
    try:
        return tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (r, w))
    finally:
        os.close(r)
        os.close(w)


class Chromium:
    """A headless Chromium in a temporary profile, controlled over the DevTools pipe."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError("no chromium found (apt-get install chromium, or $DMSPS_CHROMIUM)")
        self.timeout = timeout
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._events: dict[str | None, list[dict]] = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._profile: str | None = None

    # --- lifetime ------------------------------------------------------------------------
    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self._profile = tempfile.mkdtemp(prefix="dmsps-chromium-")
        to_browser_r, to_browser_w = _high_pipe()
        from_browser_r, from_browser_w = _high_pipe()
        args = [
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # The browser reads commands from fd 3 and writes to fd 4: a small Python launcher
        # moves the pipe ends there (they sit at 100+, so they never collide with 3 or 4).
        launcher = (
            "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); "
            "os.dup2(a, 3); os.dup2(b, 4); os.close(a); os.close(b); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", launcher, str(to_browser_r), str(from_browser_w), *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        self.call("Browser.getVersion")

    def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(BrowserError):
                self.call("Browser.close", timeout=5)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for fh in (getattr(self, "_out", None), getattr(self, "_in", None)):
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # --- protocol --------------------------------------------------------------------------
    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._in.read(65536)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._replies.get(message["id"])
                    if box is not None:
                        box.put(message)
                else:
                    with self._lock:
                        self._events.setdefault(message.get("sessionId"), []).append(message)
        with self._lock:
            boxes = list(self._replies.values())
        for box in boxes:
            box.put({"error": {"message": "the browser closed the pipe"}})

    def call(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
            box: queue.Queue = queue.Queue(1)
            self._replies[message_id] = box
        message = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            self._out.write(json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"{method}: the browser is gone ({exc})") from None
        try:
            reply = box.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise BrowserError(f"{method}: no reply in {timeout or self.timeout} s") from None
        finally:
            with self._lock:
                self._replies.pop(message_id, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def events(self, session: str | None, method: str | None = None) -> list[dict]:
        with self._lock:
            found = list(self._events.get(session, []))
        return [e for e in found if method is None or e.get("method") == method]

    def new_page(self, width: int = 1280, height: int = 800) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        page.call("Page.bringToFront")
        page.call("Emulation.setFocusEmulationEnabled", {"enabled": True})
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page


class Page:
    """One tab: navigation, script evaluation, input events, screenshots."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def call(self, method: str, params: dict | None = None, timeout: float | None = None):
        return self.browser.call(method, params, self.session, timeout)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str, timeout: float | None = None):
        """The value of a JavaScript expression (awaited when it is a promise)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"script failed: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.05):
        """Poll until ``expression`` is truthy; its value."""
        end = time.monotonic() + timeout
        while True:
            guarded = f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()"
            value = self.evaluate(guarded)
            if value:
                return value
            if time.monotonic() > end:
                raise BrowserError(f"timed out after {timeout} s waiting for: {expression}")
            time.sleep(interval)

    def console_errors(self) -> list[str]:
        """Exceptions the page threw so far (Runtime.exceptionThrown)."""
        out = []
        for event in self.browser.events(self.session, "Runtime.exceptionThrown"):
            details = event["params"]["exceptionDetails"]
            out.append(details.get("exception", {}).get("description") or details.get("text"))
        return out

    # --- input ---------------------------------------------------------------------------
    def mouse(self, kind: str, x: float, y: float, button: str = "left", buttons: int = 0, **extra):
        self.call(
            "Input.dispatchMouseEvent",
            {"type": kind, "x": x, "y": y, "button": button, "buttons": buttons, **extra},
        )

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y, button="none")
        self.mouse("mousePressed", x, y, buttons=1, clickCount=1)
        self.mouse("mouseReleased", x, y, clickCount=1)

    def mouse_drag(self, points: list[tuple[float, float]], steps: int = 4) -> None:
        """Press the left button at the first point, move through the others (with
        ``steps`` intermediate moves per segment), release at the last."""
        (x0, y0), rest = points[0], points[1:]
        self.mouse("mouseMoved", x0, y0, button="none")
        self.mouse("mousePressed", x0, y0, buttons=1, clickCount=1)
        for x1, y1 in rest:
            for k in range(1, steps + 1):
                f = k / steps
                self.mouse("mouseMoved", x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, buttons=1)
            x0, y0 = x1, y1
        self.mouse("mouseReleased", x0, y0, clickCount=1)

    def key(self, key: str, code: str | None = None, modifiers: int = 0) -> None:
        """Press and release one key (``modifiers``: 1 Alt, 2 Ctrl, 4 Meta, 8 Shift)."""
        params = {"key": key, "code": code or key, "modifiers": modifiers}
        if len(key) == 1 and not modifiers & 6:
            params["text"] = key
        self.call("Input.dispatchKeyEvent", {"type": "keyDown", **params})
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", **params})

    def click_selector(self, selector: str) -> None:
        """Click the middle of the element ``selector`` matches, with real mouse events."""
        found = f"document.querySelector({json.dumps(selector)}).getBoundingClientRect()"
        box = self.evaluate(
            f"(() => {{ const r = {found}; return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        )
        self.click(*box)

    def screenshot(self, path: str | Path | None = None) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        if path is not None:
            with atomic_path(Path(path), suffix=".png") as tmp:
                tmp.write_bytes(data)
        return data
