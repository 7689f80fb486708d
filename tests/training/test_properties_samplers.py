"""Property tests of the training samplers: patches from the case cache, 2D slices.

Every example writes a small random dataset (random case shapes, channels, classes and
sparse scribbles) into its own temporary folder. Labels are dense, so a patch voxel whose
label is the ignore value is padding. ``PROPS`` is this file's settings profile:
derandomised and without an example database, so CI sees the same examples every run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dmsps.data.cache import CaseCache
from dmsps.data.layout import Dataset, DatasetMeta, DatasetWriter
from dmsps.data.normalization import parse
from dmsps.errors import DmspsError
from dmsps.io.nifti import Geometry
from dmsps.training.samplers import PatchSampler, load_slices

PROPS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

case_shapes = st.tuples(st.integers(1, 6), st.integers(1, 24), st.integers(1, 24))


@st.composite
def dataset_specs(draw, max_cases: int = 3, all_unannotated: bool = False):
    """(num_classes, channels, cases): each case (image, dense label, scribble)."""
    num_classes = draw(st.integers(2, 4))
    channels = draw(st.integers(1, 2))
    cases = []
    for _ in range(draw(st.integers(1, max_cases))):
        shape = draw(case_shapes)
        image = draw(
            hnp.arrays(np.float32, (channels, *shape), elements=st.floats(-100, 100, width=32))
        )
        label = draw(hnp.arrays(np.uint8, shape, elements=st.integers(0, num_classes - 1)))
        scribble = np.full(shape, num_classes, np.uint8)
        if not all_unannotated:
            # sparse: a few annotated voxels (none at all in some cases), class = label's
            n = draw(st.integers(0, 6))
            for _ in range(n):
                z, y, x = (draw(st.integers(0, s - 1)) for s in shape)
                scribble[z, y, x] = label[z, y, x]
        cases.append((image, label, scribble))
    return num_classes, channels, cases


def write_dataset(root: Path, spec) -> Dataset:
    num_classes, channels, cases = spec
    meta = DatasetMeta(
        name="props",
        channel_names=[f"MRI{c}" for c in range(channels)],
        labels={**{f"c{k}": k for k in range(num_classes)}, "ignore": num_classes},
        file_ending=".nii",  # uncompressed: quicker to write and read
    )
    writer = DatasetWriter(root, meta)
    names = []
    for i, (image, label, scribble) in enumerate(cases):
        name = f"case{i}"
        geom = Geometry.from_spacing(label.shape, (2.0, 1.0, 1.0))
        writer.write_case(name, image, geom, label, scribble)
        names.append(name)
    writer.finish({"train": names, "val": [], "test": []})
    return Dataset(root)


class RecordingSampler(PatchSampler):
    """A PatchSampler that records the (case index, corner) of every patch it cuts."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.drawn: list[tuple[int, list[int]]] = []

    def _corner(self, i, generator):
        corner = super()._corner(i, generator)
        self.drawn.append((i, list(corner)))
        return corner


def expected_cut(array: np.ndarray, corner, box, fill) -> np.ndarray:
    """The box of ``array`` (last three axes) at ``corner``, ``fill`` outside the array."""
    out = np.full((*array.shape[:-3], *box), fill, dtype=array.dtype)
    idx = [c + np.arange(b) for c, b in zip(corner, box, strict=True)]
    ok = [(i >= 0) & (i < n) for i, n in zip(idx, array.shape[-3:], strict=True)]
    out[(..., *np.ix_(*ok))] = array[(..., *np.ix_(*[i[k] for i, k in zip(idx, ok, strict=True)]))]
    return out


patch_sizes = st.one_of(
    st.tuples(st.integers(1, 30), st.integers(1, 30)),  # 2D: one slice
    st.tuples(st.integers(1, 8), st.integers(1, 30), st.integers(1, 30)),
)


