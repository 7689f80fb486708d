"""Scribbles in the DMSPS authors' style (dmsps.data.authors_scribbles), and
`dmsps scribble --scribble-style authors`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from dmsps.data.authors_scribbles import (
    _moved,
    _random_path,
    authors_scribble,
    check_style_options,
)
from dmsps.errors import DmspsError
from dmsps.io.nifti import load_volume
from tests.support import nib_save, run_cli

SQUARE = np.ones((3, 3), bool)


def _bar_case() -> np.ndarray:
    """Two slices of 40 x 60: class 1 a 5 x 30 bar, class 2 a 31 x 21 block (both below
    900 px: neither eroded nor moved), class 3 absent."""
    label = np.zeros((2, 40, 60), np.uint8)
    label[:, 4:9, 5:35] = 1
    label[:, 5:36, 36:57] = 2
    return label


def test_values_geometry_and_seed() -> None:
    label = np.zeros((3, 50, 60), np.uint8)
    yy, xx = np.mgrid[:50, :60]
    label[:, ((yy - 25) / 20.0) ** 2 + ((xx - 30) / 26.0) ** 2 < 1] = 1  # ~1600 px: moved
    label[:, 20:30, 25:35] = 2
    out = authors_scribble(label, 4, rng=0)
    assert out.dtype == np.uint8 and out.shape == label.shape
    annotated = out != 4
    np.testing.assert_array_equal(out[annotated], label[annotated])  # strokes stay inside
    for z in range(3):
        assert set(np.unique(out[z][annotated[z]])) == {0, 1, 2}  # every class, every slice
    np.testing.assert_array_equal(out, authors_scribble(label, 4, rng=0))
    assert any((authors_scribble(label, 4, rng=s) != out).any() for s in (1, 2))
    # A 2D map is one slice; another ignore value is kept.
    flat = authors_scribble(label[0], 4, rng=0, ignore=255)
    assert flat.shape == label.shape[1:] and set(np.unique(flat)) == {0, 1, 2, 255}


def test_small_class_is_its_whole_skeleton_widened_and_clipped() -> None:
    """Below 900 px nothing is eroded or moved: a bar's skeleton is one line, the walk
    covers it from end to end, and the stroke is that line widened by one pixel."""
    label = _bar_case()
    mask = label[0] == 1
    expected = ndi.binary_dilation(skeletonize(mask, method="lee"), SQUARE) & mask
    for seed in range(3):
        out = authors_scribble(label, 4, rng=seed)
        np.testing.assert_array_equal(out[0] == 1, expected)
        assert not (out == 3).any()  # class 3 is absent: no stroke, and 3 is not ignore


def test_background_is_its_whole_skeleton_and_keeps_value_0() -> None:
    """Background: every branch of the skeleton, one pixel wide, value 0 even when the
    volume lacks the highest class (the generator's files gave it that class then)."""
    label = np.zeros((1, 20, 30), np.uint8)  # background 600 - 40 px: not eroded
    label[0, 8:12, 10:20] = 1
    out = authors_scribble(label, 3, rng=0)
    np.testing.assert_array_equal(out[0] == 0, skeletonize(label[0] == 0, method="lee"))
    assert set(np.unique(out)) == {0, 1, 3}
    big = np.zeros((1, 50, 60), np.uint8)  # background above 900 px: eroded 2..7 times
    big[0, 20:30, 25:35] = 1
    bg = big[0] == 0
    stroke = authors_scribble(big, 2, rng=5)[0] == 0
    candidates = [
        skeletonize(ndi.binary_erosion(bg, SQUARE, iterations=k), method="lee") for k in range(2, 8)
    ]
    assert any((stroke == c).all() for c in candidates)


def test_erosion_only_above_900_pixels() -> None:
    """A class covering more than 900 px of a slice is eroded before its skeleton is
    taken: a 4-pixel-thin bar of 960 px vanishes under 2 erosions (no stroke), one of
    800 px is not eroded; with 0 erosions the big one keeps its stroke. A thick bar's
    stroke is the skeleton of the eroded bar, widened by one pixel."""
    label = np.zeros((2, 12, 250), np.uint8)
    label[0, 4:8, 5:245] = 1  # 960 px
    label[1, 4:8, 5:205] = 1  # 800 px
    out = authors_scribble(label, 2, rng=0, erosion=(2, 2))
    assert not (out[0] == 1).any() and (out[1] == 1).any()
    assert (authors_scribble(label, 2, rng=0, erosion=(0, 0))[0] == 1).any()
    thick = np.zeros((1, 20, 90), np.uint8)
    thick[0, 4:15, 4:86] = 1  # 11 x 82 = 902 px: eroded, not moved
    mask = thick[0] == 1
    for k in (3, 5):
        skeleton = skeletonize(ndi.binary_erosion(mask, SQUARE, iterations=k), method="lee")
        expected = ndi.binary_dilation(skeleton, SQUARE) & mask
        np.testing.assert_array_equal(authors_scribble(thick, 2, 0, (k, k))[0] == 1, expected)


def test_random_path_walks_without_revisiting() -> None:
    """A T: the walk starts at the first end point in row-major order, steps to
    8-neighbours, never twice on a pixel, and ends in either arm depending on the seed."""
    piece = np.zeros((8, 11), bool)
    piece[1, 1:10] = True
    piece[2:7, 5] = True
    ends = set()
    for seed in range(30):
        path = _random_path(piece, np.random.default_rng(seed))
        assert path[0] == (1, 1) and len(set(path)) == len(path)
        assert all(piece[p] for p in path)
        steps = np.abs(np.diff(np.array(path), axis=0)).max(axis=1)
        assert (steps == 1).all()
        ends.add(path[-1])
    assert {(1, 9), (6, 5)} <= ends
    line = np.zeros((3, 9), bool)
    line[1, 1:8] = True
    assert _random_path(line, np.random.default_rng(0)) == [(1, x) for x in range(1, 8)]


def test_random_path_cuts_a_dead_end_next_to_a_branch_point() -> None:
    """A line with one extra pixel beside its end: however the walk turns at the fork,
    it dead-ends next to a branch point it passed and is cut back to the last one."""
    piece = np.zeros((2, 7), bool)
    piece[0, :] = True
    piece[1, 1] = True
    seen = set()
    for seed in range(20):
        path = _random_path(piece, np.random.default_rng(seed))
        assert path[:5] == [(0, x) for x in range(6, 1, -1)]  # from the end at (0, 6)
        assert len(path) == 6 and path[-1] in {(0, 1), (1, 1)}
        seen.add(path[-1])
    assert seen == {(0, 1), (1, 1)}


def test_shift_then_turn_about_the_centre() -> None:
    stroke = np.zeros((11, 11), bool)
    stroke[5, 8] = True  # 3 pixels right of the centre (5, 5)
    everywhere = np.ones((11, 11), bool)
    shifted = _moved(stroke, (0, 0), everywhere, 2, -1, 0.0)
    assert list(zip(*np.nonzero(shifted), strict=True)) == [(7, 7)]
    turned = _moved(stroke, (0, 0), everywhere, 0, 0, 90.0)  # counter-clockwise on screen
    assert list(zip(*np.nonzero(turned), strict=True)) == [(2, 5)]
    # the stroke is a part of the slice starting at an offset; the mask clips
    part = np.zeros((3, 3), bool)
    part[1, 1] = True  # slice pixel (6, 4)
    clipped = _moved(part, (5, 3), everywhere & (np.arange(11)[None, :] != 4), 0, 0, 0.0)
    assert not clipped.any()
    assert _moved(part, (5, 3), everywhere, 0, 0, 0.0)[6, 4]


def test_big_classes_are_moved_and_clipped() -> None:
    """Above 1000 px strokes are shifted and turned, then clipped to the class: they stay
    inside it, and differ from the unmoved stroke for some seed."""
    label = np.zeros((1, 64, 64), np.uint8)
    label[0, 10:50, 12:40] = 1  # 1120 px
    outs = [authors_scribble(label, 2, rng=s, erosion=(2, 2))[0] for s in range(4)]
    for out in outs:
        assert (label[0][out == 1] == 1).all() and (out == 1).any()
    assert len({o.tobytes() for o in outs}) > 1


def test_slice_step_draws_on_the_centred_slices_only() -> None:
    label = np.zeros((7, 20, 20), np.uint8)
    label[:, 5:15, 5:15] = 1
    out = authors_scribble(label, 2, rng=0, slice_step=3)
    annotated = (out != 2).any(axis=(1, 2))
    assert annotated.tolist() == [True, False, False, True, False, False, True]  # 3 = middle


def test_bad_options() -> None:
    label = np.zeros((1, 8, 8), np.uint8)
    with pytest.raises(DmspsError, match="erosion range"):
        authors_scribble(label, 2, erosion=(3, 1))
    with pytest.raises(DmspsError, match="ignore value"):
        authors_scribble(label, 2, ignore=1)
    with pytest.raises(DmspsError, match=r"values 5 outside 0\.\.1"):
        authors_scribble(label + 5, 2)
    with pytest.raises(DmspsError, match="slice step"):
        authors_scribble(label, 2, slice_step=0)
    with pytest.raises(DmspsError, match="authors' style draws whole strokes"):
        check_style_options(0.5, (1, 7), "--density")


def test_cli_authors_style(tmp_path: Path, capsys) -> None:
    """`dmsps scribble --scribble-style authors`: per file seeded like our style, on the
    slices --every-nth-slice keeps; --density and --from-scribbles do not combine."""
    import zlib

    labels = tmp_path / "labels"
    label = np.zeros((5, 24, 24), np.uint8)
    label[:, 6:18, 6:18] = 1
    label[:, 9:15, 9:15] = 2
    nib_save(labels / "a.nii.gz", label)
    out = tmp_path / "out"
    code, text = run_cli(
        capsys, "scribble", labels, out, "--scribble-style", "authors", "--every-nth-slice",
        "2", "--seed", "4", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    written, _ = load_volume(out / "a.nii.gz", np.int16)
    rng = np.random.default_rng([4, zlib.crc32(b"a.nii.gz")])
    np.testing.assert_array_equal(written, authors_scribble(label, 3, rng, slice_step=2))
    assert (written != 3).any(axis=(1, 2)).tolist() == [True, False, True, False, True]
    code, text = run_cli(
        capsys, "scribble", labels, tmp_path / "o2", "--scribble-style", "authors",
        "--density", "0.5",
    )  # fmt: skip
    assert code == 2 and "--density 0.5 shortens the strokes of --scribble-style dmsps" in text
    code, text = run_cli(
        capsys, "scribble", out, tmp_path / "o3", "--from-scribbles", "--scribble-style",
        "authors", "--num-classes", "3",
    )  # fmt: skip
    assert code == 2 and "--from-scribbles shortens existing ones" in text
