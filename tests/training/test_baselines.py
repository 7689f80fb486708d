"""Scribble baselines (em, tv, mumford-shah, pce-dice): losses on hand-computed cases.

Expected values are written out with plain math; logits are logs of chosen
probabilities so that softmax gives those probabilities back.
"""

from __future__ import annotations

import math

import pytest
import torch

from dmsps.training.baselines import mumford_shah, soft_contour_length
from dmsps.training.method_base import Batch
from dmsps.training.methods import DEFAULT_PL_WEIGHT, METHODS, build_method

IGN = 4
SMOOTH = 1e-5  # dice_loss's default


def _logits(*pixels: tuple[float, ...]) -> torch.Tensor:
    """(1, C, 1, N) logits whose softmax at pixel i is ``pixels[i]``."""
    return torch.tensor(pixels).log().T.reshape(1, len(pixels[0]), 1, len(pixels))


def _h(*p: float) -> float:
    """Entropy divided by log C."""
    return -sum(v * math.log(v) for v in p) / math.log(len(p))


def test_registry_holds_the_baselines_with_their_default_weights():
    assert {"em", "tv", "mumford-shah", "pce-dice"} <= set(METHODS)
    expected = {"em": 0.1, "tv": 1e-2, "mumford-shah": 1e-6, "pce-dice": 1.0}
    for name, w in expected.items():
        assert DEFAULT_PL_WEIGHT[name] == w
        assert build_method(name, IGN).cfg.pl_weight == w
        assert build_method(name, IGN, pl_weight=0.5).cfg.pl_weight == 0.5


def test_em_hand_case():
    # Pixel 0 annotated as class 0, pixel 1 unannotated; C = 4.
    main = _logits((0.25, 0.25, 0.25, 0.25), (0.7, 0.1, 0.1, 0.1))
    aux = _logits((0.1, 0.7, 0.1, 0.1), (0.4, 0.3, 0.2, 0.1))
    scribble = torch.tensor([[[0, IGN]]])
    loss, terms = build_method("em", IGN).loss(main, aux, Batch(main, scribble), 0)
    sup = 0.5 * (-math.log(0.25) - math.log(0.1))
    h_uniform, h1 = 1.0, _h(0.7, 0.1, 0.1, 0.1)
    h2 = _h(0.4, 0.3, 0.2, 0.1)
    reg = 0.5 * ((h_uniform + h1) / 2 + (h1 + h2) / 2)
    assert terms["pl"].item() == pytest.approx(reg, rel=1e-6)
    assert loss.item() == pytest.approx(sup + 0.1 * reg, rel=1e-6)


def test_tv_hand_case():
    # Main decoder, 2 classes, p(class 0) = (0.9, 0.9, 0.2, 0.2) along a row.
    # Class 0: erosion (3-wide min, cut at the border) (0.9, 0.2, 0.2, 0.2), dilation of
    # that (0.9, 0.9, 0.2, 0.2), difference (0, 0.7, 0, 0). Class 1 = (0.1, 0.1, 0.8, 0.8):
    # erosion (0.1, 0.1, 0.1, 0.8), dilation (0.1, 0.1, 0.8, 0.8), difference (0, 0, 0.7, 0).
    # Mean over 2 classes x 4 pixels: 1.4 / 8 = 0.175. Aux decoder uniform: 0.
    main = _logits((0.9, 0.1), (0.9, 0.1), (0.2, 0.8), (0.2, 0.8))
    aux = torch.zeros(1, 2, 1, 4)
    scribble = torch.tensor([[[0, IGN, IGN, IGN]]])
    loss, terms = build_method("tv", IGN).loss(main, aux, Batch(main, scribble), 0)
    reg = 0.5 * (0.175 + 0.0)
    sup = 0.5 * (-math.log(0.9) - math.log(0.5))
    assert terms["pl"].item() == pytest.approx(reg, rel=1e-6)
    assert loss.item() == pytest.approx(sup + 1e-2 * reg, rel=1e-6)


@pytest.mark.parametrize("axis", [2, 3, 4])
def test_tv_is_the_same_along_every_axis_in_3d(axis):
    p0 = torch.tensor([0.9, 0.9, 0.2, 0.2])
    probs = torch.stack([p0, 1 - p0]).reshape(1, 2, 4, 1, 1).movedim(2, axis)
    assert soft_contour_length(probs).item() == pytest.approx(0.175, rel=1e-6)


