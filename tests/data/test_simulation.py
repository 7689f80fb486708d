"""Scribble simulation: strokes inside their class, one per present class, density, CLI."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from dmsps.cli import main
from dmsps.data.simulation import (
    MIN_AREA,
    keep_every_nth_slice,
    shorten_scribble,
    simulate_scribble,
)
from dmsps.errors import DmspsError
from dmsps.io.nifti import Geometry, load_volume, save_volume

C = 4  # background, RV-like crescent, ring, disc


def heart_like(slices: int = 6, size: int = 64) -> np.ndarray:
    """Disc (3) in a ring (2) with a crescent (1) beside it, shrinking along Z."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    out = np.zeros((slices, size, size), dtype=np.int16)
    for z in range(slices):
        r = 12.0 - 1.2 * z
        cy, cx = size / 2 + 0.5 * z, size / 2 + 3
        rho = np.hypot(yy - cy, xx - cx)
        rv = np.hypot(yy - cy, xx - (cx - r * 0.9)) < r * 1.5
        out[z][rv] = 1
        out[z][rho < r + 4] = 2
        out[z][rho < r] = 3
    return out


def test_strokes_lie_inside_their_class_and_keep_off_boundaries():
    label = heart_like()
    for density in (1.0, 0.5, 0.125):
        scr = simulate_scribble(label, C, density, rng=0)
        assert scr.dtype == np.uint8 and scr.shape == label.shape
        assert set(np.unique(scr)) <= set(range(C + 1))
        annotated = scr < C
        assert np.array_equal(scr[annotated], label[annotated])
    # In the thick disc, a stroke keeps well away from the class boundary.
    scr = simulate_scribble(label, C, 1.0, rng=0)
    disc = label[0] == 3
    dist = ndi.distance_transform_edt(disc)
    assert dist[scr[0] == 3].min() >= 2


def test_every_present_class_gets_a_stroke_per_slice():
    label = heart_like()
    label[2, :3, :3] = 1  # a 9-pixel speck: too small for a stroke
    scr = simulate_scribble(label, C, 1.0 / 16, rng=1)
    for z in range(label.shape[0]):
        for c in range(C):
            area = int((label[z] == c).sum())
            strokes = int((scr[z] == c).sum())
            if area >= MIN_AREA:
                assert strokes >= 1, f"slice {z} class {c} has no stroke"
            elif c != 1 or z != 2:
                assert area == 0
    speck = np.zeros_like(label[2], dtype=bool)
    speck[:3, :3] = True
    assert (scr[2][speck] == C).all()


def test_background_strokes_circle_the_foreground_not_the_border():
    label = heart_like()
    scr = simulate_scribble(label, C, 1.0, rng=0)
    bg = scr[0] == 0
    assert bg.sum() > 30
    assert not bg[0, :].any() and not bg[-1, :].any() and not bg[:, 0].any()
    fg_dist = ndi.distance_transform_edt(label[0] == 0)
    assert fg_dist[bg].min() < 10  # one loop runs close to the structures


def test_only_background_slice_gets_a_background_stroke():
    label = np.zeros((1, 40, 40), dtype=np.uint8)
    scr = simulate_scribble(label, 2, 1.0, rng=0)
    assert (scr == 0).sum() > 0 and ((scr == 0) | (scr == 2)).all()


def test_density_shortens_strokes_proportionally():
    label = heart_like(slices=8)
    full = (simulate_scribble(label, C, 1.0, rng=0) < C).sum()
    quarter = np.mean([(simulate_scribble(label, C, 0.25, rng=s) < C).sum() for s in range(3)])
    half = np.mean([(simulate_scribble(label, C, 0.5, rng=s) < C).sum() for s in range(3)])
    assert 0.15 * full <= quarter <= 0.4 * full
    assert quarter < half < full


def test_shortened_stroke_is_one_connected_piece():
    label = heart_like()
    scr = simulate_scribble(label, C, 0.25, rng=3)
    for z in range(label.shape[0]):
        for c in (1, 2, 3):
            _, n = ndi.label(scr[z] == c, structure=np.ones((3, 3)))
            assert n == 1, f"slice {z} class {c}: {n} pieces"


