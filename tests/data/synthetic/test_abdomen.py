"""Synthetic abdominal CT in the WORD layout: anatomy, HU, determinism, files, CLI."""

from __future__ import annotations

import hashlib
import re

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from dmsps.cli import main
from dmsps.data.synthetic.abdomen import (
    DEFAULT_SHAPE,
    DRAWN_LABELS,
    FIELD_OF_VIEW,
    make_abdomen_case,
    make_abdomen_source,
)
from dmsps.data.synthetic.shapes import split_counts
from dmsps.errors import DmspsError
from dmsps.io.nifti import load_volume

SMALL = (16, 40, 40)  # 12.5 x 8.4 x 8.4 mm voxels over the default field of view
PAPER_ORGANS = (1, 2, 3, 4, 5, 6, 8)  # the seven WORD organs the DMSPS paper keeps


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray]]:
    return [make_abdomen_case(seed) for seed in range(4)]


def test_case_shapes_dtypes_and_ranges():
    image, label = make_abdomen_case(0, SMALL)
    assert image.shape == label.shape == SMALL
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert image.min() >= -1024 and image.max() <= 3071
    assert set(np.unique(label)) <= {0, *DRAWN_LABELS}
    # Air outside the body at every in-plane border, fat and bone inside.
    for border in (image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]):
        assert (border < -900).all()
    assert ((image > -130) & (image < -70)).sum() > 0.03 * image.size
    assert (image > 150).sum() > 0.001 * image.size


def test_every_label_in_every_case(cases):
    for _, label in cases:
        assert set(np.unique(label)) == {0, *DRAWN_LABELS}
    for seed in range(4, 10):  # also at a coarse resolution
        assert set(np.unique(make_abdomen_case(seed, SMALL)[1])) == {0, *DRAWN_LABELS}


SPACING = np.asarray(FIELD_OF_VIEW) / np.asarray(DEFAULT_SHAPE)  # 5 x 3.5 x 3.5 mm


def _centroid_mm(mask: np.ndarray) -> np.ndarray:
    """Centroid of a default-shape (Z, Y, X) mask as (towards the head, towards posterior,
    towards the patient's left) in mm from the volume centre."""
    centre = (np.asarray(mask.shape) - 1) / 2.0
    return (np.argwhere(mask).mean(axis=0) - centre) * SPACING


def test_organs_in_a_realistic_arrangement(cases):
    for image, label in cases:
        c = {k: _centroid_mm(label == k) for k in DRAWN_LABELS}
        spine = _centroid_mm((image > 150) & (np.abs(np.arange(96) - 47.5) < 8)[None, None])
        # Liver and right kidney on the patient's right (small X) of the spine, spleen,
        # stomach and left kidney on the left.
        assert c[1][2] < spine[2] - 25.0 and c[4][2] < spine[2] - 30.0
        assert c[2][2] > spine[2] + 40.0 and c[3][2] > spine[2] + 30.0
        assert c[5][2] > spine[2] + 10.0
        # The spine is behind the organs, the kidneys beside it and behind the pancreas
        # and gallbladder.
        for k in DRAWN_LABELS:
            assert c[k][1] < spine[1] + (20.0 if k in (3, 4) else 0.0), DRAWN_LABELS[k]
        assert min(c[3][1], c[4][1]) > max(c[8][1], c[6][1])
        # The liver reaches higher than the organs below it; the left kidney sits above
        # the right one; the gallbladder below the liver's centre; the colon low.
        top = {k: np.flatnonzero((label == k).any(axis=(1, 2))).max() for k in DRAWN_LABELS}
        assert top[1] > max(top[k] for k in (3, 4, 6, 8, 9, 10, 11))
        assert c[3][0] > c[4][0] and c[6][0] < c[1][0] and c[10][0] < c[8][0]
        # Organs start and end at different slices.
        ranges = {(top[k], np.flatnonzero((label == k).any(axis=(1, 2))).min()) for k in top}
        assert len(ranges) >= 6
        # Realistic sizes (cm^3).
        voxel = np.prod(SPACING) / 1000.0
        volume = {k: (label == k).sum() * voxel for k in DRAWN_LABELS}
        assert 600 < volume[1] < 2500 and 40 < volume[2] < 500
        assert 40 < volume[3] < 350 and 40 < volume[4] < 350
        assert 5 < volume[6] < 120 and 15 < volume[8] < 150