@settings(PROPS, max_examples=30)
@given(
    spec=dataset_specs(),
    patch=patch_sizes,
    fraction=st.sampled_from([0.0, 0.5, 1.0]),
    crop=st.booleans(),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_patches_have_the_patch_shape_and_pad_with_ignore(spec, patch, fraction, crop, batch, seed):
    num_classes, channels, cases = spec
    ignore = num_classes
    if not any((s != ignore).any() for *_, s in cases):
        cases[0][2].flat[0] = cases[0][1].flat[0]  # the sampler needs one annotated voxel
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_dataset(Path(tmp) / "ds", spec)
        cache = CaseCache(Path(tmp) / "cache", ds, [parse("zscore")] * channels, crop)
        names = ds.split("train")
        cache.prepare(names, need_labels=True, progress=False)
        sampler = RecordingSampler(
            cache, names, patch, ignore, need_labels=True, annotated_fraction=fraction
        )
        gen = torch.Generator().manual_seed(seed)
        image, scrib, label, valid = sampler.sample(batch, gen)
        again = PatchSampler(
            cache, names, patch, ignore, need_labels=True, annotated_fraction=fraction
        ).sample(batch, torch.Generator().manual_seed(seed))
        box = sampler.box
        cached = [
            (cache.image(n, mmap=False), cache.scribble(n, mmap=False), cache.label(n, mmap=False))
            for n in names
        ]
    # exactly the patch shape, whatever the volume's
    assert image.shape == (batch, channels, *patch) and image.dtype == torch.float32
    assert scrib.shape == label.shape == (batch, *patch) and scrib.dtype == torch.long
    assert torch.isfinite(image).all()
    assert set(torch.unique(scrib).tolist()) <= {*range(num_classes), ignore}
    # the same generator state gives the same patches
    for a, b in zip((image, scrib, label, valid), again, strict=True):
        assert torch.equal(a, b)
    assert len(sampler.drawn) == batch
    for b, (i, corner) in enumerate(sampler.drawn):
        img_c, scr_c, lab_c = cached[i]
        im = image[b].numpy().reshape(channels, *box)
        sc = scrib[b].numpy().reshape(box)
        lb = label[b].numpy().reshape(box)
        # the patch is the cached volume's box at the corner, padded outside
        np.testing.assert_array_equal(im, expected_cut(img_c, corner, box, 0.0))
        np.testing.assert_array_equal(sc, expected_cut(scr_c.astype(np.int64), corner, box, ignore))
        np.testing.assert_array_equal(lb, expected_cut(lab_c.astype(np.int64), corner, box, ignore))
        # labels are dense: ignore in the label marks padding, and padding is never supervised
        pad = lb == ignore
        assert (sc[pad] == ignore).all() and (im[:, pad] == 0).all()
        np.testing.assert_array_equal(
            pad, expected_cut(np.zeros(lab_c.shape, bool), corner, box, True)
        )
        # the validity mask is exactly the part of the patch inside the volume
        np.testing.assert_array_equal(valid[b].numpy().reshape(box), ~pad)
        annotated = (scr_c != ignore).any()
        if fraction == 1.0 and annotated:
            # centred on an annotated voxel, moved inside the volume where it fits (the
            # voxel stays in the patch) and centred on the volume where it does not
            assert (sc != ignore).any()
            for c, n, k in zip(corner, scr_c.shape, box, strict=True):
                if n >= k:
                    assert 0 <= c <= n - k
                else:
                    assert c == (n - k) // 2
        if fraction == 0.0:
            # uniform: inside the volume along axes where it fits, else centred
            for c, n, k in zip(corner, scr_c.shape, box, strict=True):
                if n >= k:
                    assert 0 <= c <= n - k
                else:
                    before, after = -c, c + k - n
                    assert abs(before - after) <= 1


@settings(PROPS, max_examples=15)
@given(spec=dataset_specs(max_cases=2), patch=patch_sizes)
def test_patches_without_labels_and_without_annotation(spec, patch):
    num_classes, channels, cases = spec
    ignore = num_classes
    for *_, scribble in cases:
        scribble[...] = ignore
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_dataset(Path(tmp) / "ds", spec)
        cache = CaseCache(Path(tmp) / "cache", ds, [parse("zscore")] * channels)
        names = ds.split("train")
        cache.prepare(names, need_labels=False, progress=False)
        with pytest.raises(DmspsError, match="no training scribble has an annotated voxel"):
            PatchSampler(cache, names, patch, ignore)
        # dense supervision ('full') needs no scribble: patches come all the same
        sampler = PatchSampler(cache, names, patch, ignore, need_labels=True)
        image, scrib, label, _ = sampler.sample(2, torch.Generator().manual_seed(0))
        assert (scrib == ignore).all() and label.shape == scrib.shape == (2, *patch)
        assert image.shape == (2, channels, *patch)


# === 2D slices ========================================================================
@settings(PROPS, max_examples=25)
@given(
    spec=dataset_specs(),
    size=st.one_of(st.integers(1, 30), st.tuples(st.integers(1, 30), st.integers(1, 30))),
    need_labels=st.booleans(),
)
def test_load_slices_keeps_the_annotated_slices_at_the_training_size(spec, size, need_labels):
    num_classes, channels, cases = spec
    ignore = num_classes
    hw = (size, size) if isinstance(size, int) else size
    with tempfile.TemporaryDirectory() as tmp:
        ds = write_dataset(Path(tmp) / "ds", spec)
        names = ds.split("train")
        kept = [s != ignore for *_, s in cases]
        if not need_labels and not any(k.any() for k in kept):
            with pytest.raises(DmspsError, match="no training scribble"):
                load_slices(ds, names, size, progress=False)
            return
        sampler = load_slices(ds, names, size, need_labels=need_labels, progress=False)
    # scribble methods train on annotated slices only, dense supervision on all of them
    per_case = [
        np.ones(len(k), bool) if need_labels else k.reshape(len(k), -1).any(1) for k in kept
    ]
    n = sum(int(k.sum()) for k in per_case)
    assert len(sampler) == n
    assert sampler.images.shape == (n, channels, *hw) and sampler.images.dtype == torch.float32
    assert torch.isfinite(sampler.images).all()
    assert sampler.scribbles.shape == (n, *hw) and sampler.scribbles.dtype == torch.uint8
    assert set(torch.unique(sampler.scribbles).tolist()) <= {*range(num_classes), ignore}
    if need_labels:
        assert sampler.labels.shape == (n, *hw)
        assert set(torch.unique(sampler.labels).tolist()) <= set(range(num_classes))
    else:
        assert sampler.labels is None
    # slices in order: case by case, slice by slice
    slices = [
        (scribble[k], label[k])
        for (_, label, scribble), keep in zip(cases, per_case, strict=True)
        for k in np.flatnonzero(keep)
    ]
    for j, (s, lab) in enumerate(slices):
        got = sampler.scribbles[j].numpy()
        if s.shape == hw:  # no resizing: the slices as they are
            np.testing.assert_array_equal(got, s)
            if need_labels:
                np.testing.assert_array_equal(sampler.labels[j].numpy(), lab)
        if s.shape[0] <= hw[0] and s.shape[1] <= hw[1]:
            # nearest-neighbour upsampling keeps every class of the slice's scribble
            assert set(np.unique(got).tolist()) == set(np.unique(s).tolist())
    # batches drawn from it are slices of it
    image, scrib, label, _ = sampler.sample(4, torch.Generator().manual_seed(0))
    assert image.shape == (4, channels, *hw) and scrib.shape == (4, *hw)
    assert scrib.dtype == torch.long and (label is None) == (not need_labels)
