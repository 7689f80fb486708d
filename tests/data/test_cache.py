"""The preprocessed-case cache: built once, reused, rebuilt when a source file changes."""

from __future__ import annotations

import numpy as np
import pytest

from dmsps.data.cache import CaseCache, nonzero_box, preprocess, scribble_tag
from dmsps.data.layout import Dataset
from dmsps.data.normalization import parse
from dmsps.errors import DmspsError
from dmsps.io.nifti import load_volume, save_volume


def _cache(tiny_dataset, tmp_path, crop=False, schemes=("zscore",)):
    return CaseCache(tmp_path / "cache", Dataset(tiny_dataset), [parse(s) for s in schemes], crop)


def test_cases_are_preprocessed_once_and_match_a_direct_load(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    cache = _cache(tiny_dataset, tmp_path)
    cache.prepare(ds.split("train"), progress=False)
    case = ds.split("train")[0]
    image, _ = ds.load_image(case)
    want, _ = preprocess(image, [parse("zscore")], crop_nonzero=False)
    got = cache.image(case)
    assert isinstance(got, np.memmap) and np.array_equal(np.asarray(got), want)
    assert np.array_equal(cache.scribble(case), ds.load_scribble(case))
    anchors = cache.annotated(case)
    assert len(anchors) and (ds.load_scribble(case)[tuple(anchors.T)] != 4).all()
    stamp = (tmp_path / "cache/images" / f"{case}.npy").stat().st_mtime_ns
    cache.prepare(ds.split("train"), progress=False)  # nothing to do
    assert (tmp_path / "cache/images" / f"{case}.npy").stat().st_mtime_ns == stamp


def test_a_changed_source_file_is_rebuilt(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    case = ds.split("train")[0]
    cache = _cache(tiny_dataset, tmp_path)
    cache.prepare([case], progress=False)
    path = ds.paths(case).scribble
    scribble, geom = load_volume(path)
    scribble[:] = 4
    scribble[0, 0, 0] = 2
    save_volume(path, scribble, geom, np.uint8)
    cache.prepare([case], progress=False)
    assert cache.scribble(case)[0, 0, 0] == 2 and (cache.scribble(case) != 4).sum() == 1


def test_other_settings_cannot_reuse_a_cache(tiny_dataset, tmp_path):
    _cache(tiny_dataset, tmp_path)
    with pytest.raises(DmspsError, match="other data or settings"):
        _cache(tiny_dataset, tmp_path, schemes=("minmax",))


def test_crop_to_nonzero_box_and_seed_folders_get_their_own_tag(tiny_dataset, tmp_path):
    image = np.zeros((2, 4, 6, 6), np.float32)
    image[1, 1:3, 2:5, 1] = 1.0
    assert nonzero_box(image) == (slice(1, 3), slice(2, 5), slice(1, 2))
    assert nonzero_box(np.zeros((1, 2, 2, 2))) == (slice(0, 2), slice(0, 2), slice(0, 2))
    assert scribble_tag(None) == "scribblesTr"
    assert scribble_tag(tmp_path / "a") != scribble_tag(tmp_path / "b")


def test_resampling_to_a_target_spacing():
    from dmsps.data.cache import resample, resampled_shape

    assert resampled_shape((8, 30, 31), (5.0, 1.0, 1.0), (10.0, 2.0, 2.0)) == (4, 15, 16)
    assert resampled_shape((8, 30, 31), (5.0, 1.0, 1.0), None) == (8, 30, 31)
    assert resampled_shape((8, 30, 31), (5.0, 1.0, 1.0), (0.0, 2.0, 2.0)) == (8, 15, 16)
    labels = np.zeros((1, 4, 6, 6), np.uint8)
    labels[0, :, :3] = 2
    down = resample(labels, (2, 3, 3), labels=True)
    assert down.dtype == np.uint8 and set(np.unique(down)) == {0, 2}  # nearest: no new values
    ramp = np.broadcast_to(np.arange(6, dtype=np.float32), (1, 4, 6, 6)).copy()
    up = resample(ramp, (4, 6, 12))
    assert up.shape == (1, 4, 6, 12) and up.min() >= 0 and up.max() <= 5


def test_downsampled_scribbles_keep_thin_strokes():
    from dmsps.data.cache import resample_map

    scribble = np.full((4, 16, 16), 4, np.uint8)
    scribble[:, 5, :] = 2  # a one-voxel-wide stroke on an odd row
    scribble[1, 12, 3] = 1  # a single annotated voxel
    out = resample_map(scribble, (2, 8, 8), ignore=4)
    assert (out[:, 2, :] == 2).all()  # the stroke survives halving
    assert out[0, 6, 1] == 1  # and so does the lone voxel
    assert ((out == 4) | (out == 2) | (out == 1)).all() and (out == 4).sum() > 0
    same = resample_map(scribble, (4, 16, 16), ignore=4)
    assert np.array_equal(same, scribble)
