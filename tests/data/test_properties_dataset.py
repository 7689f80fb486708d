"""Property tests of the dataset layer: NIfTI round trips, the folder layout, value checks.

Random (Z, Y, X) shapes, spacings, channel counts, class sets and case names; every
example runs in its own temporary folder. ``PROPS`` is this file's settings profile:
derandomised and without an example database, so CI sees the same examples every run.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dmsps.data.importers.common import ScribbleOptions, load_nifti_case
from dmsps.data.labels import LabelError, as_class_map, check_label, check_scribble
from dmsps.data.layout import SPLITS, Dataset, DatasetMeta, DatasetWriter, load_channels
from dmsps.errors import DataError, DmspsError
from dmsps.io.nifti import Geometry, load_volume, save_volume

PROPS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

shapes = st.tuples(
    st.integers(1, 6), st.integers(1, 24), st.integers(1, 24)
)  # (Z, Y, X), one slice and one row included
#: NIfTI stores the affine as float32: float32 spacings come back exactly.
spacings = st.tuples(*[st.floats(0.0625, 16.0, width=32)] * 3)
finite32 = st.floats(-1e6, 1e6, width=32, allow_subnormal=True)
endings = st.sampled_from([".nii", ".nii.gz"])


def _f32(x: float) -> float:
    return float(np.float32(x))


def rotation(angles: tuple[float, float, float]) -> np.ndarray:
    """A proper rotation from three Euler angles."""
    a, b, c = angles
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


# === NIfTI ============================================================================
@PROPS
@given(data=st.data(), shape=shapes, spacing=spacings, ending=endings)
def test_nifti_round_trip_keeps_float32_values_shape_and_spacing(data, shape, spacing, ending):
    array = data.draw(hnp.arrays(np.float32, shape, elements=finite32))
    geom = Geometry.from_spacing(shape, spacing)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"v{ending}"
        save_volume(path, array, geom, np.float32)
        back, g = load_volume(path, np.float32)
    assert back.dtype == np.float32 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert g.shape == shape and g.spacing == spacing  # float32 spacings: exact
    assert g.same_grid(geom) and g.mismatch(geom, "x", "y") is None


@PROPS
@given(
    data=st.data(),
    shape=shapes,
    dtype=st.sampled_from([np.uint8, np.int16, np.uint16, np.int32]),
    spacing=st.tuples(*[st.floats(0.05, 20.0)] * 3),
)
def test_nifti_round_trip_of_integer_maps_and_float64_spacing(data, shape, dtype, spacing):
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(2**20)), min(int(info.max), 2**20)  # float32-exact
    array = data.draw(hnp.arrays(dtype, shape, elements=st.integers(lo, hi)))
    geom = Geometry.from_spacing(shape, spacing)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.nii.gz"
        save_volume(path, array, geom, dtype)
        as_float, g = load_volume(path, np.float32)  # how Dataset reads maps
        as_int, _ = load_volume(path, np.int64)
    np.testing.assert_array_equal(as_float, array.astype(np.float32))
    np.testing.assert_array_equal(as_int, array.astype(np.int64))
    # float64 spacing comes back rounded to float32 (NIfTI's affine is float32), no worse
    assert g.spacing == tuple(_f32(s) for s in spacing)
    assert g.same_grid(geom)


@PROPS
@given(
    data=st.data(),
    shape=shapes,
    spacing=spacings,
    angles=st.tuples(*[st.floats(-np.pi, np.pi)] * 3),
    origin=st.tuples(*[st.floats(-500, 500)] * 3),
)
def test_nifti_round_trip_keeps_a_rotated_affine(data, shape, spacing, angles, origin):
    """Direction cosines and origin survive (to float32); array order stays (Z, Y, X)."""
    sz, sy, sx = spacing
    affine = np.eye(4)
    affine[:3, :3] = rotation(angles) @ np.diag([sx, sy, sz])
    affine[:3, 3] = origin
    geom = Geometry(affine=affine, shape=shape)
    array = data.draw(hnp.arrays(np.uint8, shape))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.nii"
        save_volume(path, array, geom, np.uint8)
        back, g = load_volume(path, np.uint8)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(g.affine, affine.astype(np.float32), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.spacing, spacing, rtol=1e-6)
    assert g.mismatch(geom, "x", "y") is None


@PROPS
@given(shape=shapes, other=shapes)
def test_save_volume_refuses_an_array_off_its_geometry(shape, other):
    assume(shape != other)
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(ValueError, match="does not match"):
        save_volume(Path(tmp) / "x.nii", np.zeros(other), Geometry.from_spacing(shape, (1, 1, 1)))


# === the dataset folder ================================================================
case_names = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=8)


@st.composite
def datasets(draw):
    """A dataset's meta and 1..3 cases: (name, split, image, label|None, scribble|None)."""
    num_classes = draw(st.integers(2, 6))
    channels = draw(st.integers(1, 3))
    meta = DatasetMeta(
        name="props",
        channel_names=[f"ch{c}" for c in range(channels)],
        labels={**{f"class{c}": c for c in range(num_classes)}, "ignore": num_classes},
        file_ending=draw(endings),
    )
    shape = draw(shapes)
    spacing = draw(spacings)
    names = draw(st.lists(case_names, min_size=1, max_size=3, unique=True))
    cases = []
    for name in names:
        split = draw(st.sampled_from(SPLITS))
        image = draw(hnp.arrays(np.float32, (channels, *shape), elements=finite32))
        label = draw(
            st.none() | hnp.arrays(np.uint8, shape, elements=st.integers(0, num_classes - 1))
        )
        scribble = draw(
            st.none() | hnp.arrays(np.uint8, shape, elements=st.integers(0, num_classes))
        )
        cases.append((name, split, image, label, scribble))
    return meta, shape, spacing, cases


