"""Scribble-supervision baselines: partial cross-entropy plus one extra term.

Each method is pCE on the scribbles plus ``pl_weight`` times a second term that also
reaches the unannotated voxels (or, for ``pce-dice``, a Dice loss on the annotated ones).
Like every method here, both terms are applied to each decoder and averaged, so the
baselines train the same dual-decoder network as DMSPS at the same cost per step.

The weights are the ones the cited code trains with, applied without ramp-up as there.
The second term is logged as ``pl`` so that logs and reports show it like DMSPS's
pseudo-label term. Nothing here reads a tensor back to the host.

Each class's ``default_weight`` is the setting of the cited code (``pl_weight``
overrides it); ``methods.py`` lists the classes in ``METHODS``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dmsps.training.losses import dice_loss
from dmsps.training.method_base import Batch, Method

# Loss building blocks (N-D: probs and images are (B, C, *spatial), 1 to 3 spatial axes).


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over voxels of -sum_c p_c log p_c / log C, p = softmax(logits).

    Divided by log C (range [0, 1]) as WSL4MIS's ``entropy_loss`` does, so that their
    weight 0.1 means the same for any number of classes. Computed from log-softmax:
    exact where p underflows, where they add 1e-6 inside the log.
    """
    logp = F.log_softmax(logits, 1)
    return -(logp.exp() * logp).sum(1).mean() / math.log(logits.shape[1])


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def soft_contour_length(probs: torch.Tensor) -> torch.Tensor:
    """Mean over voxels and classes of dilate(erode(p)) - erode(p), 3-voxel windows.

    WSL4MIS's "TV" regulariser for scribbles: erosion is a min-pool, dilation a max-pool
    (3 wide along every spatial axis, stride 1, windows cut at the border). The result
    is non-zero only in a one-voxel band where p changes, so its mean is a soft count of
    boundary voxels: a contour length (area in 3D) rather than the sum of neighbour
    differences of classic total variation.
    """
    pool = _MAX_POOL[probs.dim() - 2]
    eroded = -pool(-probs, 3, 1, 1)
    opened = pool(eroded, 3, 1, 1)
    # opened >= eroded everywhere; the clamp only removes rounding noise.
    return (opened - eroded).clamp_min(0).mean()


def total_variation(probs: torch.Tensor) -> torch.Tensor:
    """Sum of |p(v) - p(v')| over all pairs of neighbours v, v' along each spatial axis."""
    return sum(torch.diff(probs, dim=d).abs().sum() for d in range(2, probs.dim()))


