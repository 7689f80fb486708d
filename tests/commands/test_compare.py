"""`dmsps compare`: methods x seeds trained, evaluated and tabulated; reruns skip; errors early."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from PIL import Image

from tests.support import run_cli

#: A few iterations of each stage on 32 x 32 slices: behaviour, not quality.
TINY = [
    arg
    for stage in ("stage1", "stage2")
    for kv in (
        "iterations=10",
        "val_interval=5",
        "patch_size=32",
        "batch_size=2",
        "features=4,8,16,32,64",
        "device=cpu",
        "threads=1",
    )
    for arg in ("--set", f"{stage}.{kv}")
]


def _compare(capsys, dataset: Path, out: Path, *extra) -> tuple[int, str]:
    argv = ["compare", dataset, "--out", out, "--preset", "demo", *TINY, *extra]
    return run_cli(capsys, *argv)


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    with open(out / "comparison.csv", newline="") as fh:
        return {(r["method"], r["stage"]): r for r in csv.DictReader(fh)}


def _stamps(out: Path) -> dict[str, int]:
    """Modification times of every checkpoint and training summary under OUT/runs."""
    files = [*out.glob("runs/*/*/checkpoints/*.pt"), *out.glob("runs/*/*/final.json")]
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in files}


def test_compare_tabulates_skips_finished_runs_and_adds_stage2(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, text = _compare(capsys, tiny_dataset, out, "--methods", "pce,dmsps", "--seeds", "2")
    assert code == 0, text
    for line in ("[1/4] pce seed 0: training", "[4/4] dmsps seed 1: training"):
        assert line in text
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "dmsps-s0",
        "dmsps-s1",
        "pce-s0",
        "pce-s1",
    ]

    rows = _rows(out)
    assert list(rows) == [("pce", "stage1"), ("dmsps", "stage1")]
    assert all(r["seeds"] == "2" for r in rows.values())
    # The sd is over the two runs' own summaries (sample sd), not over cases.
    runs = [
        json.loads((out / f"runs/dmsps-s{s}/metrics/stage1/summary.json").read_text())
        for s in (0, 1)
    ]
    fg = [r["foreground_mean"]["dice"]["mean"] for r in runs]
    # The CSV holds 6 decimals.
    assert float(rows["dmsps", "stage1"]["dice_mean"]) == pytest.approx(
        statistics.fmean(fg), abs=1e-6
    )
    assert float(rows["dmsps", "stage1"]["dice_std"]) == pytest.approx(
        statistics.stdev(fg), abs=1e-6
    )
    myo = [r["classes"][1]["dice"]["mean"] for r in runs]
    assert float(rows["dmsps", "stage1"]["dice_Myo_std"]) == pytest.approx(
        statistics.stdev(myo), abs=1e-6
    )

    md = (out / "comparison.md").read_text()
    assert "| method | stage | seeds | mean Dice | RV | Myo | LV | HD95 (mm) | train min |" in md
    assert "| pce | 1 | 2 |" in md and "| dmsps | 1 | 2 |" in md
    assert "dmsps compare" in md and "--methods pce,dmsps --seeds 2" in md and "Date: " in md
    with Image.open(out / "comparison.png") as img:
        img.verify()
        assert img.format == "PNG" and img.width >= 400 and img.height >= 300

    # The same command again: every run is finished, nothing is trained or rewritten.
    before = _stamps(out)
    assert len(before) == 4 * 3  # best.pt, last.pt, final.json per run
    code, again = _compare(capsys, tiny_dataset, out, "--methods", "pce,dmsps", "--seeds", "2")
    assert code == 0, again
    assert again.count("finished earlier, skipped") == 4 and "training" not in again
    assert _stamps(out) == before
    assert _rows(out) == rows

    # --stage2 adds expansion + stage 2 to dmsps only, on top of its finished stage 1.
    code, text = _compare(
        capsys, tiny_dataset, out, "--methods", "pce,dmsps", "--seeds", "2", "--stage2", "--quiet"
    )
    assert code == 0, text
    after = _stamps(out)
    assert {k: after[k] for k in before} == before  # stage 1 was not retrained
    for seed in (0, 1):
        assert (out / f"runs/dmsps-s{seed}/stage2/final.json").is_file()
        assert (out / f"runs/dmsps-s{seed}/metrics/stage2/summary.json").is_file()
        assert not (out / f"runs/pce-s{seed}/stage2").exists()
    rows = _rows(out)
    assert list(rows) == [("pce", "stage1"), ("dmsps", "stage1"), ("dmsps", "stage2")]
    assert rows["dmsps", "stage2"]["seeds"] == "2"
    assert "| dmsps | 2 | 2 |" in (out / "comparison.md").read_text()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--methods", "pce,nope"], "unknown method(s) nope in --methods (choose from pce, "),
        (["--methods", "pce", "--seeds", "0"], "--seeds must be at least 1"),
        (["--methods", "pce", "--set", "stage1.seed=3"], "use --seeds"),
        (["--methods", "pce", "--set", "stage1.nope=1"], "unknown config field"),
    ],
)
def test_bad_arguments_fail_before_any_work(tiny_dataset, tmp_path, capsys, extra, words):
    out = tmp_path / "cmp"
    code, text = _compare(capsys, tiny_dataset, out, *extra)
    assert code == 2 and words in text, text
    assert "dmsps compare: error:" in text
    assert not out.exists()


def test_dense_method_without_training_labels_fails_before_training(tiny_dataset, tmp_path, capsys):
    (tiny_dataset / "labelsTr" / "case001.nii.gz").unlink()
    out = tmp_path / "cmp"
    code, text = _compare(capsys, tiny_dataset, out, "--methods", "pce,full")
    assert code == 2, text
    assert "method(s) full need dense labels" in text and "case001" in text
    assert not out.exists()


def test_compare_runs_the_teacher_and_random_walker_baselines(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "cmp"
    methods = "ustm,s2l,random-walker"
    code, text = _compare(capsys, tiny_dataset, out, "--methods", methods, "--quiet")
    assert code == 0, text
    rows = _rows(out)
    assert set(rows) == {(m, "stage1") for m in methods.split(",")}
    for row in rows.values():
        assert 0.0 <= float(row["dice_mean"]) <= 1.0
    walked = sorted((out / "runs" / "random-walker-s0" / "stage1" / "random_walker").iterdir())
    assert walked, "random-walker pseudo-labels written into its run folder"
    teacher = json.loads((out / "runs" / "ustm-s0" / "stage1" / "config.json").read_text())
    assert teacher["method"] == "ustm"