@settings(PROPS, max_examples=40)
@given(spec=datasets(), squeeze=st.booleans())
def test_written_cases_read_back_unchanged(spec, squeeze):
    meta, shape, spacing, cases = spec
    geom = Geometry.from_spacing(shape, spacing)
    with tempfile.TemporaryDirectory() as tmp:
        writer = DatasetWriter(Path(tmp) / "ds", meta)
        splits: dict[str, list[str]] = {s: [] for s in SPLITS}
        for name, split, image, label, scribble in cases:
            # one channel may be given as (Z, Y, X)
            img = image[0] if squeeze and image.shape[0] == 1 else image
            writer.write_case(name, img, geom, label, scribble, test=split == "test")
            splits[split].append(name)
        writer.finish(splits)

        ds = Dataset(writer.root)
        assert ds.meta.num_classes == meta.num_classes
        assert ds.meta.ignore_value == meta.num_classes
        assert ds.num_channels == len(meta.channel_names)
        assert {s: ds.split(s) for s in SPLITS} == splits
        tr = sorted(n for n, s, *_ in cases if s != "test")
        assert ds.cases_in("Tr") == tr
        assert ds.cases_in("Ts") == sorted(n for n, s, *_ in cases if s == "test")
        for name, _, image, label, scribble in cases:
            got, g = ds.load_image(name)
            assert got.dtype == np.float32 and got.shape == image.shape
            np.testing.assert_array_equal(got, image)
            assert g.shape == shape and g.spacing == spacing
            lab = ds.load_label(name, shape=shape)
            scr = ds.load_scribble(name, shape=shape)
            if label is None:
                assert lab is None
            else:
                assert lab.dtype == np.int16
                np.testing.assert_array_equal(lab, label)
            if scribble is None:
                assert scr is None
            else:
                assert scr.dtype == np.int16
                np.testing.assert_array_equal(scr, scribble)


@settings(PROPS, max_examples=25)
@given(
    data=st.data(),
    shape=shapes,
    channels=st.integers(1, 3),
    bad_channel=st.integers(0, 2),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_load_channels_rejects_nan_and_inf_naming_the_file_and_counts(
    data, shape, channels, bad_channel, bad
):
    bad_channel %= channels
    geom = Geometry.from_spacing(shape, (2.0, 1.0, 1.0))
    arrays = [data.draw(hnp.arrays(np.float32, shape, elements=finite32)) for _ in range(channels)]
    flat = arrays[bad_channel].reshape(-1)
    where = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=1, unique=True))
    flat[where] = bad
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"c_{c:04d}.nii" for c in range(channels)]
        for p, a in zip(paths, arrays, strict=True):
            save_volume(p, a, geom, np.float32)
        with pytest.raises(DataError) as err:
            load_channels(paths)
    n_nan = len(where) if np.isnan(bad) else 0
    assert err.value.path == paths[bad_channel]
    assert f"{n_nan} NaN and {len(where) - n_nan} infinite" in str(err.value)


@settings(PROPS, max_examples=25)
@given(data=st.data(), shape=shapes, other=shapes, channels=st.integers(2, 3))
def test_load_channels_stacks_channels_on_one_grid_and_rejects_others(data, shape, other, channels):
    geom = Geometry.from_spacing(shape, (3.0, 1.0, 0.5))
    arrays = [data.draw(hnp.arrays(np.float32, shape, elements=finite32)) for _ in range(channels)]
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"c_{c:04d}.nii" for c in range(channels)]
        for p, a in zip(paths, arrays, strict=True):
            save_volume(p, a, geom, np.float32)
        stacked, g = load_channels(paths)
        np.testing.assert_array_equal(stacked, np.stack(arrays))
        assert g.shape == shape
        # a last channel on another grid (shape, or spacing when the shape is the same)
        odd_geom = Geometry.from_spacing(other, (3.0, 1.0, 0.75))
        save_volume(paths[-1], np.zeros(other, np.float32), odd_geom, np.float32)
        with pytest.raises(DataError, match="differs from channel 0's") as err:
            load_channels(paths)
        assert err.value.path == paths[-1]
    with pytest.raises(DmspsError, match="no image channels"):
        load_channels([])