def test_hounsfield_units_are_realistic(cases):
    expected = {1: (45, 75), 2: (35, 65), 3: (15, 50), 4: (15, 50), 6: (-10, 30), 8: (20, 60)}
    for image, label in cases:
        for k, (lo, hi) in expected.items():
            inner = ndi.binary_erosion(label == k, np.ones((1, 3, 3)))  # no partial volume
            assert lo < np.median(image[inner]) < hi, DRAWN_LABELS[k]
        assert np.percentile(image[label == 5], 10) < 15  # fluid or gas in the lumen
        body = image > -500
        assert -1010 < np.median(image[~body]) < -990


def _best_interval_dice(image: np.ndarray, mask: np.ndarray, bins: int = 64) -> float:
    """Best Dice of any intensity window [lo, hi) against ``mask``: a threshold classifier."""
    edges = np.linspace(0.0, 1.0 + 1e-6, bins + 1)
    in_class = np.concatenate([[0], np.cumsum(np.histogram(image[mask], edges)[0])])
    in_all = np.concatenate([[0], np.cumsum(np.histogram(image, edges)[0])])
    lo, hi = np.triu_indices(bins + 1, 1)
    tp = in_class[hi] - in_class[lo]
    return float((2 * tp / (in_all[hi] - in_all[lo] + mask.sum())).max())


def test_organs_are_not_separable_by_intensity(cases):
    confusable, volume = {}, {}
    for image, label in cases:
        window = np.clip((image.astype(np.float32) + 150.0) / 400.0, 0.0, 1.0)  # -150..250 HU
        for k in PAPER_ORGANS:
            assert _best_interval_dice(window, label == k) < 0.8, DRAWN_LABELS[k]
            lo, hi = np.percentile(image[label == k], [10, 90])
            other = (image >= lo) & (image <= hi) & (label != k)
            confusable[k] = confusable.get(k, 0) + other.sum()
            volume[k] = volume.get(k, 0) + (label == k).sum()
    # Each organ's typical intensities are just as common elsewhere: liver vs spleen and
    # muscle, kidneys vs pancreas and bowel wall, gallbladder vs bowel fluid.
    for k in PAPER_ORGANS:
        assert confusable[k] > 0.5 * volume[k], DRAWN_LABELS[k]


def test_case_is_deterministic_per_seed():
    a_img, a_lab = make_abdomen_case(5, SMALL)
    b_img, b_lab = make_abdomen_case(np.random.default_rng(5), SMALL)
    c_img, c_lab = make_abdomen_case(6, SMALL)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_lab, c_lab)


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_source_layout_and_reading_back(tmp_path):
    out = make_abdomen_source(tmp_path / "word", cases=5, seed=3, shape=SMALL, progress=False)
    assert split_counts(5) == (3, 1, 1) and split_counts(30) == (18, 6, 6)
    names = {
        "imagesTr": ["word_0001.nii.gz", "word_0002.nii.gz", "word_0003.nii.gz"],
        "imagesVal": ["word_0004.nii.gz"],
        "imagesTs": ["word_0005.nii.gz"],
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*names, "labelsTr", "labelsVal", "labelsTs"]
    )
    for images, files in names.items():
        labels = images.replace("images", "labels")
        assert sorted(p.name for p in (out / images).iterdir()) == files
        assert sorted(p.name for p in (out / labels).iterdir()) == files
        for f in files:
            image, geom = load_volume(out / images / f)
            label, lgeom = load_volume(out / labels / f, np.int16)
            assert image.shape == label.shape == SMALL
            assert np.allclose(geom.spacing, (12.5, 8.4, 8.4))
            assert np.allclose(geom.affine, lgeom.affine)
            assert geom.affine[0, 0] < 0 and geom.affine[1, 1] < 0 and geom.affine[2, 2] > 0
            assert nib.load(out / images / f).get_data_dtype() == np.int16
            assert nib.load(out / labels / f).get_data_dtype() == np.uint8
            assert set(np.unique(label)) == {0, *DRAWN_LABELS}
    # Explicit spacing sets the voxel size (and the field of view).
    out = make_abdomen_source(
        tmp_path / "fine", cases=3, shape=(24, 64, 64), spacing=(7.0, 5.0, 5.0), progress=False
    )
    _, geom = load_volume(out / "imagesTs" / "word_0003.nii.gz")
    assert np.allclose(geom.spacing, (7.0, 5.0, 5.0))


