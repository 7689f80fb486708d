"""Training from the page: settings, run folders, one job at a time, streaming, cancel."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from dmsps.annotate.jobs import (
    EventBus,
    JobManager,
    fingerprint,
    interruptible_jobs,
    parse_settings,
)
from dmsps.annotate.workspace import RequestError
from dmsps.errors import DmspsError

#: Two-iteration stages of a tiny network: `dmsps run` end to end in seconds.
TINY_RUN = " ".join(
    f"{stage}.{key}"
    for stage in ("stage1", "stage2")
    for key in (
        "iterations=2",
        "batch_size=2",
        "patch_size=32",
        "val_interval=2",
        "features=4,8,16,32,64",
        "device=cpu",
        "threads=1",
    )
)


def test_settings_are_dotted_pairs_without_spaces():
    assert parse_settings(" stage1.iterations=5  stage2.lr=0.1 ") == [
        "stage1.iterations=5",
        "stage2.lr=0.1",
    ]
    assert parse_settings(["eval_split=val"]) == ["eval_split=val"]
    for bad in ("iterations", "a.b=c;rm", "--out=/tmp", "a.b=c=d", "x=" + "y" * 300):
        with pytest.raises(DmspsError, match=r"section\.field=value"):
            parse_settings(bad)


def test_the_run_folder_follows_what_is_trained(tmp_path):
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    base = fingerprint("acdc", [], [("a", a), ("b", b)])
    assert fingerprint("acdc", [], [("a", a), ("b", b)]) == base
    assert fingerprint("demo", [], [("a", a), ("b", b)]) != base
    assert fingerprint("acdc", ["stage1.iterations=5"], [("a", a), ("b", b)]) != base
    assert fingerprint("acdc", [], [("a", a), ("b", None)]) != base
    b.write_bytes(b"three")
    assert fingerprint("acdc", [], [("a", a), ("b", b)]) != base


class StubJobs(JobManager):
    """Runs a small Python script instead of `dmsps run`."""

    script = ""

    def command(self, preset, settings, run_dir):
        return [sys.executable, "-c", self.script]


def wait(condition, timeout=20.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_job_streams_its_output_and_loads_the_model(tmp_path):
    loaded = []
    events = EventBus()
    seen = events.subscribe()
    jobs = StubJobs(tmp_path / "data", tmp_path / "runs", events, list, loaded.append)
    jobs.script = (
        "import sys, time\n"
        "print('== stage 1', flush=True)\n"
        "for i in range(3):\n"
        "    sys.stderr.write(f'\\rtraining {i}/3'); sys.stderr.flush(); time.sleep(0.3)\n"
        "sys.stderr.write('\\n'); time.sleep(0.5)\n"
        "print('done', flush=True)\n"
    )
    status = jobs.start("demo", "stage1.iterations=3")
    assert status["state"] == "running" and status["run_dir"].startswith(str(tmp_path / "runs"))
    with pytest.raises(RequestError, match="already running") as info:
        jobs.start("demo", "")
    assert info.value.status == 409
    wait(lambda: jobs.status()["state"] == "finished")
    assert loaded == [Path(status["run_dir"])]
    lines = [line.lstrip("\r") for line in jobs.status()["lines"]]
    assert lines[0] == "== stage 1" and lines[-1] == "done"
    assert any(line.startswith("training") for line in lines)
    got = []
    while not seen.empty():
        got.append(seen.get_nowait())
    kinds = [kind for kind, _ in got]
    assert kinds[0] == "job" and kinds[-1] == "job" and "log" in kinds
    assert any(data.get("progress") for kind, data in got if kind == "log")


def _start_and_cancel(tmp_path):
    jobs = StubJobs(tmp_path / "data", tmp_path / "runs", EventBus(), list, None)
    jobs.script = (
        "import sys, time\n"
        "try:\n"  # 'started' inside the try: an interrupt right after it is still caught
        "    print('started', flush=True)\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted; rerun the same command to resume', flush=True)\n"
        "    sys.exit(130)\n"
    )
    jobs.start("demo", None)
    wait(lambda: any("started" in line for line in jobs.status()["lines"]))
    jobs.cancel()
    wait(lambda: jobs.status()["state"] == "cancelled")
    assert jobs.status()["returncode"] == 130
    assert "interrupted" in jobs.status()["lines"][-1]


def test_cancel_stops_the_job(tmp_path):
    # As under a shell with job control (a test runner started with `&` in a script
    # would pass SIGINT ignored on; the next test is that case).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _start_and_cancel(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_server_started_with_ctrl_c_ignored_can_still_cancel_its_jobs(tmp_path):
    # `nohup dmsps annotate ... &` in a script starts the server with SIGINT ignored,
    # which its children would inherit: the cancel would wait for SIGTERM instead.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        interruptible_jobs()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        _start_and_cancel(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_failed_job_says_why(tmp_path):
    jobs = StubJobs(tmp_path / "data", tmp_path / "runs", EventBus(), list, None)
    jobs.script = (
        "import sys; print('dmsps run: error: no scribbles', file=sys.stderr); sys.exit(2)"
    )
    jobs.start("demo", None)
    wait(lambda: jobs.status()["state"] == "failed")
    assert "exit code 2: dmsps run: error: no scribbles" in jobs.status()["message"]


def test_train_from_the_page_runs_dmsps_run_and_loads_the_model(tiny_dataset, serve, tmp_path):
    runs = tmp_path / "runs"
    _, client = serve(tiny_dataset, runs=runs)
    status, reply = client.json("POST", "/api/train", {"preset": "demo", "settings": TINY_RUN})
    assert status == 200, reply
    run_dir = Path(reply["job"]["run_dir"])
    assert run_dir.parent == runs and run_dir.name.startswith("demo-")
    assert reply["job"]["command"][1:4] == ["-m", "dmsps.cli", "run"]

    def finished():
        job = client.json("GET", "/api/job")[1]["job"]
        assert job["state"] not in ("failed", "cancelled"), job
        return job["state"] == "finished"

    wait(finished, 120)
    status, info = client.json("GET", "/api/info")
    assert Path(info["model"]["path"]).is_relative_to(run_dir)
    assert (run_dir / "stage2" / "checkpoints").is_dir()
    status, _, body = client.request("GET", "/api/slice?case=case000&layer=prediction&index=0")
    assert status == 200 and len(body) == 32 * 32
