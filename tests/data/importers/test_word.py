"""`dmsps import word`: the WORD abdominal CT release in its official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmsps.cli import main
from dmsps.data.check import check_dataset
from dmsps.data.layout import Dataset
from tests.data.importers.sources import (
    WORD_CASES,
    WORD_ORGANS,
    WORD_SHAPE,
    word_case,
    word_scribble,
    write_word_source,
)
from tests.support import AFFINE, error_line, nib_save, run_cli

PAPER_CLASSES = [
    "background",
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "stomach",
    "gallbladder",
    "pancreas",
]


@pytest.fixture
def word_src(tmp_path: Path) -> Path:
    src = tmp_path / "download" / "WORD-V0.1.0"
    write_word_source(src)
    return src


def _world(affine: np.ndarray, zyx) -> np.ndarray:
    z, y, x = zyx
    return (affine @ [x, y, z, 1.0])[:3]


def _voxel(affine: np.ndarray, world: np.ndarray) -> tuple[int, int, int]:
    """(Z, Y, X) index of a world point, which must lie on a voxel centre."""
    x, y, z = (np.linalg.inv(affine) @ [*world, 1.0])[:3]
    np.testing.assert_allclose([x, y, z], np.round([x, y, z]), atol=1e-4)
    return round(z), round(y), round(x)


def _pancreas_voxel(index: int) -> tuple[int, int, int]:
    (y0, _), (x0, _) = WORD_ORGANS[8]
    return 3, y0 + 1, x0 + 1 + index


def test_word_import_default(word_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "word", word_src.parent, out)  # the release's parent
    assert code == 0, text
    report = check_dataset(out)
    assert report.ok, report.problem_lines()
    assert not report.warnings, report.problem_lines()  # every class is scribbled
    ds = Dataset(out)
    assert ds.meta.class_names == PAPER_CLASSES and ds.meta.ignore_value == 8
    assert ds.meta.channel_names == ["CT"]
    assert ds.splits == {
        "train": ["word_0001", "word_0002"],
        "val": ["word_0003"],
        "test": ["word_0004"],
    }
    assert (out / "labelsTs" / "word_0004.nii.gz").is_file()
    assert not (out / "scribblesTs").exists() and ds.load_scribble("word_0004") is None
    for index, case in enumerate(WORD_CASES):
        source_image, source_label = word_case(index)
        image, geom = ds.load_image(case)
        label = ds.load_label(case)
        # Body crop: body Y 5..19 and X 8..60 (+ index) plus 3 voxels; all 8 slices.
        assert geom.shape == (8, 20, 58)
        box = (slice(0, 8), slice(2, 22), slice(5 + index, 63 + index))
        np.testing.assert_array_equal(image[0], source_image[box])  # raw HU kept
        expected = np.select(
            [source_label == v for v in (1, 2, 3, 4, 5, 6, 8)], [1, 2, 3, 4, 5, 6, 7], 0
        )
        np.testing.assert_array_equal(label, expected[box])  # 7, 10 -> background
        # A labelled voxel keeps its world coordinate: the affine moved with the crop.
        z, y, x = _pancreas_voxel(index)
        voxel = _voxel(geom.affine, _world(AFFINE, (z, y, x)))
        assert voxel == (z, y - 2, x - 5 - index) and label[voxel] == 7
        np.testing.assert_allclose(geom.spacing, (8.0, 1.4, 1.4), rtol=1e-6)
        scribble = ds.load_scribble(case)
        if case != "word_0004":  # simulated, consistent with the label, on every slice
            annotated = scribble != 8
            assert set(np.unique(scribble[annotated])) == set(range(8))
            np.testing.assert_array_equal(scribble[annotated], label[annotated])
            assert annotated.any(axis=(1, 2)).all()


def test_word_organs_crop_and_slice_step(word_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "word", word_src, out, "--organs", "pancreas,liver,colon",
        "--crop", "labels", "--slice-step", "2",
    )  # fmt: skip
    assert code == 0, text
    assert check_dataset(out).ok
    ds = Dataset(out)
    assert ds.meta.class_names == ["background", "pancreas", "liver", "colon"]
    for index, case in enumerate(WORD_CASES):
        _, source_label = word_case(index)
        label = ds.load_label(case)
        geom = ds.load_image(case)[1]
        # Labels crop: liver, pancreas and colon span X 27..43 (+ index), plus 20 voxels;
        # Y and Z are too small to shrink (the body crop gave (8, 20, 58)). Test cases are
        # cropped alike.
        assert geom.shape == (8, 24, 56)
        box = (slice(0, 8), slice(0, 24), slice(7 + index, 63 + index))
        expected = np.select([source_label == v for v in (8, 1, 10)], [1, 2, 3], 0)
        np.testing.assert_array_equal(label, expected[box])
        z, y, x = _pancreas_voxel(index)
        voxel = _voxel(geom.affine, _world(AFFINE, (z, y, x)))
        assert voxel == (z, y, x - 7 - index) and label[voxel] == 1
        if case != "word_0004":
            has = (ds.load_scribble(case) != 4).any(axis=(1, 2))
            assert has.sum() == 4 and not (has[1:] & has[:-1]).any()  # alternate slices
    # The whole volume without a crop.
    code, text = run_cli(capsys, "import", "word", word_src, tmp_path / "o2", "--crop", "none")
    assert code == 0, text
    assert Dataset(tmp_path / "o2").load_image("word_0001")[1].shape == WORD_SHAPE


def test_word_scribble_files(word_src: Path, tmp_path: Path, capsys) -> None:
    """Given scribbles are mapped like labels (7 and 10 -> background, 8 -> 7); cases
    without a file get simulated ones."""
    scribbles = tmp_path / "scribbles"
    _, label = word_case(0)
    given = np.full(WORD_SHAPE, 255, np.uint8)
    given[2, 14, 20:45] = label[2, 14, 20:45]  # across kidneys .. colon
    given[2, 9, 20:45] = label[2, 9, 20:45]  # across spleen .. esophagus
    given[2, 6, 10:50] = 0
    nib_save(scribbles / "word_0001_scribble.nii.gz", given)
    nib_save(scribbles / "word_0004.nii.gz", given)  # a test case: ignored
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "word", word_src, out, "--scribbles", scribbles)
    assert code == 0, text
    assert "word_0004.nii.gz: warning: scribble matches no train/val case; ignored" in text
    ds = Dataset(out)
    scribble = ds.load_scribble("word_0001")
    mapped = np.select(
        [given == v for v in (1, 2, 3, 4, 5, 6, 8, 255)], [1, 2, 3, 4, 5, 6, 7, 8], 0
    )
    np.testing.assert_array_equal(scribble, mapped[:, 2:22, 5:63])  # body crop
    x = {v: xs[0] - 5 for v, (_, xs) in WORD_ORGANS.items()}
    assert scribble[2, 14 - 2, x[10]] == 0 and scribble[2, 9 - 2, x[7]] == 0  # colon, esophagus
    assert scribble[2, 14 - 2, x[8]] == 7 and scribble[2, 9 - 2, x[1]] == 1  # pancreas, liver
    assert (ds.load_scribble("word_0002") != 8).sum() > 100  # simulated
    assert check_dataset(out).ok


def _mapped(scribble: np.ndarray, unannotated: int) -> np.ndarray:
    """WORD values -> the paper's classes (7, 10 -> background), ``unannotated`` -> 8."""
    values = (1, 2, 3, 4, 5, 6, 8, unannotated)
    return np.select([scribble == v for v in values], [1, 2, 3, 4, 5, 6, 7, 8], 0)