def test_source_is_bitwise_reproducible_and_cases_independent(tmp_path):
    kw = {"shape": SMALL, "progress": False}
    a = make_abdomen_source(tmp_path / "a", cases=3, seed=1, **kw)
    b = make_abdomen_source(tmp_path / "b", cases=3, seed=1, **kw)
    c = make_abdomen_source(tmp_path / "c", cases=4, seed=1, **kw)
    d = make_abdomen_source(tmp_path / "d", cases=3, seed=2, **kw)
    assert _digest(a) == _digest(b)
    first = "imagesTr/word_0001.nii.gz"
    assert _digest(c)[first] == _digest(a)[first]  # a case does not depend on --cases
    assert _digest(c)["labelsTr/word_0001.nii.gz"] == _digest(a)["labelsTr/word_0001.nii.gz"]
    assert _digest(d)[first] != _digest(a)[first]


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "word"
    make_abdomen_source(out, cases=4, shape=SMALL, progress=False)
    with pytest.raises(DmspsError, match="not empty"):
        make_abdomen_source(out, cases=3, shape=SMALL, progress=False)
    make_abdomen_source(out, cases=3, shape=SMALL, progress=False, overwrite=True)
    assert len(list((out / "imagesTr").iterdir())) == 1  # old files were cleared first
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DmspsError, match="not part of a generated dataset"):
        make_abdomen_source(out, cases=3, shape=SMALL, progress=False, overwrite=True)
    assert (out / "notes.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cases": 2}, "cases"),
        ({"cases": True}, "cases"),
        ({"seed": -1}, "seed"),
        ({"shape": (4, 96, 96)}, "shape"),
        ({"shape": (40, 96)}, "shape"),
        ({"shape": (40.0, 96, 96)}, "shape"),
        ({"spacing": (0.0, 3.5, 3.5)}, "spacing"),
        ({"spacing": (2.5, 2.0, 2.0)}, "field of view"),
    ],
)
def test_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(DmspsError, match=match):
        make_abdomen_source(tmp_path / "word", progress=False, **kwargs)
    assert not (tmp_path / "word").exists()


def _last_line(text: str) -> str:
    return [line for line in re.split(r"[\r\n]", text) if line.strip()][-1]


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "word"
    argv = ["synth", "abdomen", str(out), "--cases", "3", "--shape", "16", "40", "40"]
    assert main([*argv, "--seed", "4"]) == 0
    assert "dmsps import word" in capsys.readouterr().out
    assert (out / "imagesTs" / "word_0003.nii.gz").is_file()
    assert main(argv) == 2
    last = _last_line(capsys.readouterr().err)
    assert last.startswith("dmsps synth: error:") and "--overwrite" in last
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    for extra, words in (
        (["--size", "64"], "--size"),
        (["--density", "0.5"], "--density"),
        (["--spacing", "1", "1", "1"], "field of view"),
        (["--cases", "2"], "--cases"),
    ):
        assert main([*argv, "--overwrite", *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("dmsps synth: error:") and words in err
    assert main(["synth", "cardiac", str(tmp_path / "c"), "--shape", "8", "32", "32"]) == 2
    assert "--shape" in capsys.readouterr().err


def test_cli_help_says_how_to_import(capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    text = capsys.readouterr().out
    assert "dmsps import word OUT DATA" in text and "dmsps import brats2020 OUT DATA" in text
