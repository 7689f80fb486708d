"""Gated CRF loss baseline ``gatedcrf``: pCE + w * gated CRF loss of the softmax.

Obukhov, Georgoulis, Dai & Van Gool, "Gated CRF loss for weakly supervised semantic image
segmentation", arXiv:1906.04651 (2019), as WSL4MIS trains it on scribbles. The loss asks
neighbouring pixels that look alike (close in position and intensity) to take the same
label, which propagates the scribbles into the unannotated pixels:

    L = 1 / N * sum_i sum_{j in W_r(i), j != i} k_ij * sum_c p_i(c) (1 - p_j(c)),
    k_ij = sum_kernels weight * exp(-|dxy_ij|^2 / (2 sigma_xy^2) - |dx_ij|^2 / (2 sigma_x^2)),

W_r(i) the (2r+1) x (2r+1) window around pixel i, x the image channels, N the number of
pixels (of all images in the batch). sum_c p_i(c) (1 - p_j(c)) is the probability that i
and j are given different labels (the Potts model). Neighbours that fall outside the image
are gated out (k_ij = 0), so border pixels are not charged for the zero padding.

3D inputs are handled as WSL4MIS's 2D method would handle a volume: every axial slice
(axis 2 of (B, C, D, H, W)) is a 2D image of its own, with no pairs across slices, and
N counts the pixels of all slices. A 3D window would cost (2r+1)^3 = 1331 neighbours per
voxel instead of 121 and span anisotropic voxel spacing with one sigma.

Computed as one product of two shifted views of the softmax per pair of mirror-image
window offsets (60 for r = 5; no loop over pixels, no read-back to the host), so memory
stays a few copies of the softmax rather than the (2r+1)^2 = 121 an ``F.unfold`` needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dmsps.training.baselines import _Regularised
from dmsps.training.method_base import Batch


@dataclass(frozen=True)
class GaussianKernel:
    """One term of k_ij: ``weight`` * Gaussian of position (and of intensity unless None).

    Sigmas are in pixels of the (downscaled) grid and in image intensity units.
    """

    weight: float
    sigma_xy: float
    sigma_image: float | None = None


# WSL4MIS = HiLab-git/WSL4MIS at a594da8, code/train_weakly_supervised_pCE_GatedCRFLoss_2D.py:
# line 103: loss_gatedcrf_kernels_desc = [{"weight": 1, "xy": 6, "rgb": 0.1}], one kernel of
# position (sigma 6 px) and intensity (sigma 0.1; "rgb" is the whole input, here 1 channel).
DEFAULT_KERNELS: tuple[GaussianKernel, ...] = (GaussianKernel(1.0, 6.0, 0.1),)
# line 104: loss_gatedcrf_radius = 5, an 11 x 11 window.
DEFAULT_RADIUS = 5
# lines 115-122: the softmax at full resolution with height_input = width_input = 256, the
# patch size (line 51), so prediction and image are the same size: no downscaling.
DEFAULT_DOWNSCALE = 1
# line 123: loss = loss_ce + 0.1 * out_gatedcrf (constant weight, no ramp-up).
DEFAULT_WEIGHT = 0.1


def _slices(t: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B * D, C, H, W), one 2D image per axial slice; 2D unchanged."""
    if t.dim() == 4:
        return t
    if t.dim() != 5:
        raise ValueError(f"expected (B, C, H, W) or (B, C, D, H, W), got {tuple(t.shape)}")
    b, c, d, h, w = t.shape
    return t.transpose(1, 2).reshape(b * d, c, h, w)


def _half_window(radius: int) -> list[tuple[int, int]]:
    """One offset (dy, dx) of each pair +-(dy, dx) in the (2r+1)^2 window, centre excluded.

    k_ij = k_ji and the Potts disagreement is symmetric, so every ordered pair (i, j) is
    counted once as (i, i + o) with o in this half and once as its mirror image.
    """
    return [
        (dy, dx)
        for dy in range(radius + 1)
        for dx in range(-radius, radius + 1)
        if dy > 0 or dx > 0
    ]


