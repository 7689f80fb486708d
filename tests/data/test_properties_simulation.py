"""Property tests of the scribble simulator and of the scribble thinning tools.

Label maps are random: blobs (rectangles and ellipses) of random classes on background,
or plain noise, 2D and 3D. ``PROPS`` is this file's settings profile: derandomised and
without an example database, so CI sees the same examples every run.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi

from dmsps.data.labels import LabelError
from dmsps.data.simulation import (
    MIN_AREA,
    keep_every_nth_slice,
    shorten_scribble,
    simulate_scribble,
)
from dmsps.errors import DmspsError

PROPS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EIGHT = np.ones((3, 3), bool)


@st.composite
def label_maps(draw, max_z: int = 4, max_side: int = 24, flat: bool | None = None):
    """(label, num_classes): a 2D or 3D map of blobs on background, or of noise."""
    num_classes = draw(st.integers(2, 5))
    flat = draw(st.booleans()) if flat is None else flat
    z = 1 if flat else draw(st.integers(1, max_z))
    h, w = draw(st.integers(4, max_side)), draw(st.integers(4, max_side))
    if draw(st.integers(0, 5)) == 0:  # noise: regions too small or ragged for strokes
        label = draw(hnp.arrays(np.uint8, (z, h, w), elements=st.integers(0, num_classes - 1)))
    else:
        label = np.zeros((z, h, w), np.uint8)
        yy, xx = np.mgrid[:h, :w]
        for k in range(z):
            for _ in range(draw(st.integers(0, 4))):
                c = draw(st.integers(1, num_classes - 1))
                cy, cx = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
                ry, rx = draw(st.integers(1, h)), draw(st.integers(1, w))
                if draw(st.booleans()):
                    blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
                else:
                    blob = (abs(yy - cy) <= ry // 2) & (abs(xx - cx) <= rx // 2)
                label[k][blob] = c
    return (label[0] if flat else label), num_classes


def _slices(a: np.ndarray) -> np.ndarray:
    return a[None] if a.ndim == 2 else a


# === simulate_scribble =================================================================
@settings(PROPS, max_examples=80)
@given(
    spec=label_maps(),
    density=st.sampled_from([1.0, 0.5, 0.25, 0.125, 0.0625]),
    extra=st.integers(0, 3),
    regions=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_strokes_lie_inside_their_class_and_hold_only_classes_and_ignore(
    spec, density, extra, regions, seed
):
    label, c = spec
    ignore = c + extra
    out = simulate_scribble(label, c, density, seed, ignore=ignore, background_regions=regions)
    assert out.shape == label.shape and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= {*range(c), ignore}
    drawn = out != ignore
    np.testing.assert_array_equal(out[drawn], label[drawn])  # a stroke's class is the label's
    # every class with MIN_AREA pixels in a slice gets a stroke there; smaller ones none
    for sl, lab in zip(_slices(out), _slices(label), strict=True):
        for k in range(c):
            assert (sl == k).any() == ((lab == k).sum() >= MIN_AREA)
    # A structure at least 5 pixels deep (from other classes and the image edge) is
    # eroded before its stroke is drawn: the stroke's 8-neighbours are all inside it.
    # (Thinner structures can get strokes on their boundary; see the module's notes.)
    for sl, lab in zip(_slices(out), _slices(label), strict=True):
        for k in range(1, c):
            region = lab == k
            depth = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
            if region.any() and depth.max() >= 5:
                padded = np.pad(sl == k, 1)
                assert not (ndi.binary_dilation(padded, EIGHT) & ~np.pad(region, 1)).any()
    # same seed, same strokes (the generator is the only source of randomness)
    again = simulate_scribble(label, c, density, seed, ignore=ignore, background_regions=regions)
    np.testing.assert_array_equal(again, out)


@settings(PROPS, max_examples=30)
@given(
    spec=label_maps(flat=False),
    density=st.sampled_from([0.5, 0.25, 0.125]),
    seeds=st.tuples(st.integers(0, 1000), st.integers(0, 1000)),
)
def test_density_keeps_a_part_of_the_full_strokes(spec, density, seeds):
    """density 1 ignores the seed; a lower density keeps a subset of those strokes (a piece
    of every stroke, thickened inside the same region), at least one pixel per stroke."""
    label, c = spec
    full = simulate_scribble(label, c, 1.0, seeds[0])
    np.testing.assert_array_equal(full, simulate_scribble(label, c, 1.0, seeds[1]))
    part = simulate_scribble(label, c, density, seeds[0])
    drawn = part != c
    assert (full[drawn] == part[drawn]).all()  # nothing outside the full strokes
    # the same classes get strokes in the same slices
    for sp, sf in zip(part, full, strict=True):
        assert set(np.unique(sp).tolist()) == set(np.unique(sf).tolist())
    assert drawn.sum() <= (full != c).sum()


@settings(PROPS, max_examples=20)
@given(spec=label_maps(flat=False))
def test_slices_are_simulated_independently(spec):
    """At density 1 a volume's scribble is its slices' scribbles stacked."""
    label, c = spec
    out = simulate_scribble(label, c)
    for z in range(label.shape[0]):
        np.testing.assert_array_equal(out[z], simulate_scribble(label[z], c))


@settings(PROPS, max_examples=20)
@given(spec=label_maps(), above=st.sampled_from([None, 0, 1, 200]), where=st.integers(0, 10**6))
def test_labels_outside_the_classes_are_rejected(spec, above, where):
    label, c = spec
    label = label.astype(np.int16)
    value = -1 if above is None else c + above
    label.flat[where % label.size] = value
    with pytest.raises(LabelError, match=rf"values {value} outside 0\.\.{c - 1}"):
        simulate_scribble(label, c)


@PROPS
@given(
    density=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True)),
    ignore_below=st.integers(1, 3),
)
def test_bad_settings_are_rejected(density, ignore_below):
    label = np.zeros((8, 8), np.uint8)
    with pytest.raises(DmspsError, match="density"):
        simulate_scribble(label, 3, density)
    with pytest.raises(DmspsError, match="ignore value"):
        simulate_scribble(label, 3, ignore=3 - ignore_below)
    with pytest.raises(DmspsError, match="ignore value"):
        simulate_scribble(label, 3, ignore=256)
    with pytest.raises(DmspsError, match="2D or 3D"):
        simulate_scribble(np.zeros(8, np.uint8), 3)


# === shorten_scribble ==================================================================
@st.composite
def scribbles(draw, max_z: int = 4, max_side: int = 24):
    """(scribble, num_classes, ignore): random strokes, or simulated ones."""
    num_classes = draw(st.integers(2, 5))
    ignore = num_classes + draw(st.integers(0, 3))
    flat = draw(st.booleans())
    if draw(st.booleans()):
        label, _ = draw(label_maps(max_z, max_side, flat))
        label = np.minimum(label, num_classes - 1)
        scribble = simulate_scribble(label, num_classes, ignore=ignore)
    else:
        side = st.integers(1, max_side)
        shape = (
            (draw(side), draw(side))
            if flat
            else (draw(st.integers(1, max_z)), draw(side), draw(side))
        )
        values = st.sampled_from([*range(num_classes), ignore, ignore, ignore])
        scribble = draw(hnp.arrays(np.uint8, shape, elements=values))
    return scribble, num_classes, ignore


def _strokes(sl: np.ndarray, ignore: int):
    """(class, mask) of every 8-connected stroke of one slice."""
    for c in np.unique(sl[sl != ignore]):
        lab, n = ndi.label(sl == c, structure=EIGHT)
        for i in range(1, n + 1):
            yield int(c), lab == i


@settings(PROPS, max_examples=60)
@given(spec=scribbles(), fraction=st.floats(0.01, 1.0))
def test_shortening_keeps_a_connected_fraction_of_every_stroke(spec, fraction):
    scribble, _, ignore = spec
    before = scribble.copy()
    out = shorten_scribble(scribble, fraction, ignore)
    np.testing.assert_array_equal(scribble, before)  # the input is not modified
    assert out.shape == scribble.shape and out.dtype == scribble.dtype
    kept = out != ignore
    assert (scribble[kept] != ignore).all()  # no voxel added ...
    np.testing.assert_array_equal(out[kept], scribble[kept])  # ... or relabelled
    if fraction == 1.0:
        np.testing.assert_array_equal(out, scribble)
    for sl_in, sl_out in zip(_slices(scribble), _slices(out), strict=True):
        per_class: dict[int, list[float]] = {}
        for c, stroke in _strokes(sl_in, ignore):
            n = int(stroke.sum())
            piece = stroke & (sl_out == c)
            m = int(piece.sum())
            # the piece is one connected part of the stroke, of about fraction x its length
            assert 1 <= m <= n
            assert ndi.label(piece, structure=EIGHT)[1] == 1
            assert m == min(n, max(1, round(fraction * n)))
            stats = per_class.setdefault(c, [0, 0, 0])
            stats[0] += n
            stats[1] += m
            stats[2] += 1
        for total, kept_c, strokes in per_class.values():
            # per class: the fraction asked for, within rounding per stroke
            assert abs(kept_c - fraction * total) < strokes


@settings(PROPS, max_examples=25)
@given(spec=scribbles(), fraction=st.floats(0.05, 0.95))
def test_shortening_is_per_slice_and_deterministic(spec, fraction):
    scribble, _, ignore = spec
    out = shorten_scribble(scribble, fraction, ignore)
    np.testing.assert_array_equal(out, shorten_scribble(scribble, fraction, ignore))
    vol = _slices(scribble)
    for z in range(vol.shape[0]):
        np.testing.assert_array_equal(_slices(out)[z], shorten_scribble(vol[z], fraction, ignore))


@PROPS
@given(fraction=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True)))
def test_shortening_rejects_fractions_outside_0_1(fraction):
    with pytest.raises(DmspsError, match="fraction"):
        shorten_scribble(np.zeros((4, 4), np.uint8), fraction, 4)


# === keep_every_nth_slice ==============================================================
@settings(PROPS, max_examples=60)
@given(
    spec=scribbles(max_z=12, max_side=6),
    step=st.integers(1, 5),
    offset=st.none() | st.integers(-10, 10),
)
def test_every_nth_slice_keeps_exactly_the_slices_with_the_right_index(spec, step, offset):
    scribble, _, ignore = spec
    vol = scribble if scribble.ndim == 3 else scribble[None]
    before = vol.copy()
    out = keep_every_nth_slice(vol, step, ignore, offset)
    np.testing.assert_array_equal(vol, before)
    z = vol.shape[0]
    start = ((z - 1) // 2) % step if offset is None else offset % step
    for k in range(z):
        if k % step == start:
            np.testing.assert_array_equal(out[k], vol[k])
        else:
            assert (out[k] == ignore).all()
    if step == 1:
        np.testing.assert_array_equal(out, vol)
    if offset is None:  # centred: the middle slice is always one of the kept ones
        np.testing.assert_array_equal(out[(z - 1) // 2], vol[(z - 1) // 2])


@settings(PROPS, max_examples=60)
@given(
    spec=scribbles(max_z=12, max_side=6),
    step=st.integers(1, 5),
    offset=st.none() | st.integers(0, 10),
)
def test_every_nth_annotated_slice_counts_only_annotated_slices(spec, step, offset):
    scribble, _, ignore = spec
    vol = scribble if scribble.ndim == 3 else scribble[None]
    out = keep_every_nth_slice(vol, step, ignore, offset, annotated_only=True)
    annotated = [k for k in range(vol.shape[0]) if (vol[k] != ignore).any()]
    n = len(annotated)
    start = ((n - 1) // 2) % step if offset is None else offset % step
    keep = set(annotated[start::step]) if step > 1 else set(range(vol.shape[0]))
    for k in range(vol.shape[0]):
        if k in keep:
            np.testing.assert_array_equal(out[k], vol[k])
        else:
            assert (out[k] == ignore).all()
    if offset is None and n:  # the middle annotated slice is kept
        assert annotated[(n - 1) // 2] in keep


@PROPS
@given(step=st.integers(-3, 0))
def test_every_nth_slice_rejects_a_step_below_1(step):
    with pytest.raises(DmspsError, match="at least 1"):
        keep_every_nth_slice(np.zeros((3, 4, 4), np.uint8), step, 4)
