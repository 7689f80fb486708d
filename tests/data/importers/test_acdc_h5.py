"""`dmsps import acdc-h5`: WSL4MIS/DMSPS HDF5 volumes into a valid dataset."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from dmsps.data.check import check_dataset
from dmsps.data.layout import Dataset
from tests.support import random_case, run_cli


def _write_h5(path: Path, seed: int, drop: str | None = None, label_shape=None) -> dict:
    image, label, scribble = random_case(seed)
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
    code, text = run_cli(capsys, "import", "acdc-h5", src, out)
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
    code, text = run_cli(
        capsys, "import", "acdc-h5", src / "volumes", out, "--spacing", "7", "1.25", "1.5"
    )
    assert code == 0, text
    ds = Dataset(out)
    assert ds.load_image("patient002_frame01")[1].spacing == (7.0, 1.25, 1.5)
    assert ds.split("val") == ["patient002_frame01"]


def test_acdc_h5_unlisted_volume(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    _write_h5(src / "volumes" / "patient004_frame01.h5", 9)
    code, text = run_cli(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and "patient004_frame01" in text and "--all-train" in text
    code, text = run_cli(capsys, "import", "acdc-h5", src, tmp_path / "out2", "--all-train")
    assert code == 0, text
    assert "patient004_frame01" in Dataset(tmp_path / "out2").split("train")


def test_acdc_h5_missing_key(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    bad = src / "volumes" / "patient002_frame01.h5"
    _write_h5(bad, 5, drop="scribble")
    out = tmp_path / "out"
    code, text = run_cli(capsys, "import", "acdc-h5", src, out)
    assert code == 2
    assert f"{bad}: missing key(s) scribble" in text
    assert not out.exists()  # partial output removed: fix the source and rerun
    _write_h5(bad, 5)
    code, text = run_cli(capsys, "import", "acdc-h5", src, out)
    assert code == 0, text


def test_acdc_h5_corrupt_and_mismatched(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    bad = src / "volumes" / "patient001_frame12.h5"
    bad.write_bytes(np.random.default_rng(0).bytes(200))
    code, text = run_cli(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and f"{bad}: cannot read HDF5" in text
    _write_h5(bad, 1, label_shape=(3, 12, 11))
    code, text = run_cli(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and f"{bad}: 'label' shape (3, 12, 11) differs" in text


def test_acdc_h5_list_names_missing_volume(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    (src / "val.txt").write_text("patient009_frame01\n")
    code, text = run_cli(capsys, "import", "acdc-h5", src, tmp_path / "out")
    assert code == 2 and f"{src / 'val.txt'}: case 'patient009_frame01' has no volume" in text


def test_output_folder_rules(h5_src, tmp_path: Path, capsys) -> None:
    src, _ = h5_src
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, text = run_cli(capsys, "import", "acdc-h5", src, out)
    assert code == 2 and "not empty" in text and "--overwrite" in text
    assert not (out / "imagesTr").exists()
    code, text = run_cli(capsys, "import", "acdc-h5", src, out, "--overwrite")
    assert code == 0, text
    assert (out / "keep.txt").read_text() == "mine"  # only dataset entries are replaced
    (out / "imagesTr" / "stale_0000.nii.gz").write_bytes(b"old")
    code, text = run_cli(capsys, "import", "acdc-h5", src, out, "--overwrite")
    assert code == 0 and not (out / "imagesTr" / "stale_0000.nii.gz").exists()
    code, text = run_cli(capsys, "import", "acdc-h5", src, src / "inside")
    assert code == 2 and "never write into their input" in text
    assert not (src / "inside").exists()
