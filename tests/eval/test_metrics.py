"""Dice / HD95 / ASD on hand-computed cases, against MONAI, and `dmsps evaluate` end to end."""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dmsps.cli import main
from dmsps.data.layout import Dataset
from dmsps.eval.evaluation import evaluate_folders, format_table
from dmsps.eval.metrics import ClassMetrics, evaluate_case, summarise
from dmsps.io.nifti import Geometry, save_volume

SPACING = (3.0, 1.0, 2.0)  # (sz, sy, sx) mm: all different, so a swapped axis shows


def shifted_cubes() -> tuple[np.ndarray, np.ndarray]:
    """GT: a 3x3x3 cube at z, y, x in 2..4; pred: the same cube moved +1 voxel along x.

    Hand computation with spacing (sz, sy, sx) = (3, 1, 2) mm:
    * Dice: overlap 3*3*2 = 18 voxels, sizes 27 + 27 -> 36/54 = 2/3.
    * Surfaces: each cube minus its centre voxel, 26 voxels.
      pred->gt: the 9 pred voxels at x=5 are 1 voxel (2 mm along x) from the gt face at
      x=4; pred voxel (3,3,3) is the gt centre, whose nearest gt surface voxel is a y
      neighbour, 1 mm away; the other 16 pred surface voxels are gt surface voxels: 0 mm.
      gt->pred is the mirror image: again 16 x 0, 1 x 1 mm, 9 x 2 mm.
    * HD95: the 95th percentile of 26 sorted values sits at position 0.95 * 25 = 23.75,
      between the 24th and 25th values, both 2 mm (values 17..25 are 2) -> 2 mm.
    * ASD: (1 + 9 * 2) / 26 in each direction, pooled: 38 / 52 = 19/26 mm.
    """
    gt = np.zeros((7, 7, 8), np.uint8)
    gt[2:5, 2:5, 2:5] = 1
    pred = np.zeros_like(gt)
    pred[2:5, 2:5, 3:6] = 1
    return pred, gt


def test_identical_masks_are_perfect():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=(4, 12, 12))
    result = evaluate_case(labels, labels.copy(), SPACING, 3)
    assert set(result) == {1, 2}  # background is not scored
    for m in result.values():
        assert (m.dice, m.hd95, m.asd) == (1.0, 0.0, 0.0)


def test_shifted_cube_with_anisotropic_spacing():
    pred, gt = shifted_cubes()
    m = evaluate_case(pred, gt, SPACING, 2)[1]
    assert m.dice == pytest.approx(2 / 3)
    assert m.hd95 == pytest.approx(2.0)
    assert m.asd == pytest.approx(19 / 26)
    # Reversed spacing (a wrong axis order) moves the shift onto the 3 mm axis.
    assert evaluate_case(pred, gt, SPACING[::-1], 2)[1].hd95 == pytest.approx(3.0)


def test_hd95_is_the_max_of_the_directed_percentiles():
    """A 10-voxel line, and a prediction with one extra voxel 5 voxels beyond its end.

    One slice, so every mask voxel is a surface voxel. Spacing along x is 2 mm.
    pred->gt: 10 x 0 mm and 1 x 10 mm; P95 at position 0.95 * 10 = 9.5 -> 5 mm.
    gt->pred: 10 x 0 mm -> 0 mm. HD95 = max(5, 0) = 5 mm (a pooled percentile, as in
    medpy, would give 0: position 0.95 * 20 = 19 of 21 sorted values is still 0).
    ASD = 10 / 21 mm; Dice = 2 * 10 / (11 + 10) = 20/21.
    """
    gt = np.zeros((1, 3, 20), np.uint8)
    gt[0, 1, 0:10] = 1
    pred = gt.copy()
    pred[0, 1, 14] = 1
    m = evaluate_case(pred, gt, (1.0, 1.0, 2.0), 2)[1]
    assert m.hd95 == pytest.approx(5.0)
    assert m.asd == pytest.approx(10 / 21)
    assert m.dice == pytest.approx(20 / 21)


