"""Property tests of scribble expansion (``expand_case``) on random probability maps.

Probabilities are the softmax of random logits (blocky or smooth, confident or not);
scribbles are random. Components are face-connected (``keep_largest_component``): 2D
per slice for 2D models (``per_slice=True``), 3D over the volume otherwise. ``PROPS`` is
this file's settings profile: derandomised and without an example database, so CI sees
the same examples every run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from dmsps.errors import DmspsError
from dmsps.inference.uncertainty import normalised_entropy
from dmsps.pipeline.expansion import expand_case

PROPS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def cases(draw):
    """(probs (K, Z, Y, X) float32, scribble (Z, Y, X), ignore)."""
    k = draw(st.integers(2, 5))
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 16)), draw(st.integers(1, 16)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = rng.normal(size=(k, *shape))
    smooth = draw(st.sampled_from(["smooth", "noise", "blocks"]))
    if smooth == "blocks":  # blocks of equal logits: larger regions, and exact ties
        block = draw(st.integers(2, 4))
        coarse = logits[:, :, ::block, ::block]
        logits = coarse.repeat(block, 2).repeat(block, 3)[:, :, : shape[1], : shape[2]]
    elif smooth == "smooth":  # blobs
        logits = ndi.gaussian_filter(logits, sigma=(0, 0, 1.5, 1.5))
        logits /= logits.std() + 1e-12
    scale = draw(st.sampled_from([15.0, 60.0, 4.0, 0.5]))  # from uncertain to confident
    probs = torch.softmax(torch.from_numpy(logits * scale).float(), 0)
    ignore = k + draw(st.integers(0, 2))
    annotated = rng.random(shape) < draw(st.sampled_from([0.05, 0.3, 0.0]))
    scribble = np.where(annotated, rng.integers(0, k, shape), ignore)
    return probs, scribble.astype(draw(st.sampled_from([np.int16, np.uint8]))), ignore


thresholds = st.one_of(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.6, 1.0]), st.floats(0.0, 1.0))
targets = st.sampled_from(["ignore", "dense"])


def _components(mask: np.ndarray, per_slice: bool) -> np.ndarray:
    """Face-connected component numbers of a (Z, Y, X) mask, 2D per slice or 3D; numbers
    are unique over the volume either way."""
    if not per_slice:
        return ndi.label(mask)[0]
    out = np.zeros(mask.shape, np.int64)
    offset = 0
    for z in range(mask.shape[0]):
        lab, n = ndi.label(mask[z])
        out[z] = np.where(lab > 0, lab + offset, 0)
        offset += n
    return out


def _check_largest(kept: np.ndarray, candidates: np.ndarray, per_slice: bool, exempt=None):
    """``kept`` is, per slice or volume, one largest face-connected component of
    ``candidates`` (minus the ``exempt`` voxels), or empty when there are none."""
    exempt = np.zeros(kept.shape, bool) if exempt is None else exempt
    assert not (kept & ~candidates).any()
    comps = _components(candidates, per_slice)
    planes = range(kept.shape[0]) if per_slice else [slice(None)]
    for z in planes:
        labels_here = np.unique(comps[z][kept[z]])
        assert labels_here.size <= 1  # at most one component
        sizes = np.bincount(comps[z][comps[z] > 0])
        if labels_here.size == 1:
            assert sizes[labels_here[0]] == sizes.max()  # and a largest one
            whole = comps[z] == labels_here[0]
            np.testing.assert_array_equal(kept[z], whole & ~exempt[z])
        elif candidates[z].any():  # nothing kept: a largest component is all exempt
            largest = np.flatnonzero(sizes == sizes.max())
            assert any(not (comps[z] == i)[~exempt[z]].any() for i in largest)


@settings(PROPS, max_examples=300)
@given(
    case=cases(),
    threshold=thresholds,
    keep_largest=st.booleans(),
    per_slice=st.booleans(),
)
def test_ignore_target_adds_confident_argmax_seeds_and_keeps_scribbles(
    case, threshold, keep_largest, per_slice
):
    probs, scribble, ignore = case
    k = probs.shape[0]
    probs_before, scribble_before = probs.clone(), scribble.copy()
    seeds = expand_case(probs, scribble, threshold, ignore, keep_largest, per_slice, "ignore")
    assert torch.equal(probs, probs_before)  # inputs untouched
    np.testing.assert_array_equal(scribble, scribble_before)
    assert seeds.shape == scribble.shape and seeds.dtype == np.int16
    assert set(np.unique(seeds).tolist()) <= {*range(k), ignore}
    annotated = scribble != ignore
    np.testing.assert_array_equal(seeds[annotated], scribble[annotated])  # scribbles kept
    # every other seed is a confident prediction: u below the threshold, the argmax class
    p = probs.numpy()
    u = normalised_entropy(probs).numpy()
    argmax = p.argmax(0)  # ties: the first class, as documented in uncertainty.label_map
    confident = u < threshold
    added = (seeds != ignore) & ~annotated
    assert confident[added].all()
    np.testing.assert_array_equal(seeds[added], argmax[added])
    if threshold == 0.0:
        assert not added.any()  # nothing is more certain than certain
        np.testing.assert_array_equal(seeds, scribble.astype(np.int16))
    for c in range(k):
        candidates = confident & (argmax == c)
        if keep_largest:
            # each class (background included) keeps one largest component per slice or
            # volume, found before merging; scribbles then overwrite some of its voxels,
            # so what is left of it may be split by them
            _check_largest(added & (seeds == c), candidates, per_slice, exempt=annotated)
        else:
            np.testing.assert_array_equal(added & (seeds == c), candidates & ~annotated)


@settings(PROPS, max_examples=300)
@given(
    case=cases(),
    threshold=thresholds,
    keep_largest=st.booleans(),
    per_slice=st.booleans(),
)
def test_dense_target_has_no_ignore_and_keeps_confident_foreground(
    case, threshold, keep_largest, per_slice
):
    """``dense``: foreground = the largest confident component of each foreground class;
    every other voxel, uncertain or scribbled, is background; scribbles are not merged."""
    probs, scribble, ignore = case
    k = probs.shape[0]
    seeds = expand_case(probs, scribble, threshold, ignore, keep_largest, per_slice, "dense")
    assert seeds.shape == scribble.shape and seeds.dtype == np.int16
    assert set(np.unique(seeds).tolist()) <= set(range(k))  # no ignore value
    u = normalised_entropy(probs).numpy()
    argmax = probs.numpy().argmax(0)
    confident = u < threshold
    fg = seeds > 0
    assert confident[fg].all()
    np.testing.assert_array_equal(seeds[fg], argmax[fg])
    if threshold == 0.0:
        assert not fg.any()
    for c in range(1, k):
        candidates = confident & (argmax == c)
        if keep_largest:
            _check_largest(seeds == c, candidates, per_slice)
        else:
            np.testing.assert_array_equal(seeds == c, candidates)
    # the result does not depend on the scribble at all
    other = np.full_like(scribble, ignore)
    again = expand_case(probs, other, threshold, ignore, keep_largest, per_slice, "dense")
    np.testing.assert_array_equal(seeds, again)


@settings(PROPS, max_examples=40)
@given(case=cases(), per_slice=st.booleans(), target=targets)
def test_a_threshold_above_1_trusts_every_voxel(case, per_slice, target):
    """u is at most 1, so a threshold above it makes every voxel confident: without the
    largest-component step the seeds are argmax(p) (plus scribbles for 'ignore')."""
    probs, scribble, ignore = case
    seeds = expand_case(probs, scribble, 1.01, ignore, False, per_slice, target)
    expect = probs.numpy().argmax(0)
    if target == "ignore":
        expect = np.where(scribble != ignore, scribble, expect)
    np.testing.assert_array_equal(seeds, expect)


@settings(PROPS, max_examples=60)
@given(case=cases())
def test_normalised_entropy_matches_its_formula(case):
    """u = -sum p log p / log K, in [0, 1] (the quantity the threshold is applied to)."""
    probs, _, _ = case
    p = probs.numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(0) / math.log(probs.shape[0])
    u = normalised_entropy(probs).numpy()
    assert u.dtype == np.float32 and ((u >= 0) & (u <= 1)).all()
    np.testing.assert_allclose(u, np.clip(ent, 0, 1), atol=2e-6)


@PROPS
@given(target=st.text(max_size=8).filter(lambda t: t not in ("ignore", "dense")))
def test_unknown_target_is_rejected(target):
    probs = torch.full((2, 1, 2, 2), 0.5)
    with pytest.raises(DmspsError, match="expansion target"):
        expand_case(probs, np.full((1, 2, 2), 2), 0.1, 2, True, True, target)
