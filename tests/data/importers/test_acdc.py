"""`dmsps import acdc`: the official ACDC NIfTI release plus scribble files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmsps.data.check import check_dataset
from dmsps.data.layout import Dataset
from tests.support import AFFINE, SHAPE, nib_save, random_case, run_cli


@pytest.fixture
def acdc_src(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple]]:
    src, scribbles = tmp_path / "database" / "training", tmp_path / "scribbles"
    arrays = {}
    for p in range(1, 5):
        patient = f"patient{p:03d}"
        for frame in ("01", "12"):
            case = f"{patient}_frame{frame}"
            image, label, scribble = random_case(p * 10 + int(frame))
            image = (image * 1000).round().astype(np.int16)  # raw MRI-like intensities
            nib_save(src / patient / f"{case}.nii.gz", image)
            nib_save(src / patient / f"{case}_gt.nii.gz", label)
            nib_save(scribbles / f"{case}_scribble.nii.gz", scribble.astype(np.uint8))
            arrays[case] = (image, label, scribble)
        nib_save(src / patient / f"{patient}_4d.nii.gz", np.zeros((2, 3, 4), np.int16))
    return src, scribbles, arrays


def test_acdc_nifti_import(acdc_src, tmp_path: Path, capsys) -> None:
    src, scribbles, arrays = acdc_src
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "acdc", src.parent, out, "--scribbles", scribbles)
    assert code == 0, text
    ds = Dataset(out)
    assert sorted(ds.split("train") + ds.split("val") + ds.split("test")) == sorted(arrays)
    assert len(ds.split("val")) == 2 and len(ds.split("test")) == 2  # one patient each
    for split in ("train", "val", "test"):  # patient-level: both frames in one split
        patients = [c.split("_")[0] for c in ds.split(split)]
        assert all(patients.count(p) == 2 for p in patients)
    for case, (image, label, scribble) in arrays.items():
        img, geom = ds.load_image(case)
        np.testing.assert_array_equal(img[0], image)
        np.testing.assert_array_equal(ds.load_label(case), label)
        np.testing.assert_array_equal(ds.load_scribble(case), scribble)
        np.testing.assert_allclose(geom.affine, AFFINE, atol=1e-5)  # real geometry kept
        np.testing.assert_allclose(geom.spacing, (8.0, 1.4, 1.4), rtol=1e-6)
    assert not any("4d" in p.name for p in out.rglob("*"))
    assert check_dataset(out).ok
    # Same seed, same split; --splits overrides it.
    splits = {"train": ["patient001", "patient002"], "val": ["patient003"], "test": ["patient004"]}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    code, text = run_cli(
        capsys, "import", "acdc", src, tmp_path / "o2", "--scribbles", scribbles,
        "--splits", tmp_path / "splits.json",
    )  # fmt: skip
    assert code == 0, text
    assert Dataset(tmp_path / "o2").split("val") == ["patient003_frame01", "patient003_frame12"]


def test_acdc_nifti_other_unannotated_coding(acdc_src, tmp_path: Path, capsys) -> None:
    """Scribbles with 0 = unannotated and classes shifted by one are converted."""
    src, scribbles, arrays = acdc_src
    for case, (_, _, scribble) in arrays.items():
        shifted = np.where(scribble == 4, 0, scribble + 1).astype(np.uint8)
        nib_save(scribbles / f"{case}_scribble.nii.gz", shifted)
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "acdc", src, out, "--scribbles", scribbles,
        "--scribble-unannotated", "0", "--scribble-map", "1:0,2:1,3:2,4:3",
    )  # fmt: skip
    assert code == 0, text
    ds = Dataset(out)
    for case, (_, _, scribble) in arrays.items():
        np.testing.assert_array_equal(ds.load_scribble(case), scribble)
    code, text = run_cli(
        capsys, "import", "acdc", src, tmp_path / "o2", "--scribbles", scribbles,
        "--scribble-unannotated", "0",
    )  # fmt: skip
    assert code == 2 and "also class 0" in text


def test_acdc_nifti_missing_scribble_and_gt(acdc_src, tmp_path: Path, capsys) -> None:
    src, scribbles, _ = acdc_src
    gone = scribbles / "patient001_frame12_scribble.nii.gz"
    gone.unlink()
    splits = {"train": ["patient001", "patient002", "patient003"], "test": ["patient004"]}
    (tmp_path / "s.json").write_text(json.dumps(splits))
    args = ["import", "acdc", src, tmp_path / "out", "--scribbles", scribbles]
    code, text = run_cli(capsys, *args, "--splits", tmp_path / "s.json")
    assert code == 2 and f"{gone}: missing scribble" in text
    assert not (tmp_path / "out").exists()  # checked before writing anything
    gt = src / "patient002" / "patient002_frame01_gt.nii.gz"
    gt.unlink()
    code, text = run_cli(capsys, *args)
    assert code == 2 and f"{gt}: missing ground truth" in text


def test_acdc_nifti_scribble_grid_mismatch(acdc_src, tmp_path: Path, capsys) -> None:
    src, scribbles, _ = acdc_src
    bad = scribbles / "patient003_frame01_scribble.nii.gz"
    nib_save(bad, np.full(SHAPE, 4, np.uint8), np.diag([1.4, 1.4, 5.0, 1.0]) @ np.eye(4))
    splits = {"train": ["patient001", "patient002", "patient003", "patient004"]}
    (tmp_path / "s.json").write_text(json.dumps(splits))
    code, text = run_cli(
        capsys, "import", "acdc", src, tmp_path / "out", "--scribbles", scribbles,
        "--splits", tmp_path / "s.json",
    )  # fmt: skip
    assert code == 2 and f"{bad}: scribble spacing" in text
