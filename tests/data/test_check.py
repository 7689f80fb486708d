"""`dmsps check-data`: a valid dataset passes, every kind of problem fails naming its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmsps.cli import main
from dmsps.data.check import check_dataset
from dmsps.data.layout import DatasetWriter, cardiac_meta
from dmsps.io.nifti import Geometry, save_volume

SHAPE = (3, 16, 16)
SPACING = (5.0, 1.5, 1.5)


def _case_arrays(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = rng.random(SHAPE, dtype=np.float32)
    label = rng.integers(0, 4, SHAPE).astype(np.uint8)
    scribble = np.full(SHAPE, 4, np.uint8)
    scribble[:, 4:6, :] = label[:, 4:6, :]  # a band of annotated voxels
    return image, label, scribble


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Four cases: two train, one val, one test (in imagesTs)."""
    root = tmp_path / "ds"
    writer = DatasetWriter(root, cardiac_meta("toy"))
    geom = Geometry.from_spacing(SHAPE, SPACING)
    rng = np.random.default_rng(0)
    for case, test in [("a", False), ("b", False), ("c", False), ("d", True)]:
        image, label, scribble = _case_arrays(rng)
        writer.write_case(case, image, geom, label=label, scribble=scribble, test=test)
    writer.finish({"train": ["a", "b"], "val": ["c"], "test": ["d"]})
    return root


def _check(root: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["check-data", str(root), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _fails_naming(root: Path, path: Path, capsys, words: str = "") -> str:
    code, out = _check(root, capsys)
    assert code == 1, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.startswith(f"{path}: error:")]
    assert lines, out
    assert words in lines[0], lines
    return out


def test_valid_dataset_passes(dataset: Path, capsys) -> None:
    code, out = _check(dataset, capsys)
    assert code == 0, out
    assert "checked 4 cases" in out
    assert "0 errors, 0 warnings" in out
    assert "background" in out and "LV" in out  # per-class scribble counts
    report = check_dataset(dataset)
    assert report.ok and not report.errors and not report.warnings
    assert report.split_sizes == {"train": 2, "val": 1, "test": 1}
    assert sum(report.scribble_voxels) == 3 * (3 * 2 * 16)  # bands of a, b (train), c (val)


def test_corrupt_file(dataset: Path, capsys) -> None:
    bad = dataset / "imagesTr" / "a_0000.nii.gz"
    bad.write_bytes(np.random.default_rng(1).bytes(300))
    _fails_naming(dataset, bad, capsys, "cannot read")


def test_nan_image(dataset: Path, capsys) -> None:
    path = dataset / "imagesTr" / "b_0000.nii.gz"
    image = np.zeros(SHAPE, np.float32)
    image[1, 2, 3] = np.nan
    image[0, 0, 0] = np.inf
    save_volume(path, image, Geometry.from_spacing(SHAPE, SPACING))
    _fails_naming(dataset, path, capsys, "1 NaN and 1 infinite")


def test_label_value_out_of_range(dataset: Path, capsys) -> None:
    path = dataset / "labelsTr" / "c.nii.gz"
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, 0] = 7
    save_volume(path, label, Geometry.from_spacing(SHAPE, SPACING))
    _fails_naming(dataset, path, capsys, "values 7 outside 0..3")


def test_non_integer_label(dataset: Path, capsys) -> None:
    path = dataset / "labelsTr" / "c.nii.gz"
    label = np.zeros(SHAPE, np.float32)
    label[0, 0, 0] = 1.5
    save_volume(path, label, Geometry.from_spacing(SHAPE, SPACING))
    _fails_naming(dataset, path, capsys, "non-integer")


def test_scribble_value_out_of_range(dataset: Path, capsys) -> None:
    path = dataset / "scribblesTr" / "a.nii.gz"
    scribble = np.full(SHAPE, 4, np.uint8)
    scribble[0, 0, :3] = [0, 1, 5]
    save_volume(path, scribble, Geometry.from_spacing(SHAPE, SPACING))
    _fails_naming(dataset, path, capsys, "values 5 outside")


def test_scribble_without_annotation(dataset: Path, capsys) -> None:
    path = dataset / "scribblesTr" / "a.nii.gz"
    save_volume(path, np.full(SHAPE, 4, np.uint8), Geometry.from_spacing(SHAPE, SPACING))
    _fails_naming(dataset, path, capsys, "no annotated voxel")


def test_shape_mismatch(dataset: Path, capsys) -> None:
    path = dataset / "labelsTr" / "a.nii.gz"
    shape = (3, 16, 15)
    save_volume(path, np.zeros(shape, np.uint8), Geometry.from_spacing(shape, SPACING))
    _fails_naming(dataset, path, capsys, "shape (3, 16, 15) differs")


