"""Shared fixtures: a tiny dataset made in code (no files from outside the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmsps.data.layout import DatasetWriter, cardiac_meta
from dmsps.io.nifti import Geometry


def tiny_case(rng: np.random.Generator, z: int = 3, size: int = 32):
    """Concentric discs (LV inside a myocardium ring, RV beside it) with noise."""
    yy, xx = np.mgrid[:size, :size]
    label = np.zeros((z, size, size), np.uint8)
    image = np.zeros((z, size, size), np.float32)
    for k in range(z):
        cy, cx = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
        r = np.hypot(yy - cy, xx - cx)
        rv = np.hypot(yy - cy, xx - (cx - size * 0.28))
        label[k][rv < size * 0.14] = 1
        label[k][r < size * 0.25] = 2
        label[k][r < size * 0.16] = 3
        image[k] = np.choose(label[k], [0.2, 0.8, 0.4, 0.9]) + rng.normal(0, 0.05, (size, size))
    scribble = np.full_like(label, 4)
    for k in range(z):
        for c in range(4):
            ys, xs = np.nonzero(label[k] == c)
            if len(ys):
                # a short horizontal stroke through the class's central pixel row
                row = int(np.median(ys))
                cols = xs[ys == row]
                scribble[
                    k, row, cols[len(cols) // 4 : max(len(cols) // 4 + 1, 3 * len(cols) // 4)]
                ] = c
    return image, label, scribble


def make_tiny_dataset(
    root: Path,
    n_train: int = 4,
    n_val: int = 2,
    n_test: int = 2,
    seed: int = 0,
    z: int = 3,
    channels: int = 1,
):
    """Tiny cardiac-like cases; ``z`` slices; extra channels are transformed copies."""
    rng = np.random.default_rng(seed)
    meta = cardiac_meta("tiny")
    if channels > 1:
        meta.channel_names = ["MRI"] + [f"MRI{c}" for c in range(1, channels)]
    w = DatasetWriter(root, meta)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    geom = Geometry.from_spacing((z, 32, 32), (5.0, 1.5, 1.25))
    for i in range(n_train + n_val + n_test):
        split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        image, label, scribble = tiny_case(rng, z=z)
        if channels > 1:
            image = np.stack([image * (c + 1) + 0.1 * c for c in range(channels)])
        name = f"case{i:03d}"
        w.write_case(
            name, image, geom, label, scribble if split != "test" else None, split == "test"
        )
        splits[split].append(name)
    w.finish(splits)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_tiny_dataset(tmp_path / "tiny")


@pytest.fixture
def tiny_dataset_3d(tmp_path: Path) -> Path:
    """Two-channel volumes of 8 slices, for 3D training."""
    return make_tiny_dataset(tmp_path / "tiny3d", n_train=3, n_val=1, n_test=1, z=8, channels=2)
