"""Training from the page: `dmsps run` as a background subprocess, and the event bus.

One job at a time. The job is an ordinary ``python -m dmsps.cli run DATA --out RUN
--preset P --set ...`` in its own process group: the page streams its output lines,
cancel sends it Ctrl-C (SIGINT, which `dmsps run` answers by stopping resumably), and
its run folder is named after what it trains on (the preset, the settings and the
content of the training scribbles), so pressing "Train" again after a cancel, with the
same scribbles, continues the same run, and new scribbles start a new one. When it
finishes, ``on_success(run_dir)`` loads the new model.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from dmsps.errors import DmspsError

#: A --set override as the page may send it: a dotted field name, '=', a plain value
#: (lists with commas: stage1.features=8,16,32,64,128). It goes to `dmsps run` as one
#: argument, never through a shell; the narrow alphabet keeps it readable all the same.
_SETTING = re.compile(
    r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*=[A-Za-z0-9_.,:/+-]{1,200}$"
)

#: Lines of output kept for a page that connects while a job runs.
KEEP_LINES = 400


class EventBus:
    """Fan-out of small JSON events to every listening page (Server-Sent Events)."""

    def __init__(self, backlog: int = 1000) -> None:
        self._subscribers: list[queue.Queue] = []
        self._lock = threading.Lock()
        self._backlog = backlog

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(self._backlog)
        with self._lock:
            self._subscribers.append(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subscribers:
                self._subscribers.remove(q)

    def publish(self, kind: str, data: dict) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            # A page that stopped reading misses events rather than growing memory.
            with contextlib.suppress(queue.Full):
                q.put_nowait((kind, data))


def parse_settings(text: str | list | None) -> list[str]:
    """``"stage1.iterations=200 stage2.iterations=50"`` (or a list) as --set pairs."""
    if text is None:
        return []
    items = text.split() if isinstance(text, str) else text
    out = []
    for item in items:
        if not isinstance(item, str) or not _SETTING.match(item):
            raise DmspsError(
                f"setting {str(item)[:60]!r} must look like section.field=value (no spaces), "
                "e.g. stage1.iterations=500"
            )
        out.append(item)
    return out


def interruptible_jobs() -> None:
    """Let the server and the jobs it starts be stopped with Ctrl-C. A server started
    with SIGINT ignored (``nohup dmsps annotate ... &`` in a script) would ignore its own
    Ctrl-C and pass the ignore on to its children, and a cancel would then wait for
    SIGTERM, which kills the run where it is instead of letting it stop resumably.
    Python's own handler is not inherited across exec, so the children start with the
    default again. Main thread only."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def preset_names() -> dict[str, str]:
    """Preset name -> its one-line help, as `dmsps run --preset` knows them."""
    from dmsps.presets import AUTO_HELP, PRESETS

    return {**{name: p.help for name, p in PRESETS.items()}, "auto": AUTO_HELP}


def check_run_settings(preset: str, settings: list[str]) -> None:
    """Refuse an unknown preset or setting before anything starts."""
    from dmsps.config import RunConfig, apply_overrides
    from dmsps.presets import is_planned
    from dmsps.presets import preset as load_preset

    if not isinstance(preset, str) or not preset:
        raise DmspsError("choose a preset (e.g. acdc for 2D slices; dmsps run --help lists them)")
    if is_planned(preset):
        # Planned when the run starts: the settings' names and values are checked here,
        # their fit with the plan then.
        apply_overrides(RunConfig(), settings)
        return
    apply_overrides(load_preset(preset), settings).check()


def fingerprint(preset: str, settings: list[str], scribbles: list[tuple[str, Path | None]]) -> str:
    """What a run trains on, as a short hash: preset, settings and scribble contents."""
    h = hashlib.sha256()
    h.update(preset.encode())
    for s in settings:
        h.update(b"\0" + s.encode())
    for case, path in scribbles:
        h.update(b"\1" + case.encode() + b"\0")
        if path is not None and path.is_file():
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:12]


