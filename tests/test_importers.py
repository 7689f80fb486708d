"""`dmsps import`: tiny sources in each supported layout round-trip into a valid dataset."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from dmsps.cli import main
from dmsps.data.check import check_dataset
from dmsps.data.layout import Dataset

SHAPE = (3, 12, 10)  # (Z, Y, X)


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Traceback" not in out
    return code, out


def _arrays(seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random(shape, dtype=np.float32)
    label = rng.integers(0, 4, shape).astype(np.uint8)
    scribble = np.full(shape, 4, np.uint16)
    scribble[:, 2:4] = label[:, 2:4]
    return image, label, scribble


# === acdc-h5 =========================================================================
def _write_h5(path: Path, seed: int, drop: str | None = None, label_shape=None) -> dict:
    image, label, scribble = _arrays(seed)
    if label_shape is not None:
        label = np.zeros(label_shape, np.uint8)
    arrays = {"image": image, "label": label, "scribble": scribble}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if k != drop:
                f.create_dataset(k, data=v)
    return arrays


@pytest.fixture
def h5_src(tmp_path: Path) -> tuple[Path, dict[str, dict]]:
    src = tmp_path / "acdc"
    cases = ["patient001_frame01", "patient001_frame12", "patient002_frame01", "patient003_frame01"]
    arrays = {c: _write_h5(src / "volumes" / f"{c}.h5", i) for i, c in enumerate(cases)}
    (src / "train.txt").write_text("patient001_frame01.h5\npatient001_frame12.h5\n")
    (src / "val.txt").write_text("patient002_frame01\n")
    (src / "test.txt").write_text("# held out\npatient003_frame01.h5\n")
    return src, arrays


def test_acdc_h5_import(h5_src, tmp_path: Path, capsys) -> None:
    src, arrays = h5_src
    out = tmp_path / "out"
    code, text = _run(capsys, "import", "acdc-h5", src, out)
    assert code == 0, text
    ds = Dataset(out)
    assert ds.split("train") == ["patient001_frame01", "patient001_frame12"]
    assert ds.split("val") == ["patient002_frame01"]
    assert ds.split("test") == ["patient003_frame01"]
    assert (out / "imagesTs" / "patient003_frame01_0000.nii.gz").is_file()
    assert (out / "labelsTs" / "patient003_frame01.nii.gz").is_file()
    for case, a in arrays.items():
        image, geom = ds.load_image(case)
        np.testing.assert_array_equal(image[0], a["image"])  # intensities kept as they are
        np.testing.assert_array_equal(ds.load_label(case), a["label"])
        np.testing.assert_array_equal(ds.load_scribble(case), a["scribble"])  # 4 stays 4
        assert geom.spacing == (10.0, 1.5, 1.5)
    assert ds.meta.ignore_value == 4 and ds.meta.class_names == ["background", "RV", "Myo", "LV"]
    assert check_dataset(out).ok
    assert list(src.rglob("*")) and not any(p.suffix == ".gz" for p in src.rglob("*"))


def test_acdc_h5_spacing_and_volumes_folder(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    out = tmp_path / "out"
    # SRC is the volumes folder itself: the lists are found in its parent.
    code, text = _run(
        capsys, "import", "acdc-h5", src / "volumes", out, "--spacing", "7", "1.25", "1.5"
    )
    assert code == 0, text
    ds = Dataset(out)
    assert ds.load_image("patient002_frame01")[1].spacing == (7.0, 1.25, 1.5)
    assert ds.split("val") == ["patient002_frame01"]


def test_acdc_h5_unlisted_volume(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    _write_h5(src / "volumes" / "patient004_frame01.h5", 9)
    code, text = _run(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and "patient004_frame01" in text and "--all-train" in text
    code, text = _run(capsys, "import", "acdc-h5", src, tmp_path / "out2", "--all-train")
    assert code == 0, text
    assert "patient004_frame01" in Dataset(tmp_path / "out2").split("train")


def test_acdc_h5_missing_key(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    bad = src / "volumes" / "patient002_frame01.h5"
    _write_h5(bad, 5, drop="scribble")
    out = tmp_path / "out"
    code, text = _run(capsys, "import", "acdc-h5", src, out)
    assert code == 2
    assert f"{bad}: missing key(s) scribble" in text
    assert not out.exists()  # partial output removed: fix the source and rerun
    _write_h5(bad, 5)
    code, text = _run(capsys, "import", "acdc-h5", src, out)
    assert code == 0, text


def test_acdc_h5_corrupt_and_mismatched(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    bad = src / "volumes" / "patient001_frame12.h5"
    bad.write_bytes(np.random.default_rng(0).bytes(200))
    code, text = _run(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and f"{bad}: cannot read HDF5" in text
    _write_h5(bad, 1, label_shape=(3, 12, 11))
    code, text = _run(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and f"{bad}: 'label' shape (3, 12, 11) differs" in text


def test_acdc_h5_list_names_missing_volume(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    (src / "val.txt").write_text("patient009_frame01\n")
    code, text = _run(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and f"{src / 'val.txt'}: case 'patient009_frame01' has no volume" in text


def test_output_folder_rules(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, text = _run(capsys, "import", "acdc-h5", src, out)
    assert code == 2 and "not empty" in text and "--overwrite" in text
    assert not (out / "imagesTr").exists()
    code, text = _run(capsys, "import", "acdc-h5", src, out, "--overwrite")
    assert code == 0, text
    assert (out / "keep.txt").read_text() == "mine"  # only dataset entries are replaced
    (out / "imagesTr" / "stale_0000.nii.gz").write_bytes(b"old")
    code, text = _run(capsys, "import", "acdc-h5", src, out, "--overwrite")
    assert code == 0 and not (out / "imagesTr" / "stale_0000.nii.gz").exists()
    code, text = _run(capsys, "import", "acdc-h5", src, src / "inside")
    assert code == 2 and "never write into their input" in text
    assert not (src / "inside").exists()


# === acdc (official NIfTI) ===========================================================
AFFINE = np.array(
    [
        [0.0, -1.4, 0.0, 120.0],
        [1.4, 0.0, 0.0, -80.5],
        [0.0, 0.0, 8.0, 33.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _nib_save(path: Path, zyx: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    """Write a (Z, Y, X) array the way external tools do: nibabel order (X, Y, Z)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.transpose(zyx, (2, 1, 0)), affine), str(path))


