"""`dmsps import nifti`: users' own NIfTI folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmsps.data.check import check_dataset
from dmsps.data.layout import Dataset
from tests.support import SHAPE, nib_save, random_case, run_cli


def _user_src(root: Path) -> dict[str, tuple]:
    """Two-channel images, labels with mixed suffixes, scribbles with 255 = unannotated."""
    affine = np.diag([0.8, 0.9, 3.0, 1.0])
    arrays = {}
    for i, case in enumerate(["liver_01", "liver_02", "liver_03", "liver_04", "liver_05"]):
        image, label, scribble = random_case(100 + i)
        label = np.minimum(label, 2)  # three classes
        scribble = np.where(scribble == 4, 255, np.minimum(scribble, 2)).astype(np.uint8)
        second = image * 2 + 1
        nib_save(root / "images" / f"{case}_0000.nii.gz", image, affine)
        nib_save(root / "images" / f"{case}_0001.nii.gz", second, affine)
        suffix = "_gt" if i % 2 else ""
        nib_save(root / "labels" / f"{case}{suffix}.nii.gz", label, affine)
        if case != "liver_05":  # no scribble: evaluation only
            nib_save(root / "scribbles" / f"{case}_scribble.nii.gz", scribble, affine)
        arrays[case] = (np.stack([image, second]), label, scribble)
    return arrays


def test_nifti_import(tmp_path: Path, capsys) -> None:
    src = tmp_path / "mine"
    arrays = _user_src(src)
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "nifti", src, out, "--class-names", "background,liver,tumour",
        "--ignore-value", "255", "--channel-names", "T1,T2", "--val-fraction", "0.25",
    )  # fmt: skip
    assert code == 0, text
    ds = Dataset(out)
    assert ds.meta.class_names == ["background", "liver", "tumour"]
    assert ds.meta.ignore_value == 3 and ds.meta.channel_names == ["T1", "T2"]
    assert ds.split("test") == ["liver_05"]  # no scribble
    assert len(ds.split("val")) == 1 and len(ds.split("train")) == 3
    for case, (image, label, scribble) in arrays.items():
        img, geom = ds.load_image(case)
        np.testing.assert_allclose(img, image, rtol=1e-6)
        np.testing.assert_array_equal(ds.load_label(case), label)
        assert geom.spacing == pytest.approx((3.0, 0.9, 0.8))
        if case != "liver_05":
            np.testing.assert_array_equal(
                ds.load_scribble(case), np.where(scribble == 255, 3, scribble)
            )
    assert check_dataset(out).ok


def test_nifti_single_folder_and_default_classes(tmp_path: Path, capsys) -> None:
    src = tmp_path / "flat"
    for i in range(3):
        image, label, scribble = random_case(i)
        nib_save(src / f"c{i}.nii.gz", image)
        nib_save(src / f"c{i}_label.nii.gz", label)
        nib_save(src / f"c{i}_scribble.nii.gz", scribble.astype(np.uint8))
    nib_save(src / "orphan_gt.nii.gz", np.zeros(SHAPE, np.uint8))
    code, text = run_cli(capsys, "import", "nifti", src, tmp_path / "out")
    assert code == 0, text
    assert "orphan_gt.nii.gz: warning: label matches no image" in text
    ds = Dataset(tmp_path / "out")
    assert ds.meta.class_names == ["background", "class1", "class2", "class3"]
    assert sorted(ds.split("train") + ds.split("val")) == ["c0", "c1", "c2"]


def test_shared_tiny_dataset_is_valid(tiny_dataset: Path) -> None:
    """The fixture other tests train on passes check-data (test cases have no scribble)."""
    report = check_dataset(tiny_dataset)
    assert report.ok, report.problem_lines()


def test_nifti_errors(tmp_path: Path, capsys) -> None:
    src = tmp_path / "mine"
    _user_src(src)
    bad = src / "labels" / "liver_03.nii.gz"
    nib_save(bad, np.zeros((3, 12, 9), np.uint8), np.diag([0.8, 0.9, 3.0, 1.0]))
    args = ["import", "nifti", src, tmp_path / "out", "--class-names", "bg,liver,tumour"]
    code, text = run_cli(capsys, *args, "--ignore-value", "255")
    assert code == 2 and f"{bad}: label shape (3, 12, 9) differs" in text
    nib_save(bad, np.zeros(SHAPE, np.uint8), np.diag([0.8, 0.9, 3.0, 1.0]))
    code, text = run_cli(capsys, *args, "--overwrite")  # 255 is no class and not the ignore value
    assert code == 2 and "scribble values 255" in text
    (src / "images" / "liver_02_0001.nii.gz").unlink()
    code, text = run_cli(capsys, *args, "--ignore-value", "255", "--overwrite")
    assert code == 2 and "liver_02" in text and "channel" in text


def test_nifti_simulated_scribbles(tmp_path: Path, capsys) -> None:
    pytest.importorskip("dmsps.data.simulation")
    src = tmp_path / "mine"
    for i in range(3):
        image, _, _ = random_case(i, (2, 32, 32))
        label = np.zeros((2, 32, 32), np.uint8)
        label[:, 8:24, 8:24] = 1
        nib_save(src / "images" / f"c{i}.nii.gz", image)
        nib_save(src / "labels" / f"c{i}.nii.gz", label)
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "nifti", src, out, "--simulate-scribbles")
    assert code == 0, text
    ds = Dataset(out)
    for case in ds.split("train") + ds.split("val"):
        scribble = ds.load_scribble(case)
        assert scribble is not None and (scribble != 2).any()
        annotated = scribble != 2
        np.testing.assert_array_equal(scribble[annotated], ds.load_label(case)[annotated])


def test_nifti_dense_label_mapping(tmp_path: Path, capsys) -> None:
    """--label-map keeps chosen source labels as chosen classes, in labels and scribbles;
    every other label becomes background."""
    src = tmp_path / "src"
    label = np.zeros(SHAPE, np.uint8)
    label[:, :4] = 8  # becomes class 2
    label[:, 4:6] = 3  # not kept: background
    label[:, 6:8] = 1  # class 1
    scribble = np.full(SHAPE, 255, np.uint8)
    scribble[:, 0] = 8
    scribble[:, 5] = 3
    for i in range(3):
        nib_save(src / "images" / f"c{i}.nii.gz", random_case(i)[0])
        nib_save(src / "labels" / f"c{i}.nii.gz", label)
        nib_save(src / "scribbles" / f"c{i}.nii.gz", scribble)
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "nifti", src, out, "--label-map", "1:1,8:2",
        "--class-names", "background,a,b", "--ignore-value", "255", "--val-fraction", "0",
    )  # fmt: skip
    assert code == 0, text
    ds = Dataset(out)
    lab = ds.load_label("c0")
    assert (lab[:, :4] == 2).all() and (lab[:, 4:6] == 0).all() and (lab[:, 6:8] == 1).all()
    scr = ds.load_scribble("c0")
    assert (scr[:, 0] == 2).all() and (scr[:, 5] == 0).all() and (scr[:, 1] == 3).all()
    assert check_dataset(out).ok
    code, text = run_cli(capsys, "import", "nifti", src, tmp_path / "o2", "--label-map", "1:0")
    assert code == 2 and "--label-map" in text


def test_nifti_simulated_in_the_authors_style(tmp_path: Path, capsys) -> None:
    """--simulate-scribbles --scribble-style authors: the authors' generator, seeded per
    case by --seed, on every N-th slice with --slice-step."""
    from dmsps.data.authors_scribbles import authors_scribble
    from dmsps.data.importers.common import case_seed

    src = tmp_path / "mine"
    labels = {}
    for i in range(3):
        image, label, _ = random_case(10 + i)
        nib_save(src / "images" / f"case{i}_0000.nii.gz", image)
        nib_save(src / "labels" / f"case{i}.nii.gz", label)
        labels[f"case{i}"] = label
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "nifti", src, out, "--simulate-scribbles", "--scribble-style",
        "authors", "--slice-step", "2", "--class-names", "bg,a,b,c", "--seed", "1",
    )  # fmt: skip
    assert code == 0, text
    assert check_dataset(out).ok
    for case, label in labels.items():
        expected = authors_scribble(label, 4, case_seed(1, case), slice_step=2)
        np.testing.assert_array_equal(Dataset(out).load_scribble(case), expected)