def _overlap(t: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views a, b of t (..., H, W) with b[..., y, x] = t[..., y + dy, x + dx], dy >= 0.

    Only pixels whose neighbour lies inside the image appear: the gate of the loss
    (neighbours outside the image have k_ij = 0) costs nothing.
    """
    h, w = t.shape[-2:]
    x0, x1 = max(0, -dx), w - max(0, dx)
    return t[..., : h - dy, x0:x1], t[..., dy:, x0 + dx : x1 + dx]


PairKernels = list[tuple[int, int, torch.Tensor]]


def pair_kernels(
    image: torch.Tensor,
    kernels: Sequence[GaussianKernel] = DEFAULT_KERNELS,
    radius: int = DEFAULT_RADIUS,
) -> PairKernels:
    """k_ij for each half-window offset o = (dy, dx): (dy, dx, (N, H - dy, W - |dx|)).

    image: (N, K, H, W). No gradient: the kernel is a fixed affinity of the image.
    """
    image = image.detach()
    h, w = image.shape[-2:]
    out: PairKernels = []
    for dy, dx in _half_window(radius):
        if dy >= h or abs(dx) >= w:  # the whole window position lies outside the image
            continue
        a, b = _overlap(image, dy, dx)
        dist2 = float(dy * dy + dx * dx)
        k = None
        for kern in kernels:  # one Gaussian per descriptor (one by default)
            log_k = torch.full_like(a[:, 0], -0.5 * dist2 / kern.sigma_xy**2)
            if kern.sigma_image is not None:
                log_k = log_k - (0.5 / kern.sigma_image**2) * ((a - b) ** 2).sum(1)
            term = kern.weight * log_k.exp()
            k = term if k is None else k + term
        if k is not None:
            out.append((dy, dx, k))
    return out


def potts_energy(probs: torch.Tensor, pairs: PairKernels) -> torch.Tensor:
    """1/N sum over ordered pairs i != j of k_ij sum_c p_i(c) (1 - p_j(c)), N the number of
    pixels of probs (N, C, H, W) (WSL4MIS ``gate_crf_loss.py`` line 63, denom = N * H * W).

    A pair and its mirror together give k (s_i + s_j - 2 p_i . p_j) with s = sum_c p(c),
    so each half-window offset is one product of two shifted views: no unfolded copy of
    the probabilities ((2r+1)^2 = 121 of them) is ever built, which made this loss about
    four times as slow as a training step without it on CPU.
    """
    s = probs.sum(1)
    total = probs.new_zeros(())
    for dy, dx, k in pairs:
        pa, pb = _overlap(probs, dy, dx)
        sa, sb = _overlap(s, dy, dx)
        total = total + (k * (sa + sb - 2 * (pa * pb).sum(1))).sum()
    return total / s.numel()


def _check_shapes(probs: torch.Tensor, image: torch.Tensor) -> None:
    if image.shape[0] != probs.shape[0] or image.shape[2:] != probs.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} does not match probs {tuple(probs.shape)}")


def _grid(t: torch.Tensor, downscale: int) -> torch.Tensor:
    """(N, ., H, W) 2D slices at the size the loss is computed at (area-averaged)."""
    t = _slices(t)
    if downscale > 1:
        size = (math.ceil(t.shape[2] / downscale), math.ceil(t.shape[3] / downscale))
        t = F.adaptive_avg_pool2d(t, size)
    return t


def gated_crf_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    kernels: Sequence[GaussianKernel] = DEFAULT_KERNELS,
    radius: int = DEFAULT_RADIUS,
    downscale: int = DEFAULT_DOWNSCALE,
) -> torch.Tensor:
    """Gated CRF loss (Potts compatibility) of class probabilities given the image.

    probs: (B, C, H, W) or (B, C, D, H, W), summing to 1 over C; image: (B, K, same
    spatial). 3D is computed slice by slice (see the module docstring). With
    ``downscale`` f > 1 both are area-averaged to ceil(size / f) first, as the reference
    code resizes the image to the prediction's size (``_downsample``, adaptive average
    pooling); sigma_xy is then in pixels of the smaller grid, as there.
    Normalised by the number of pixels (WSL4MIS ``gate_crf_loss.py`` line 63,
    denom = N * H * W, at the size the loss is computed at). The neighbours WSL4MIS's
    zero padding adds outside the image (its ``_unfold``, lines 184-188, counted by line
    99's ``kernels.sum()``) are gated out here: a constant that moves the loss value but
    not its gradient.
    """
    _check_shapes(probs, image)
    x = _grid(image.to(probs.dtype), downscale)
    return potts_energy(_grid(probs, downscale), pair_kernels(x, kernels, radius))


class GatedCRF(_Regularised):
    """pCE + w * gated CRF loss of each decoder's softmax (WSL4MIS's pCE + GatedCRFLoss).

    Defaults (kernel, radius, no downscaling, w = 0.1) are WSL4MIS's; see the constants
    above. Their sigma_image = 0.1 is for ACDC slices min-max scaled to [0, 1]
    (code/dataloaders/acdc_data_processing.py line 45); dmsps z-scores its images, so the
    same sigma is a narrower intensity kernel here.
    """

    name = "gatedcrf"
    default_weight = DEFAULT_WEIGHT
    kernels: tuple[GaussianKernel, ...] = DEFAULT_KERNELS
    radius: int = DEFAULT_RADIUS
    downscale: int = DEFAULT_DOWNSCALE

    def regulariser(self, main: torch.Tensor, aux: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Both decoders' gated CRF loss, the image's pair kernels computed once for both."""
        _check_shapes(main, batch.image)
        x = _grid(batch.image.to(main.dtype), self.downscale)
        pairs = pair_kernels(x, self.kernels, self.radius)
        energies = [
            potts_energy(_grid(torch.softmax(z, 1), self.downscale), pairs) for z in (main, aux)
        ]
        return 0.5 * (energies[0] + energies[1])