def mumford_shah(probs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Kim & Ye's Mumford-Shah loss: level-set term + total variation, both sums.

    Level-set term: sum over images b, image channels k, classes c and voxels v of
    p_c(v) (x_k(v) - m_bck)^2, m_bck = sum_v x_k p_c / sum_v p_c, the p_c-weighted mean
    intensity: each class should hold voxels of one intensity.
    """
    dims = tuple(range(2, probs.dim()))
    x = image.to(probs.dtype)
    mass = probs.sum(dims).clamp_min(torch.finfo(probs.dtype).tiny)  # (B, C)
    means = torch.einsum("bc...,bk...->bck", probs, x) / mass[..., None]  # (B, C, K)
    spread = (x[:, None] - means[(...,) + (None,) * len(dims)]) ** 2  # (B, C, K, *spatial)
    level = (probs[:, :, None] * spread).sum()
    return level + total_variation(probs)


# The methods


class _Regularised(Method):
    """pCE + w * term(decoder), both decoders averaged; subclasses define ``term``."""

    def term(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def regulariser(self, main: torch.Tensor, aux: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The mean of ``term`` over both decoders; a subclass may share work between them."""
        return 0.5 * (self.term(main, batch) + self.term(aux, batch))

    def loss(self, main, aux, batch, iteration, generator=None):
        sup = self.supervised(main, aux, batch.scribble)
        reg = self.regulariser(main, aux, batch)
        w = self.cfg.pl_weight
        return sup + w * reg, {"sup": sup.detach(), "pl": reg.detach(), "w": w}


class EntropyMinimisation(_Regularised):
    """pCE + w * normalised entropy of the softmax (Grandvalet & Bengio, NeurIPS 2004).

    Pushes every voxel, annotated or not, towards a confident prediction.
    """

    name = "em"
    # WSL4MIS (HiLab-git/WSL4MIS at a594da8, code/) train_weakly_supervised_pCE_Entropy_Mini_2D.py
    # line 102: loss_ce + 0.1 * ent_loss, ent_loss = utils/losses.py `entropy_loss` (line
    # 30), the entropy divided by log C.
    default_weight = 0.1

    def term(self, logits, batch):
        return normalised_entropy(logits)


class TotalVariation(_Regularised):
    """pCE + w * soft contour length of the softmax (WSL4MIS's pCE + TV baseline).

    WSL4MIS cites Javanmardi et al., "Unsupervised total variation loss for
    semi-supervised deep learning of semantic segmentation" (arXiv:1605.01368, 2016).

    WSL4MIS's ``tv_loss`` is not a sum of neighbour differences but the mean of
    dilate(erode(p)) - erode(p) (see ``soft_contour_length``), whose weight 1e-2 we take,
    so we follow that form, with 3-voxel windows along every axis in 3D. It is applied to
    all classes of every image: their script passes ``outputs_soft[1:]``, which drops the
    first image of the batch (the index is on the batch axis), a slip not reproduced.
    """

    name = "tv"
    # WSL4MIS train_weakly_supervised_pCE_TV_2D.py line 114: loss_ce + 1e-2 * loss_tv.
    default_weight = 1e-2

    def term(self, logits, batch):
        return soft_contour_length(torch.softmax(logits, 1))


class MumfordShah(_Regularised):
    """pCE + w * Mumford-Shah loss of the softmax and the image (Kim & Ye, IEEE TIP 2019).

    As in WSL4MIS: level-set term plus an L1 total variation with equal weight (Kim &
    Ye's code weights the TV 0.001), both summed (not averaged) over batch, classes and
    voxels, which is why the weight is 1e-6; the term grows with batch and patch size.
    WSL4MIS calls the loss with image and prediction swapped
    (``levelsetLoss(image, prediction)``), so their term is sum x (p_c - m_c)^2 with
    m_c = sum x p_c / sum x; we use the paper's form (and Kim & Ye's code's,
    ``criterionLS(pred, image)``), which does not divide by the image's sum (near 0 for
    z-scored images).
    """

    name = "mumford-shah"
    # WSL4MIS train_weakly_supervised_pCE_MumfordShah_Loss_2D.py line 103: loss_ce + 1e-6 *
    # utils/losses.py `MumfordShah_Loss` (lines 275-309).
    default_weight = 1e-6

    def term(self, logits, batch):
        return mumford_shah(torch.softmax(logits, 1), batch.image)


class PCEDice(Method):
    """pCE + w * soft Dice over the annotated voxels only (Gotkowski et al., 2024).

    nnU-Net's ignore-label recipe: unannotated voxels are left out of the Dice's overlap
    and sizes alike, so both terms see only the scribbles. The Dice is the package's
    ``dice_loss`` (squared sizes, background included, pooled over the batch); nnU-Net's
    own uses plain sizes and leaves the background out.
    """

    name = "pce-dice"
    # nnU-Net's DC_and_CE_loss (weight_ce = weight_dice = 1), as Gotkowski et al. use it.
    default_weight = 1.0

    def loss(self, main, aux, batch, iteration, generator=None):
        s, ig = batch.scribble, self.cfg.ignore
        sup = self.supervised(main, aux, s)
        valid = s != ig
        target = torch.where(valid, s, torch.zeros_like(s))
        dl = 0.5 * (
            dice_loss(torch.softmax(main, 1), target, mask=valid)
            + dice_loss(torch.softmax(aux, 1), target, mask=valid)
        )
        w = self.cfg.pl_weight
        return sup + w * dl, {"sup": sup.detach(), "pl": dl.detach(), "w": w}
