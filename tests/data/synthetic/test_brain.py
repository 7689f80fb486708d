"""Synthetic brain-tumour MRI in the BraTS 2020 layout: channels, tumour labels, contrasts,
determinism, files, CLI."""

from __future__ import annotations

import hashlib
import re

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from dmsps.cli import main
from dmsps.data.synthetic.brain import CHANNELS, make_brain_case, make_brain_source
from dmsps.errors import DmspsError
from dmsps.io.nifti import load_volume

SMALL = (32, 40, 40)  # 4.5 x 4.8 x 4.8 mm voxels over the default field of view
FILES = ("t1", "t1ce", "t2", "flair", "seg")


@pytest.fixture(scope="module")
def cases() -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    return [make_brain_case(seed) for seed in range(5)]


def test_case_shapes_dtypes_and_ranges():
    channels, seg = make_brain_case(0, SMALL)
    assert tuple(channels) == CHANNELS == ("t1", "t1ce", "t2", "flair")
    for image in channels.values():
        assert image.shape == SMALL and image.dtype == np.float32
        assert np.isfinite(image).all() and image.min() == 0.0 and image.max() > 0.0
    assert seg.shape == SMALL and seg.dtype == np.uint8
    assert set(np.unique(seg)) == {0, 1, 2, 4}


def test_skull_stripped_with_a_zero_margin(cases):
    for channels, seg in cases:
        brain = channels["t1"] > 0
        for image in channels.values():
            assert np.array_equal(image > 0, brain)  # exactly 0 outside, positive inside
        assert brain[seg > 0].all()
        # Zeros on every face, so cropping to the non-zero box removes something.
        for axis in range(3):
            profile = brain.any(axis=tuple(a for a in range(3) if a != axis))
            assert not profile[0] and not profile[-1]
        assert 0.1 < brain.mean() < 0.6
        # One ellipsoid-like blob: filling holes adds nothing, one connected component.
        assert ndi.label(brain)[1] == 1 and ndi.binary_fill_holes(brain).sum() == brain.sum()


def test_tumour_labels_nest_like_brats(cases):
    for _, seg in cases:
        assert set(np.unique(seg)) == {0, 1, 2, 4}
        core = (seg == 1) | (seg == 4)
        # The core lies inside the whole tumour with edema all around it.
        assert not (ndi.binary_dilation(core, np.ones((3, 3, 3))) & (seg == 0)).any()
        assert (seg == 2).sum() > core.sum()
        # The enhancing rim surrounds the necrosis.
        necrosis = seg == 1
        shell = ndi.binary_dilation(necrosis) & ~necrosis
        assert (seg[shell] == 4).mean() > 0.9
        assert ndi.label(seg > 0)[1] == 1
    # Realistic whole-tumour sizes (cm^3) at 3 mm voxels.
    voxel = 27.0 / 1000.0
    whole = [(seg > 0).sum() * voxel for _, seg in cases]
    assert min(whole) > 20 and max(whole) < 450


