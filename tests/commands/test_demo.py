"""`dmsps demo`: every task runs end to end (a few iterations), prints the table, resumes."""

from __future__ import annotations

import json

import nibabel as nib
import pytest

from dmsps.commands.demo import _prepare, comparison_table
from tests.support import run_cli

#: A few iterations of each stage: behaviour, not quality.
TINY = [
    "--set", "stage1.iterations=4", "--set", "stage1.val_interval=2",
    "--set", "stage2.iterations=2", "--set", "stage2.val_interval=2",
    "--set", "stage1.batch_size=1", "--set", "stage2.batch_size=1",
]  # fmt: skip


@pytest.mark.parametrize(
    ("task", "classes"),
    [("abdomen", ["liver", "pancreas"]), ("brain", ["tumour_core", "edema"])],
)
def test_3d_demo_end_to_end_and_resume(tmp_path, capsys, task, classes):
    out = tmp_path / task
    argv = ["demo", "--task", task, "--out", out, "--cases", "5", "--device", "cpu", "--quiet"]
    code, text = run_cli(capsys, *argv, *TINY)
    assert code == 0, text
    assert f"DMSPS demo ({task}): 1 synthetic test volumes" in text
    for name in [*classes, "mean"]:
        assert any(line.startswith(name) for line in text.splitlines()), name
    assert (out / "run" / "report" / "index.html").is_file()
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["preset"] == f"demo-{task}"
    # A second run resumes: nothing is retrained and the table is the same.
    code, again = run_cli(capsys, *argv, *TINY)
    assert code == 0
    table = lambda t: [ln for ln in t.splitlines() if ln.startswith(tuple(classes))]  # noqa: E731
    assert table(again) == table(text)


def test_abdomen_phase_reaches_the_source(tmp_path):
    """--phase picks the contrast phase of the synthetic CT: the venous liver is brighter."""
    means = {}
    for phase in ("venous", "unenhanced"):
        _prepare("abdomen", tmp_path / phase, 5, 0, True, phase)
        source = tmp_path / phase / "source"
        image = nib.load(source / "imagesTr" / "word_0001.nii.gz").get_fdata()
        label = nib.load(source / "labelsTr" / "word_0001.nii.gz").get_fdata()
        means[phase] = float(image[label == 1].mean())
    assert means["venous"] > means["unenhanced"] + 30


def test_brain_demo_draws_our_scribble_style(tmp_path):
    """The brain demo's preset and figures were made with our simulator: the demo asks
    for it, although `dmsps import brats2020` draws the authors' style by default."""
    import numpy as np

    from dmsps.data.importers.brats2020 import import_brats2020
    from dmsps.data.layout import Dataset

    data = _prepare("brain", tmp_path / "demo", 5, 0, True, None)
    ours = import_brats2020(
        tmp_path / "demo" / "source", tmp_path / "ours", scribble_style="dmsps", progress=False
    ).out
    case = Dataset(data).split("train")[0]
    np.testing.assert_array_equal(
        Dataset(data).load_scribble(case), Dataset(ours).load_scribble(case)
    )


def test_bad_arguments_fail_before_any_work(tmp_path, capsys):
    for extra, words in (
        (["--cases", "3"], "--cases must be at least 5"),
        (["--set", "stage1.nope=1"], "unknown config field"),
    ):
        out = tmp_path / "demo"
        code, text = run_cli(capsys, "demo", "--task", "brain", "--out", out, *extra)
        assert code == 2 and words in text
        assert not out.exists()


def test_comparison_table_marks_an_undefined_distance_without_a_unit():
    def stage(dice, hd95):
        cls = {"name": "kidney", "dice": {"mean": dice}, "hd95": {"mean": hd95}}
        return {"classes": [cls], "foreground_mean": {"dice": {"mean": dice}, "hd95": None}}

    table = comparison_table({"stage1": stage(0.0, None), "stage2": stage(0.771, 33.99)})
    lines = table.splitlines()
    assert lines[0].startswith("class") and lines[0].rstrip().endswith("HD95 stage 2")
    assert lines[2].split() == ["kidney", "0.000", "0.771", "n/a", "33.99", "mm"]
    assert lines[3].split() == ["mean", "0.000", "0.771", "n/a", "n/a"]