# === label and scribble values =========================================================
int_dtypes = st.sampled_from([np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64])


def _listed(message: str) -> list[int]:
    """The values a 'values A, B, ... outside' message lists."""
    m = re.search(r"values ([-\d, .]+?) outside", message)
    assert m, message
    return [int(v) for v in m.group(1).split(", ") if v != "..."]


@PROPS
@given(
    data=st.data(),
    num_classes=st.integers(1, 300),
    dtype=int_dtypes,
    shape=st.tuples(st.integers(0, 4), st.integers(1, 6), st.integers(1, 6)),
    as_file=st.booleans(),
)
def test_check_label_accepts_exactly_0_to_c_minus_1(data, num_classes, dtype, shape, as_file):
    info = np.iinfo(dtype)
    values = st.integers(max(int(info.min), -400), min(int(info.max), 400))
    arr = data.draw(hnp.arrays(dtype, shape, elements=values))
    where = Path("some/label.nii.gz") if as_file else "prediction"
    valid = (arr >= 0) & (arr < num_classes)
    if valid.all():
        out = check_label(arr, num_classes, where)
        assert out.dtype == (np.uint8 if num_classes <= 256 else np.int16)
        np.testing.assert_array_equal(out.astype(np.int64), arr.astype(np.int64))
        return
    with pytest.raises(LabelError) as err:
        check_label(arr, num_classes, where)
    assert isinstance(err.value, ValueError) and isinstance(err.value, DmspsError)
    assert isinstance(err.value, DataError) == as_file
    message = str(err.value)
    assert message.startswith(f"{where}: label values " if as_file else "prediction values ")
    assert f"outside 0..{num_classes - 1}" in message
    bad = np.unique(arr[~valid]).astype(np.int64)
    assert _listed(message) == bad[:10].tolist()  # the first ten, sorted
    assert (", ... outside" in message) == (bad.size > 10)


@PROPS
@given(data=st.data(), num_classes=st.sampled_from([40_000, 1 << 20, 1 << 30]))
def test_check_label_with_a_huge_class_count_keeps_every_value(data, num_classes):
    """Importers validate source maps with ``check_label(arr, 1 << 30)`` before remapping:
    a source value such as 65535 (a uint16 'unannotated') must come back as it was."""
    arr = data.draw(
        hnp.arrays(np.float32, (2, 3, 3), elements=st.integers(0, min(num_classes - 1, 1 << 24)))
    )
    out = check_label(arr, num_classes, Path("src.nii.gz"))
    np.testing.assert_array_equal(out.astype(np.int64), arr.astype(np.int64))


@PROPS
@given(
    data=st.data(),
    num_classes=st.integers(1, 255),
    extra=st.integers(0, 20),
    dtype=int_dtypes,
    as_file=st.booleans(),
)
def test_check_scribble_accepts_exactly_classes_and_the_ignore_value(
    data, num_classes, extra, dtype, as_file
):
    ignore = min(num_classes + extra, 255)
    info = np.iinfo(dtype)
    values = st.integers(max(int(info.min), -300), min(int(info.max), 300))
    arr = data.draw(
        hnp.arrays(dtype, st.tuples(st.integers(0, 3), st.integers(1, 8)), elements=values)
    )
    where = Path("x/scribble.nii") if as_file else None
    valid = ((arr >= 0) & (arr < num_classes)) | (arr == ignore)
    if valid.all():
        out = check_scribble(arr, num_classes, ignore, where)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out.astype(np.int64), arr.astype(np.int64))
        return
    with pytest.raises(LabelError) as err:
        check_scribble(arr, num_classes, ignore, where, context="; fix it")
    assert isinstance(err.value, DataError) == as_file
    message = str(err.value)
    assert message.startswith(f"{where}: scribble values " if as_file else "scribble values ")
    assert message.endswith(
        f"outside 0..{num_classes - 1} for classes and {ignore} for unannotated; fix it"
    )
    assert _listed(message) == np.unique(arr[~valid]).astype(np.int64)[:10].tolist()


@PROPS
@given(num_classes=st.integers(256, 400), extra=st.integers(0, 3))
def test_check_scribble_never_wraps_the_ignore_value_into_a_class(num_classes, extra):
    ignore = num_classes + extra
    arr = np.array([0, num_classes - 1, ignore, ignore])
    out = check_scribble(arr, num_classes, ignore)
    np.testing.assert_array_equal(out.astype(np.int64), arr)