def test_empty_mask_conventions():
    gt = np.zeros((3, 8, 8), np.uint8)
    gt[1, 2:5, 2:5] = 1
    pred = np.zeros_like(gt)
    result = evaluate_case(pred, gt, SPACING, 4)
    missed = result[1]  # in gt, not predicted
    assert missed.dice == 0.0 and math.isnan(missed.hd95) and math.isnan(missed.asd)
    assert result[2] == ClassMetrics(1.0, 0.0, 0.0)  # absent in both: correct
    spurious = evaluate_case(gt, pred, SPACING, 2)[1]  # predicted, not in gt
    assert spurious.dice == 0.0 and math.isnan(spurious.hd95) and math.isnan(spurious.asd)


def test_medpy_convention_hand_cases():
    """The authors' test scripts (medpy): pooled HD95, directed ASD, zeros when empty."""
    # The line case above: pooled, position 0.95 * 20 = 19 of 21 sorted values is 0 mm.
    # medpy's ASD is pred->gt only: 10 mm over 11 surface voxels.
    gt = np.zeros((1, 3, 20), np.uint8)
    gt[0, 1, 0:10] = 1
    pred = gt.copy()
    pred[0, 1, 14] = 1
    m = evaluate_case(pred, gt, (1.0, 1.0, 2.0), 2, convention="medpy")[1]
    assert (m.dice, m.hd95) == (pytest.approx(20 / 21), 0.0)
    assert m.asd == pytest.approx(10 / 11)
    # Shifted cubes: 52 pooled distances, the top 18 are 2 mm -> HD95 2; ASD 19/26 per side.
    cubes = evaluate_case(*shifted_cubes(), SPACING, 2, convention="medpy")[1]
    assert (cubes.hd95, cubes.asd) == (pytest.approx(2.0), pytest.approx(19 / 26))
    # Empty in either (or both): all three are 0, never undefined.
    empty = np.zeros_like(gt)
    for p, g in ((empty, gt), (gt, empty), (empty, empty)):
        assert evaluate_case(p, g, (1.0, 1.0, 2.0), 2, convention="medpy")[1] == ClassMetrics(
            0.0, 0.0, 0.0
        )
    with pytest.raises(ValueError, match="monai, medpy"):
        evaluate_case(pred, gt, (1.0, 1.0, 2.0), 2, convention="nnunet")


def test_rejects_bad_input():
    labels = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        evaluate_case(labels, np.zeros((2, 4, 5), np.uint8), SPACING, 2)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        evaluate_case(labels + 2, labels, SPACING, 2)
    with pytest.raises(ValueError, match="non-integer"):
        evaluate_case(labels + 0.5, labels, SPACING, 2)
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(labels, labels, (1.0, 1.0), 2)


