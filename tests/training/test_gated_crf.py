"""Gated CRF baseline (``gatedcrf``): hand-computed losses, properties, 2D and 3D contract.

Hand cases write the kernel values k_ij = weight * exp(-|dxy|^2 / (2 sigma_xy^2)
- |dx|^2 / (2 sigma_x^2)) and the disagreements sum_c p_i(c) (1 - p_j(c)) out in plain
math.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dmsps.training.gated_crf import (
    DEFAULT_DOWNSCALE,
    DEFAULT_KERNELS,
    DEFAULT_RADIUS,
    GaussianKernel,
    gated_crf_loss,
)
from dmsps.training.losses import partial_ce
from dmsps.training.method_base import Batch
from dmsps.training.methods import DEFAULT_PL_WEIGHT, METHODS, build_method

IGN = 4


def _two_class(*p0: float, shape: tuple[int, ...]) -> torch.Tensor:
    """(1, 2, *shape) probabilities with class 0 at ``p0`` (row-major) and class 1 = 1 - p0."""
    first = torch.tensor(p0, dtype=torch.float64).reshape(1, 1, *shape)
    return torch.cat([first, 1 - first], 1)


def _brute_force(probs: torch.Tensor, image: torch.Tensor, kernels, radius: int) -> torch.Tensor:
    """The definition, pixel pair by pixel pair (2D only, tiny inputs)."""
    n, _, h, w = probs.shape
    total = torch.zeros((), dtype=probs.dtype)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                for v in range(max(0, y - radius), min(h, y + radius + 1)):
                    for u in range(max(0, x - radius), min(w, x + radius + 1)):
                        if (v, u) == (y, x):
                            continue
                        k = 0.0
                        for kern in kernels:
                            e = ((v - y) ** 2 + (u - x) ** 2) / kern.sigma_xy**2
                            if kern.sigma_image is not None:
                                dx = image[b, :, v, u] - image[b, :, y, x]
                                e = e + float((dx**2).sum()) / kern.sigma_image**2
                            k += kern.weight * math.exp(-0.5 * e)
                        pi, pj = probs[b, :, y, x], probs[b, :, v, u]
                        total = total + k * (pi * (1 - pj)).sum()
    return total / (n * h * w)


def test_registered_with_wsl4mis_defaults():
    assert "gatedcrf" in METHODS
    assert DEFAULT_PL_WEIGHT["gatedcrf"] == 0.1
    assert build_method("gatedcrf", IGN).cfg.pl_weight == 0.1
    assert build_method("gatedcrf", IGN, pl_weight=0.5).cfg.pl_weight == 0.5
    (kern,) = DEFAULT_KERNELS
    assert kern == GaussianKernel(weight=1.0, sigma_xy=6.0, sigma_image=0.1)
    assert DEFAULT_RADIUS == 5 and DEFAULT_DOWNSCALE == 1


def test_hand_case_2x2():
    # Pixels a=(0,0), b=(0,1), c=(1,0), e=(1,1); intensities 0, 0, 1, 1; one kernel with
    # sigma_xy = sigma_x = 1, r = 1 (every pixel sees the three others; the other five
    # window positions are outside the image and gated out).
    image = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]], dtype=torch.float64)
    probs = _two_class(0.9, 0.8, 0.3, 0.2, shape=(2, 2))
    # Kernels: |dxy|^2 + |dx|^2 = 1 + 0 (a-b, c-e), 1 + 1 (a-c, b-e), 2 + 1 (a-e, b-c).
    k_ab = k_ce = math.exp(-0.5)
    k_ac = k_be = math.exp(-1.0)
    k_ae = k_bc = math.exp(-1.5)
    # Disagreements D_ij = p_i(0) (1 - p_j(0)) + p_i(1) (1 - p_j(1)), symmetric in i, j.
    d_ab = 0.9 * 0.2 + 0.1 * 0.8  # 0.26
    d_ac = 0.9 * 0.7 + 0.1 * 0.3  # 0.66
    d_ae = 0.9 * 0.8 + 0.1 * 0.2  # 0.74
    d_bc = 0.8 * 0.7 + 0.2 * 0.3  # 0.62
    d_be = 0.8 * 0.8 + 0.2 * 0.2  # 0.68
    d_ce = 0.3 * 0.8 + 0.7 * 0.2  # 0.38
    pairs = k_ab * d_ab + k_ac * d_ac + k_ae * d_ae + k_bc * d_bc + k_be * d_be + k_ce * d_ce
    expected = 2 * pairs / 4  # ordered pairs (i, j) and (j, i), 4 pixels
    kern = (GaussianKernel(1.0, 1.0, 1.0),)
    got = gated_crf_loss(probs, image, kern, radius=1, downscale=1)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.5 * (0.64 * k_ab + 1.34 * k_ac + 1.36 * k_ae))


def test_hand_case_two_kernels_one_without_intensity():
    # 1 x 2 image, intensities 0 and 2; k = 0.5 exp(-1/2) (position only, sigma_xy 1)
    # + 2 exp(-(1 + (2/2)^2) / 2) (sigma_xy 1, sigma_x 2).
    image = torch.tensor([[[[0.0, 2.0]]]], dtype=torch.float64)
    probs = _two_class(0.6, 0.1, shape=(1, 2))
    k = 0.5 * math.exp(-0.5) + 2 * math.exp(-1.0)
    d = 0.6 * 0.9 + 0.4 * 0.1  # 0.58
    kern = (GaussianKernel(0.5, 1.0, None), GaussianKernel(2.0, 1.0, 2.0))
    got = gated_crf_loss(probs, image, kern, radius=1)
    assert got.item() == pytest.approx(2 * k * d / 2, rel=1e-12)


def test_matches_the_pairwise_definition():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64), 1)
    image = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
    kern = (GaussianKernel(1.0, 1.5, 0.7), GaussianKernel(0.3, 2.0, None))
    got = gated_crf_loss(probs, image, kern, radius=2)
    torch.testing.assert_close(got, _brute_force(probs, image, kern, 2))


def test_single_pixel_has_no_neighbours():
    probs = torch.tensor([[[[0.5]], [[0.5]]]])
    assert gated_crf_loss(probs, torch.ones(1, 1, 1, 1), radius=1).item() == 0.0


def test_zero_when_every_pixel_has_the_same_one_hot_prediction():
    image = torch.randn(2, 1, 9, 10, generator=torch.Generator().manual_seed(1))
    probs = torch.zeros(2, 3, 9, 10)
    probs[:, 2] = 1
    kern = (GaussianKernel(1.0, 6.0, 5.0),)  # wide enough that k_ij is far from 0
    assert gated_crf_loss(probs, image, kern).abs().item() < 1e-5


def test_disagreeing_neighbours_cost_more_when_they_look_alike():
    probs = _two_class(0.9, 0.1, shape=(1, 2)).float()
    alike = torch.tensor([[[[0.5, 0.52]]]])
    unlike = torch.tensor([[[[0.5, 0.9]]]])
    similar, different = gated_crf_loss(probs, alike), gated_crf_loss(probs, unlike)
    assert similar.item() > 10 * different.item() > 0


def test_downscale_pools_image_and_probabilities_first():
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(1, 3, 8, 6, generator=gen, dtype=torch.float64), 1)
    image = torch.randn(1, 1, 8, 6, generator=gen, dtype=torch.float64)
    kern = (GaussianKernel(1.0, 2.0, 1.0),)
    got = gated_crf_loss(probs, image, kern, radius=2, downscale=2)
    ref = gated_crf_loss(F.avg_pool2d(probs, 2), F.avg_pool2d(image, 2), kern, radius=2)
    torch.testing.assert_close(got, ref)
    odd = gated_crf_loss(probs[..., :7, :5], image[..., :7, :5], kern, radius=2, downscale=2)
    assert torch.isfinite(odd)


def test_3d_is_the_mean_over_axial_slices():
    gen = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=torch.float64), 1)
    image = torch.randn(2, 1, 4, 5, 6, generator=gen, dtype=torch.float64)
    kern = (GaussianKernel(1.0, 2.0, 1.0),)
    got = gated_crf_loss(probs, image, kern, radius=2)
    per_slice = [gated_crf_loss(probs[:, :, z], image[:, :, z], kern, radius=2) for z in range(4)]
    torch.testing.assert_close(got, torch.stack(per_slice).mean())


def test_mismatched_image_is_rejected():
    with pytest.raises(ValueError, match="does not match"):
        gated_crf_loss(torch.ones(1, 2, 4, 4) / 2, torch.ones(1, 1, 4, 5))


def test_method_is_pce_plus_weighted_crf_and_pce_ignores_unannotated_pixels():
    gen = torch.Generator().manual_seed(4)
    main = torch.randn(1, 4, 3, 4, generator=gen)
    aux = torch.randn(1, 4, 3, 4, generator=gen)
    image = torch.randn(1, 1, 3, 4, generator=gen)
    scribble = torch.full((1, 3, 4), IGN)
    scribble[0, 0, 0], scribble[0, 2, 3] = 1, 3
    method = build_method("gatedcrf", IGN)
    loss, terms = method.loss(main, aux, Batch(image, scribble), 0)
    # pCE by hand: mean of -log p over the two annotated pixels, averaged over decoders.
    lm, la = torch.log_softmax(main, 1), torch.log_softmax(aux, 1)
    ce_main = -(lm[0, 1, 0, 0] + lm[0, 3, 2, 3]) / 2
    ce_aux = -(la[0, 1, 0, 0] + la[0, 3, 2, 3]) / 2
    torch.testing.assert_close(terms["sup"], 0.5 * (ce_main + ce_aux))
    crf = 0.5 * (
        gated_crf_loss(torch.softmax(main, 1), image) + gated_crf_loss(torch.softmax(aux, 1), image)
    )
    torch.testing.assert_close(terms["pl"], crf)
    assert terms["w"] == 0.1
    torch.testing.assert_close(loss, terms["sup"] + 0.1 * crf)
    # Changing an unannotated pixel's logits leaves pCE alone; the CRF term sees it.
    main2 = main.clone()
    main2[0, :, 1, 1] += torch.tensor([3.0, -2.0, 0.5, 1.0])
    _, terms2 = method.loss(main2, aux, Batch(image, scribble), 0)
    torch.testing.assert_close(terms2["sup"], terms["sup"])
    torch.testing.assert_close(terms2["sup"], 0.5 * (partial_ce(main2, scribble, IGN) + ce_aux))
    assert terms2["pl"].item() != pytest.approx(terms["pl"].item())


def _batch(spatial: tuple[int, ...]) -> Batch:
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 4, (2, *spatial), generator=gen)
    scribble = torch.full_like(label, IGN)
    scribble[..., :2] = label[..., :2]
    return Batch(torch.randn(2, 1, *spatial, generator=gen), scribble)


@pytest.mark.parametrize("spatial", [(6, 7), (3, 6, 7)])
def test_contract_finite_loss_that_trains_both_decoders(spatial):
    """Copy of test_methods.py's contract for `gatedcrf`, 2D and 3D."""
    method = build_method("gatedcrf", IGN)
    batch = _batch(spatial)
    main = torch.randn(2, 4, *spatial, requires_grad=True)
    aux = torch.randn(2, 4, *spatial, requires_grad=True)
    loss, terms = method.loss(main, aux, batch, iteration=50, generator=torch.Generator())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in terms.values())
    loss.backward()
    assert main.grad.abs().sum() > 0 and aux.grad.abs().sum() > 0
    # The CRF term alone reaches the unannotated pixels of both decoders.
    main.grad, aux.grad = None, None
    method.regulariser(main, aux, batch).backward()
    assert main.grad[..., 2:].abs().sum() > 0 and aux.grad[..., 2:].abs().sum() > 0
