"""BatchNorm folding for inference: same outputs, training model untouched."""

from __future__ import annotations

import torch
from torch import nn

from dmsps.models.fold import fold_batchnorm
from dmsps.models.unet import DualDecoderNet, ModelConfig


def _trained_like(dims: int) -> DualDecoderNet:
    torch.manual_seed(0)
    model = DualDecoderNet(ModelConfig(features=[4, 8, 16, 32, 64], spatial_dims=dims))
    for m in model.modules():  # running statistics far from the 0/1 defaults
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.3, 3)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.train()


def test_folded_model_matches_eval_outputs_2d_and_3d():
    for dims, shape in ((2, (3, 1, 32, 32)), (3, (2, 1, 16, 16, 16))):
        model = _trained_like(dims)
        folded = fold_batchnorm(model, channels_last=True)
        bns = [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert not bns, f"{len(bns)} BatchNorm layers left unfolded ({dims}D)"
        x = torch.randn(shape)
        with torch.no_grad():
            ref = model.eval()(x)
            out = folded(x)
        for a, b in zip(ref, out, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), (dims, (a - b).abs().max())


def test_folding_leaves_the_training_model_alone():
    model = _trained_like(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    assert model.training
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