def random_labels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Blobby 3-class label maps that often touch the border (the crop's hard case)."""
    smooth = ndimage.gaussian_filter(rng.normal(size=(2, *shape)), sigma=(0, 1, 2, 2))
    labels = np.zeros(shape, np.uint8)
    labels[smooth[0] > 0.15] = 1
    labels[smooth[1] > 0.25] = 2
    return labels


def test_matches_monai_on_random_cases():
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(6):
        shape = (5, 22, 26)
        spacing = tuple(float(s) for s in rng.uniform(0.5, 4.0, size=3))
        pred, gt = random_labels(rng, shape), random_labels(rng, shape)
        ours = evaluate_case(pred, gt, spacing, 3)

        def onehot(x):
            return torch.from_numpy(np.stack([x == c for c in range(3)])[None].astype(np.float32))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd = monai_metrics.compute_hausdorff_distance(
                onehot(pred), onehot(gt), percentile=95, spacing=spacing
            )[0]
            asd = monai_metrics.compute_average_surface_distance(
                onehot(pred), onehot(gt), symmetric=True, spacing=spacing
            )[0]
        for c in (1, 2):
            if not (pred == c).any() or not (gt == c).any():
                continue  # MONAI's empty-mask results differ by design (see metrics.py)
            assert ours[c].hd95 == pytest.approx(float(hd[c - 1]), rel=1e-5, abs=1e-5)
            assert ours[c].asd == pytest.approx(float(asd[c - 1]), rel=1e-5, abs=1e-5)
            compared += 1
    assert compared >= 8


def test_fast_on_a_typical_volume():
    """10 x 256 x 256 with 3 foreground classes; takes ~0.05 s, so 2 s is a loose bound."""
    zz, yy, xx = np.mgrid[:10, :256, :256]

    def ball(c, r):
        return ((zz - 5) * 5) ** 2 + (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r * r

    gt = np.zeros((10, 256, 256), np.uint8)
    pred = np.zeros_like(gt)
    for label, (c, r, c2, r2) in enumerate(
        [((128, 128), 60, (130, 126), 58), ((128, 128), 35, (129, 128), 37)], start=1
    ):
        gt[ball(c, r)], pred[ball(c2, r2)] = label, label
    gt[ball((60, 60), 20)], pred[ball((62, 58), 22)] = 3, 3
    start = time.perf_counter()
    result = evaluate_case(pred, gt, (5.0, 1.5, 1.5), 4)
    assert time.perf_counter() - start < 2.0
    assert all(0.8 < m.dice < 1 and 0 < m.hd95 < 10 for m in result.values())


def test_summarise_excludes_undefined_and_counts_them():
    rows = [
        {1: ClassMetrics(0.8, 2.0, 1.0), 2: ClassMetrics(0.6, 4.0, 2.0)},
        {1: ClassMetrics(1.0, 0.0, 0.0), 2: ClassMetrics(0.0, math.nan, math.nan)},
    ]
    s = summarise(rows, ["background", "RV", "LV"])
    rv, lv = s["classes"]
    assert (rv["name"], lv["name"], s["cases"]) == ("RV", "LV", 2)
    assert rv["dice"] == {"mean": pytest.approx(0.9), "std": pytest.approx(0.1), "n": 2}
    assert lv["hd95"] == {"mean": 4.0, "std": 0.0, "n": 1}
    assert (rv["undefined"], lv["undefined"]) == (0, 1)
    # Per-case foreground means: dice 0.7 and 0.5; hd95 3.0 and 0.0 (LV undefined).
    fg = s["foreground_mean"]
    assert fg["dice"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1), "n": 2}
    assert fg["hd95"] == {"mean": pytest.approx(1.5), "std": pytest.approx(1.5), "n": 2}
    table = format_table(s)
    assert "RV" in table and "4.00 ± 0.00 (n=1)" in table and "LV 1" in table
    json.dumps(s, allow_nan=False)  # JSON-ready: no NaN anywhere


# --- the command line ----------------------------------------------------------------------
def write_labels(folder: Path, name: str, labels: np.ndarray, spacing=SPACING) -> Path:
    path = folder / f"{name}.nii.gz"
    save_volume(path, labels, Geometry.from_spacing(labels.shape, spacing), np.uint8)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """pred/ and gt/ with case 'a' (shifted cubes) and case 'b' (a perfect prediction)."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    pred, gt = shifted_cubes()
    write_labels(pred_dir, "a", pred)
    write_labels(gt_dir, "a", gt)
    write_labels(pred_dir, "b", gt)
    write_labels(gt_dir, "b", gt)
    return pred_dir, gt_dir


def test_cli_end_to_end(folders, capsys):
    pred_dir, gt_dir = folders
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--class-names", "cube"]) == 0
    out = pred_dir.parent / "pred_metrics"  # the default: beside PRED
    assert read_csv(out / "metrics.csv") == [
        {"case": "a", "class": "cube", "dice": "0.666667", "hd95": "2.000000", "asd": "0.730769"},
        {"case": "b", "class": "cube", "dice": "1.000000", "hd95": "0.000000", "asd": "0.000000"},
    ]
    summary = json.loads((out / "summary.json").read_text())
    cube = summary["classes"][0]
    assert cube["dice"]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert cube["hd95"]["mean"] == pytest.approx(1.0)
    rows = read_csv(out / "summary.csv")
    assert [r["class"] for r in rows] == ["cube", "foreground_mean"]
    assert float(rows[0]["asd_mean"]) == pytest.approx(19 / 52, abs=1e-6)
    captured = capsys.readouterr()
    assert "cube" in captured.out and "HD95 (mm)" in captured.out
    assert sorted(p.name for p in gt_dir.iterdir()) == ["a.nii.gz", "b.nii.gz"]


def test_cli_both_conventions_are_written_and_named(folders, capsys, tmp_path):
    pred_dir, gt_dir = folders
    # Case b predicts nothing where the ground truth has the cube.
    write_labels(pred_dir, "b", np.zeros_like(shifted_cubes()[1]))
    out = tmp_path / "both"
    args = ["evaluate", str(pred_dir), str(gt_dir), "--convention", "both", "--out", str(out)]
    assert main(args) == 0
    ours = json.loads((out / "summary.json").read_text())
    medpy = json.loads((out / "summary_medpy.json").read_text())
    assert (ours["conventions"]["name"], medpy["conventions"]["name"]) == ("monai", "medpy")
    # Ours leaves b's undefined HD95 out; medpy counts it as 0 and halves the mean.
    assert ours["classes"][0]["hd95"] == {"mean": 2.0, "std": 0.0, "n": 1}
    assert medpy["classes"][0]["hd95"]["mean"] == pytest.approx(1.0)
    assert medpy["classes"][0]["undefined"] == 0
    assert read_csv(out / "metrics_medpy.csv")[1]["hd95"] == "0.000000"
    printed = capsys.readouterr().out
    assert "monai convention" in printed and "medpy convention" in printed
    with pytest.raises(SystemExit) as bad:
        main(["evaluate", str(pred_dir), str(gt_dir), "--convention", "x"])
    assert bad.value.code == 2


def test_spacing_comes_from_the_ground_truth(folders, capsys, tmp_path):
    pred_dir, gt_dir = folders
    write_labels(pred_dir, "a", shifted_cubes()[0], spacing=(1.0, 1.0, 1.0))
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--out", str(tmp_path / "m")]) == 0
    assert "a.nii.gz: spacing (1.0, 1.0, 1.0) differs" in capsys.readouterr().err
    assert read_csv(tmp_path / "m" / "metrics.csv")[0]["hd95"] == "2.000000"  # gt's 2 mm


def test_cli_shape_mismatch_names_the_file(folders, capsys):
    pred_dir, _ = folders
    write_labels(pred_dir, "b", np.zeros((7, 7, 9), np.uint8))
    assert main(["evaluate", str(pred_dir), str(folders[1])]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar, one line for the error
    assert last.startswith("dmsps evaluate: error: ") and "b.nii.gz" in last and "shape" in last


def test_cli_missing_cases(folders, capsys, tmp_path):
    pred_dir, gt_dir = folders
    (gt_dir / "b.nii.gz").rename(tmp_path / "b.nii.gz")
    write_labels(gt_dir, "c", shifted_cubes()[1])
    assert main(["evaluate", str(pred_dir), str(gt_dir)]) == 2
    err = capsys.readouterr().err
    assert "without ground truth: b" in err and "without prediction: c" in err
    out = tmp_path / "m"
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--allow-missing", "--out", str(out)]) == 0
    assert [r["case"] for r in read_csv(out / "metrics.csv")] == ["a"]


def test_cli_refuses_bad_output_and_labels(folders, capsys):
    pred_dir, gt_dir = folders
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--out", str(gt_dir / "m")]) == 2
    assert "inside an input folder" in capsys.readouterr().err
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--classes", "1"]) == 2
    write_labels(pred_dir, "a", np.full((7, 7, 8), 3, np.uint8))
    assert main(["evaluate", str(pred_dir), str(gt_dir), "--classes", "2"]) == 2
    err = capsys.readouterr().err
    assert "a.nii.gz" in err and "outside 0..1" in err


def test_dataset_folder_as_ground_truth(tiny_dataset: Path, tmp_path: Path):
    """Predicting the test split is complete: training cases are not reported missing."""
    ds = Dataset(tiny_dataset)
    test_cases = ds.split("test")
    pred_dir = tmp_path / "preds"
    pred_dir.mkdir()
    for case in test_cases:
        shutil.copy(ds.paths(case).label, pred_dir / f"{case}.nii.gz")
    summary = evaluate_folders(pred_dir, tiny_dataset, None, progress=False)
    assert [c["name"] for c in summary["classes"]] == ["RV", "Myo", "LV"]
    assert summary["cases"] == len(test_cases)
    assert summary["foreground_mean"]["dice"]["mean"] == 1.0
    assert (tmp_path / "preds_metrics" / "summary.json").is_file()
    (pred_dir / f"{test_cases[0]}.nii.gz").unlink()
    with pytest.raises(Exception, match=f"without prediction: {test_cases[0]}"):
        evaluate_folders(pred_dir, tiny_dataset, tmp_path / "m", progress=False)