def test_word_release_scribbles(word_src: Path, tmp_path: Path, capsys) -> None:
    """WORD's own scribblesTr/ is used when it is there: mapped like the labels, cropped
    like the image, the unannotated value read off each file (255 in one, 250 in the
    other); the val case, which the release gives none, is simulated."""
    first, second = word_scribble(0, 255), word_scribble(1, 250)
    nib_save(word_src / "scribblesTr" / "word_0001.nii.gz", first)
    nib_save(word_src / "scribblesTr" / "word_0002.nii.gz", second)
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "word", word_src, out)
    assert code == 0, text
    assert "warning" not in text
    assert check_dataset(out).ok
    ds = Dataset(out)
    np.testing.assert_array_equal(ds.load_scribble("word_0001"), _mapped(first, 255)[:, 2:22, 5:63])
    np.testing.assert_array_equal(
        ds.load_scribble("word_0002"), _mapped(second, 250)[:, 2:22, 6:64]
    )
    assert (ds.load_scribble("word_0003") != 8).any(axis=(1, 2)).all()  # simulated
    # Given explicitly, the value must be the files': 250 is no WORD label, so the other
    # file's 255 is refused.
    code, text = run_cli(
        capsys, "import", "word", word_src, tmp_path / "o2", "--scribble-unannotated", "255"
    )
    assert code == 2 and "scribble values 250 are neither WORD labels" in error_line(text)
    # --no-release-scribbles simulates instead.
    code, text = run_cli(
        capsys, "import", "word", word_src, tmp_path / "o3", "--no-release-scribbles"
    )
    assert code == 0, text
    simulated = Dataset(tmp_path / "o3").load_scribble("word_0001")
    assert simulated.any(axis=(1, 2)).all() and (simulated != 8).sum() > 100
    # A train case without a file is simulated, and said so.
    (word_src / "scribblesTr" / "word_0002.nii.gz").unlink()
    code, text = run_cli(capsys, "import", "word", word_src, tmp_path / "o4")
    assert code == 0, text
    assert (
        f"{word_src / 'scribblesTr'}: warning: no scribble of train case(s) word_0002; "
        "simulated from the labels"
    ) in text
    assert (Dataset(tmp_path / "o4").load_scribble("word_0002") != 8).any(axis=(1, 2)).all()


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ((0, 3, 3), "scribble holds values 0, 3 only, all of them WORD labels (0..16), so none"),
        ((200, 255, 1), "scribble values 200, 255 are not WORD labels (0..16), and only one"),
        ((3, 255, 3), "scribble value 255 is not one of WORD labels (0..16), but not the file's "
         "most frequent value either (3 is)"),
    ],
)  # fmt: skip
def test_word_unannotated_value_that_cannot_be_told(
    word_src: Path, tmp_path: Path, capsys, values, problem
) -> None:
    """No value outside WORD's labels, two of them, or one that is rarer than a label:
    refused, with the option that settles it."""
    scribble = np.full(WORD_SHAPE, values[0], np.uint8)
    scribble[:, :2] = values[1]
    scribble[:, 2, :4] = values[2]
    path = word_src / "scribblesTr" / "word_0001.nii.gz"
    nib_save(path, scribble)
    code, text = run_cli(capsys, "import", "word", word_src, tmp_path / "out")
    line = error_line(text)
    assert code == 2 and f"{path}: {problem}" in line, line
    assert "--scribble-unannotated V" in line


