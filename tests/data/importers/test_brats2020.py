"""`dmsps import brats2020`: the BraTS 2020 training data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmsps.data.check import check_dataset
from dmsps.data.layout import Dataset
from tests.data.importers.sources import (
    BRATS_CASES,
    BRATS_CROP,
    BRATS_SHAPE,
    brats_case,
    write_brats_source,
)
from tests.support import AFFINE, error_line, nib_save, run_cli

MODALITIES = ("t1", "t1ce", "t2", "flair")


@pytest.fixture
def brats_src(tmp_path: Path) -> Path:
    """The folder the release unpacks to; its parent is passed as SRC in some tests."""
    src = tmp_path / "download" / "MICCAI_BraTS2020_TrainingData"
    write_brats_source(src)
    return src


def test_brats_import(brats_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "brats2020", brats_src.parent, out)
    assert code == 0, text
    report = check_dataset(out)
    assert report.ok and not report.warnings, report.problem_lines()
    ds = Dataset(out)
    assert ds.meta.channel_names == list(MODALITIES)
    assert ds.meta.class_names == ["background", "tumour_core", "edema"]
    assert ds.meta.ignore_value == 3
    # Default 70/15/15 of five cases: at least one val and one test case.
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [3, 1, 1]
    assert sorted(ds.split("train") + ds.split("val") + ds.split("test")) == BRATS_CASES
    (z0, z1), (y0, y1), (x0, x1) = BRATS_CROP
    box = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    for index, case in enumerate(BRATS_CASES):
        images, seg = brats_case(index)
        image, geom = ds.load_image(case)
        label = ds.load_label(case)
        # Cropped to the union of the four sequences' non-zero boxes.
        assert geom.shape == (z1 - z0, y1 - y0, x1 - x0)
        for c, name in enumerate(MODALITIES):
            np.testing.assert_allclose(image[c], images[name][box], rtol=1e-6)
        expected = np.select([seg == 1, seg == 4, seg == 2], [1, 1, 2], 0)
        np.testing.assert_array_equal(label, expected[box])
        # A labelled voxel keeps its world coordinate: the affine moved with the crop.
        np.testing.assert_allclose(geom.affine @ [0, 0, 0, 1], AFFINE @ [x0, y0, z0, 1])
        np.testing.assert_allclose(geom.affine[:3, :3], AFFINE[:3, :3])
        scribble = ds.load_scribble(case)
        if case in ds.split("test"):
            assert scribble is None
        else:  # simulated from the label, every class, every slice
            annotated = scribble != 3
            np.testing.assert_array_equal(scribble[annotated], label[annotated])
            assert set(np.unique(scribble[annotated])) == {0, 1, 2}
            assert annotated.any(axis=(1, 2)).all()


def test_brats_fractions_splits_file_and_slice_step(
    brats_src: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "brats2020", brats_src, out, "--val-fraction", "0.2",
        "--test-fraction", "0.4", "--slice-step", "2", "--seed", "3",
    )  # fmt: skip
    assert code == 0, text
    assert check_dataset(out).ok
    ds = Dataset(out)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [2, 1, 2]
    for case in ds.split("train") + ds.split("val"):
        has = ds.load_scribble(case) != 3
        annotated = has.any(axis=(1, 2))
        assert annotated.sum() == 3 and not (annotated[1:] & annotated[:-1]).any()
    splits = {"train": BRATS_CASES[:3], "val": [BRATS_CASES[3]], "test": [BRATS_CASES[4]]}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    code, text = run_cli(
        capsys, "import", "brats2020", brats_src, tmp_path / "o2",
        "--splits", tmp_path / "splits.json",
    )  # fmt: skip
    assert code == 0, text
    assert Dataset(tmp_path / "o2").splits == splits


def test_brats_scribbles_are_the_authors_style_by_default(
    brats_src: Path, tmp_path: Path, capsys
) -> None:
    """The paper's BraTS scribbles came from the authors' generator, so it draws ours by
    default: on the mapped, uncropped seg, seeded per case; --scribble-style dmsps draws
    our simulator's instead."""
    from dmsps.data.authors_scribbles import authors_scribble
    from dmsps.data.importers.common import case_seed

    splits = {"train": BRATS_CASES[:3], "val": [BRATS_CASES[3]], "test": [BRATS_CASES[4]]}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    out = tmp_path / "out"
    argv = ["import", "brats2020", brats_src, out, "--splits", tmp_path / "splits.json"]
    code, text = run_cli(capsys, *argv, "--seed", "5", "--quiet")
    assert code == 0, text
    (z0, z1), (y0, y1), (x0, x1) = BRATS_CROP
    for index, case in enumerate(BRATS_CASES[:4]):
        _, seg = brats_case(index)
        label = np.select([seg == 1, seg == 4, seg == 2], [1, 1, 2], 0)
        expected = authors_scribble(label, 3, case_seed(5, case))[z0:z1, y0:y1, x0:x1]
        np.testing.assert_array_equal(Dataset(out).load_scribble(case), expected)
    ours = tmp_path / "ours"
    argv[3] = ours
    code, text = run_cli(capsys, *argv, "--seed", "5", "--scribble-style", "dmsps", "--quiet")
    assert code == 0, text
    assert check_dataset(ours).ok
    case = BRATS_CASES[0]
    assert (Dataset(ours).load_scribble(case) != Dataset(out).load_scribble(case)).any()


