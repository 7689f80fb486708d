"""Interrupted commands never lose work or leave nonsense behind.

Each test runs the real command line in a subprocess on the tiny dataset, interrupts it
(SIGKILL: a crash, an out-of-memory kill, a power cut; SIGINT: Ctrl-C) and reruns it.
The rerun must finish with exactly the files of an uninterrupted run, and at no point may
an interruption leave a visible file that does not load (writes go through hidden
temporaries that are renamed into place, see dmsps.io.atomic).

Kill points are drawn from seeded ``random.Random`` generators, so every run waits for
the same iteration; how far a process gets between the wait and the signal depends on
timing, so the checks hold wherever the signal lands.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from dmsps.errors import DmspsError
from dmsps.models.checkpoint import load_checkpoint
from tests.conftest import make_tiny_dataset

CLI = [sys.executable, "-m", "dmsps.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TIMEOUT_S = 120  # for any one command; they take seconds
ITERATIONS = 12
TRAIN = [
    "--preset", "demo", "--iterations", str(ITERATIONS), "--val-interval", "3",
    "--batch-size", "2", "--patch-size", "32", "--features", "4,8,16,32,64",
    "--device", "cpu", "--threads", "1", "--log-interval", "1", "--quiet",
]  # fmt: skip
STAGE = {
    "val_interval": 3,
    "batch_size": 2,
    "patch_size": 32,
    "features": "4,8,16,32,64",
    "device": "cpu",
    "threads": 1,
    "log_interval": 1,
}
RUN = ["--preset", "demo", "--quiet"]
for _stage, _iterations in (("stage1", ITERATIONS), ("stage2", 6)):
    for _key, _value in {**STAGE, "iterations": _iterations}.items():
        RUN += ["--set", f"{_stage}.{_key}={_value}"]


# --- running and interrupting commands -----------------------------------------------------
def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Command:
    """One ``dmsps`` process; its output goes to files (a full pipe would block it)."""

    def __init__(self, args: list, logs: Path, prefix: list[str] | None = None) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        n = len(list(logs.glob("*.out")))
        self.out, self.err = logs / f"{n}.out", logs / f"{n}.err"
        self.args = [str(a) for a in args]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                (prefix or CLI) + self.args,
                stdout=out,
                stderr=err,
                env=ENV,
                # A shell starts background jobs with Ctrl-C ignored, and the child would
                # inherit that: give it the default, as a terminal would.
                preexec_fn=_default_sigint,
            )

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def describe(self) -> str:
        return (
            f"`dmsps {' '.join(self.args)}` (exit {self.proc.poll()})\n"
            f"stdout:\n{self.out.read_text()[-2000:]}\nstderr:\n{self.stderr[-2000:]}"
        )

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
        """Poll ``condition`` every millisecond or so; fail clearly on timeout or exit."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None and not condition():
                pytest.fail(f"exited before {what}: {self.describe()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"no {what} after {timeout:.0f} s: {self.describe()}")
            time.sleep(0.001)

    def signal(self, sig: int) -> int:
        """Send ``sig`` (if still running) and return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.finish()

    def finish(self) -> int:
        try:
            return self.proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"still running after {TIMEOUT_S} s: {self.describe()}")


def dmsps(logs: Path, *args) -> Command:
    """Run to completion; it must succeed."""
    cmd = Command(list(args), logs)
    code = cmd.finish()
    assert code == 0, cmd.describe()
    assert "Traceback" not in cmd.stderr, cmd.describe()
    return cmd


# --- reading what the commands wrote -------------------------------------------------------
def logged_iterations(path: Path) -> list[int]:
    """Iterations in a log.csv, complete lines only (it may be being written)."""
    if not path.is_file():
        return []
    lines = path.read_text().split("\n")[1:-1]  # header; the last piece has no newline yet
    return [int(line.split(",", 1)[0]) for line in lines if line]


def logged_at_least(path: Path, iteration: int) -> Callable[[], bool]:
    return lambda: max(logged_iterations(path), default=0) >= iteration


def visible(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))


def temporaries(folder: Path) -> list[Path]:
    """The hidden temporaries of dmsps.io.atomic (``.NAME.XXXX.tmp[.ext]``) below folder."""
    return sorted(p for p in folder.rglob(".*") if ".tmp" in p.name)


def check_checkpoints(run: Path) -> list[str]:
    """Every visible file in checkpoints/ loads; only atomic temporaries are hidden."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    for p in folder.iterdir():
        if p.name.startswith("."):
            assert ".tmp" in p.name, f"unexpected hidden file {p}"
        else:
            load_checkpoint(p)  # raises on a truncated or corrupt file
    return [p.name for p in visible(folder)]


def check_log(run: Path, iterations: int) -> None:
    with open(run / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = [int(r["iteration"]) for r in rows]
    assert got == list(range(1, iterations + 1)), f"{run}/log.csv: iterations {got}"
    assert all(r["loss"] not in ("", None) for r in rows), "a row without its loss"


def assert_same(a, b, where: str = "") -> None:
    """Equal structure, every tensor ``torch.equal``, every other value ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=str) == sorted(b, key=str), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def same_checkpoints(run: Path, reference: Path, folders: tuple[Path, Path] | None = None):
    """last.pt identical in every tensor (weights, optimiser, RNG), best.pt's weights too.

    ``folders`` (run's, reference's): paths below them in the training settings (a
    pipeline's cache, stage-1 checkpoint and seeds) are compared relative to them.
    """
    last = load_checkpoint(run / "checkpoints/last.pt")
    ref_last = load_checkpoint(reference / "checkpoints/last.pt")
    for ckpt, folder in zip((last, ref_last), folders or (), strict=False):
        settings = ckpt["meta"]["train_config"]
        for key, value in settings.items():
            if isinstance(value, str) and value.startswith(str(folder)):
                settings[key] = "RUN" + value[len(str(folder)) :]
    assert_same(last, ref_last, "last.pt")
    best = load_checkpoint(run / "checkpoints/best.pt")
    ref_best = load_checkpoint(reference / "checkpoints/best.pt")
    assert best["iteration"] == ref_best["iteration"]
    assert_same(best["model"], ref_best["model"], "best.pt/model")


def same_niftis(folder: Path, reference: Path, pattern: str = "*.nii.gz") -> list[str]:
    names = [p.name for p in visible(reference, pattern)]
    assert names and [p.name for p in visible(folder, pattern)] == names, folder
    for name in names:
        a = np.asarray(nib.load(folder / name).dataobj)
        b = np.asarray(nib.load(reference / name).dataobj)
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{folder / name} differs"
    return names


# --- shared inputs and uninterrupted references --------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("interruptions")


@pytest.fixture(scope="module")
def tiny(work) -> Path:
    """The ``tiny_dataset`` fixture's dataset, made once for the module."""
    return make_tiny_dataset(work / "tiny")


@pytest.fixture(scope="module")
def trained(work, tiny) -> Path:
    """An uninterrupted training run (also the stage-1 model of expand and predict)."""
    out = work / "reference-train"
    dmsps(work / "logs", "train", tiny, "--out", out, *TRAIN)
    check_log(out, ITERATIONS)
    return out


# --- dmsps train ---------------------------------------------------------------------------
KILL_POINTS = {
    # the iteration log.csv must show before the kill (validation at 3, 6, 9, 12)
    "before-first-validation": random.Random("kill-early").randint(1, 2),
    "between-validations": random.Random("kill-mid").randint(4, 8),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkilled_training_resumes_to_the_same_weights(tiny, trained, tmp_path, point):
    out, logs = tmp_path / "run", tmp_path / "logs"
    cmd = Command(["train", tiny, "--out", out, *TRAIN], logs)
    cmd.wait_for(
        f"iteration {KILL_POINTS[point]} in log.csv",
        logged_at_least(out / "log.csv", KILL_POINTS[point]),
    )
    assert cmd.signal(signal.SIGKILL) == -signal.SIGKILL, "finished before the kill"
    saved = check_checkpoints(out)
    # The kill landed where intended: before any last.pt, or with one between validations.
    assert ("last.pt" in saved) == (point == "between-validations"), saved
    assert not (out / "final.json").exists()

    dmsps(logs, "train", tiny, "--out", out, *TRAIN, "--resume")
    assert (out / "final.json").is_file()
    assert check_checkpoints(out) == ["best.pt", "last.pt"]
    assert not temporaries(out), temporaries(out)
    check_log(out, ITERATIONS)
    same_checkpoints(out, trained)


def test_sigint_stops_training_cleanly_and_resumes_to_the_same_weights(tiny, trained, tmp_path):
    out, logs = tmp_path / "run", tmp_path / "logs"
    cmd = Command(["train", tiny, "--out", out, *TRAIN], logs)
    at = random.Random("ctrl-c").randint(4, 8)
    cmd.wait_for(f"iteration {at} in log.csv", logged_at_least(out / "log.csv", at))
    code = cmd.signal(signal.SIGINT)
    assert code > 0, f"not a handled, failed exit: {cmd.describe()}"  # 130 from dmsps.cli
    lines = cmd.stderr.strip().splitlines()
    assert lines == ["dmsps train: interrupted; rerun the same command to resume"], cmd.describe()
    assert not (out / "final.json").exists()
    check_checkpoints(out)
    stopped = load_checkpoint(out / "checkpoints/last.pt")["iteration"]
    # Ctrl-C saves the iteration it stopped at, not only the last validated one.
    assert stopped >= at and stopped == max(logged_iterations(out / "log.csv"))

    dmsps(logs, "train", tiny, "--out", out, *TRAIN, "--resume")
    check_log(out, ITERATIONS)
    same_checkpoints(out, trained)
    assert not temporaries(out), temporaries(out)


# Writes the n-th file whose temporary starts with PREFIX in half (torch.save for
# checkpoints, nibabel.save for NIfTIs), says so in a marker file and waits to be killed.
HALF_WRITE = """
import sys, time
from pathlib import Path
import nibabel, torch
from dmsps.cli import main

marker, prefix, nth, argv = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
seen = []

def halve(real):
    def save(obj, f, *args, **kwargs):
        name = Path(f).name
        if name.startswith(prefix) and ".tmp" in name:
            seen.append(f)
            if len(seen) == nth:
                real(obj, f, *args, **kwargs)
                data = Path(f).read_bytes()
                Path(f).write_bytes(data[: len(data) // 2])
                marker.write_text(str(f))
                time.sleep(600)
        return real(obj, f, *args, **kwargs)
    return save

torch.save = halve(torch.save)
nibabel.save = halve(nibabel.save)
sys.exit(main(argv))
"""


def kill_while_writing(args: list, logs: Path, prefix: str, nth: int) -> Path:
    """Run, SIGKILL while the ``nth`` file starting with ``prefix`` is half written;
    return that hidden temporary."""
    marker = logs / "writing"
    cmd = Command([marker, prefix, nth, *args], logs, prefix=[sys.executable, "-c", HALF_WRITE])
    # The marker may be seen between its creation and its text: wait for the text.
    cmd.wait_for(f"a half-written {prefix}* file", lambda: marker.is_file() and marker.read_text())
    assert cmd.signal(signal.SIGKILL) == -signal.SIGKILL, cmd.describe()
    half = Path(marker.read_text())
    assert half.is_file() and half.name.startswith("."), half
    return half


def kill_after_outputs(args: list, logs: Path, out: Path, seed: str) -> int:
    """Run, SIGKILL once a seeded number (1 or 2) of label maps are in ``out``; return
    how many there were then."""
    first = random.Random(seed).randint(1, 2)
    cmd = Command(args, logs)
    cmd.wait_for(f"{first} output(s) in {out}", lambda: len(visible(out, "*.nii.gz")) >= first)
    assert cmd.signal(signal.SIGKILL) == -signal.SIGKILL, f"finished first: {cmd.describe()}"
    return len(visible(out, "*.nii.gz"))


def test_kill_while_a_checkpoint_is_written_leaves_no_broken_checkpoint(tiny, trained, tmp_path):
    out, logs = tmp_path / "run", tmp_path / "logs"
    nth = random.Random("half-written").randint(2, 3)  # at iteration 6 or 9
    half = kill_while_writing(["train", tiny, "--out", out, *TRAIN], logs, ".last.pt.", nth)
    with pytest.raises(DmspsError, match="truncated or corrupt"):
        load_checkpoint(half)  # it really is half a checkpoint ...
    assert check_checkpoints(out) == ["best.pt", "last.pt"]  # ... and nothing shows it
    assert load_checkpoint(out / "checkpoints/last.pt")["iteration"] == 3 * (nth - 1)

    dmsps(logs, "train", tiny, "--out", out, *TRAIN, "--resume")
    check_log(out, ITERATIONS)
    same_checkpoints(out, trained)
    assert not temporaries(out), f"left behind: {temporaries(out)}"


# --- dmsps expand and dmsps predict --------------------------------------------------------
@pytest.fixture(scope="module")
def expanded(work, tiny, trained) -> Path:
    out = work / "reference-expand"
    dmsps(work / "logs", "expand", trained / "checkpoints/best.pt", tiny, out, "--quiet")
    return out


@pytest.mark.parametrize("when", ["after-an-output", "while-writing"])
def test_sigkilled_expansion_reruns_to_the_same_seeds(tiny, trained, expanded, tmp_path, when):
    out, logs = tmp_path / "seeds", tmp_path / "logs"
    args = ["expand", trained / "checkpoints/best.pt", tiny, out, "--quiet"]
    if when == "after-an-output":
        assert kill_after_outputs(args, logs, out, "expand") < len(visible(expanded, "*.nii.gz"))
    else:
        half = kill_while_writing(args, logs, ".case", random.Random("expand").randint(2, 3))
        assert not (out / half.name.split(".tmp")[0][1:]).exists()
    assert not (out / "expand_summary.json").exists()
    dmsps(logs, *args)
    same_niftis(out, expanded)
    summary = (out / "expand_summary.json").read_text()
    assert summary == (expanded / "expand_summary.json").read_text()
    assert not temporaries(out), f"left behind: {temporaries(out)}"


PREDICT = ["--split", "train", "--uncertainty", "--device", "cpu", "--quiet"]  # 4 cases


@pytest.fixture(scope="module")
def predicted(work, tiny, trained) -> Path:
    out = work / "reference-predict"
    dmsps(work / "logs", "predict", trained / "checkpoints/best.pt", tiny, out, *PREDICT)
    return out


@pytest.mark.parametrize("when", ["after-an-output", "while-writing"])
def test_sigkilled_prediction_reruns_to_the_same_outputs(tiny, trained, predicted, tmp_path, when):
    out, logs, reference = tmp_path / "pred", tmp_path / "logs", predicted
    args = ["predict", trained / "checkpoints/best.pt", tiny, out, *PREDICT]
    if when == "after-an-output":
        assert kill_after_outputs(args, logs, out, "predict") < len(visible(reference, "*.nii.gz"))
    else:  # the uncertainty map, then the label map of each case
        kill_while_writing(args, logs, ".case", random.Random("predict").randint(2, 3))
    # A label map is written after its uncertainty map: never one without the other.
    for p in visible(out, "*.nii.gz"):
        assert (out / "uncertainty" / p.name).is_file(), p
    dmsps(logs, *args)
    same_niftis(out, reference)
    same_niftis(out / "uncertainty", reference / "uncertainty")
    assert not temporaries(out), f"left behind: {temporaries(out)}"


# --- dmsps run -----------------------------------------------------------------------------
def test_sigkilled_pipeline_reruns_to_the_same_predictions(work, tiny, tmp_path):
    logs = tmp_path / "logs"
    reference = work / "reference-run"  # uninterrupted
    dmsps(logs, "run", tiny, "--out", reference, *RUN)
    out = tmp_path / "run"
    cmd = Command(["run", tiny, "--out", out, *RUN], logs)
    cmd.wait_for("stage 2 to start (stage2/log.csv)", (out / "stage2/log.csv").is_file)
    assert cmd.signal(signal.SIGKILL) == -signal.SIGKILL, "finished before the kill"
    for stage in ("stage1", "stage2"):
        check_checkpoints(out / stage)
    assert (out / "stage1/final.json").is_file() and not (out / "stage2/final.json").exists()
    assert not (out / "results.json").exists()

    dmsps(logs, "run", tiny, "--out", out, *RUN)
    assert (out / "results.json").is_file()
    for stage in ("stage1", "stage2"):
        assert check_checkpoints(out / stage) == ["best.pt", "last.pt"]
        check_log(out / stage, ITERATIONS if stage == "stage1" else 6)
        same_checkpoints(out / stage, reference / stage, (out, reference))
        pred, ref = out / "predictions" / stage, reference / "predictions" / stage
        same_niftis(pred, ref)
        same_niftis(pred / "uncertainty", ref / "uncertainty")
    same_niftis(out / "expand/seeds", reference / "expand/seeds")
    assert not temporaries(out), f"left behind: {temporaries(out)}"