def test_word_authors_style(word_src: Path, tmp_path: Path, capsys) -> None:
    """--scribble-style authors: the authors' generator on the mapped, uncropped label,
    seeded per case, then cropped; no air band (their background skeleton has the air)."""
    from dmsps.data.authors_scribbles import authors_scribble
    from dmsps.data.importers.common import case_seed

    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "import", "word", word_src, out, "--scribble-style", "authors", "--seed", "2"
    )
    assert code == 0, text
    assert check_dataset(out).ok
    _, label = word_case(0)
    mapped = np.select([label == v for v in (1, 2, 3, 4, 5, 6, 8)], [1, 2, 3, 4, 5, 6, 7], 0)
    expected = authors_scribble(mapped, 8, case_seed(2, "word_0001"))
    np.testing.assert_array_equal(Dataset(out).load_scribble("word_0001"), expected[:, 2:22, 5:63])
    code, text = run_cli(
        capsys, "import", "word", word_src, tmp_path / "o2", "--scribble-style", "authors",
        "--scribble-density", "0.5",
    )  # fmt: skip
    assert code == 2 and "authors' style draws whole strokes" in error_line(text)


def test_word_errors(word_src: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "word", word_src, out, "--organs", "liver,lung")
    line = error_line(text)
    assert code == 2 and "unknown WORD organ 'lung'" in line and "head_of_femur_right" in line
    with pytest.raises(SystemExit) as bad:  # an argparse usage error
        main(["import", "word", str(word_src), str(out), "--air-band", "-1"])
    text = capsys.readouterr().err
    assert bad.value.code == 2 and "--air-band" in text and "'all'" in text
    assert "Traceback" not in text and not out.exists()
    scribbles = tmp_path / "scribbles"
    bad = scribbles / "word_0002.nii.gz"
    nib_save(bad, np.full(WORD_SHAPE, 17, np.uint8))  # 17: no WORD label, nor unannotated
    code, text = run_cli(
        capsys, "import", "word", word_src, out, "--scribbles", scribbles,
        "--scribble-unannotated", "255",
    )  # fmt: skip
    assert code == 2 and f"{bad}: scribble values 17 are neither WORD labels" in error_line(text)
    assert not out.exists()  # the partial output is removed
    code, text = run_cli(
        capsys, "import", "word", word_src, out, "--scribbles", scribbles,
        "--scribble-unannotated", "8",
    )  # fmt: skip
    assert code == 2 and "8 is a WORD label value" in text
    # a label value WORD does not define is refused, not mapped to background
    label_path = word_src / "labelsTr" / "word_0001.nii.gz"
    _, label = word_case(0)
    stray = label.copy()
    stray[0, 0, 0] = 77
    nib_save(label_path, stray)
    code, text = run_cli(capsys, "import", "word", word_src, out)
    assert code == 2
    assert error_line(text).endswith(
        f"{label_path}: label values 77 are not WORD labels (0..16); fix the file, or "
        "check that it belongs to this dataset"
    )
    assert "Traceback" not in text and not out.exists()
    nib_save(label_path, label)
    gone = word_src / "labelsVal" / "word_0003.nii.gz"
    gone.unlink()
    code, text = run_cli(capsys, "import", "word", word_src, out)
    assert code == 2
    assert error_line(text).endswith(f"error: {gone}: missing label of case 'word_0003'")