def test_deterministic_per_seed():
    label = heart_like()
    a = simulate_scribble(label, C, 0.25, rng=7)
    b = simulate_scribble(label, C, 0.25, rng=np.random.default_rng(7))
    c = simulate_scribble(label, C, 0.25, rng=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ignore_value_and_2d_input():
    label = heart_like()[0]
    scr = simulate_scribble(label, C, 1.0, rng=0, ignore=255)
    assert scr.shape == label.shape and (scr == 255).mean() > 0.5
    assert set(np.unique(scr)) == {0, 1, 2, 3, 255}


@pytest.mark.parametrize(
    ("label", "kwargs", "match"),
    [
        (np.full((1, 8, 8), np.nan), {}, "NaN"),
        (np.full((1, 8, 8), 1.5), {}, "whole numbers"),
        (np.full((1, 8, 8), 4), {}, r"0\.\.3"),
        (np.full((1, 8, 8), -1), {}, r"0\.\.3"),
        (np.zeros((1, 8, 8)), {"density": 0.0}, "density"),
        (np.zeros((1, 8, 8)), {"density": 1.5}, "density"),
    ],
)
def test_bad_input_raises_clear_errors(label, kwargs, match):
    with pytest.raises(DmspsError, match=match):
        simulate_scribble(label, C, **kwargs)


# --- command line ------------------------------------------------------------------------
def _write_labels(folder, names=("a.nii.gz", "b.nii.gz")):
    geom = Geometry.from_spacing((6, 64, 64), (5.0, 1.25, 1.25))
    label = heart_like()
    for i, name in enumerate(names):
        save_volume(folder / name, np.roll(label, i, axis=2), geom, np.uint8)
    return label, geom


def test_cli_writes_scribbles_with_same_names_and_geometry(tmp_path, capsys):
    labels, out = tmp_path / "labels", tmp_path / "scribbles"
    label, geom = _write_labels(labels)
    rc = main(["scribble", str(labels), str(out), "--density", "0.5", "--seed", "1"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nii.gz"]
    scr, g = load_volume(out / "a.nii.gz", np.float32)
    assert g.same_grid(geom) and np.allclose(g.affine, geom.affine)
    assert set(np.unique(scr)) <= {0, 1, 2, 3, 4}
    annotated = scr < 4
    assert np.array_equal(scr[annotated], label[annotated])
    assert nib.load(str(out / "a.nii.gz")).get_data_dtype() == np.uint8
    # Same seed, same output.
    rc = main(["scribble", str(labels), str(tmp_path / "again"), "--density", "0.5", "--seed", "1"])
    assert rc == 0
    again, _ = load_volume(tmp_path / "again" / "a.nii.gz", np.float32)
    assert np.array_equal(scr, again)
    assert "4 classes" in capsys.readouterr().out


def test_cli_rejects_bad_labels_with_one_line(tmp_path, capsys):
    labels = tmp_path / "labels"
    _write_labels(labels, names=("good.nii.gz",))
    geom = Geometry.from_spacing((1, 8, 8), (1.0, 1.0, 1.0))
    save_volume(labels / "bad.nii.gz", np.full((1, 8, 8), 2.5), geom, np.float32)
    rc = main(["scribble", str(labels), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    last = [line for line in re.split(r"[\r\n]", err) if line.strip()][-1]
    assert last.startswith("dmsps scribble: error:")
    assert "bad.nii.gz" in last and "whole numbers" in last
    assert not (tmp_path / "out").exists()  # checked before anything was written


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--density", "0"], "density"),
        (["--num-classes", "3"], "num-classes"),
    ],
)
def test_cli_rejects_bad_options(tmp_path, capsys, extra, match):
    labels = tmp_path / "labels"
    _write_labels(labels)
    rc = main(["scribble", str(labels), str(tmp_path / "out"), *extra])
    assert rc == 2 and match in capsys.readouterr().err


def test_cli_refuses_to_write_into_the_labels_folder(tmp_path, capsys):
    labels = tmp_path / "labels"
    _write_labels(labels)
    rc = main(["scribble", str(labels), str(labels)])
    assert rc == 2 and "must differ" in capsys.readouterr().err


# --- thinning out existing scribbles (the paper's sparsity study) ---------------------------
def _real_like_scribble() -> np.ndarray:
    """Three slices, ignore 4: a 2-px-wide 16-px line of class 1 and an 8-px line of
    background on slice 0, a full-width line of class 2 on slice 1, nothing on slice 2."""
    s = np.full((3, 10, 20), 4, np.uint8)
    s[0, 2:4, 2:18] = 1
    s[0, 6, 0:8] = 0
    s[1, 7, :] = 2
    return s


def test_shorten_keeps_a_quarter_of_every_stroke_as_one_piece_from_an_end():
    s = _real_like_scribble()
    out = shorten_scribble(s, 0.25, 4)
    assert (out == 1).sum() == 8 and (out == 0).sum() == 2 and (out == 2).sum() == 5
    assert ndi.label(out[0] == 1, structure=np.ones((3, 3)))[1] == 1
    # From an end of the stroke, not its middle: the kept piece touches column 2 or 17.
    cols = np.nonzero(out[0] == 1)[1]
    assert cols.min() == 2 or cols.max() == 17
    # Strokes only shrink: nothing new is annotated, nothing changes class.
    assert np.all((out == 4) | (out == s))
    assert np.array_equal(shorten_scribble(s, 1.0, 4), s)
    assert np.array_equal(shorten_scribble(s, 0.25, 4), out)  # no seed: deterministic
    with pytest.raises(DmspsError, match=r"\(0, 1\]"):
        shorten_scribble(s, 0.0, 4)


def test_every_nth_annotated_slice_skips_empty_slices():
    s = np.full((7, 4, 4), 3, np.uint8)
    for z in (0, 2, 3, 6):
        s[z, 1, 1] = 1
    kept = keep_every_nth_slice(s, 2, 3, annotated_only=True)
    annotated = [z for z in range(7) if (kept[z] != 3).any()]
    # Annotated slices 0, 2, 3, 6; centred start (4 - 1) // 2 % 2 = 1 -> slices 2 and 6.
    assert annotated == [2, 6]
    # Counting all slices instead: start (7 - 1) // 2 % 2 = 1 -> 1, 3, 5 -> only 3 holds one.
    assert [z for z in range(7) if (keep_every_nth_slice(s, 2, 3)[z] != 3).any()] == [3]


def test_cli_thins_out_existing_scribbles(tmp_path, capsys):
    src = tmp_path / "data" / "scribblesTr"
    src.mkdir(parents=True)
    s = _real_like_scribble()
    save_volume(src / "a.nii.gz", s, Geometry.from_spacing(s.shape, (5.0, 1.0, 1.0)), np.uint8)
    out = tmp_path / "thin"
    args = ["scribble", str(src), str(out), "--from-scribbles", "--length", "0.25"]
    # No dataset.json above: the ignore value is unknown.
    assert main(args) == 2
    assert "--num-classes" in capsys.readouterr().err
    (tmp_path / "data" / "dataset.json").write_text(
        '{"labels": {"background": 0, "a": 1, "b": 2, "c": 3, "ignore": 4}}'
    )
    assert main([*args, "--every-nth-slice", "2"]) == 0
    assert "10 of 60 annotated voxels kept" in capsys.readouterr().out
    thin, geom = load_volume(out / "a.nii.gz")
    assert geom.spacing == pytest.approx((5.0, 1.0, 1.0))
    # Annotated slices 0 and 1; centred start (2 - 1) // 2 % 2 = 0 keeps slice 0 only.
    assert (thin[1] == 4).all() and (thin[0] == 1).sum() == 8
    assert main(["scribble", str(src), str(tmp_path / "x"), "--length", "0.5"]) == 2
    assert "--from-scribbles" in capsys.readouterr().err