@PROPS
@given(
    data=st.data(),
    shape=st.tuples(st.integers(0, 3), st.integers(1, 8)),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
)
def test_as_class_map_takes_whole_floats_and_rejects_fractions(data, shape, dtype):
    whole = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-2000, 2000)))
    arr = whole.astype(dtype)
    out = as_class_map(arr)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, whole)
    # storage noise within the tolerance rounds to the nearest whole number
    assume(arr.size)
    noise = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-0.4, 0.4)))
    noisy = whole + noise * 1e-3
    np.testing.assert_array_equal(as_class_map(noisy, tolerance=1e-3), whole)
    # a fractional value anywhere: rejected, and the message shows one such value
    i = data.draw(st.integers(0, arr.size - 1))
    frac = data.draw(st.sampled_from([0.25, 0.5, 0.75]))
    bad = whole.astype(np.float64)
    bad.flat[i] += frac
    with pytest.raises(LabelError, match="non-integer values") as err:
        check_label(bad, 5000, Path("f.nii"))
    assert f"(e.g. {bad.flat[i]:g})" in str(err.value)


@PROPS
@given(
    data=st.data(),
    special=st.sampled_from([np.nan, np.inf, -np.inf]),
    scribble=st.booleans(),
)
def test_nan_and_inf_maps_are_rejected(data, special, scribble):
    arr = data.draw(hnp.arrays(np.float32, (2, 4), elements=st.integers(0, 3)))
    arr.flat[data.draw(st.integers(0, 7))] = special
    with pytest.raises(LabelError, match="NaN or infinite"):
        if scribble:
            check_scribble(arr, 4, 4)
        else:
            check_label(arr, 4)


@PROPS
@given(
    magnitude=st.floats(2.0**63, 1e38),
    sign=st.sampled_from([1.0, -1.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    scribble=st.booleans(),
)
def test_values_beyond_int64_are_named_as_they_are(magnitude, sign, dtype, scribble):
    """A huge float (a float image saved as a label) is rejected with its own value, not
    the wrapped int64 of a failed cast."""
    value = dtype(sign * magnitude)
    arr = np.array([0, value], dtype)
    with pytest.raises(LabelError) as err:
        if scribble:
            check_scribble(arr, 4, 4, Path("s.nii"))
        else:
            check_label(arr, 4, Path("l.nii"))
    assert f"{float(value):g}" in str(err.value)
    assert "-9223372036854775808" not in str(err.value)


@settings(PROPS, max_examples=20)
@given(
    data=st.data(),
    shape=shapes,
    unannotated=st.one_of(st.sampled_from([65535, 32768, 255]), st.integers(5, 65535)),
    dtype=st.sampled_from([np.uint16, np.int32, np.float32]),
)
def test_import_with_a_label_map_keeps_any_unannotated_value(data, shape, unannotated, dtype):
    """Source classes 10, 20, 30 -> ours 1, 2, 3 (``label_map``), and a source unannotated
    value such as uint16's 65535: unannotated voxels must stay unannotated (4), not become
    background, whatever the value's size."""
    source = st.sampled_from([0, 10, 20, 30, unannotated])
    scribble = data.draw(hnp.arrays(np.int64, shape, elements=source))
    label = np.where(scribble == unannotated, 0, scribble)
    geom = Geometry.from_spacing(shape, (2.0, 1.0, 1.0))
    meta = DatasetMeta("x", ["MRI"], {"bg": 0, "a": 1, "b": 2, "c": 3, "ignore": 4})
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / n for n in ("i_0000.nii", "l.nii", "s.nii")]
        save_volume(paths[0], np.zeros(shape), geom, np.float32)
        save_volume(paths[1], label, geom, np.uint8)
        save_volume(paths[2], scribble, geom, dtype)
        case = load_nifti_case(
            "i",
            paths[:1],
            paths[1],
            paths[2],
            meta,
            ScribbleOptions(unannotated=unannotated),
            False,
            label_map={10: 1, 20: 2, 30: 3},
        )
    expect = np.select(
        [scribble == unannotated, scribble == 10, scribble == 20, scribble == 30], [4, 1, 2, 3], 0
    )
    np.testing.assert_array_equal(case.scribble, expect)
    np.testing.assert_array_equal(case.label, np.minimum(expect, 3) * (expect != 4))


def test_uint64_values_beyond_int64_are_named_as_they_are():
    arr = np.array([0, 2**64 - 1], np.uint64)
    with pytest.raises(LabelError, match=str(2**64 - 1)):
        check_label(arr, 4)