def test_mumford_shah_hand_case():
    # Image x = (0, 1); main p(class 0) = (0.75, 0.25), p(class 1) = (0.25, 0.75).
    # Means: class 0 (0 * 0.75 + 1 * 0.25) / 1 = 0.25, class 1 0.75. Level set:
    # class 0: 0.75 * 0.25^2 + 0.25 * 0.75^2 = 0.1875, class 1 the same: 0.375.
    # TV: |0.25 - 0.75| per class = 1.0. Main: 1.375.
    # Aux uniform (0.5): means 0.5, level 2 classes * (0.5 * 0.25 + 0.5 * 0.25) = 0.5, TV 0.
    image = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    main = _logits((0.75, 0.25), (0.25, 0.75))
    aux = torch.zeros(1, 2, 1, 2)
    scribble = torch.tensor([[[0, IGN]]])
    reg = 0.5 * (1.375 + 0.5)
    sup = 0.5 * (-math.log(0.75) - math.log(0.5))
    # The default weight (1e-6) hides the term in float32; weight 1 shows it.
    loss, terms = build_method("mumford-shah", IGN, pl_weight=1.0).loss(
        main, aux, Batch(image, scribble), 0
    )
    assert terms["pl"].item() == pytest.approx(reg, rel=1e-6)
    assert loss.item() == pytest.approx(sup + reg, rel=1e-6)


def test_mumford_shah_means_are_per_image_and_channel():
    # Two images with the same p as the main decoder above, channel 0 x = (0, 1) and
    # (1, 0). Image 1: class means 0.75 and 0.25, level 0.75 * 0.25^2 + 0.25 * 0.75^2 per
    # class, 0.375, TV 1.0: 1.375 again. Channel 1 is constant (2, 2): every class mean is
    # 2, level term 0. Means pooled over the batch would be 0.5 for both classes, giving
    # a level term of 0.25 * (0.75 + 0.25 + 0.75 + 0.25) = 0.5 per class instead.
    p0 = torch.tensor([[0.75, 0.25], [0.75, 0.25]])  # (image, pixel)
    probs = torch.stack([p0, 1 - p0], 1).view(2, 2, 1, 2)
    image = torch.stack([torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.full((2, 2), 2.0)], 1).view(
        2, 2, 1, 2
    )
    assert mumford_shah(probs, image).item() == pytest.approx(2 * 1.375, rel=1e-6)


@pytest.mark.parametrize("axis", [2, 3, 4])
def test_mumford_shah_is_the_same_along_every_axis_in_3d(axis):
    p0 = torch.tensor([0.75, 0.25])
    probs = torch.stack([p0, 1 - p0]).reshape(1, 2, 2, 1, 1).movedim(2, axis)
    image = torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1, 1).movedim(2, axis)
    assert mumford_shah(probs, image).item() == pytest.approx(1.375, rel=1e-6)


def test_pce_dice_hand_case():
    # Pixels 0 and 1 annotated (classes 0 and 1), pixel 2 not.
    # Main: p = (0.8, 0.2), (0.4, 0.6), (0.5, 0.5); the Dice sees pixels 0 and 1 only:
    # class 0: overlap 0.8, sizes 0.8^2 + 0.4^2 + 1 = 1.8; class 1: 0.6, 0.2^2 + 0.6^2 + 1 = 1.4.
    # Aux uniform: each class overlap 0.5, sizes 0.25 + 0.25 + 1 = 1.5.
    main = _logits((0.8, 0.2), (0.4, 0.6), (0.5, 0.5))
    aux = torch.zeros(1, 2, 1, 3)
    scribble = torch.tensor([[[0, 1, IGN]]])
    loss, terms = build_method("pce-dice", IGN).loss(main, aux, Batch(main, scribble), 0)

    def dice(overlap: float, sizes: float) -> float:
        return 1 - (2 * overlap + SMOOTH) / (sizes + SMOOTH)

    dice_main = 0.5 * (dice(0.8, 1.8) + dice(0.6, 1.4))
    dice_aux = 0.5 * (dice(0.5, 1.5) + dice(0.5, 1.5))
    sup = 0.5 * (-(math.log(0.8) + math.log(0.6)) / 2 + math.log(2))
    dl = 0.5 * (dice_main + dice_aux)
    assert terms["pl"].item() == pytest.approx(dl, rel=1e-6)
    assert loss.item() == pytest.approx(sup + 1.0 * dl, rel=1e-6)


@pytest.mark.parametrize("spatial", [(5, 6), (3, 5, 6)])
def test_pce_dice_ignored_voxels_enter_neither_term(spatial):
    gen = torch.Generator().manual_seed(3)
    main = torch.randn(2, 4, *spatial, generator=gen, requires_grad=True)
    aux = torch.randn(2, 4, *spatial, generator=gen, requires_grad=True)
    scribble = torch.randint(0, 4, (2, *spatial), generator=gen)
    scribble[..., 3:] = IGN
    method = build_method("pce-dice", IGN)
    loss, _ = method.loss(main, aux, Batch(main, scribble), 0)
    loss.backward()
    for logits in (main, aux):
        assert torch.all(logits.grad[..., 3:] == 0)
        assert torch.any(logits.grad[..., :3] != 0)
    # Any logits on the unannotated voxels give the same loss.
    with torch.no_grad():
        main2, aux2 = main.clone(), aux.clone()
        main2[..., 3:] = torch.randn(main2[..., 3:].shape, generator=gen) * 10
        aux2[..., 3:] = 0.0
        other, _ = method.loss(main2, aux2, Batch(main2, scribble), 0)
    torch.testing.assert_close(other, loss.detach())
