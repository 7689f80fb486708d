"""Patch sampler: N-D patches from the cache, padded with ignore, centred on annotation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmsps.data.cache import CaseCache
from dmsps.data.layout import Dataset
from dmsps.data.normalization import parse
from dmsps.errors import DmspsError
from dmsps.training.samplers import PatchSampler


@pytest.fixture
def cache(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    c = CaseCache(tmp_path / "cache", ds, [parse("zscore")])
    c.prepare(ds.split("train"), need_labels=True, progress=False)
    return c


def _sampler(cache, patch, **kw):
    return PatchSampler(cache, cache.ds.split("train"), patch, ignore=4, **kw)


def test_3d_and_2d_patch_shapes(cache):
    gen = torch.Generator().manual_seed(0)
    image, scrib, label, _ = _sampler(cache, (2, 16, 16), need_labels=True).sample(3, gen)
    assert image.shape == (3, 1, 2, 16, 16) and image.dtype == torch.float32
    assert scrib.shape == label.shape == (3, 2, 16, 16) and scrib.dtype == torch.long
    image, scrib, label, _ = _sampler(cache, (16, 8)).sample(5, gen)
    assert image.shape == (5, 1, 16, 8) and scrib.shape == (5, 16, 8) and label is None


def test_patch_larger_than_the_volume_is_padded_with_ignore(cache):
    # tiny cases are 3 x 32 x 32: a 4 x 40 x 40 patch holds the whole case, centred
    gen = torch.Generator().manual_seed(1)
    image, scrib, label, valid = _sampler(
        cache, (4, 40, 40), need_labels=True, annotated_fraction=0.0
    ).sample(2, gen)
    # one padded slice (the odd extra goes first), 4 padded rows and columns each side
    assert (scrib[:, 0] == 4).all() and (label[:, 0] == 4).all()
    assert torch.equal(valid, label != 4)  # the validity mask marks the padding
    assert (image[:, :, 0] == 0).all()
    assert (scrib[:, :, :4] == 4).all() and (scrib[:, :, -4:] == 4).all()
    inside = label[:, 1:, 4:36, 4:36]
    assert (inside != 4).all()  # the real volume, whole


def test_centred_patches_sit_on_annotated_voxels(cache):
    gen = torch.Generator().manual_seed(2)
    _, scrib, _, valid = _sampler(cache, (1, 5, 5), annotated_fraction=1.0).sample(50, gen)
    assert (scrib[:, 0, 2, 2] != 4).all()  # every patch centre is annotated
    assert valid.all()  # small patches stay inside the volume


def test_centred_patches_stay_inside_a_volume_that_fills_them(cache):
    """Centred on a voxel near the edge, a patch moves inward rather than padding: tiny
    cases are 3 x 32 x 32, so a 2 x 24 x 24 patch always fits."""
    gen = torch.Generator().manual_seed(5)
    _, scrib, _, valid = _sampler(cache, (2, 24, 24), annotated_fraction=1.0).sample(40, gen)
    assert valid.all() and (scrib != 4).any(dim=(1, 2, 3)).all()


def test_same_generator_state_same_patches(cache):
    s = _sampler(cache, (2, 8, 8))
    a = s.sample(4, torch.Generator().manual_seed(3))
    b = s.sample(4, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a[:2], b[:2], strict=True))


def test_bad_sampler_settings(cache):
    with pytest.raises(DmspsError, match="2 or 3 sizes"):
        _sampler(cache, (8,))
    with pytest.raises(DmspsError, match="annotated_fraction"):
        _sampler(cache, (8, 8), annotated_fraction=1.5)
    with pytest.raises(DmspsError, match="empty"):
        PatchSampler(cache, [], (8, 8), ignore=4)
    assert np.isfinite(_sampler(cache, (8, 8)).sample(1, torch.Generator())[0].numpy()).all()


def _centre_classes(sampler, n=600, seed=4):
    _, scrib, _, _ = sampler.sample(n, torch.Generator().manual_seed(seed))
    return np.bincount(scrib[:, 0, 0, 0].numpy(), minlength=5)


def test_class_centring_draws_each_scribbled_class_alike(cache):
    anchors = np.concatenate(
        [cache.scribble(c)[tuple(cache.annotated(c).T)] for c in cache.ds.split("train")]
    )
    share = np.bincount(anchors, minlength=4)[:4] / len(anchors)
    assert share.max() - share.min() > 0.2  # unbalanced scribbles, or this proves nothing
    voxel = _centre_classes(_sampler(cache, (1, 1, 1), annotated_fraction=1.0))
    balanced = _centre_classes(_sampler(cache, (1, 1, 1), annotated_fraction=1.0, centring="class"))
    assert voxel[4] == balanced[4] == 0  # every centre is annotated
    # any voxel alike: classes come up as often as they are scribbled
    np.testing.assert_allclose(voxel[:4] / 600, share, atol=0.06)
    # class first: every class about a quarter of the time, the rarest included
    np.testing.assert_allclose(balanced[:4] / 600, 0.25, atol=0.06)


def test_unknown_centring_is_refused(cache):
    with pytest.raises(DmspsError, match=r"centring 'rare'.*voxel, class"):
        _sampler(cache, (8, 8), centring="rare")