def _ratio(image: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Mean of region ``a`` over mean of region ``b``."""
    return float(image[a].mean() / image[b].mean())


def test_channel_contrasts_as_in_brats(cases):
    for ch, seg in cases:
        brain = ch["t1"] > 0
        whole = seg > 0
        near = ndi.binary_dilation(whole, iterations=3) & ~whole & brain  # normal tissue
        edema, rim, necrosis = seg == 2, seg == 4, seg == 1
        assert _ratio(ch["t2"], edema, near) > 1.2 and _ratio(ch["flair"], edema, near) > 1.15
        assert _ratio(ch["t1ce"], rim, edema) > 1.1 and _ratio(ch["t1ce"], rim, necrosis) > 1.5
        assert _ratio(ch["t1"], necrosis, near) < 0.8 and _ratio(ch["t1ce"], necrosis, near) < 0.9
        assert _ratio(ch["t2"], necrosis, near) > 1.3


def test_gain_and_bias_differ_per_channel_and_case(cases):
    medians = np.array(
        [[np.median(ch[name][ch[name] > 0]) for name in CHANNELS] for ch, _ in cases]
    )
    # Arbitrary scanner units: per-volume scales spread over more than a factor of 3.
    assert medians.max(axis=0).min() > 3 * medians.min(axis=0).min()
    assert len(np.unique(np.round(medians, 3))) == medians.size
    # Each channel has its own smooth bias field: t1 and t1ce agree on normal tissue up to
    # a constant, except for the bias, so their log-ratio drifts across the brain (without
    # bias fields its linear trend stays under 0.09 per 100 mm).
    trends = []
    for channels, seg in cases:
        normal = (channels["t1"] > 0) & (seg == 0)
        log_ratio = np.log(channels["t1"][normal] / channels["t1ce"][normal])
        mm = np.argwhere(normal) * 3.0
        design = np.column_stack([mm - mm.mean(axis=0), np.ones(len(mm))])
        coef = np.linalg.lstsq(design, log_ratio, rcond=None)[0]
        trends.append(100.0 * np.linalg.norm(coef[:3]))
    assert max(trends) > 0.2, trends


def _best_interval_dice(image: np.ndarray, mask: np.ndarray, bins: int = 64) -> float:
    """Best Dice of any intensity window [lo, hi) against ``mask``: a threshold classifier."""
    edges = np.linspace(0.0, 1.0 + 1e-6, bins + 1)
    in_class = np.concatenate([[0], np.cumsum(np.histogram(image[mask], edges)[0])])
    in_all = np.concatenate([[0], np.cumsum(np.histogram(image, edges)[0])])
    lo, hi = np.triu_indices(bins + 1, 1)
    tp = in_class[hi] - in_class[lo]
    return float((2 * tp / (in_all[hi] - in_all[lo] + mask.sum())).max())


def test_tumour_regions_are_not_separable_by_one_channel(cases):
    dice = []
    for channels, seg in cases:
        brain = channels["t1"] > 0
        row = []
        for name, mask in (("t1ce", seg == 4), ("t2", seg == 1), ("flair", seg == 2)):
            image = channels[name][brain]
            image = np.clip(image / np.percentile(image, 99.5), 0.0, 1.0)
            row.append(_best_interval_dice(image, mask[brain]))
        dice.append(row)
    dice = np.array(dice)
    # Enhancing vessels and choroid plexus share the rim's t1ce, CSF and lesions the
    # t2/flair brightness of necrosis and edema, and edema fades into normal tissue.
    assert dice.max() < 0.95 and (dice.mean(axis=0) < 0.8).all(), dice


def test_case_is_deterministic_per_seed():
    a_ch, a_seg = make_brain_case(5, SMALL)
    b_ch, b_seg = make_brain_case(np.random.default_rng(5), SMALL)
    c_ch, c_seg = make_brain_case(6, SMALL)
    assert np.array_equal(a_seg, b_seg) and not np.array_equal(a_seg, c_seg)
    for name in CHANNELS:
        assert np.array_equal(a_ch[name], b_ch[name])
        assert not np.array_equal(a_ch[name], c_ch[name])


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_source_layout_and_reading_back(tmp_path):
    out = make_brain_source(tmp_path / "brats", cases=2, seed=3, shape=SMALL, progress=False)
    names = ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(
            f"{name}_{f}.nii.gz" for f in FILES
        )
        seg, geom = load_volume(out / name / f"{name}_seg.nii.gz", np.int16)
        assert seg.shape == SMALL and set(np.unique(seg)) == {0, 1, 2, 4}
        assert np.allclose(geom.spacing, (4.5, 4.8, 4.8))
        assert geom.affine[0, 0] < 0 and geom.affine[1, 1] < 0 and geom.affine[2, 2] > 0
        assert nib.load(out / name / f"{name}_seg.nii.gz").get_data_dtype() == np.uint8
        for channel in CHANNELS:
            path = out / name / f"{name}_{channel}.nii.gz"
            image, g = load_volume(path)
            assert np.allclose(g.affine, geom.affine) and image.shape == SMALL
            assert nib.load(path).get_data_dtype() == np.float32
            assert (image[seg > 0] > 0).all() and image.min() == 0.0
    # Explicit spacing sets the voxel size; BraTS itself is 1 mm isotropic.
    out = make_brain_source(
        tmp_path / "fine", cases=1, shape=(48, 64, 56), spacing=(3.0, 3.0, 3.0), progress=False
    )
    _, geom = load_volume(out / names[0] / f"{names[0]}_t2.nii.gz")
    assert np.allclose(geom.spacing, (3.0, 3.0, 3.0))


def test_source_is_bitwise_reproducible_and_cases_independent(tmp_path):
    kw = {"shape": SMALL, "progress": False}
    a = make_brain_source(tmp_path / "a", cases=1, seed=1, **kw)
    b = make_brain_source(tmp_path / "b", cases=1, seed=1, **kw)
    c = make_brain_source(tmp_path / "c", cases=2, seed=1, **kw)
    d = make_brain_source(tmp_path / "d", cases=1, seed=2, **kw)
    assert _digest(a) == _digest(b)
    first = {k: v for k, v in _digest(c).items() if k.startswith("BraTS20_Training_001/")}
    assert first == _digest(a)  # a case does not depend on --cases
    assert _digest(d) != _digest(a)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "brats"
    make_brain_source(out, cases=2, shape=SMALL, progress=False)
    with pytest.raises(DmspsError, match="not empty"):
        make_brain_source(out, cases=1, shape=SMALL, progress=False)
    make_brain_source(out, cases=1, shape=SMALL, progress=False, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["BraTS20_Training_001"]  # old cases cleared
    (out / "name_mapping.csv").write_text("mine")
    with pytest.raises(DmspsError, match="not part of a generated dataset"):
        make_brain_source(out, cases=1, shape=SMALL, progress=False, overwrite=True)
    assert (out / "name_mapping.csv").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cases": 0}, "cases"),
        ({"cases": 1000}, "cases"),
        ({"seed": -2}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"shape": (8, 64, 64)}, "shape"),
        ({"spacing": (1.0, 1.0, float("nan"))}, "spacing"),
        ({"spacing": (1.0, 1.0, 1.0)}, "field of view"),
    ],
)
def test_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(DmspsError, match=match):
        make_brain_source(tmp_path / "brats", progress=False, **kwargs)
    assert not (tmp_path / "brats").exists()


def test_rejects_a_file_as_output(tmp_path):
    (tmp_path / "brats").write_text("x")
    with pytest.raises(DmspsError, match="not a folder"):
        make_brain_source(tmp_path / "brats", cases=1, shape=SMALL, progress=False)


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "brats"
    argv = ["synth", "brain", str(out), "--cases", "2", "--shape", "32", "40", "40"]
    assert main([*argv, "--seed", "7"]) == 0
    assert "dmsps import brats2020" in capsys.readouterr().out
    assert (out / "BraTS20_Training_002" / "BraTS20_Training_002_flair.nii.gz").is_file()
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = [line for line in re.split(r"[\r\n]", err) if line.strip()][-1]
    assert last.startswith("dmsps synth: error:") and "--overwrite" in last
    for extra, words in (
        (["--slices", "4"], "--slices"),
        (["--spacing", "1", "1", "1"], "field of view"),
        (["--cases", "0"], "--cases"),
    ):
        assert main([*argv, "--overwrite", *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("dmsps synth: error:") and words in err
    assert main([*argv, "--overwrite"]) == 0