def test_brats_scribble_files(brats_src: Path, tmp_path: Path, capsys) -> None:
    """Given scribbles in BraTS values (4 -> tumour core) replace the simulated ones."""
    case = BRATS_CASES[0]
    _, seg = brats_case(0)
    given = np.full(BRATS_SHAPE, 255, np.uint8)
    given[3, 10, 5:18] = seg[3, 10, 5:18]  # background, enhancing tumour (4), edema
    given[3, 13, 9] = 1  # necrosis
    scribbles = tmp_path / "scribbles"
    nib_save(scribbles / f"{case}_scribble.nii.gz", given)
    splits = {"train": BRATS_CASES[:3], "val": [BRATS_CASES[3]], "test": [BRATS_CASES[4]]}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "brats2020", brats_src, out, "--scribbles", scribbles,
        "--splits", tmp_path / "splits.json",
    )  # fmt: skip
    assert code == 0, text
    (z0, z1), (y0, y1), (x0, x1) = BRATS_CROP
    expected = np.select([given == 4, given == 1, given == 2, given == 255], [1, 1, 2, 3], 0)
    scribble = Dataset(out).load_scribble(case)
    np.testing.assert_array_equal(scribble, expected[z0:z1, y0:y1, x0:x1])
    assert set(np.unique(scribble)) == {0, 1, 2, 3}


def test_brats_errors(brats_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["import", "brats2020", brats_src, out]
    folder = brats_src / BRATS_CASES[1]
    # seg values other than 0, 1, 2, 4
    seg_path = folder / f"{BRATS_CASES[1]}_seg.nii.gz"
    _, seg = brats_case(1)
    nib_save(seg_path, np.where(seg == 1, 3, seg).astype(np.uint8))
    code, text = run_cli(capsys, *args)
    assert code == 2
    assert error_line(text).endswith(
        f"{seg_path}: label values 3 are not BraTS labels (0, 1, 2, 4); fix the file, or "
        "check that it belongs to this dataset"
    )
    assert not out.exists()  # the partial output is removed
    nib_save(seg_path, seg)
    # modalities on different grids
    flair = folder / f"{BRATS_CASES[1]}_flair.nii.gz"
    nib_save(flair, np.ones((8, 24, 23), np.float32))
    code, text = run_cli(capsys, *args)
    assert code == 2
    line = error_line(text)
    assert f"{flair}: channel shape (8, 24, 23) differs from channel 0's (8, 24, 24)" in line
    # a missing sequence, a missing seg: found before anything is written
    flair.unlink()
    code, text = run_cli(capsys, *args)
    assert code == 2 and error_line(text).endswith(
        f"{flair}: missing flair image of '{BRATS_CASES[1]}'"
    )
    seg_path.unlink()
    nib_save(flair, np.ones(BRATS_SHAPE, np.float32))
    code, text = run_cli(capsys, *args)
    assert code == 2 and error_line(text).endswith(
        f"{seg_path}: missing segmentation of '{BRATS_CASES[1]}'"
    )
    # the last case's files are .nii: the expected name has the folder's ending
    nib_save(seg_path, seg)
    last = brats_src / BRATS_CASES[-1]
    (last / f"{BRATS_CASES[-1]}_t2.nii").unlink()
    code, text = run_cli(capsys, *args)
    assert code == 2 and f"{last / BRATS_CASES[-1]}_t2.nii: missing t2 image" in text


def test_brats_validation_release_has_no_segmentations(tmp_path: Path, capsys) -> None:
    """BraTS's validation cases come without seg files: the error says to import the
    training data instead, and how such cases are segmented."""
    src = tmp_path / "MICCAI_BraTS2020_ValidationData"
    images, _ = brats_case(0)
    case = "BraTS20_Validation_001"
    for name, image in images.items():
        nib_save(src / case / f"{case}_{name}.nii.gz", image)
    code, text = run_cli(capsys, "import", "brats2020", src, tmp_path / "out")
    line = error_line(text)
    assert code == 2 and f"{src / case / case}_seg.nii.gz: missing segmentation" in line
    assert "import the training data" in line and "dmsps predict" in line


def test_brats_renamed_seg(brats_src: Path, tmp_path: Path, capsys) -> None:
    """BraTS20_Training_355's seg is called W39_1998.09.19_Segm.nii in the release."""
    case = BRATS_CASES[-1]
    (brats_src / case / f"{case}_seg.nii").rename(brats_src / case / "W39_1998.09.19_Segm.nii")
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "brats2020", brats_src, out)
    assert code == 0, text
    assert f"W39_1998.09.19_Segm.nii: warning: taken as the segmentation of '{case}'" in text
    _, seg = brats_case(len(BRATS_CASES) - 1)
    (z0, z1), (y0, y1), (x0, x1) = BRATS_CROP
    label = Dataset(out).load_label(case)
    np.testing.assert_array_equal(
        label, np.select([seg == 2, seg > 0], [2, 1], 0)[z0:z1, y0:y1, x0:x1]
    )