@pytest.fixture
def acdc_src(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple]]:
    src, scribbles = tmp_path / "database" / "training", tmp_path / "scribbles"
    arrays = {}
    for p in range(1, 5):
        patient = f"patient{p:03d}"
        for frame in ("01", "12"):
            case = f"{patient}_frame{frame}"
            image, label, scribble = _arrays(p * 10 + int(frame))
            image = (image * 1000).round().astype(np.int16)  # raw MRI-like intensities
            _nib_save(src / patient / f"{case}.nii.gz", image)
            _nib_save(src / patient / f"{case}_gt.nii.gz", label)
            _nib_save(scribbles / f"{case}_scribble.nii.gz", scribble.astype(np.uint8))
            arrays[case] = (image, label, scribble)
        _nib_save(src / patient / f"{patient}_4d.nii.gz", np.zeros((2, 3, 4), np.int16))
    return src, scribbles, arrays


def test_acdc_nifti_import(acdc_src, tmp_path: Path, capsys) -> None:
    src, scribbles, arrays = acdc_src
    out = tmp_path / "out"
    code, text = _run(capsys, "import", "acdc", src.parent, out, "--scribbles", scribbles)
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
    code, text = _run(
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
        _nib_save(scribbles / f"{case}_scribble.nii.gz", shifted)
    out = tmp_path / "out"
    code, text = _run(
        capsys, "import", "acdc", src, out, "--scribbles", scribbles,
        "--scribble-unannotated", "0", "--scribble-map", "1:0,2:1,3:2,4:3",
    )  # fmt: skip
    assert code == 0, text
    ds = Dataset(out)
    for case, (_, _, scribble) in arrays.items():
        np.testing.assert_array_equal(ds.load_scribble(case), scribble)
    code, text = _run(
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
    code, text = _run(capsys, *args, "--splits", tmp_path / "s.json")
    assert code == 2 and f"{gone}: missing scribble" in text
    assert not (tmp_path / "out").exists()  # checked before writing anything
    gt = src / "patient002" / "patient002_frame01_gt.nii.gz"
    gt.unlink()
    code, text = _run(capsys, *args)
    assert code == 2 and f"{gt}: missing ground truth" in text


def test_acdc_nifti_scribble_grid_mismatch(acdc_src, tmp_path: Path, capsys) -> None:
    src, scribbles, _ = acdc_src
    bad = scribbles / "patient003_frame01_scribble.nii.gz"
    _nib_save(bad, np.full(SHAPE, 4, np.uint8), np.diag([1.4, 1.4, 5.0, 1.0]) @ np.eye(4))
    splits = {"train": ["patient001", "patient002", "patient003", "patient004"]}
    (tmp_path / "s.json").write_text(json.dumps(splits))
    code, text = _run(
        capsys, "import", "acdc", src, tmp_path / "out", "--scribbles", scribbles,
        "--splits", tmp_path / "s.json",
    )  # fmt: skip
    assert code == 2 and f"{bad}: scribble spacing" in text


# === nifti (users' own data) =========================================================
def _user_src(root: Path) -> dict[str, tuple]:
    """Two-channel images, labels with mixed suffixes, scribbles with 255 = unannotated."""
    affine = np.diag([0.8, 0.9, 3.0, 1.0])
    arrays = {}
    for i, case in enumerate(["liver_01", "liver_02", "liver_03", "liver_04", "liver_05"]):
        image, label, scribble = _arrays(100 + i)
        label = np.minimum(label, 2)  # three classes
        scribble = np.where(scribble == 4, 255, np.minimum(scribble, 2)).astype(np.uint8)
        second = image * 2 + 1
        _nib_save(root / "images" / f"{case}_0000.nii.gz", image, affine)
        _nib_save(root / "images" / f"{case}_0001.nii.gz", second, affine)
        suffix = "_gt" if i % 2 else ""
        _nib_save(root / "labels" / f"{case}{suffix}.nii.gz", label, affine)
        if case != "liver_05":  # no scribble: evaluation only
            _nib_save(root / "scribbles" / f"{case}_scribble.nii.gz", scribble, affine)
        arrays[case] = (np.stack([image, second]), label, scribble)
    return arrays


def test_nifti_import(tmp_path: Path, capsys) -> None:
    src = tmp_path / "mine"
    arrays = _user_src(src)
    out = tmp_path / "out"
    code, text = _run(
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
        image, label, scribble = _arrays(i)
        _nib_save(src / f"c{i}.nii.gz", image)
        _nib_save(src / f"c{i}_label.nii.gz", label)
        _nib_save(src / f"c{i}_scribble.nii.gz", scribble.astype(np.uint8))
    _nib_save(src / "orphan_gt.nii.gz", np.zeros(SHAPE, np.uint8))
    code, text = _run(capsys, "import", "nifti", src, tmp_path / "out")
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
    _nib_save(bad, np.zeros((3, 12, 9), np.uint8), np.diag([0.8, 0.9, 3.0, 1.0]))
    args = ["import", "nifti", src, tmp_path / "out", "--class-names", "bg,liver,tumour"]
    code, text = _run(capsys, *args, "--ignore-value", "255")
    assert code == 2 and f"{bad}: label shape (3, 12, 9) differs" in text
    _nib_save(bad, np.zeros(SHAPE, np.uint8), np.diag([0.8, 0.9, 3.0, 1.0]))
    code, text = _run(capsys, *args, "--overwrite")  # 255 is no class and not the ignore value
    assert code == 2 and "scribble values 255" in text
    (src / "images" / "liver_02_0001.nii.gz").unlink()
    code, text = _run(capsys, *args, "--ignore-value", "255", "--overwrite")
    assert code == 2 and "liver_02" in text and "channel" in text


def test_nifti_simulated_scribbles(tmp_path: Path, capsys) -> None:
    pytest.importorskip("dmsps.data.scribble")
    src = tmp_path / "mine"
    for i in range(3):
        image, _, _ = _arrays(i, (2, 32, 32))
        label = np.zeros((2, 32, 32), np.uint8)
        label[:, 8:24, 8:24] = 1
        _nib_save(src / "images" / f"c{i}.nii.gz", image)
        _nib_save(src / "labels" / f"c{i}.nii.gz", label)
    out = tmp_path / "out"
    code, text = _run(capsys, "import", "nifti", src, out, "--simulate-scribbles")
    assert code == 0, text
    ds = Dataset(out)
    for case in ds.split("train") + ds.split("val"):
        scribble = ds.load_scribble(case)
        assert scribble is not None and (scribble != 2).any()
        annotated = scribble != 2
        np.testing.assert_array_equal(scribble[annotated], ds.load_label(case)[annotated])
