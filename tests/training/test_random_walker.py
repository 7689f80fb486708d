"""Random-walker pseudo-labels: growth on hand-made images, the loss, and training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dmsps.config import TrainConfig
from dmsps.data.layout import Dataset
from dmsps.training.method_base import Batch
from dmsps.training.methods import build_method
from dmsps.training.random_walker import grow
from dmsps.training.trainer import Trainer

IGN = 4


def _two_halves(z: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Image (1, Z, 8, 8): left half dark, right half bright; one stroke in each half."""
    image = np.zeros((1, z, 8, 8), np.float32)
    image[..., 4:] = 1.0
    scribble = np.full((z, 8, 8), IGN, np.int16)
    scribble[:, 2:6, 1] = 0
    scribble[:, 2:6, 6] = 2
    return image, scribble


@pytest.mark.parametrize("per_slice", [True, False])
def test_walker_fills_each_region_from_its_stroke(per_slice):
    image, scribble = _two_halves(z=2)
    out = grow(image, scribble, IGN, per_slice, spacing=(5.0, 1.0, 1.0))
    assert (out[..., :4] == 0).all() and (out[..., 4:] == 2).all()


def test_slices_without_scribbles_are_ignored_and_one_class_slices_keep_the_strokes():
    image, scribble = _two_halves(z=3)
    scribble[1] = IGN  # nothing drawn
    scribble[2][scribble[2] == 2] = IGN  # only class 0 drawn
    out = grow(image, scribble, IGN, per_slice=True)
    assert (out[1] == IGN).all()
    assert np.array_equal(out[2], scribble[2])
    assert (out[0, :, :4] == 0).all() and (out[0, :, 4:] == 2).all()
    assert (grow(image, np.full_like(scribble, IGN), IGN, per_slice=False) == IGN).all()


def test_walker_loss_is_half_ce_plus_dice_over_labelled_voxels():
    method = build_method("random-walker", IGN)
    assert method.grows_seeds
    # Pixels: label 0, label 1, unlabelled; two classes.
    main = torch.tensor([[0.8, 0.3, 0.5], [0.2, 0.7, 0.5]]).log().reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, IGN]]])
    loss, terms = method.loss(main, main, Batch(main, target), 0)
    ce = (-math.log(0.8) - math.log(0.7)) / 2
    # Dice per class over the two labelled pixels (squared sizes, smooth 1e-5).
    d0 = 1 - (2 * 0.8 + 1e-5) / (0.8**2 + 0.3**2 + 1 + 1e-5)
    d1 = 1 - (2 * 0.7 + 1e-5) / (0.2**2 + 0.7**2 + 1 + 1e-5)
    dice = (d0 + d1) / 2
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert terms["dice"].item() == pytest.approx(dice, rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * (ce + dice), rel=1e-5)


@pytest.mark.parametrize("three_d", [False, True])
def test_training_writes_pseudo_labels_once_and_trains_on_them(
    tiny_dataset, tiny_dataset_3d, tmp_path, three_d
):
    root = tiny_dataset_3d if three_d else tiny_dataset
    ds = Dataset(root)
    cfg = dict(
        method="random-walker",
        iterations=2,
        batch_size=2,
        patch_size=[4, 16, 16] if three_d else 32,
        spatial_dims=3 if three_d else 2,
        val_interval=2,
        features=[4, 8, 16] if three_d else [4, 8, 16, 32, 64],
        device="cpu",
        threads=1,
    )
    out = tmp_path / "rw"
    summary = Trainer(ds, TrainConfig(**cfg), out, False).fit()
    assert summary["status"] == "complete"
    files = sorted((out / "random_walker").iterdir())
    assert [f.name.split(".")[0] for f in files] == ds.split("train")
    case = ds.split("train")[0]
    seeds = ds.load_scribble(case, out / "random_walker")
    scribble = ds.load_scribble(case)
    drawn = scribble != ds.meta.ignore_value
    # Every drawn voxel keeps its class; the walk labelled more than the strokes.
    assert np.array_equal(seeds[drawn], scribble[drawn])
    assert (seeds != ds.meta.ignore_value).sum() > drawn.sum()
