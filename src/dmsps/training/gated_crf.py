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

Vectorised with ``F.unfold`` (no loop over pixels) and with no read-back to the host.
Memory: the unfolded probabilities hold (2r+1)^2 = 121 copies of the softmax.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dmsps.training.baselines import _Regularised
from dmsps.training.methods import Batch, register


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


def _window_offsets(radius: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Squared distance of each window position to the centre, in ``F.unfold``'s order.

    unfold lists a window row by row, so position k is (k // d - r, k % d - r).
    """
    d = 2 * radius + 1
    steps = torch.arange(d, device=device, dtype=dtype) - radius
    return (steps[:, None] ** 2 + steps[None, :] ** 2).reshape(d * d)


def pairwise_kernel(
    image: torch.Tensor,
    kernels: Sequence[GaussianKernel] = DEFAULT_KERNELS,
    radius: int = DEFAULT_RADIUS,
) -> torch.Tensor:
    """k_ij for every pixel i and window position j: (N, (2r+1)^2, H * W), no gradient.

    Zero at the centre (i = j) and where j lies outside the image, the gate that WSL4MIS's
    ``gate_crf_loss.py`` leaves out (its ``_unfold``, lines 184-188, pads with zeros and
    line 99 counts those neighbours in ``kernels.sum()``: a constant that moves the loss
    value but not its gradient).
    """
    n, ch, h, w = image.shape
    d = 2 * radius + 1
    dist2 = _window_offsets(radius, image.device, image.dtype)  # (d*d,)
    # Inside-the-image indicator of each neighbour: unfold of ones (zero-padded).
    ones = torch.ones(1, 1, h, w, device=image.device, dtype=image.dtype)
    gate = F.unfold(ones, d, padding=radius) * (dist2 > 0)[:, None]  # (1, d*d, H*W)
    image = image.detach()
    total = torch.zeros((), device=image.device, dtype=image.dtype)
    for kern in kernels:  # one Gaussian per descriptor (one by default), not per pixel
        log_k = (-0.5 / kern.sigma_xy**2) * dist2[:, None]  # (d*d, 1)
        if kern.sigma_image is not None:
            f = image / kern.sigma_image
            f_j = F.unfold(f, d, padding=radius).view(n, ch, d * d, h * w)
            f_i = f.reshape(n, ch, 1, h * w)
            log_k = log_k - 0.5 * ((f_j - f_i) ** 2).sum(1)  # (N, d*d, H*W)
        total = total + kern.weight * log_k.exp()
    return (total * gate).expand(n, d * d, h * w)


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
    denom = N * H * W, at the size the loss is computed at).
    """
    if image.shape[0] != probs.shape[0] or image.shape[2:] != probs.shape[2:]:
        raise ValueError(f"image {tuple(image.shape)} does not match probs {tuple(probs.shape)}")
    p = _slices(probs)
    x = _slices(image).to(p.dtype)
    if downscale > 1:
        size = (math.ceil(p.shape[2] / downscale), math.ceil(p.shape[3] / downscale))
        p, x = F.adaptive_avg_pool2d(p, size), F.adaptive_avg_pool2d(x, size)
    n, c, h, w = p.shape
    k = pairwise_kernel(x, kernels, radius)  # (N, d*d, H*W)
    d = 2 * radius + 1
    p_i = p.reshape(n, c, h * w)
    p_j = F.unfold(p, d, padding=radius).view(n, c, d * d, h * w)  # zero outside the image
    # sum_ij k_ij sum_c p_i(c) (1 - p_j(c)) = sum_ij k_ij sum_c p_i(c) - sum_ic p_i(c) s_ic,
    # s_ic = sum_j k_ij p_j(c); the first sum is sum_ij k_ij for probabilities (WSL4MIS
    # lines 89-99) but is kept in full so that the formula holds for any p.
    mass = (k.sum(1) * p_i.sum(1)).sum()
    agree = (p_i * torch.einsum("nkl,nckl->ncl", k, p_j)).sum()
    return (mass - agree) / (n * h * w)


class GatedCRF(_Regularised):
    """pCE + w * gated CRF loss of each decoder's softmax (WSL4MIS's pCE + GatedCRFLoss).

    Defaults (kernel, radius, no downscaling, w = 0.1) are WSL4MIS's; see the constants
    above. Their sigma_image = 0.1 is for ACDC slices min-max scaled to [0, 1]
    (code/dataloaders/acdc_data_processing.py line 45); dmsps z-scores its images, so the
    same sigma is a narrower intensity kernel here.
    """

    name = "gatedcrf"
    kernels: tuple[GaussianKernel, ...] = DEFAULT_KERNELS
    radius: int = DEFAULT_RADIUS
    downscale: int = DEFAULT_DOWNSCALE

    def term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        probs = torch.softmax(logits, 1)
        return gated_crf_loss(probs, batch.image, self.kernels, self.radius, self.downscale)


register(GatedCRF, default_weight=DEFAULT_WEIGHT)