class TrainingJob:
    """One `dmsps run` subprocess and its streamed output."""

    def __init__(
        self,
        command: list[str],
        run_dir: Path,
        events: EventBus,
        on_success: Callable[[Path], None] | None = None,
    ) -> None:
        self.command = command
        self.run_dir = run_dir
        self.events = events
        self.on_success = on_success
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.state = "starting"
        self.message = ""
        self.returncode: int | None = None
        self.started = time.time()
        self.ended: float | None = None
        self._cancelled = False
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def to_json(self) -> dict:
        return {
            "state": self.state,
            "run_dir": str(self.run_dir),
            "command": self.command,
            "message": self.message,
            "returncode": self.returncode,
            "elapsed_s": round((self.ended or time.time()) - self.started, 1),
            "lines": list(self.lines)[-50:],
        }

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running", "cancelling")

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: signals reach its workers
        )
        self._set_state("running")
        self._thread = threading.Thread(target=self._pump, name="dmsps-train", daemon=True)
        self._thread.start()

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = state
        self.message = message
        self.events.publish("job", self.to_json() | {"lines": []})

    def _emit(self, line: str, progress: bool) -> None:
        line = line.rstrip()
        if not line:
            return
        if progress and self.lines and self.lines[-1].startswith("\r"):
            self.lines[-1] = "\r" + line
        else:
            self.lines.append(("\r" if progress else "") + line)
        self.events.publish("log", {"line": line, "progress": progress})

    def _pump(self) -> None:
        """Read the merged output; tqdm's carriage-return updates become progress lines,
        at most a few per second."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buffer = b""
        last_progress = 0.0
        pending_progress = ""
        while True:
            chunk = os.read(fd, 8192)
            if not chunk:
                break
            buffer += chunk
            while True:
                match = re.search(rb"[\r\n]", buffer)
                if match is None:
                    break
                end = match.start()
                piece = buffer[:end].decode("utf-8", "replace")
                sep = buffer[end : end + 1]
                buffer = buffer[end + 1 :]
                if sep == b"\r":
                    pending_progress = piece or pending_progress
                    now = time.monotonic()
                    if now - last_progress > 0.5 and pending_progress:
                        self._emit(pending_progress, True)
                        pending_progress, last_progress = "", now
                else:
                    if pending_progress and not piece:
                        self._emit(pending_progress, True)
                    pending_progress = ""
                    self._emit(piece, False)
            if len(buffer) > 1 << 16:  # a very long line without an end: show it anyway
                self._emit(buffer.decode("utf-8", "replace"), False)
                buffer = b""
        if buffer:
            self._emit(buffer.decode("utf-8", "replace"), False)
        code = self._proc.wait()
        self.returncode = code
        self.ended = time.time()
        if self._cancelled:
            self._set_state("cancelled", "press Train again to continue this run")
        elif code == 0:
            message = ""
            if self.on_success is not None:
                try:
                    self.on_success(self.run_dir)
                    message = "the new model is loaded"
                except Exception as exc:  # the job is over whatever the model says
                    message = f"the model could not be loaded: {exc}"
            self._set_state("finished", message)
        else:
            last = next((ln.lstrip("\r") for ln in reversed(self.lines) if ln.strip()), "")
            self._set_state("failed", f"dmsps run stopped with exit code {code}: {last}")

    def cancel(self, wait: float = 20.0) -> None:
        """Ctrl-C to the job's process group; SIGTERM, then SIGKILL if it does not stop."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._cancelled = True
        self._set_state("cancelling", "stopping the run (it can be resumed)")
        for sig, grace in ((signal.SIGINT, wait), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class JobManager:
    """Starts, reports and cancels the one training job of a server."""

    def __init__(
        self,
        data_root: Path,
        runs_root: Path,
        events: EventBus,
        scribble_files: Callable[[], list[tuple[str, Path | None]]],
        on_success: Callable[[Path], None] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.data_root = data_root
        self.runs_root = runs_root
        self.events = events
        self.scribble_files = scribble_files
        self.on_success = on_success
        self.python = python
        self.job: TrainingJob | None = None
        self._lock = threading.Lock()

    def status(self) -> dict | None:
        return None if self.job is None else self.job.to_json()

    def command(self, preset: str, settings: list[str], run_dir: Path) -> list[str]:
        cmd = [self.python, "-m", "dmsps.cli", "run", str(self.data_root)]
        cmd += ["--out", str(run_dir), "--preset", preset]
        for s in settings:
            cmd += ["--set", s]
        return cmd

    def start(self, preset: str, settings_text: str | list | None) -> dict:
        settings = parse_settings(settings_text)
        check_run_settings(preset, settings)
        with self._lock:
            if self.job is not None and self.job.running:
                from dmsps.annotate.workspace import RequestError

                raise RequestError(
                    "a training job is already running; cancel it or wait for it to finish", 409
                )
            run_dir = (
                self.runs_root / f"{preset}-{fingerprint(preset, settings, self.scribble_files())}"
            )
            self.job = TrainingJob(
                self.command(preset, settings, run_dir), run_dir, self.events, self.on_success
            )
            self.job.start()
            return self.job.to_json()

    def cancel(self) -> dict | None:
        job = self.job
        if job is not None and job.running:
            threading.Thread(target=job.cancel, name="dmsps-cancel", daemon=True).start()
        return self.status()

    def close(self, wait: float = 10.0) -> None:
        """Stop a running job (the server is stopping): Ctrl-C, then harder."""
        job = self.job
        if job is not None and job.running:
            job.cancel(wait)
            job.join(5.0)
