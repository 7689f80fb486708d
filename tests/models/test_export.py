"""ONNX export: the exported main decoder predicts what the checkpoint predicts (2D, 3D)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from dmsps.data.layout import Dataset
from dmsps.inference.predictor import Predictor
from tests.support import run_cli, train_tiny

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY_2D = dict(iterations=3, val_interval=3)
TINY_3D = dict(
    TINY_2D,
    spatial_dims=3,
    patch_size=[4, 16, 16],
    features=[4, 8, 16],
    norm="instance",
    activation="relu",
    join="concat",
    head_kernel=1,
)


def _checkpoint(dataset, out, settings):
    ckpt = train_tiny(dataset, out, **settings)
    # A few iterations leave the network near its initialisation; perturb the weights so
    # the classes differ across the image and the comparison is not trivially all-zero.
    state = torch.load(ckpt, weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for key, value in state["model"].items():
        if value.is_floating_point() and "running" not in key:
            value.add_(0.3 * torch.randn(value.shape, generator=gen))
    torch.save(state, ckpt)
    return ckpt


@pytest.mark.parametrize("dims", [2, 3])
def test_onnx_predicts_the_checkpoints_labels(
    tiny_dataset, tiny_dataset_3d, tmp_path, capsys, dims
):
    dataset = tiny_dataset if dims == 2 else tiny_dataset_3d
    ckpt = _checkpoint(dataset, tmp_path / "run", TINY_2D if dims == 2 else TINY_3D)
    onnx_path = tmp_path / "model.onnx"
    code, out = run_cli(capsys, "export", str(ckpt), "--onnx", str(onnx_path))
    assert code == 0 and "largest logit difference" in out
    # Same probabilities on a whole test volume, through the same inferer and normalisation.
    ds = Dataset(dataset)
    image, geom = ds.load_image(ds.split("test")[0])
    torch_probs = Predictor(ckpt, "cpu").probabilities(image, spacing=geom.spacing)["main"]
    onnx_probs = Predictor(onnx_path, "cpu").probabilities(image, spacing=geom.spacing)["main"]
    assert torch.allclose(torch_probs, onnx_probs, atol=1e-4)
    assert len(torch.unique(torch_probs.argmax(0))) > 1  # not a trivial all-one-class map
    # And the same label files from `dmsps predict`.
    for name, model in (("pt", ckpt), ("onnx", onnx_path)):
        code, _ = run_cli(capsys, "predict", str(model), str(dataset), str(tmp_path / name))
        assert code == 0
    for f in sorted((tmp_path / "pt").glob("*.nii.gz")):
        a = np.asarray(nib.load(f).dataobj)
        b = np.asarray(nib.load(tmp_path / "onnx" / f.name).dataobj)
        assert np.array_equal(a, b), f.name


def test_export_and_onnx_errors_are_clear(tiny_dataset, tmp_path, capsys):
    ckpt = _checkpoint(tiny_dataset, tmp_path / "run", TINY_2D)
    code, out = run_cli(capsys, "export", str(ckpt), "--onnx", str(tmp_path / "model.bin"))
    assert code == 2 and "must end in .onnx" in out
    onnx_path = tmp_path / "model.onnx"
    assert run_cli(capsys, "export", str(ckpt), "--onnx", str(onnx_path), "--no-check")[0] == 0
    args = ["predict", str(onnx_path), str(tiny_dataset), str(tmp_path / "p"), "--uncertainty"]
    code, out = run_cli(capsys, *args)
    assert code == 2 and "main decoder only" in out
    assert not (tmp_path / "p").exists()
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx graph")
    code, out = run_cli(capsys, "predict", str(tmp_path / "bad.onnx"), str(tiny_dataset), "x")
    assert code == 2 and "not a readable ONNX model" in out
