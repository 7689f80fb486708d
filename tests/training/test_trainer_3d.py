"""3D training through the same trainer: patches from the cache, sliding-window validation."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from dmsps.config import TrainConfig
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.models.checkpoint import load_checkpoint
from dmsps.training.trainer import Trainer
from tests.support import run_cli

SMALL_3D = dict(
    spatial_dims=3,
    patch_size=[4, 16, 16],
    iterations=4,
    batch_size=2,
    val_interval=2,
    log_interval=1,
    features=[4, 8, 16],
    norm="instance",
    activation="relu",
    join="concat",
    head_kernel=1,
    augment=True,
    device="cpu",
    threads=1,
)


@pytest.mark.parametrize("method", ["dmsps", "pce", "dmpls", "full"])
def test_every_method_trains_in_3d(tiny_dataset_3d, tmp_path, method):
    out = tmp_path / method
    cfg = TrainConfig(method=method, **SMALL_3D)
    summary = Trainer(Dataset(tiny_dataset_3d), cfg, out, False).fit()
    assert summary["status"] == "complete" and 0 <= summary["best_val_dice"] <= 1
    meta = load_checkpoint(out / "checkpoints/best.pt")["meta"]
    assert meta["spatial_dims"] == 3 and meta["model"]["in_channels"] == 2
    assert meta["inference"] == {
        "kind": "sliding-window",
        "roi": [4, 16, 16],
        "overlap": 0.5,
        "blend": "gaussian",
    }
    assert meta["normalization"] == ["zscore", "zscore"]
    assert (out / "cache/images").is_dir()  # patches came from the case cache


def test_3d_resume_reaches_the_same_weights(tiny_dataset_3d, tmp_path):
    ds = Dataset(tiny_dataset_3d)
    Trainer(ds, TrainConfig(**SMALL_3D), tmp_path / "a", False).fit()
    Trainer(ds, TrainConfig(stop_at=2, **SMALL_3D), tmp_path / "b", False).fit()
    Trainer(ds, TrainConfig(**SMALL_3D), tmp_path / "b", False).fit(resume=True)
    wa = load_checkpoint(tmp_path / "a/checkpoints/last.pt")["model"]
    wb = load_checkpoint(tmp_path / "b/checkpoints/last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_3d_checkpoint_predicts_on_the_input_grid(tiny_dataset_3d, tmp_path, capsys):
    Trainer(Dataset(tiny_dataset_3d), TrainConfig(**SMALL_3D), tmp_path / "r", False).fit()
    code, out = run_cli(
        capsys,
        "predict",
        tmp_path / "r/checkpoints/best.pt",
        tiny_dataset_3d,
        tmp_path / "pred",
        "--uncertainty",
        "--quiet",
    )
    assert code == 0, out
    pred = nib.load(tmp_path / "pred/case004.nii.gz")
    src = nib.load(tiny_dataset_3d / "imagesTs/case004_0000.nii.gz")
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 3}


def test_2d_patches_at_native_resolution(tiny_dataset, tmp_path):
    cfg = TrainConfig(
        sampler="patches",
        patch_size=[16, 16],
        iterations=2,
        batch_size=2,
        val_interval=2,
        features=[4, 8, 16],
        device="cpu",
        threads=1,
    )
    Trainer(Dataset(tiny_dataset), cfg, tmp_path / "r", False).fit()
    meta = load_checkpoint(tmp_path / "r/checkpoints/best.pt")["meta"]
    assert meta["inference"]["kind"] == "sliding-window" and meta["inference"]["roi"] == [16, 16]
    assert json.loads((tmp_path / "r/final.json").read_text())["status"] == "complete"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(patch_size=[4, 16]), "needs 3 positive sizes"),
        (dict(patch_size=[6, 16, 16]), r"multiple of \[4, 4, 4\]"),
        (dict(sampler="slices"), "2D only"),
        (dict(norm="group"), "norm must be one of"),
        (dict(spatial_dims=4), "spatial_dims"),
        (dict(target_spacing=[0.0, 0.0, 0.0]), "each positive or 0"),
        (dict(target_spacing=[2.0, -1.0, 2.0]), "each positive or 0"),
    ],
)
def test_inconsistent_3d_settings_fail_before_training(tiny_dataset_3d, tmp_path, change, match):
    with pytest.raises(DmspsError, match=match):
        Trainer(Dataset(tiny_dataset_3d), TrainConfig(**{**SMALL_3D, **change}), tmp_path, False)


def test_resampled_training_predicts_on_the_original_grid(tiny_dataset_3d, tmp_path, capsys):
    # tiny3d spacing is 5 x 1.5 x 1.25 mm on an 8 x 32 x 32 grid: halve every axis
    cfg = TrainConfig(**{**SMALL_3D, "target_spacing": [10.0, 3.0, 2.5]})
    Trainer(Dataset(tiny_dataset_3d), cfg, tmp_path / "r", False).fit()
    cached = np.load(tmp_path / "r/cache/images/case000.npy", mmap_mode="r")
    assert cached.shape == (2, 4, 16, 16)
    code, out = run_cli(
        capsys, "predict", tmp_path / "r/checkpoints/best.pt", tiny_dataset_3d,
        tmp_path / "pred", "--quiet",
    )  # fmt: skip
    assert code == 0, out
    assert nib.load(tmp_path / "pred/case004.nii.gz").shape == (32, 32, 8)  # NIfTI order
