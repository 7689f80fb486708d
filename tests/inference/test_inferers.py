"""Inferers: resized slices and N-D sliding windows give whole-volume probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmsps.errors import DmspsError
from dmsps.inference.inferers import (
    ResizedSliceInferer,
    SlidingWindowInferer,
    inference_settings,
    make_inferer,
)
from dmsps.models.unet import DualDecoderNet, ModelConfig


class _PerVoxel(torch.nn.Module):
    """Each output voxel depends on its own input voxel only (1x1 convolutions), so any
    tiling and any blending of windows must give exactly the whole-volume result."""

    def __init__(self, dims: int, cin: int = 2, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
        self.main, self.aux = conv(cin, k, 1), conv(cin, k, 1)

    def forward(self, x, aux: bool = True):
        return (self.main(x), self.aux(x)) if aux else self.main(x)


def _whole(model, image: np.ndarray, dims: int) -> dict[str, torch.Tensor]:
    x = torch.from_numpy(image)
    x = x.permute(1, 0, 2, 3) if dims == 2 else x[None]
    main, aux = model(x)
    p_main, p_aux = torch.softmax(main, 1), torch.softmax(aux, 1)
    out = {"main": p_main, "mean": 0.5 * (p_main + p_aux)}
    return {k: (v.permute(1, 0, 2, 3) if dims == 2 else v[0]) for k, v in out.items()}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_sliding_window_equals_whole_volume_for_a_per_voxel_model(dims, blend):
    image = np.random.default_rng(0).normal(size=(2, 7, 19, 23)).astype(np.float32)
    roi = (8, 8) if dims == 2 else (4, 8, 8)
    inferer = SlidingWindowInferer(roi, overlap=0.5, blend=blend, channels_last=False)
    model = inferer.prepare(_PerVoxel(dims))
    got = inferer(model, image, ("main", "mean"))
    want = _whole(model, image, dims)
    for key in ("main", "mean"):
        assert got[key].shape == (3, 7, 19, 23)
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-5)


def test_window_larger_than_the_volume_shrinks_to_it():
    cfg = ModelConfig(spatial_dims=3, in_channels=1, num_classes=3, features=[4, 8, 16])
    cfg.encoder_dropout = [0.0, 0.0, 0.0]
    inferer = SlidingWindowInferer((32, 64, 64), channels_last=True)
    model = inferer.prepare(DualDecoderNet(cfg))
    image = np.random.default_rng(1).normal(size=(1, 5, 12, 9)).astype(np.float32)
    probs = inferer(model, image)["main"]
    assert probs.shape == (3, 5, 12, 9)
    torch.testing.assert_close(probs.sum(0), torch.ones(5, 12, 9))


def test_resized_slices_return_probabilities_on_the_input_grid():
    cfg = ModelConfig(in_channels=2, num_classes=3, features=[4, 8, 16])
    inferer = ResizedSliceInferer((16, 16), batch=2, channels_last=True)
    model = inferer.prepare(DualDecoderNet(cfg))
    image = np.random.default_rng(2).normal(size=(2, 5, 20, 12)).astype(np.float32)
    out = inferer(model, image, ("main", "mean"))
    assert out["main"].shape == out["mean"].shape == (3, 5, 20, 12)
    torch.testing.assert_close(out["mean"].sum(0), torch.ones(5, 20, 12))


def test_settings_round_trip_and_overrides():
    sw = SlidingWindowInferer((4, 8, 8), overlap=0.25, blend="constant")
    again = make_inferer(sw.settings())
    assert isinstance(again, SlidingWindowInferer) and again.settings() == sw.settings()
    changed = make_inferer(sw.settings(), overlap=0.75, blend="gaussian")
    assert changed.overlap == 0.75 and changed.blend == "gaussian"
    rs = make_inferer({"kind": "resized-slices", "size": [32, 32]})
    assert isinstance(rs, ResizedSliceInferer) and rs.size == (32, 32)
    assert inference_settings({"patch_size": 64}) == {"kind": "resized-slices", "size": [64, 64]}


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"kind": "magic"}, "unknown inference kind"),
        ({"kind": "sliding-window", "roi": [8]}, "2 or 3 positive sizes"),
        ({"kind": "sliding-window", "roi": [8, 8], "overlap": 1.0}, "overlap"),
        ({"kind": "sliding-window", "roi": [8, 8], "blend": "max"}, "blend"),
        ({"kind": "resized-slices", "size": [8, 8, 8]}, "2D size"),
    ],
)
def test_bad_settings_are_clear_errors(settings, match):
    with pytest.raises(DmspsError, match=match):
        make_inferer(settings)
