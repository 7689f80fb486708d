"""The HTML report in a real browser: every image loads, curves and worst-first order."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from dmsps.config import apply_overrides
from dmsps.pipeline.report import case_scores, read_log, svg_plot
from dmsps.pipeline.runner import run_pipeline
from dmsps.presets import preset


def _chromium() -> str:
    """Debian's chromium, installed here when absent (CI runs as root with apt)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0 and cmd[1] == "install":
            pytest.skip(f"chromium could not be installed: {done.stderr.strip()[-300:]}")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("apt-get installed no chromium binary")
    return path


@pytest.fixture(scope="module")
def chromium() -> str:
    return _chromium()


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=180)


def _cfg(spatial_dims: int):
    common = ["iterations=4", "val_interval=2", "batch_size=2", "device=cpu", "threads=1"]
    if spatial_dims == 2:
        extra = ["patch_size=32", "features=4,8,16,32,64"]
    else:
        extra = [
            "spatial_dims=3", "patch_size=4,16,16", "features=4,8,16", "norm=instance",
            "activation=relu", "join=concat", "head_kernel=1",
        ]  # fmt: skip
    pairs = [f"{stage}.{kv}" for stage in ("stage1", "stage2") for kv in common + extra]
    return apply_overrides(preset("demo"), pairs)


@pytest.mark.parametrize("dims", [2, 3])
def test_report_loads_every_image_in_a_browser(
    chromium, tiny_dataset, tiny_dataset_3d, tmp_path, dims
):
    dataset = tiny_dataset if dims == 2 else tiny_dataset_3d
    out = tmp_path / "run"
    run_pipeline(dataset, out, _cfg(dims), progress=False, log=lambda *a: None)
    index = out / "report/index.html"
    text = index.read_text()
    assert text.count("<svg class='curve'") == 6  # losses, lr, val Dice for both stages
    assert "data-role='evaluated'" in text and "data-role='training'" in text
    # Worst first: the evaluated cases appear in ascending stage-2 Dice.
    scores = case_scores(out / "metrics/stage2/metrics.csv")
    shown = re.findall(r"<h3>(\w+) \(slice \d+, stage-2 mean Dice", text)
    assert shown and [scores[c] for c in shown] == sorted(scores[c] for c in shown)
    dom = _headless(chromium, "--dump-dom", index.as_uri())
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded, f"the page's load check did not run: {dom.stderr[-500:]}"
    assert int(loaded.group(2)) > 0 and loaded.group(1) == loaded.group(2)
    shot = tmp_path / "report.png"
    _headless(chromium, "--window-size=1200,1600", f"--screenshot={shot}", index.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_a_missing_image_is_seen_as_not_loaded(chromium, tmp_path):
    page = tmp_path / "index.html"
    from dmsps.pipeline.report import _LOAD_CHECK

    page.write_text("<!doctype html><body><img src='nothing.png'>" + _LOAD_CHECK)
    dom = _headless(chromium, "--dump-dom", page.as_uri())
    assert 'data-images-loaded="0/1"' in dom.stdout


def test_curves_from_a_log(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(
        "iteration,loss,sup,lr,val_dice,elapsed_s\n"
        "1,2.0,1.5,0.01,,0.1\n2,1.0,0.5,0.005,0.6,0.2\n3,nan,0.4,0.001,,0.3\n"
    )
    series = read_log(log)
    assert series["loss"] == [(1.0, 2.0), (2.0, 1.0)]  # NaN left out
    assert series["val_dice"] == [(2.0, 0.6)] and "elapsed_s" not in series
    svg = svg_plot("t", {"loss": series["loss"]})
    assert svg.count("<polyline") == 1 and "2 iterations" in svg
    assert "no data" in svg_plot("empty", {})
