"""`dmsps annotate`: starts, prints a URL with a token, serves, and stops on Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from tests.support import run_cli


def test_serves_and_stops_cleanly_on_ctrl_c(tiny_dataset, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmsps.cli", "annotate", str(tiny_dataset), "--port", "0",
         "--runs", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url = None
        end = time.monotonic() + 60
        while url is None and time.monotonic() < end:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if found := re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", line):
                url = found.group(0)
        assert url is not None
        base, token = url.split("?token=")
        assert len(token) >= 32
        request = urllib.request.Request(base + "api/info", headers={"X-Dmsps-Token": token})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.loads(reply.read())["dataset"] == "tiny"
        try:
            urllib.request.urlopen(base + "api/info", timeout=30)
            raise AssertionError("served without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, err
    assert "stopped" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_refusals(tiny_dataset, tmp_path, capsys):
    code, text = run_cli(capsys, "annotate", tmp_path / "missing")
    assert code == 2 and "dataset folder not found" in text
    code, text = run_cli(capsys, "annotate", tiny_dataset, "--runs", tiny_dataset / "runs")
    assert code == 2 and "outside the dataset" in text
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, text = run_cli(capsys, "annotate", tiny_dataset, "--port", port)
    assert code == 2 and f"port {port}" in text and "in use" in text