def test_air_around_the_body_is_background():
    from dmsps.data.importers.word import air_loop

    image = np.full((3, 20, 20), -1000.0, np.float32)
    image[:, 5:15, 5:15] = 40.0  # the body
    scribble = np.full((3, 20, 20), 8, np.uint8)
    scribble[1, 10, 10] = 1  # only slice 1 is annotated
    out = air_loop(image, scribble, ignore=8, band=None)  # all of the air
    assert out[1, 10, 10] == 1  # existing strokes stay
    air = out[1] == 0
    assert air.any() and (image[1][air] < -500).all()  # in the air only
    assert air[2, 10] and air[0, 10] and not air[3, 10] and not air[4, 10]  # 2+ voxels out
    assert (out[[0, 2]] == 8).all()  # unannotated slices stay unannotated
    # The default: one stroke of one voxel along the outline, 2 voxels out.
    band = air_loop(image, scribble, ignore=8)[1] == 0
    assert band[2, 10] and band[17, 10] and band[10, 2] and band[10, 17]
    assert not band[1, 10] and not band[0, 10] and not band[3, 10]
    assert band.sum() < air.sum() / 3
    wide = air_loop(image, scribble, ignore=8, band=2)[1] == 0
    assert wide[1, 10] and wide[2, 10] and not wide[0, 10]
    assert (air_loop(image, scribble, ignore=8, band=0) == scribble).all()
