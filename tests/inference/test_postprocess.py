"""Largest-component clean-up, per slice and per volume."""

from __future__ import annotations

import numpy as np

from dmsps.inference.postprocess import largest_component_per_class

IGN = 4


def test_largest_component_is_per_slice_and_class():
    seeds = np.full((2, 5, 5), IGN, np.int16)
    seeds[0, 0, 0] = 1
    seeds[0, 2:4, 2:4] = 1
    seeds[1, 0, 0] = 1  # alone in its slice: kept
    out = largest_component_per_class(seeds, 4, IGN, per_slice=True)
    assert out[0, 0, 0] == IGN and (out[0, 2:4, 2:4] == 1).all() and out[1, 0, 0] == 1


def test_largest_component_3d_joins_slices_and_fills_background():
    pred = np.zeros((3, 6, 6), np.uint8)
    pred[0, 1, 1] = pred[1, 1, 1] = pred[2, 1, 1] = 2  # 3 voxels through the slices
    pred[1, 4:6, 4:6] = 2  # 4 voxels in one slice: the largest class-2 component
    pred[2, 5, 0] = 1  # the only class-1 voxel: kept
    out = largest_component_per_class(pred, 4, fill=0)
    assert (out[1, 4:6, 4:6] == 2).all() and (out[:, 1, 1] == 0).all()
    assert out[2, 5, 0] == 1 and out.sum() == 4 * 2 + 1
    pred[1, 2, 1] = pred[1, 3, 1] = 2  # now the column joins 5 voxels: it wins
    out = largest_component_per_class(pred, 4, fill=0)
    assert (out[:, 1, 1] == 2).all() and (out[1, 4:6, 4:6] == 0).all()
