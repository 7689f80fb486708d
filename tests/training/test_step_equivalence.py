"""Speed must not change the method.

The optimised training step (channels-last model, batched tensor augmentation, the
Trainer's own ``train_step``) is compared with a plain reference written out here from the
docs/method.md formulas: an NCHW functional U-Net built from the same state dict and the
DMSPS loss (pCE on both decoders, soft cross-entropy to q = alpha p1 + (1 - alpha) p2 in
either pseudo-label form, sigmoid ramp-up). Same batch, same weights, same alpha; dropout
p set to 0 in the optimised model (the reference has none), so the comparison is
deterministic.

Tolerance (fp32, CPU), against the reference evaluated in fp64 ("truth"):
- loss: relative 1e-5 (against the fp64 and the fp32 reference; observed ~1e-6);
- every parameter gradient g with a non-negligible norm: relative L2 error
  ||g - t|| / ||t|| <= 1e-4 (observed 1e-5 to 4e-5 for channels-last, 4e-6 to 7e-6 for
  plain NCHW fp32);
- gradients that are zero in exact arithmetic (conv biases in front of a BatchNorm):
  max |g - t| <= 1e-5 x the largest gradient entry.

Known limit, kept out of this test on purpose: PyTorch's CPU BatchNorm kernels for
channels-last tensors accumulate their per-channel sums in plain fp32, while the NCHW
kernels do not. The error grows with batch x pixels: the normalised output is off by
4e-6 (relative) at 4x128x128 per channel and 5e-4 at 24x256x256 (NCHW: 6e-8), and the
backward's sums lose more where they cancel (at 4x64x64 some gradients end up 1e-2 from
fp64 while NCHW fp32 stays at 4e-6). Far below SGD's own noise, but not bit-for-bit the
plain fp32 method; see the report of issue 5.

Also a smoke run of ``benchmarks/speed.py --quick``.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dmsps.config import TrainConfig
from dmsps.data.layout import Dataset
from dmsps.models.unet import DualDecoderNet, ModelConfig, count_parameters
from dmsps.training.augment import augment_batch
from dmsps.training.samplers import load_slices
from dmsps.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
IGNORE = 4


# --- the reference, written out from docs/method.md --------------------------------------
def _conv_block(p: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """conv3x3-BN-LeakyReLU, (dropout: off), conv3x3-BN-LeakyReLU; BN on batch statistics."""
    for conv, bn in (("0", "1"), ("4", "5")):
        x = F.conv2d(x, p[f"{name}.{conv}.weight"], p[f"{name}.{conv}.bias"], padding=1)
        x = F.batch_norm(
            x, None, None, p[f"{name}.{bn}.weight"], p[f"{name}.{bn}.bias"], training=True
        )
        x = F.leaky_relu(x, 0.01)
    return x


def reference_forward(p: dict, x: torch.Tensor, levels: int):
    feats = []
    for i in range(levels):
        x = _conv_block(p, f"encoder.blocks.{i}", x if i == 0 else F.max_pool2d(x, 2))
        feats.append(x)

    def decoder(name: str) -> torch.Tensor:
        h = feats[-1]
        for j in range(levels - 1):
            skip = feats[-2 - j]
            h = F.conv2d(h, p[f"{name}.ups.{j}.reduce.weight"], p[f"{name}.ups.{j}.reduce.bias"])
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True)
            h = _conv_block(p, f"{name}.ups.{j}.block", torch.cat([skip, h], dim=1))
        return F.conv2d(h, p[f"{name}.head.weight"], p[f"{name}.head.bias"], padding=1)

    # Feature dropout is off, so the auxiliary decoder sees the clean features too.
    return decoder("main"), decoder("aux")


def reference_loss(
    main, aux, scribble, alpha: float, iteration: int, form: str = "soft-ce", classes: int = 4
):
    valid = scribble != classes
    target = scribble.clamp(max=classes - 1)

    def pce(logits):  # cross-entropy over annotated pixels only
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
        return -logp[valid].sum() / valid.sum()

    sup = 0.5 * (pce(main) + pce(aux))
    q = alpha * torch.softmax(main, 1).detach() + (1 - alpha) * torch.softmax(aux, 1).detach()

    def soft_ce(logits):  # mean over pixels of -sum_c q_c log p_c
        if form == "authors":  # their code feeds probabilities to a softmax cross-entropy
            logits = torch.softmax(logits, dim=1)
        return -(q * F.log_softmax(logits, dim=1)).sum(1).mean()

    pl = 0.5 * (soft_ce(main) + soft_ce(aux))
    weight = 8.0 * math.exp(-5.0 * (1.0 - min(iteration, 100) / 100) ** 2)
    return sup + weight * pl


def _dropout_off(model: torch.nn.Module) -> int:
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0
            n += 1
    return n


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize(
    "features,batch,size,tol,form",
    [
        ([4, 8, 16, 32, 64], 4, 32, 1e-4, "soft-ce"),
        ([16, 32, 64, 128, 256], 4, 32, 1e-4, "soft-ce"),
        ([16, 32, 64, 128, 256], 4, 32, 1e-4, "authors"),
    ],
)
def test_optimised_step_matches_reference(tiny_dataset, tmp_path, features, batch, size, tol, form):
    ds = Dataset(tiny_dataset)
    cfg = TrainConfig(
        batch_size=batch,
        patch_size=size,
        features=features,
        device="cpu",
        channels_last=True,
        amp="none",  # the reference is fp32; auto would mean bf16 on CPUs with native bf16
        pl_loss=form,
    )
    trainer = Trainer(ds, cfg, tmp_path / "run", progress=False)
    store = load_slices(ds, ds.split("train"), cfg.patch_size, progress=False)

    torch.manual_seed(0)
    model = DualDecoderNet(trainer.model_cfg)
    with torch.no_grad():  # BN affine parameters away from 1/0 so that they matter
        for name, prm in model.named_parameters():
            if prm.dim() == 1 and "weight" in name:
                prm.uniform_(0.5, 1.5)
    # 5 encoder blocks + 2 decoders x 4 up-blocks + the feature dropout
    assert _dropout_off(model) == 5 + 8 + 1
    ref32 = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    ref64 = {k: v.detach().double().requires_grad_(True) for k, v in model.named_parameters()}
    model.to(memory_format=torch.channels_last).train()
    opt = trainer.make_optimizer(model)
    gen = torch.Generator().manual_seed(123)
    replay = torch.Generator().set_state(gen.get_state())
    iteration = 50

    terms = trainer.train_step(model, opt, store, gen, iteration)

    # The same batch and alpha, drawn again from the same generator state.
    image, scrib, _, _ = store.sample(batch, replay)
    image, (scrib,) = augment_batch(image, [scrib], [IGNORE], replay)
    alpha = torch.rand((), generator=replay).item()
    assert alpha == pytest.approx(float(terms["alpha"]))
    assert image.is_contiguous()  # the reference runs plain NCHW
    losses = {}
    for key, params, x in (("32", ref32, image), ("64", ref64, image.double())):
        main, aux = reference_forward(params, x, len(features))
        losses[key] = reference_loss(main, aux, scrib, alpha, iteration, form)
        losses[key].backward()

    assert float(terms["loss"]) == pytest.approx(losses["64"].item(), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(losses["32"].item(), rel=1e-5)
    truth = {name: p.grad for name, p in ref64.items()}
    top = max(t.abs().max().item() for t in truth.values())
    top_norm = max(t.norm().item() for t in truth.values())
    for name, prm in model.named_parameters():
        g, g32, t = prm.grad, ref32[name].grad, truth[name]
        assert g is not None and g32 is not None, name
        if t.norm() > 1e-3 * top_norm:
            assert _rel(g, t) <= tol, (name, _rel(g, t), _rel(g32, t))
        else:
            # conv biases in front of a BatchNorm: true gradient 0, rounding noise only
            assert (g.double() - t).abs().max().item() <= 1e-5 * top, name


def test_parameter_count_is_unchanged():
    assert count_parameters(DualDecoderNet(ModelConfig())) == 2_447_064


def test_channels_last_eval_forward_matches_nchw():
    """Inference path: same weights, odd sizes (padding), both decoders agree."""
    torch.manual_seed(0)
    a = DualDecoderNet(ModelConfig(features=[4, 8, 16, 32, 64]))
    b = copy.deepcopy(a).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 48, 40)
    a.eval(), b.eval()
    with torch.no_grad():
        ya = a(x)
        yb = b(x.contiguous(memory_format=torch.channels_last))
    for u, v in zip(ya, yb, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)


def test_speed_quick_smoke(tmp_path):
    out = tmp_path / "speed.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick", "--out", str(out)],
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    )
    rep = json.loads(out.read_text())
    assert {"machine", "peak", "train", "infer"} <= set(rep)
    assert rep["peak"]["fp32_matmul_gflops"] > 0
    entry = rep["train"][0]
    for path in ("baseline", "ours"):
        r = entry[path]
        for key in (
            "images_per_s",
            "gflops_achieved",
            "peak_fraction",
            "data_share",
            "peak_rss_mb",
            "step_s_median",
        ):
            assert r[key] is not None and r[key] > 0, (path, key)
        assert r["gflop_per_image"] == pytest.approx(entry["baseline"]["gflop_per_image"])
    assert entry["ratio"]["ours"] > 0
    inf = rep["infer"]
    assert inf["ours"]["slices_per_s"] > 0 and inf["baseline"]["slices_per_s"] > 0
    assert inf["ratio"] > 0
