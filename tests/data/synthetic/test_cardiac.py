"""Synthetic cardiac data: shapes, anatomy, determinism, intensity overlap, dataset files."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from dmsps.cli import main
from dmsps.data.layout import Dataset
from dmsps.data.synthetic.cardiac import make_cardiac_case, make_cardiac_dataset
from dmsps.data.synthetic.shapes import split_counts
from dmsps.errors import DmspsError


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray]]:
    return [make_cardiac_case(seed, 96, 8) for seed in range(6)]


def test_case_shapes_dtypes_and_ranges():
    image, label = make_cardiac_case(0, 64, 5)
    assert image.shape == label.shape == (5, 64, 64)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.1
    assert set(np.unique(label)) <= {0, 1, 2, 3}


def test_anatomy_all_classes_and_base_to_apex(cases):
    with_all = 0
    for image, label in cases:
        present = set(np.unique(label))
        with_all += present == {0, 1, 2, 3}
        lv = (label == 3).sum(axis=(1, 2))
        rv = (label == 1).sum(axis=(1, 2))
        assert (label == 3).any(axis=(1, 2)).all() and (label == 2).any(axis=(1, 2)).all()
        assert lv[0] > 1.5 * lv[-1]  # the heart shrinks towards the apex
        assert rv[0] > rv[-1]
        mid = label[label.shape[0] // 2]
        assert set(np.unique(mid)) == {0, 1, 2, 3}
        # Blood pools bright, myocardium dark, on average.
        assert image[label == 3].mean() > image[label == 2].mean() + 0.3
        assert image[label == 1].mean() > image[label == 2].mean() + 0.3
    assert with_all == len(cases)


def test_myocardium_is_a_ring_a_few_pixels_thick(cases):
    from scipy import ndimage as ndi

    for _, label in cases:
        myo = label[0] == 2
        thickness = 2 * ndi.distance_transform_edt(myo).max()
        assert 4 <= thickness <= 14
        # The ring encloses the LV: filling the myocardium's holes covers the LV.
        assert ndi.binary_fill_holes(myo | (label[0] == 3))[label[0] == 3].all()
        _, holes = ndi.label(~myo)
        assert holes >= 2


def _best_interval_dice(image: np.ndarray, mask: np.ndarray, bins: int = 64) -> float:
    """Best Dice of any intensity window [lo, hi) against ``mask``: a threshold classifier."""
    edges = np.linspace(0.0, 1.0 + 1e-6, bins + 1)
    in_class = np.concatenate([[0], np.cumsum(np.histogram(image[mask], edges)[0])])
    in_all = np.concatenate([[0], np.cumsum(np.histogram(image, edges)[0])])
    lo, hi = np.triu_indices(bins + 1, 1)
    tp = in_class[hi] - in_class[lo]
    return float((2 * tp / (in_all[hi] - in_all[lo] + mask.sum())).max())


def test_structures_are_not_separable_by_intensity(cases):
    confusable, area = np.zeros(4), np.zeros(4)
    for image, label in cases:
        for c in (1, 2, 3):
            assert _best_interval_dice(image, label == c) < 0.8
            lo, hi = np.percentile(image[label == c], [10, 90])
            confusable[c] += ((image >= lo) & (image <= hi) & (label == 0)).sum()
            area[c] += (label == c).sum()
    # Plenty of background shares each structure's typical intensities.
    assert (confusable[1:] > 0.5 * area[1:]).all(), confusable[1:] / area[1:]


def test_case_is_deterministic_per_seed():
    a_img, a_lab = make_cardiac_case(5, 48, 4)
    b_img, b_lab = make_cardiac_case(np.random.default_rng(5), 48, 4)
    c_img, c_lab = make_cardiac_case(6, 48, 4)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_lab, c_lab)


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_dataset_layout_splits_and_reading_back(tmp_path):
    out = make_cardiac_dataset(tmp_path / "ds", cases=5, size=48, slices=4, seed=3, progress=False)
    splits = json.loads((out / "splits.json").read_text())
    assert [len(splits[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    assert split_counts(40) == (24, 8, 8) and split_counts(3) == (1, 1, 1)
    ds = Dataset(out)
    assert ds.meta.class_names == ["background", "RV", "Myo", "LV"] and ds.meta.ignore_value == 4
    for case in splits["train"] + splits["val"]:
        paths = ds.paths(case)
        assert paths.images[0].parent.name == "imagesTr" and paths.scribble is not None
        image, geom = ds.load_image(case)
        assert image.shape == (1, 4, 48, 48)
        assert np.allclose(geom.spacing, (8.0, 3.0, 3.0))
        label, scribble = ds.load_label(case), ds.load_scribble(case)
        annotated = scribble < 4
        assert annotated.any() and np.array_equal(scribble[annotated], label[annotated])
    (test_case,) = splits["test"]
    paths = ds.paths(test_case)
    assert paths.images[0].parent.name == "imagesTs" and paths.label is not None
    assert paths.scribble is None


def test_dataset_is_bitwise_reproducible_and_cases_independent(tmp_path):
    a = make_cardiac_dataset(tmp_path / "a", cases=3, size=32, slices=2, seed=1, progress=False)
    b = make_cardiac_dataset(tmp_path / "b", cases=3, size=32, slices=2, seed=1, progress=False)
    c = make_cardiac_dataset(tmp_path / "c", cases=4, size=32, slices=2, seed=1, progress=False)
    d = make_cardiac_dataset(tmp_path / "d", cases=3, size=32, slices=2, seed=2, progress=False)
    assert _digest(a) == _digest(b)
    first = "imagesTr/case_000_0000.nii.gz"
    assert _digest(c)[first] == _digest(a)[first]  # a case does not depend on --cases
    assert _digest(d)[first] != _digest(a)[first]


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "ds"
    make_cardiac_dataset(out, cases=3, size=32, slices=2, progress=False)
    with pytest.raises(DmspsError, match="not empty"):
        make_cardiac_dataset(out, cases=3, size=32, slices=2, progress=False)
    make_cardiac_dataset(out, cases=4, size=32, slices=2, progress=False, overwrite=True)
    assert len(Dataset(out).cases_in("Tr")) == 3  # old files were cleared first
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DmspsError, match="not part of a generated dataset"):
        make_cardiac_dataset(out, cases=3, size=32, slices=2, progress=False, overwrite=True)
    assert (out / "notes.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cases": 2}, "cases"),
        ({"size": 16}, "size"),
        ({"slices": 0}, "slices"),
        ({"seed": -1}, "seed"),
        ({"density": 0.0}, "density"),
        ({"density": 2.0}, "density"),
    ],
)
def test_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(DmspsError, match=match):
        make_cardiac_dataset(tmp_path / "ds", progress=False, **kwargs)
    assert not (tmp_path / "ds").exists()


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["synth", "cardiac", str(out), "--cases", "3", "--size", "32", "--slices", "2"]
    assert main([*argv, "--density", "0.5", "--seed", "4"]) == 0
    assert Dataset(out).split("test") == ["case_002"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = [line for line in re.split(r"[\r\n]", err) if line.strip()][-1]
    assert last.startswith("dmsps synth: error:") and "--overwrite" in last
    assert main([*argv, "--overwrite"]) == 0
    assert main(["synth", "cardiac", str(tmp_path / "x"), "--cases", "1"]) == 2
    assert "at least 3" in capsys.readouterr().err