def test_spacing_mismatch(dataset: Path, capsys) -> None:
    path = dataset / "scribblesTr" / "b.nii.gz"
    _, _, scribble = _case_arrays(np.random.default_rng(2))
    save_volume(path, scribble, Geometry.from_spacing(SHAPE, (5.0, 2.0, 2.0)))
    _fails_naming(dataset, path, capsys, "spacing (5.0, 2.0, 2.0) mm differs")


def test_missing_scribble(dataset: Path, capsys) -> None:
    path = dataset / "scribblesTr" / "c.nii.gz"  # a val case: needs a scribble
    path.unlink()
    _fails_naming(dataset, path, capsys, "missing scribble")


def test_missing_label_is_a_warning_strict_fails(dataset: Path, capsys) -> None:
    path = dataset / "labelsTs" / "d.nii.gz"
    path.unlink()
    code, out = _check(dataset, capsys)
    assert code == 0, out
    assert f"{path}: warning: no label" in out
    code, out = _check(dataset, capsys, "--strict")
    assert code == 1


def test_malformed_dataset_json(dataset: Path, capsys) -> None:
    path = dataset / "dataset.json"
    path.write_text("{not json")
    out = _fails_naming(dataset, path, capsys, "malformed JSON")
    assert "checked 4 cases" in out  # the files were still checked


def test_invalid_dataset_json_content(dataset: Path, capsys) -> None:
    path = dataset / "dataset.json"
    meta = json.loads(path.read_text())
    meta["labels"]["ignore"] = 9
    path.write_text(json.dumps(meta))
    _fails_naming(dataset, path, capsys, "'ignore' must be 4")


def test_missing_dataset_json(dataset: Path, capsys) -> None:
    path = dataset / "dataset.json"
    path.unlink()
    _fails_naming(dataset, path, capsys, "missing")


def test_splits_problems(dataset: Path, capsys) -> None:
    path = dataset / "splits.json"
    path.write_text(json.dumps({"train": ["a", "b", "zz"], "val": ["a"], "test": ["d"]}))
    code, out = _check(dataset, capsys)
    assert code == 1
    assert f"{path}: error: train case 'zz' has no image" in out
    assert f"{path}: error: case 'a' is listed in both 'train' and 'val'" in out
    assert "case 'c' is in no split" in out  # a warning on c's image
    path.write_text("[1, 2")
    _fails_naming(dataset, path, capsys, "malformed JSON")


def test_stray_and_foreign_files(dataset: Path, capsys) -> None:
    stray = dataset / "imagesTr" / "notes.txt"
    stray.write_text("hello")
    code, out = _check(dataset, capsys)
    assert code == 0 and f"{stray}: warning: stray file" in out
    foreign = dataset / "labelsTr" / "a.mha"
    foreign.write_bytes(b"ObjectType = Image\n")
    _fails_naming(dataset, foreign, capsys, "not a '.nii.gz' file")


def test_every_problem_is_listed(dataset: Path, capsys) -> None:
    """Problems in several files are all reported, not only the first."""
    corrupt = dataset / "imagesTr" / "a_0000.nii.gz"
    corrupt.write_bytes(b"\x00" * 50)
    missing = dataset / "scribblesTr" / "b.nii.gz"
    missing.unlink()
    label = dataset / "labelsTr" / "c.nii.gz"
    save_volume(label, np.full(SHAPE, 9, np.uint8), Geometry.from_spacing(SHAPE, SPACING))
    code, out = _check(dataset, capsys)
    assert code == 1
    for path in (corrupt, missing, label):
        assert f"{path}: error:" in out
    assert "3 errors" in out


def test_missing_folder_exits_2(tmp_path: Path, capsys) -> None:
    code, out = _check(tmp_path / "nope", capsys)
    assert code == 2 and "not found" in out and "Traceback" not in out


def test_3d_multichannel_anisotropic_dataset(tiny_dataset_3d: Path, capsys) -> None:
    code, out = _check(tiny_dataset_3d, capsys)
    assert code == 0, out
    # the second channel of one case on another spacing is an error naming that file
    path = tiny_dataset_3d / "imagesTr" / "case001_0001.nii.gz"
    save_volume(
        path, np.ones((8, 32, 32), np.float32), Geometry.from_spacing((8, 32, 32), (5.0, 1.5, 2.0))
    )
    _fails_naming(
        tiny_dataset_3d, path, capsys, "spacing (5.0, 1.5, 2.0) mm differs from channel 0"
    )
